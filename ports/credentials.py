"""Where a CPython device's AWS credentials come from, resolved as the AWS SDKs do.

``provider_from_config(config)`` picks one source and returns a provider whose
``get(now)`` hands out an ``edgecore.Credentials`` and whose ``invalidate()`` forces
a reload (the agent calls it after an ``ExpiredToken``-style rejection). Sources, in
order:

1. ``config["credentials"]`` -- ``{access_key_id, secret_access_key, session_token}``;
2. ``config["iot"]`` -- the AWS IoT credentials provider (X.509 device certificate,
   mutual TLS, short-lived role credentials refreshed before they expire);
3. ``config["profile"]`` -- that profile of the shared credentials file only (an
   explicit profile skips the environment, as in botocore);
4. ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``;
5. the shared credentials file (``AWS_SHARED_CREDENTIALS_FILE`` or
   ``~/.aws/credentials``), profile ``AWS_PROFILE`` or ``default``.

Giving more than one of 1-3 is a configuration error rather than a silent pick.
Nothing found raises ``NoCredentialsError`` naming every place looked.

Secrets (secret keys, session tokens, private keys) never reach a ``repr``, an
exception message or a log line: errors name the source, the field and the expected
form only. CPython only (``requests``, ``ssl``, ``threading``, ``configparser``).
"""

import configparser
import json
import logging
import os
import random
import threading
import time

from edgecore.amztime import iso8601, parse_iso8601
from edgecore.credentials import Credentials
from edgecore.errors import ClientError, EdgecoreError, ResponseParseError, TransportError
from edgecore.jsonenc import load_bounded

LOG = logging.getLogger("edgecore.credentials")

# The IAM action behind the IoT credentials endpoint; used as the "operation" of its errors.
IOT_OPERATION = "AssumeRoleWithCertificate"
MAX_IOT_RESPONSE_BYTES = 64 * 1024
JSON_DEPTH = 32  # the credentials document is 2 levels deep; json.loads recurses
DEFAULT_REFRESH_MARGIN = 300
DEFAULT_IOT_TIMEOUT = (5, 15)

_CONFIG_STATIC_KEYS = ("access_key_id", "secret_access_key", "session_token")
_IOT_KEYS = (
    "endpoint",
    "role_alias",
    "thing_name",
    "cert",
    "key",
    "ca",
    "port",
    "timeout",
    "refresh_margin",
    "proxy",
    "cache_file",
)


# --------------------------------------------------------------------------- errors


class CredentialsError(EdgecoreError):
    """Base of every credentials error. ``retryable``: a later attempt may succeed."""

    retryable = False


class NoCredentialsError(CredentialsError):
    """No source had credentials. ``looked`` lists each place and why it gave nothing."""

    def __init__(self, looked):
        self.looked = list(looked)
        super().__init__("no AWS credentials found; looked in: %s" % "; ".join(self.looked))


class CredentialsConfigError(CredentialsError):
    """A credentials source is present but malformed (config value, env var, file)."""

    def __init__(self, source, field, detail):
        self.source = source
        self.field = field
        super().__init__("credentials from %s: invalid %s: %s" % (source, field, detail))


class CredentialsExpiredError(CredentialsError):
    """The cached credentials have expired and refreshing them failed (``cause``)."""

    def __init__(self, source, expiration, cause):
        self.source = source
        self.expiration = expiration
        self.cause = cause
        self.retryable = getattr(cause, "retryable", False)
        super().__init__(
            "credentials from %s expired at %s and refreshing them failed: %s"
            % (source, _iso(expiration), cause)
        )


class IotCredentialsError(CredentialsError):
    """Base of the AWS IoT credentials provider's errors; ``endpoint``, ``role_alias``."""

    endpoint = None
    role_alias = None

    def _where(self, endpoint, role_alias):
        # Appended to the message so a log line says which endpoint/alias failed.
        self.endpoint = endpoint
        self.role_alias = role_alias
        self.args = ("%s [endpoint %s, role alias %s]" % (self.args[0], endpoint, role_alias),)


