"""The AWS IoT credentials provider on a MicroPython board: short-lived role credentials
fetched with the device's X.509 certificate, refreshed before they expire.

Use (the agent's config key ``iot``, the same keys as the CPython agent)::

    from edgecore_ports.mp_iot import provider_from_config
    provider = provider_from_config(config, port)   # port: edgecore_ports.micropython
    creds = provider.get(now)      # an edgecore.Credentials; now: epoch seconds
    provider.invalidate()          # after an ExpiredToken answer: fetch anew next time

The fetch is ``GET https://<endpoint>[:<port>]/role-aliases/<role_alias>/credentials``
with the header ``x-amzn-iot-thingname: <thing_name>``, over mutual TLS: the port's
client-certificate support presents ``cert``/``key`` (PEM or DER files) and verifies
the endpoint against ``ca``. The whole exchange has a deadline: ``timeout`` (seconds, or
[connect, read] whose sum bounds it). The answer is read by
``edgecore.credsource.parse_iot_credentials`` (shared with the CPython provider).

Refresh, as botocore and the CPython provider do (``edgecore.credsource.refresh_state``):
an *advisory* refresh 15 minutes before expiry (``refresh_margin`` overrides it; a
failure keeps the cached credentials and is tried again ``retry_interval`` seconds later)
and a *mandatory* one 10 minutes before (a failure raises), both scaled down for
credentials that live less than 30 minutes, the advisory one moved earlier by a random
jitter (up to a tenth of it) so a fleet started together does not refresh together.
Expiry is judged on the endpoint's clock: the skew between its ``Date`` and ``now`` at
the fetch is added to every later ``now``, so a device clock hours off still uses, and
refreshes, its credentials on time.

Errors are ``IotCredentialsError`` naming the endpoint and role alias (never a key or
token), with ``retryable``: False when retrying cannot help (a refused certificate, an
unusable CA/certificate/key file, a 4xx answer such as a certificate not attached to the
thing (403) or an unknown role alias (404), a malformed answer, credentials already
expired by the endpoint's clock), True for network failures, 429 and 5xx. Config
problems raise ``edgecore_ports.ConfigError`` naming the key, at start-up.
"""

import os

from edgecore.credsource import (
    ADVISORY_REFRESH,
    MANDATORY_REFRESH,
    CredentialsParseError,
    parse_iot_credentials,
    refresh_state,
    refresh_windows,
    server_skew,
)
from edgecore.errors import EdgecoreError, TransportError
from edgecore.jsonenc import load_bounded
from edgecore_ports import ConfigError

KEYS = ("endpoint", "role_alias", "thing_name", "cert", "key", "ca", "port", "timeout",
        "refresh_margin")
CPYTHON_ONLY = ("proxy", "cache_file")
DEFAULT_TIMEOUT = (5, 15)
MAX_BODY = 16 * 1024  # an answer is ~1.5 KB; a board cannot hold credsource's 64 KiB
RETRY_INTERVAL = 30  # seconds between advisory refresh attempts after a failure
JITTER = 0.1


class IotCredentialsError(EdgecoreError):
    """Fetching credentials failed; ``retryable``, ``status`` (the HTTP status, None
    without an answer) and ``code`` (the endpoint's error type, or None)."""

    def __init__(self, source, detail, retryable, status=None, code=None):
        self.retryable = retryable
        self.status = status
        self.code = code
        super().__init__("%s: %s" % (source, detail))


def _printable(text, limit=200):
    """Endpoint-supplied text made safe for one log line: printable ASCII, bounded."""
    text = str(text)
    out = "".join(c if " " <= c <= "~" else "?" for c in text[:limit])
    return out + ("..." if len(text) > limit else "")


def _quote_alias(alias):
    # A role alias is [\w=,@-]: only these three need escaping in a path segment.
    return alias.replace("=", "%3D").replace(",", "%2C").replace("@", "%40")