class IotTransportError(IotCredentialsError, TransportError):
    """The request did not complete: connection, timeout, TLS (incl. mutual TLS) failure.

    ``retryable`` is False when TLS refused a certificate (``tls_reason`` says which,
    e.g. ``TLSV1_ALERT_UNKNOWN_CA``): the same files would be refused again, so the agent
    reports it at once instead of backing off like after a network blip.
    """

    retryable = True
    tls_reason = None

    def __init__(self, endpoint, role_alias, detail, tls_reason=None):
        super().__init__("%s: request failed: %s" % (IOT_OPERATION, detail))
        self._where(endpoint, role_alias)
        if tls_reason is not None:
            self.tls_reason = tls_reason
            self.retryable = False


class IotEndpointError(IotCredentialsError, ClientError):
    """The endpoint answered with an error status; ``status`` and ``message`` as sent."""

    def __init__(self, endpoint, role_alias, status, code, message):
        ClientError.__init__(self, IOT_OPERATION, code, message, status)
        self.retryable = status == 429 or status >= 500
        self._where(endpoint, role_alias)


class IotResponseError(IotCredentialsError, ResponseParseError):
    """A 200 response not shaped as the documented credentials JSON; ``field`` names where."""

    def __init__(self, endpoint, role_alias, field, detail, status=200):
        ResponseParseError.__init__(self, IOT_OPERATION, field, detail, status)
        self._where(endpoint, role_alias)


# --------------------------------------------------------------------------- helpers


def _iso(epoch):
    # For messages only: must not itself fail on an odd clock value.
    if epoch is None:
        return "never"
    try:
        return iso8601(epoch)
    except ValueError:
        return "epoch %r" % (epoch,)


def _printable(text, limit=256):
    """Server-supplied text made safe for one log line: printable ASCII, bounded."""
    text = str(text)
    out = "".join(c if " " <= c <= "~" else "?" for c in text[:limit])
    return out + ("..." if len(text) > limit else "")


def _root_cause(exc):
    """The exception under requests' and urllib3's wrappers (e.g. the ssl.SSLError)."""
    for _ in range(8):
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            args = getattr(exc, "args", ())
            inner = args[0] if args and isinstance(args[0], BaseException) else None
        if inner is None:
            break
        exc = inner
    return exc


def _describe(exc):
    return "%s: %s" % (type(exc).__name__, _printable(str(exc), 300))


# OpenSSL reasons meaning "this certificate/key/CA is refused": a retry with the same
# files gets the same answer. Values: what the device owner should check.
_CERT_REJECTIONS = {
    # The endpoint does not know the CA that issued the device certificate
    # (at AWS IoT: the certificate is not registered, or inactive).
    "TLSV1_ALERT_UNKNOWN_CA": "the endpoint does not trust the device certificate",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the endpoint refused the device certificate",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN": "the endpoint refused the device certificate",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "the device certificate is revoked",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the endpoint says the device certificate expired",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "the endpoint refused the device certificate",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the endpoint requires a device certificate",
    # Ours: the server's certificate does not chain to `ca` (or the clock is wrong).
    "CERTIFICATE_VERIFY_FAILED": "the endpoint's certificate is not trusted by the configured "
    "ca (or the device clock is wrong)",
    # Loading cert + key: the key is not the certificate's.
    "KEY_VALUES_MISMATCH": "the private key does not belong to the device certificate",
}


def _cert_rejection(exc):
    """The OpenSSL reason of a certificate/key rejection in `exc` (a root cause), or None."""
    reason = getattr(exc, "reason", None)
    if isinstance(reason, str) and reason in _CERT_REJECTIONS:
        return reason
    text = str(exc)
    for name in _CERT_REJECTIONS:  # e.g. a wrapper that kept the text only
        if name in text or name.lower().replace("_", " ") in text:
            return name
    return None


def _need_str(source, field, value, optional=False):
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise CredentialsConfigError(source, field, "expected a non-empty string")
    return value.strip()


def _is_word(value):
    return all("!" <= c <= "~" for c in value)


def _credentials(source, access_key, secret_key, token, key_names):
    """Build Credentials from a pair that must be complete.

    ``key_names`` are the names of the three values at their source, for messages.
    """
    if not access_key:
        raise CredentialsConfigError(source, key_names[0], "missing while %s is set" % key_names[1])
    if not secret_key:
        raise CredentialsConfigError(source, key_names[1], "missing while %s is set" % key_names[0])
    for name, value in zip(key_names, (access_key, secret_key, token)):
        # Keys and tokens are single words of printable ASCII; anything else (a wrapped
        # line, a pasted quote) would only surface later as a signature mismatch.
        if value and not _is_word(value):
            raise CredentialsConfigError(
                source, name, "expected one word of printable ASCII (no spaces or line breaks)"
            )
    return Credentials(access_key, secret_key, token or None)


# --------------------------------------------------------------------------- providers


class StaticProvider:
    """Credentials fixed at start-up (config or environment); ``invalidate()`` is a no-op."""

    def __init__(self, credentials, source):
        self._credentials = credentials
        self.source = source

    def get(self, now=None):
        return self._credentials

    def invalidate(self):
        # Nothing to reload: the same keys would come back.
        pass

    def __repr__(self):
        return "StaticProvider(source=%r, access_key=%r)" % (
            self.source,
            self._credentials.access_key,
        )


class RefreshingProvider:
    """Caches what ``_load(now)`` returns; reloads before expiry and after ``invalidate()``.

    The refresh happens ``refresh_margin`` seconds before expiry (at most half the
    credentials' lifetime, so short-lived ones are not reloaded on every call), plus up
    to ``jitter`` of that margin at random so a fleet started together does not refresh
    together. When a reload fails while the cached credentials are still valid they are
    kept (a warning is logged and the next attempt waits ``retry_interval`` seconds);
    once they have expired the failure is raised as ``CredentialsExpiredError``. After
    ``invalidate()`` the cache is not trusted: a failed reload raises its own error.
    ``get`` is thread-safe; concurrent callers wait for one reload.
    """

    source = "?"

    def __init__(
        self,
        clock=None,
        refresh_margin=DEFAULT_REFRESH_MARGIN,
        jitter=0.1,
        retry_interval=30,
        rng=None,
    ):
        self._clock = clock or time.time
        self._margin = refresh_margin
        self._jitter = jitter
        self._retry_interval = retry_interval
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._cached = None
        self._refresh_at = None
        self._invalidated = False
        self._seeded = False

    def _load(self, now):
        raise NotImplementedError

    def _seed(self, now):
        """Credentials saved by an earlier run, tried once before the first load."""
        return None

    def get(self, now=None):
        if now is None:
            now = self._clock()
        with self._lock:
            if self._cached is None and not self._invalidated and not self._seeded:
                self._seeded = True
                seed = self._seed(now)
                if seed is not None:
                    self._store(seed, now)
            cached = self._cached
            if cached is not None and not self._invalidated and now < self._refresh_at:
                return cached
            try:
                fresh = self._load(now)
            except CredentialsError as exc:
                return self._keep_cached(cached, now, exc)
            self._store(fresh, now)
            return fresh

    def invalidate(self):
        with self._lock:
            self._invalidated = True

    def _store(self, creds, now):
        self._cached = creds
        self._invalidated = False
        if creds.expiration is None:
            self._refresh_at = float("inf")
            return
        margin = min(self._margin, (creds.expiration - now) / 2.0)
        margin += self._rng.uniform(0, self._jitter * margin)
        self._refresh_at = creds.expiration - margin

    def _keep_cached(self, cached, now, exc):
        if cached is None or self._invalidated:
            raise exc
        if cached.expired(now):
            raise CredentialsExpiredError(self.source, cached.expiration, exc) from exc
        self._refresh_at = min(now + self._retry_interval, cached.expiration)
        LOG.warning(
            "credentials refresh from %s failed (%s); using cached credentials valid until %s",
            self.source,
            exc,
            _iso(cached.expiration),
        )
        return cached