class IotProvider:
    """See the module docstring. ``http``: a transport with ``transport(method, url,
    headers, body, deadline=...)`` (default: the port's, made on the first fetch with the
    client certificate); ``log(level, event, **fields)``; ``rand()`` in [0, 1)."""

    def __init__(self, port, endpoint, role_alias, thing_name, cert, key, ca, port_number=443,
                 timeout=DEFAULT_TIMEOUT, refresh_margin=None, http=None, log=None, rand=None):
        self.port = port
        self.endpoint = endpoint
        self.role_alias = role_alias
        self.thing_name = thing_name
        self.cert = cert
        self.key = key
        self.ca = ca
        self.timeout = timeout
        self.advisory = ADVISORY_REFRESH if refresh_margin is None else refresh_margin
        host = endpoint if port_number == 443 else "%s:%d" % (endpoint, port_number)
        self.url = "https://%s/role-aliases/%s/credentials" % (host, _quote_alias(role_alias))
        self.source = "AWS IoT credentials provider %s (role alias %s)" % (endpoint, role_alias)
        self.http = http
        self.log = log or (lambda level, event, **fields: None)
        if rand is None:
            import random

            rand = random.random
        self.rand = rand
        self._cached = None
        self._skew = 0  # the endpoint's clock minus ``now``, at the last fetch
        self._lifetime = None
        self._extra = 0  # the advisory window's jitter
        self._retry_at = None
        self._invalidated = False

    def get(self, now=None):
        """The credentials to sign with at ``now`` (epoch seconds; default the port's
        clock), fetched or refreshed when the windows say so."""
        if now is None:
            now = self.port.clock()
        cached = self._cached
        state = "mandatory"
        if cached is not None and not self._invalidated:
            state = refresh_state(cached.expiration, now + self._skew, self._lifetime,
                                  self.advisory, MANDATORY_REFRESH, self._extra)
            if state is None:
                return cached
            if state == "advisory" and self._retry_at is not None and now < self._retry_at:
                return cached
        try:
            fresh, skew = self._fetch(now)
        except IotCredentialsError as exc:
            if cached is None or self._invalidated:
                raise
            if state == "mandatory":
                raise IotCredentialsError(
                    self.source, "the credentials expire within %d s and refreshing them "
                    "failed: %s" % (cached.expiration - (now + self._skew), exc),
                    exc.retryable, exc.status, exc.code) from None
            self._retry_at = now + RETRY_INTERVAL
            self.log("warning", "credentials.refresh_failed", source=self.source,
                     reason=str(exc), valid_for=cached.expiration - (now + self._skew))
            return cached
        self._cached = fresh
        self._skew = skew
        self._invalidated = False
        self._retry_at = None
        self._lifetime = fresh.expiration - (now + skew)
        self._extra = self.rand() * JITTER * refresh_windows(self._lifetime, self.advisory)[0]
        self.log("info", "credentials.fetched", source=self.source,
                 access_key=fresh.access_key, valid_for=self._lifetime)
        return fresh

    def invalidate(self):
        """Do not trust the cached credentials (the service refused them): the next
        ``get`` fetches, and a failure then raises."""
        self._invalidated = True

    def _fetch(self, now):
        """(Credentials, skew) from the endpoint; IotCredentialsError if not."""
        if self.http is None:
            # Kept: a board allocates the transport's buffers once, at the first fetch.
            self.http = self.port.make_transport(ca_bundle=self.ca, client_cert=self.cert,
                                                 client_key=self.key, timeout=self.timeout,
                                                 max_body=MAX_BODY)
        t = self.timeout
        total = t[0] + t[1] if isinstance(t, (tuple, list)) else t
        try:
            status, headers, body = self.http.transport(
                "GET", self.url, {"x-amzn-iot-thingname": self.thing_name}, b"",
                deadline=self.port.monotonic() + total)
        except TransportError as exc:
            # A refused certificate or an unusable file (TlsError) would fail again.
            raise IotCredentialsError(self.source, "request failed: %s" % (exc,),
                                      getattr(exc, "retryable", True)) from None
        if status != 200:
            raise self._endpoint_error(status, headers, body)
        try:
            creds = parse_iot_credentials(body, self.source)
        except CredentialsParseError as exc:
            raise IotCredentialsError(self.source, str(exc), False, status) from None
        skew = server_skew(headers.get("date"), now)
        if creds.expired(now + skew):
            # Using them would only earn a signature rejection and a fetch loop.
            raise IotCredentialsError(
                self.source, "the credentials answered expired %d s ago by the %s (check "
                "the clock)" % (now + skew - creds.expiration,
                                "endpoint's Date" if headers.get("date") else "device clock"),
                False, status)
        return creds, skew

    def _endpoint_error(self, status, headers, body):
        message = None
        try:
            doc = load_bounded(body, MAX_BODY, 8)
            if isinstance(doc, dict) and isinstance(doc.get("message"), str):
                message = doc["message"]
        except ValueError:
            pass
        code = _printable(headers.get("x-amzn-errortype", "").split(":")[0], 64) or None
        return IotCredentialsError(
            self.source, "HTTP %d %s: %s" % (status, code or "", _printable(
                message or "no JSON message")), status == 429 or status >= 500, status, code)

    def __repr__(self):
        return "IotProvider(endpoint=%r, role_alias=%r, thing_name=%r, cached=%s)" % (
            self.endpoint, self.role_alias, self.thing_name,
            "no" if self._cached is None else "yes")