class SharedFileProvider(RefreshingProvider):
    """One profile of an AWS shared credentials file; re-read after ``invalidate()``."""

    def __init__(self, path, profile, explicit_profile=False, **kwargs):
        super().__init__(**kwargs)
        self.path = path
        self.profile = profile
        self.explicit_profile = explicit_profile
        self.source = "shared credentials file %s, profile %s" % (path, profile)

    def _load(self, now):
        creds, why = self.read()
        if creds is None:
            raise NoCredentialsError([why])
        return creds

    def read(self):
        """-> (Credentials, None) or (None, why-not text); raises CredentialsConfigError."""
        where = "shared credentials file %s" % self.path
        parser = configparser.RawConfigParser()
        problem = None
        try:
            with open(self.path, encoding="utf-8") as f:
                parser.read_file(f)
        except FileNotFoundError:
            return None, "%s (not found)" % where
        except (OSError, UnicodeDecodeError) as exc:
            problem = ("file", "cannot read: %s" % type(exc).__name__)
        except configparser.Error as exc:
            line = getattr(exc, "lineno", None)
            problem = (
                "file" if line is None else "line %d" % line,
                "not an INI file of [profile] sections and key = value lines (%s)"
                % type(exc).__name__,
            )
        if problem is not None:
            # Raised outside the except block so the original error (whose message
            # quotes the offending line, maybe a key) is not even kept as __context__.
            raise CredentialsConfigError(where, problem[0], problem[1])
        if not parser.has_section(self.profile):
            if self.explicit_profile:
                raise CredentialsConfigError(
                    where,
                    "profile",
                    "profile [%s] not found (profiles there: %s)"
                    % (self.profile, ", ".join(sorted(parser.sections())) or "none"),
                )
            return None, "%s (no [%s] profile)" % (where, self.profile)
        section = dict(parser.items(self.profile))
        access = section.get("aws_access_key_id", "").strip()
        secret = section.get("aws_secret_access_key", "").strip()
        token = (
            section.get("aws_session_token") or section.get("aws_security_token") or ""
        ).strip()
        if not access and not secret:
            return None, "%s (profile [%s] has no aws_access_key_id)" % (where, self.profile)
        creds = _credentials(
            "%s, profile [%s]" % (where, self.profile),
            access,
            secret,
            token,
            ("aws_access_key_id", "aws_secret_access_key", "aws_session_token"),
        )
        return creds, None

    def __repr__(self):
        return "SharedFileProvider(path=%r, profile=%r)" % (self.path, self.profile)


class IotCredentialsProvider(RefreshingProvider):
    """Short-lived role credentials from the AWS IoT credentials provider.

    ``GET https://<endpoint>/role-aliases/<role_alias>/credentials`` with the device
    certificate and key as the TLS client certificate, the server verified against
    ``ca`` (or the system CAs when None), header ``x-amzn-iot-thingname``. The answer is
    read up to ``MAX_IOT_RESPONSE_BYTES`` and checked member by member. With
    ``cache_file`` the last good credentials are saved there (mode 0600) and reused by
    the next run while still valid.
    """

    def __init__(
        self,
        endpoint,
        role_alias,
        thing_name,
        cert,
        key,
        ca=None,
        port=443,
        timeout=DEFAULT_IOT_TIMEOUT,
        proxy=None,
        cache_file=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.endpoint = endpoint
        self.role_alias = role_alias
        self.thing_name = thing_name
        self.cert = cert
        self.key = key
        self.ca = ca
        self.port = port
        self.timeout = timeout
        self.proxy = proxy
        self.cache_file = cache_file
        self.source = "AWS IoT credentials provider %s (role alias %s)" % (endpoint, role_alias)

    @property
    def url(self):
        from urllib.parse import quote

        host = self.endpoint if self.port == 443 else "%s:%d" % (self.endpoint, self.port)
        return "https://%s/role-aliases/%s/credentials" % (host, quote(self.role_alias, safe=""))

    def _load(self, now):
        status, headers, body = self._request()
        if status != 200:
            raise self._endpoint_error(status, headers, body)
        creds = self._parse(body)
        if creds.expired(now):
            # Using them would only earn a signature rejection and a reload loop.
            raise IotResponseError(
                self.endpoint,
                self.role_alias,
                "credentials.expiration",
                "already past: %s while the device clock says %s (check the clock)"
                % (_iso(creds.expiration), _iso(now)),
            )
        if self.cache_file:
            self._save_cache(creds)
        return creds

    # The cache file lets a restarted agent skip a fetch (and work through a short
    # outage) with credentials that are still valid. It holds secrets: mode 0600,
    # written atomically, and ignored unless it is owner-only and for this
    # endpoint/alias/thing.

    def _cache_identity(self):
        return {
            "endpoint": self.endpoint,
            "port": self.port,
            "role_alias": self.role_alias,
            "thing_name": self.thing_name,
        }

    def _save_cache(self, creds):
        from edgecore_ports.linux import atomic_write

        doc = dict(
            self._cache_identity(),
            accessKeyId=creds.access_key,
            secretAccessKey=creds.secret_key,
            sessionToken=creds.session_token,
            expiration=iso8601(creds.expiration),
        )
        try:
            atomic_write(self.cache_file, json.dumps(doc, sort_keys=True), mode=0o600)
        except OSError as exc:
            LOG.warning(
                "cannot write credentials cache file %s (%s); continuing without it",
                self.cache_file,
                type(exc).__name__,
            )

    def _seed(self, now):
        if not self.cache_file:
            return None
        why = None
        try:
            st = os.stat(self.cache_file)
            if st.st_mode & 0o077:
                why = "readable by others (mode %o); expected 0600" % (st.st_mode & 0o777)
            else:
                with open(self.cache_file, "rb") as f:
                    body = f.read(MAX_IOT_RESPONSE_BYTES + 1)
                doc = load_bounded(body, MAX_IOT_RESPONSE_BYTES, JSON_DEPTH)
                if not isinstance(doc, dict) or any(
                    doc.get(k) != v for k, v in self._cache_identity().items()
                ):
                    why = "saved for another endpoint, role alias or thing"
                else:
                    creds = self._parse(json.dumps({"credentials": doc}).encode())
                    if not creds.expired(now):
                        return creds
                    why = "expired at %s" % _iso(creds.expiration)
        except FileNotFoundError:
            return None
        except OSError as exc:
            why = "unreadable (%s)" % type(exc).__name__
        except ValueError as exc:  # load_bounded's reasons name no content
            why = "unreadable (%s)" % exc
        except IotResponseError as exc:
            why = "malformed at %s" % exc.field
        LOG.warning("ignoring credentials cache file %s: %s", self.cache_file, why)
        return None

    def _request(self):
        import requests

        proxies = {"https": self.proxy} if self.proxy else None
        try:
            with requests.Session() as session:
                resp = session.get(
                    self.url,
                    headers={
                        "x-amzn-iot-thingname": self.thing_name,
                        "Accept-Encoding": "identity",
                    },
                    cert=(self.cert, self.key),
                    verify=self.ca if self.ca else True,
                    timeout=self.timeout,
                    proxies=proxies,
                    allow_redirects=False,
                    stream=True,
                )
                with resp:
                    body = bytearray()
                    for chunk in resp.iter_content(8192):
                        body += chunk
                        if len(body) > MAX_IOT_RESPONSE_BYTES:
                            raise IotResponseError(
                                self.endpoint,
                                self.role_alias,
                                "<body>",
                                "larger than %d bytes" % MAX_IOT_RESPONSE_BYTES,
                                resp.status_code,
                            )
                    return resp.status_code, resp.headers, bytes(body)
        except (requests.RequestException, OSError, ValueError) as exc:
            root = _root_cause(exc)
            rejected = _cert_rejection(root)
            if rejected is not None:
                what = "TLS handshake failed: %s (cert %s, ca %s); not retried" % (
                    _CERT_REJECTIONS[rejected],
                    self.cert,
                    self.ca or "system store",
                )
            elif isinstance(exc, requests.exceptions.SSLError):
                what = "TLS handshake failed (server not trusted, or client certificate refused)"
            elif isinstance(exc, requests.exceptions.Timeout):
                what = "timed out"
            else:
                what = "connection failed"
            # ssl/socket messages carry host, paths and the TLS reason -- never a key.
            raise IotTransportError(
                self.endpoint, self.role_alias, "%s: %s" % (what, _describe(root)), rejected
            ) from None

    def _endpoint_error(self, status, headers, body):
        message = None
        try:
            doc = load_bounded(body, MAX_IOT_RESPONSE_BYTES, JSON_DEPTH)
            if isinstance(doc, dict) and isinstance(doc.get("message"), str):
                message = doc["message"]
        except ValueError:
            pass
        if message is None:
            message = "HTTP %d with no JSON message" % status
        code = headers.get("x-amzn-ErrorType", "") if headers is not None else ""
        code = _printable(code.split(":")[0], 64) or "HTTP%d" % status
        return IotEndpointError(self.endpoint, self.role_alias, status, code, _printable(message))

    def _parse(self, body):
        def bad(field, detail):
            return IotResponseError(self.endpoint, self.role_alias, field, detail)

        try:
            doc = load_bounded(body, MAX_IOT_RESPONSE_BYTES, JSON_DEPTH)
        except ValueError as exc:  # the reason names size/depth/UTF-8/syntax, never content
            raise bad("<body>", str(exc)) from None
        if not isinstance(doc, dict):
            raise bad("<body>", "expected a JSON object, got %s" % type(doc).__name__)
        inner = doc.get("credentials")
        if not isinstance(inner, dict):
            raise bad("credentials", "expected an object, got %s" % type(inner).__name__)
        values = {}
        for name in ("accessKeyId", "secretAccessKey", "sessionToken", "expiration"):
            value = inner.get(name)
            if not isinstance(value, str) or not value:
                # Only the type is named: the value may be a secret.
                raise bad(
                    "credentials." + name,
                    "expected a non-empty string, got %s"
                    % ("nothing" if value is None else type(value).__name__),
                )
            if name != "expiration" and not _is_word(value):
                raise bad("credentials." + name, "expected one word of printable ASCII")
            values[name] = value
        stamp = values["expiration"]
        try:
            expiration = parse_iso8601(stamp)
        except ValueError:
            # Echo the value only when it cannot be a key that landed in the wrong member.
            shown = (
                repr(stamp[:40])
                if all(c in "0123456789-:.+TZtz " for c in stamp)
                else ("a %d-character string" % len(stamp))
            )
            raise bad(
                "credentials.expiration",
                "expected an ISO 8601 UTC time like 2024-01-01T00:00:00Z, got %s" % shown,
            ) from None
        return Credentials(
            values["accessKeyId"], values["secretAccessKey"], values["sessionToken"], expiration
        )

    def __repr__(self):
        return "IotCredentialsProvider(endpoint=%r, role_alias=%r, thing_name=%r, cached=%s)" % (
            "%s:%d" % (self.endpoint, self.port),
            self.role_alias,
            self.thing_name,
            "yes" if self._cached is not None else "no",
        )


# --------------------------------------------------------------------------- resolution


def _check_object(name, conf, keys):
    """config[name] must be an object with only `keys`; returns its source label."""
    source = 'config["%s"]' % name
    if not isinstance(conf, dict):
        raise CredentialsConfigError(source, name, "expected an object")
    unknown = sorted(k for k in conf if k not in keys)
    if unknown:
        raise CredentialsConfigError(
            source, unknown[0], "unknown key (expected %s)" % ", ".join(keys)
        )
    return source


def _from_config_static(conf):
    source = _check_object("credentials", conf, _CONFIG_STATIC_KEYS)
    access = _need_str(source, "access_key_id", conf.get("access_key_id"))
    secret = _need_str(source, "secret_access_key", conf.get("secret_access_key"))
    token = _need_str(source, "session_token", conf.get("session_token"), optional=True)
    return StaticProvider(_credentials(source, access, secret, token, _CONFIG_STATIC_KEYS), source)


def _from_config_iot(conf, clock, rng, proxy):
    source = _check_object("iot", conf, _IOT_KEYS)
    endpoint = _need_str(source, "endpoint", conf.get("endpoint"))
    if "/" in endpoint or ":" in endpoint or " " in endpoint:
        raise CredentialsConfigError(
            source,
            "endpoint",
            "expected a bare host name like abc123.credentials.iot.us-west-2.amazonaws.com "
            "(no scheme, path or port; use port)",
        )
    alias = _need_str(source, "role_alias", conf.get("role_alias"))
    thing = _need_str(source, "thing_name", conf.get("thing_name"))
    # Thing names are [a-zA-Z0-9:_-]+; checking also keeps the header value clean.
    if not all(c.isalnum() and c.isascii() or c in ":_-" for c in thing):
        raise CredentialsConfigError(
            source, "thing_name", "expected letters, digits, ':', '_', '-'"
        )
    paths = {}
    for field in ("cert", "key", "ca"):
        path = _need_str(source, field, conf.get(field), optional=(field == "ca"))
        if path is not None:
            path = os.path.expanduser(path)
            if not os.path.isfile(path):
                raise CredentialsConfigError(source, field, "no such file: %s" % path)
        paths[field] = path
    port = conf.get("port", 443)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise CredentialsConfigError(source, "port", "expected an integer 1-65535")
    timeout = conf.get("timeout", DEFAULT_IOT_TIMEOUT)
    if isinstance(timeout, list):
        timeout = tuple(timeout)
    if not _is_timeout(timeout):
        raise CredentialsConfigError(
            source, "timeout", "expected seconds > 0 or [connect, read] seconds"
        )
    cache_file = _need_str(source, "cache_file", conf.get("cache_file"), optional=True)
    if cache_file is not None:
        cache_file = os.path.expanduser(cache_file)
        if not os.path.isdir(os.path.dirname(os.path.abspath(cache_file))):
            raise CredentialsConfigError(source, "cache_file", "no such directory: %s" % cache_file)
    margin = conf.get("refresh_margin", DEFAULT_REFRESH_MARGIN)
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0:
        raise CredentialsConfigError(source, "refresh_margin", "expected seconds >= 0")
    return IotCredentialsProvider(
        endpoint,
        alias,
        thing,
        paths["cert"],
        paths["key"],
        ca=paths["ca"],
        port=port,
        timeout=timeout,
        proxy=conf.get("proxy", proxy),
        cache_file=cache_file,
        refresh_margin=margin,
        clock=clock,
        rng=rng,
    )


def _is_timeout(value):
    def positive(x):
        return not isinstance(x, bool) and isinstance(x, (int, float)) and x > 0

    if isinstance(value, tuple):
        return len(value) == 2 and all(positive(x) for x in value)
    return positive(value)


def _from_environ(environ):
    access = environ.get("AWS_ACCESS_KEY_ID", "").strip()
    secret = environ.get("AWS_SECRET_ACCESS_KEY", "").strip()
    if not access and not secret:
        return None
    token = (environ.get("AWS_SESSION_TOKEN") or environ.get("AWS_SECURITY_TOKEN") or "").strip()
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
    creds = _credentials("environment", access, secret, token, names)
    return StaticProvider(creds, "environment")


def shared_credentials_path(environ):
    """``AWS_SHARED_CREDENTIALS_FILE`` or ``~/.aws/credentials`` (``HOME`` from environ)."""
    path = environ.get("AWS_SHARED_CREDENTIALS_FILE")
    if path:
        if path.startswith("~") and environ.get("HOME"):
            path = environ["HOME"] + path[1:]
        return os.path.expanduser(path)
    home = environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, ".aws", "credentials")