def _text(conf, name, optional=False):
    value = conf.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError("iot." + name, "expected a non-empty string")
    return value.strip()


def _number(value):
    return not isinstance(value, bool) and isinstance(value, (int, float))


def _file(conf, name):
    path = _text(conf, name)
    try:
        is_file = os.stat(path)[0] & 0x8000 != 0
    except OSError:
        is_file = False
    if not is_file:
        raise ConfigError("iot." + name, "no such file: %s" % path)
    return path


def provider_from_config(config, port, log=None, rand=None):
    """An ``IotProvider`` for the agent config's ``iot`` object (ConfigError naming the
    key when it is malformed; the files must exist). ``port``: the MicroPython port
    module (``make_transport``, ``monotonic``, ``clock``)."""
    conf = config.get("iot")
    if not isinstance(conf, dict):
        raise ConfigError("iot", "expected an object {endpoint, role_alias, thing_name, "
                          "cert, key, ca}")
    for name in conf:
        if name in CPYTHON_ONLY:
            raise ConfigError("iot." + name, "not supported by the MicroPython agent")
        if name not in KEYS:
            raise ConfigError("iot." + str(name)[:40], "unknown key (expected %s)"
                              % ", ".join(KEYS))
    endpoint = _text(conf, "endpoint")
    for c in endpoint:
        if c in "/: " or not " " < c <= "~":
            raise ConfigError("iot.endpoint", "expected a bare host name like "
                              "abc123.credentials.iot.us-west-2.amazonaws.com (no scheme, "
                              "path or port; use port)")
    alias = _text(conf, "role_alias")
    if len(alias) > 128 or not all(c.isalpha() or c.isdigit() or c in "_=,@-" for c in alias):
        raise ConfigError("iot.role_alias", "expected 1-128 of letters, digits, _=,@-")
    thing = _text(conf, "thing_name")
    # The header's value: [a-zA-Z0-9:_-]{1,128}, as CreateThing allows.
    if len(thing) > 128 or not all(("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9")
                                   or c in ":_-" for c in thing):
        raise ConfigError("iot.thing_name", "expected 1-128 of letters, digits, ':', '_', '-'")
    number = conf.get("port", 443)
    if not isinstance(number, int) or isinstance(number, bool) or not 0 < number < 65536:
        raise ConfigError("iot.port", "expected an integer 1-65535")
    timeout = conf.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, list):
        timeout = tuple(timeout)
    pair = isinstance(timeout, tuple) and len(timeout) == 2
    if not (pair and all(_number(x) and x > 0 for x in timeout)) \
            and not (_number(timeout) and timeout > 0):
        raise ConfigError("iot.timeout", "expected seconds > 0 or [connect, read] seconds")
    margin = conf.get("refresh_margin")
    if margin is not None and not (_number(margin) and margin >= 0):
        raise ConfigError("iot.refresh_margin", "expected seconds >= 0")
    # No system CA store on MicroPython: the endpoint's CA is required.
    return IotProvider(port, endpoint, alias, thing, _file(conf, "cert"), _file(conf, "key"),
                       _file(conf, "ca"), number, timeout, margin, log=log, rand=rand)