def provider_from_config(config, environ=None, clock=None, rng=None):
    """The credentials provider for an agent config dict (see the module docstring).

    ``environ`` defaults to ``os.environ``; ``clock`` (epoch seconds) is what ``get()``
    uses when called without ``now``; ``rng`` (``random.Random``-like) jitters refreshes.
    File-backed sources are read here, so a missing source fails at start-up.
    """
    config = config or {}
    environ = os.environ if environ is None else environ
    explicit = [k for k in ("credentials", "iot", "profile") if config.get(k) is not None]
    if len(explicit) > 1:
        raise CredentialsConfigError(
            "config",
            explicit[1],
            "give only one of credentials, iot, profile (also got %s)" % explicit[0],
        )
    if config.get("credentials") is not None:
        return _from_config_static(config["credentials"])
    if config.get("iot") is not None:
        return _from_config_iot(config["iot"], clock, rng, config.get("proxy"))

    path = shared_credentials_path(environ)
    looked = []
    profile = config.get("profile")
    if profile is not None:
        profile = _need_str("config", "profile", profile)
    else:
        found = _from_environ(environ)
        if found is not None:
            return found
        looked.append("environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: not set)")
        profile = environ.get("AWS_PROFILE", "").strip() or None
    explicit_profile = profile is not None
    provider = SharedFileProvider(
        path, profile or "default", explicit_profile=explicit_profile, clock=clock, rng=rng
    )
    creds, why = provider.read()
    if creds is None:
        looked.append(why)
        looked.append('config["iot"] (not set)')
        raise NoCredentialsError(looked)
    provider._store(creds, 0)
    return provider
