"""Where a CPython device's AWS credentials come from, resolved as the AWS SDKs do.

``provider_from_config(config)`` picks one source and returns a provider whose
``get(now)`` hands out an ``edgecore.Credentials`` and whose ``invalidate()`` forces
a reload (the agent calls it after an ``ExpiredToken``-style rejection). Sources, in
order:

1. ``config["credentials"]`` -- ``{access_key_id, secret_access_key, session_token}``;
2. ``config["iot"]`` -- the AWS IoT credentials provider (X.509 device certificate,
   mutual TLS, short-lived role credentials refreshed before they expire);
3. botocore's default chain (``default_provider``), for ``config["profile"]`` when given
   (an explicit profile skips the environment keys, as in botocore), else for
   ``AWS_DEFAULT_PROFILE`` / ``AWS_PROFILE`` / ``default``:

   a. ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN``;
   b. an assume-role profile: ``role_arn`` with ``source_profile`` (static keys, a
      ``credential_process``, web identity, or another assume-role profile) or
      ``credential_source`` (``Environment``, ``EcsContainer``), STS ``AssumeRole``
      signed with edgecore's SigV4 (``external_id``, ``role_session_name``,
      ``duration_seconds``);
   c. web identity: ``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``
      (+ ``AWS_ROLE_SESSION_NAME``), or the profile's ``web_identity_token_file`` +
      ``role_arn``: STS ``AssumeRoleWithWebIdentity``;
   d. the shared credentials file (``AWS_SHARED_CREDENTIALS_FILE`` or
      ``~/.aws/credentials``), the profile's static keys;
   e. ``credential_process`` in the profile;
   f. the config file (``AWS_CONFIG_FILE`` or ``~/.aws/config``), the profile's static keys;
   g. the container provider: ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` /
      ``_RELATIVE_URI`` with ``AWS_CONTAINER_AUTHORIZATION_TOKEN[_FILE]`` (ECS, EKS, the
      AWS IoT Greengrass v2 token exchange service).

   Not on a device: SSO profiles (refused with a clear error), ``mfa_serial`` (needs a
   prompt), instance metadata (IMDS).

Giving both ``credentials`` and ``iot`` (or either with ``profile``) is a configuration
error rather than a silent pick. Nothing found raises ``NoCredentialsError`` naming
every place looked. Which source applies is decided from the environment and files at
start-up; network sources are first fetched by the first ``get()``.

Refreshable credentials are refreshed as botocore does (``edgecore.credsource``): an
advisory refresh 15 minutes before expiry (a failure keeps the cached credentials, next
try after ``retry_interval``), a mandatory one 10 minutes before (a failure raises),
both scaled down for credentials living under 30 minutes; plus up to 10 % earlier at
random so a fleet started together does not refresh together. Expiry is judged on the
server's clock when the answer carried a ``Date`` (a device clock hours ahead still uses
fresh credentials, and its requests then reach the service that corrects the clock).
Every HTTP fetch is bounded by a wall-clock deadline (``credentials_http.fetch``).

Secrets (secret keys, session tokens, private keys) never reach a ``repr``, an
exception message or a log line: errors name the source, the field and the expected
form only. CPython only (``ssl``, ``threading``, ``configparser``, ``subprocess``).
"""

import json
import logging
import os
import random
import shlex
import subprocess
import threading
import time

from edgecore.amztime import iso8601
from edgecore.credentials import Credentials
from edgecore.credsource import (
    ADVISORY_REFRESH,
    MANDATORY_REFRESH,
    CredentialsParseError,
    is_word,
    parse_iot_credentials,
    parse_process_credentials,
    refresh_state,
    refresh_windows,
    server_skew,
)
from edgecore.errors import ClientError, EdgecoreError, ResponseParseError, TransportError
from edgecore.jsonenc import load_bounded
from edgecore_ports import awsconfig

LOG = logging.getLogger("edgecore.credentials")

# The IAM action behind the IoT credentials endpoint; used as the "operation" of its errors.
IOT_OPERATION = "AssumeRoleWithCertificate"
MAX_IOT_RESPONSE_BYTES = 64 * 1024
JSON_DEPTH = 32  # the credentials document is 2 levels deep; json.loads recurses
DEFAULT_IOT_TIMEOUT = (5, 15)  # connect, then the rest: the whole exchange gets the sum
DEFAULT_PROCESS_TIMEOUT = 60

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
_STATIC_FILE_KEYS = ("aws_access_key_id", "aws_secret_access_key", "aws_session_token")
_SSO_KEYS = ("sso_start_url", "sso_session", "sso_account_id", "sso_role_name")


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
    """The cached credentials expire within the mandatory refresh window (10 minutes, as
    botocore) or have expired, and refreshing them failed (``cause``)."""

    def __init__(self, source, expiration, cause):
        self.source = source
        self.expiration = expiration
        self.cause = cause
        self.retryable = getattr(cause, "retryable", False)
        super().__init__(
            "credentials from %s expire(d) at %s (within the mandatory refresh window) "
            "and refreshing them failed: %s" % (source, _iso(expiration), cause)
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


def printable(text, limit=256):
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


def _is_tls_error(exc):
    import ssl

    return isinstance(exc, (ssl.SSLError, ssl.CertificateError))


def _describe(exc):
    return "%s: %s" % (type(exc).__name__, printable(str(exc), 300))


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
        if value and not is_word(value):
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
    """Caches what ``_load(now)`` returns; refreshes it as botocore does (module doc).

    ``refresh_margin`` overrides the advisory window (seconds before expiry; the
    mandatory one is botocore's 10 minutes or the advisory one if smaller); ``jitter``
    moves the advisory refresh up to that fraction of its window earlier, at random.
    ``_load`` may set ``fetch_skew`` (the server's time minus ``now``, from the answer's
    ``Date``): expiry is then judged on the server's clock. After ``invalidate()`` the
    cache is not trusted: a failed reload raises its own error. ``get`` is thread-safe;
    concurrent callers wait for one reload.
    """

    source = "?"

    def __init__(self, clock=None, refresh_margin=None, jitter=0.1, retry_interval=30,
                 rng=None):
        self._clock = clock or time.time
        self._advisory = ADVISORY_REFRESH if refresh_margin is None else refresh_margin
        self._jitter = jitter
        self._retry_interval = retry_interval
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._cached = None
        self._skew = 0
        self._lifetime = None
        self._extra = 0
        self._retry_at = None
        self._invalidated = False
        self._seeded = False
        self.fetch_skew = 0

    def _load(self, now):
        raise NotImplementedError

    def _seed(self, now):
        """Credentials saved by an earlier run, tried once before the first load."""
        return None

    def refresh_state(self, now):
        """None, ``"advisory"`` or ``"mandatory"`` for the cached credentials at ``now``."""
        cached = self._cached
        return refresh_state(cached.expiration, now + self._skew, self._lifetime,
                             self._advisory, MANDATORY_REFRESH, self._extra)

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
            state = "mandatory"
            if cached is not None and not self._invalidated:
                state = self.refresh_state(now)
                if state is None:
                    return cached
                if state == "advisory" and self._retry_at is not None and now < self._retry_at:
                    return cached
            try:
                fresh = self._load(now)
            except CredentialsError as exc:
                self.fetch_skew = 0
                return self._after_failure(cached, state, now, exc)
            self._store(fresh, now)
            return fresh

    def invalidate(self):
        with self._lock:
            self._invalidated = True

    def _store(self, creds, now):
        skew, self.fetch_skew = self.fetch_skew, 0
        self._cached = creds
        self._skew = skew
        self._invalidated = False
        self._retry_at = None
        if creds.expiration is None:
            self._lifetime = None
            self._extra = 0
            return
        self._lifetime = creds.expiration - (now + skew)
        advisory = refresh_windows(self._lifetime, self._advisory)[0]
        self._extra = self._rng.uniform(0, self._jitter * advisory)

    def _after_failure(self, cached, state, now, exc):
        if cached is None or self._invalidated:
            raise exc
        if state == "mandatory":
            raise CredentialsExpiredError(self.source, cached.expiration, exc) from exc
        self._retry_at = now + self._retry_interval
        LOG.warning(
            "credentials refresh from %s failed (%s); using cached credentials valid until %s",
            self.source,
            exc,
            _iso(cached.expiration),
        )
        return cached


class SharedFileProvider(RefreshingProvider):
    """One profile's static keys in the shared credentials file, or with ``config=True``
    the config file (``[default]`` / ``[profile NAME]``); re-read after ``invalidate()``."""

    def __init__(self, path, profile, explicit_profile=False, config=False, **kwargs):
        super().__init__(**kwargs)
        self.path = path
        self.profile = profile
        self.explicit_profile = explicit_profile
        self.config = config
        self.kind = "config file" if config else "shared credentials file"
        self.source = "%s %s, profile %s" % (self.kind, path, profile)

    def _load(self, now):
        creds, why = self.read()
        if creds is None:
            raise NoCredentialsError([why])
        return creds

    def _section(self, ini):
        if not self.config:
            return ini.get(self.profile)
        found = None  # botocore: [default] and [profile default] both name it; the last wins
        for section, values in ini.items():
            if (section == "default" and self.profile == "default") or (
                    section.startswith("profile")
                    and awsconfig.profile_section_name(section) == self.profile):
                found = values
        return found

    def read(self):
        """-> (Credentials, None) or (None, why-not text); raises CredentialsConfigError."""
        where = "%s %s" % (self.kind, self.path)
        ini = _config_call(awsconfig.read_ini, self.path)
        if ini is None:
            return None, "%s (not found)" % where
        section = self._section(ini)
        if section is None:
            if self.explicit_profile:
                raise CredentialsConfigError(
                    where,
                    "profile",
                    "profile [%s] not found (profiles there: %s)"
                    % (self.profile, ", ".join(sorted(ini)) or "none"),
                )
            return None, "%s (no [%s] profile)" % (where, self.profile)
        access = _str_value(section.get("aws_access_key_id"))
        secret = _str_value(section.get("aws_secret_access_key"))
        token = _str_value(section.get("aws_session_token")) or _str_value(
            section.get("aws_security_token"))
        if not access and not secret:
            return None, "%s (profile [%s] has no aws_access_key_id)" % (where, self.profile)
        creds = _credentials(
            "%s, profile [%s]" % (where, self.profile),
            access,
            secret,
            token,
            _STATIC_FILE_KEYS,
        )
        return creds, None

    def __repr__(self):
        return "SharedFileProvider(path=%r, profile=%r)" % (self.path, self.profile)


def _str_value(value):
    return value.strip() if isinstance(value, str) else ""


class ProcessProvider(RefreshingProvider):
    """Credentials printed by ``credential_process`` (split as a POSIX shell would, run
    without a shell, its JSON on stdout: see ``edgecore.credsource``); run again
    before they expire. Its stderr is never shown (it may hold anything)."""

    def __init__(self, command, profile, environ=None, timeout=DEFAULT_PROCESS_TIMEOUT,
                 **kwargs):
        super().__init__(**kwargs)
        self.command = command
        self.profile = profile
        self.environ = environ
        self.timeout = timeout
        self.source = "credential_process of profile %s" % profile

    def _load(self, now):
        try:
            argv = shlex.split(self.command)
        except ValueError:
            argv = []
        if not argv:
            raise CredentialsConfigError("profile %s" % self.profile, "credential_process",
                                         "expected a command line")
        env = None if self.environ is None or self.environ is os.environ else dict(self.environ)
        try:
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=self.timeout, env=env, check=False)
        except subprocess.TimeoutExpired:
            raise CredentialsProcessError(self.source, "no answer within %s s" % self.timeout,
                                          True) from None
        except OSError as exc:
            raise CredentialsProcessError(
                self.source, "cannot run %s: %s" % (printable(argv[0], 120),
                                                    type(exc).__name__), False) from None
        if done.returncode != 0:
            raise CredentialsProcessError(
                self.source, "exited with status %d (%d bytes on stderr, not shown)"
                % (done.returncode, len(done.stderr)), True)
        try:
            return parse_process_credentials(done.stdout, self.source)
        except CredentialsParseError as exc:
            raise CredentialsProcessError(self.source, str(exc), False) from None

    def __repr__(self):
        return "ProcessProvider(profile=%r)" % (self.profile,)


class CredentialsProcessError(CredentialsError):
    """``credential_process`` failed; ``retryable`` unless it cannot run or answered junk."""

    def __init__(self, source, detail, retryable):
        self.retryable = retryable
        super().__init__("credentials from %s: %s" % (source, detail))


class IotCredentialsProvider(RefreshingProvider):
    """Short-lived role credentials from the AWS IoT credentials provider.

    ``GET https://<endpoint>/role-aliases/<role_alias>/credentials`` with the device
    certificate and key as the TLS client certificate, the server verified against
    ``ca`` (or the system CAs when None), header ``x-amzn-iot-thingname``. The answer is
    read up to ``MAX_IOT_RESPONSE_BYTES`` and checked member by member; the whole
    exchange must finish within ``timeout`` (seconds, or ``(connect, rest)`` whose sum
    bounds it). Expiry is judged on the endpoint's clock (its ``Date``). With
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
        # Judged on the endpoint's clock: a device clock hours ahead must not make fresh
        # credentials look expired (its requests then reach the service, which corrects
        # the agent's clock).
        skew = server_skew(headers.get("date"), now)
        if creds.expired(now + skew):
            # Using them would only earn a signature rejection and a reload loop.
            raise IotResponseError(
                self.endpoint,
                self.role_alias,
                "credentials.expiration",
                "already past: %s while the %s says %s (check the clock)"
                % (_iso(creds.expiration), "endpoint's Date" if skew else "device clock",
                   _iso(now + skew)),
            )
        self.fetch_skew = skew
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
        from edgecore_ports.credentials_http import FetchError, FetchTooLarge, fetch

        if isinstance(self.timeout, tuple):
            connect, deadline = self.timeout[0], self.timeout[0] + self.timeout[1]
        else:
            connect = deadline = self.timeout
        try:
            return fetch(
                "GET", self.url,
                {"x-amzn-iot-thingname": self.thing_name, "Accept-Encoding": "identity"},
                deadline=deadline, connect_timeout=connect, cert=self.cert, key=self.key,
                ca=self.ca, proxy=self.proxy, max_bytes=MAX_IOT_RESPONSE_BYTES)
        except FetchTooLarge:
            raise IotResponseError(self.endpoint, self.role_alias, "<body>",
                                   "larger than %d bytes" % MAX_IOT_RESPONSE_BYTES) from None
        except FetchError as exc:
            root = _root_cause(exc.cause) if exc.cause is not None else exc
            rejected = None if exc.timed_out else _cert_rejection(root)
            if rejected is not None:
                what = "TLS handshake failed: %s (cert %s, ca %s); not retried" % (
                    _CERT_REJECTIONS[rejected],
                    self.cert,
                    self.ca or "system store",
                )
            elif exc.timed_out:
                what = "timed out (no complete answer within %s s)" % deadline
            elif _is_tls_error(root):
                what = "TLS handshake failed (server not trusted, or client certificate refused)"
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
        code = ""
        for name, value in (headers or {}).items():
            if name.lower() == "x-amzn-errortype":
                code = value
        code = printable(code.split(":")[0], 64) or "HTTP%d" % status
        return IotEndpointError(self.endpoint, self.role_alias, status, code, printable(message))

    def _parse(self, body):
        try:
            return parse_iot_credentials(body, self.source)
        except CredentialsParseError as exc:
            raise IotResponseError(self.endpoint, self.role_alias, exc.field,
                                   exc.detail) from None

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
    margin = conf.get("refresh_margin")
    if margin is not None and (
            isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0):
        raise CredentialsConfigError(source, "refresh_margin",
                                     "expected seconds >= 0 (default: botocore's 15 minutes)")
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
    return awsconfig.file_path(environ, "AWS_SHARED_CREDENTIALS_FILE", "credentials")


def _config_call(func, *args):
    """``func(*args)``, an AwsConfigError turned into a CredentialsConfigError raised
    outside the except block (the original is not kept even as __context__)."""
    problem = None
    try:
        return func(*args)
    except awsconfig.AwsConfigError as exc:
        problem = exc
    raise CredentialsConfigError(problem.path, problem.where, problem.detail)


class _Chain:
    """One resolution of botocore's default chain (module doc, 3a-3g)."""

    def __init__(self, shared, region, clock, rng, proxy):
        self.shared = shared
        self.region = region
        self.kwargs = {"clock": clock, "rng": rng}
        self.proxy = proxy
        self.looked = []

    def _profile(self, name):
        return _config_call(self.shared.profile, name)

    def resolve(self):
        shared = self.shared
        env = shared.environ
        if not shared.explicit_profile:
            found = _from_environ(env)
            if found is not None:
                return found
            self.looked.append("environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: not set)")
        name = shared.profile_name
        profile = self._profile(None if not shared.named_profile else name)
        if "role_arn" in profile and "web_identity_token_file" not in profile:
            return self.assume_role(name, [name])
        found = self.profile_providers(name, profile, disable_env=shared.explicit_profile)
        if found is not None:
            return found
        from edgecore_ports.credentials_http import ContainerProvider

        found = ContainerProvider.from_environ(env, **self.kwargs)
        if found is not None:
            return found
        self.looked.append("container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI, "
                           "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: not set)")
        return None

    def profile_providers(self, name, profile, disable_env):
        """botocore's ProfileProviderBuilder: web identity, (SSO), the shared credentials
        file, credential_process, the config file; None when none applies."""
        found = self.web_identity(name, profile, disable_env)
        if found is not None:
            return found
        if any(k in profile for k in _SSO_KEYS):
            raise CredentialsConfigError(
                "profile %s" % name, "sso_start_url",
                "AWS IAM Identity Center (SSO) profiles need an interactive login; "
                "give a device static keys, a role, a credential_process or IoT credentials")
        for config in (False, True):
            path = self.shared.config_path if config else self.shared.credentials_path
            provider = SharedFileProvider(path, name, config=config, **self.kwargs)
            creds, why = provider.read()
            if creds is not None:
                provider._store(creds, 0)
                return provider
            self.looked.append(why)
            if not config and profile.get("credential_process"):
                return ProcessProvider(profile["credential_process"], name,
                                       environ=self.shared.environ, **self.kwargs)
        return None

    def web_identity(self, name, profile, disable_env):
        env = {} if disable_env else self.shared.environ

        def setting(key, variable):
            return env.get(variable) or profile.get(key) or None

        token_file = setting("web_identity_token_file", "AWS_WEB_IDENTITY_TOKEN_FILE")
        if not token_file:
            return None
        role_arn = setting("role_arn", "AWS_ROLE_ARN")
        if not role_arn:
            raise CredentialsConfigError(
                "web identity", "role_arn",
                "AWS_WEB_IDENTITY_TOKEN_FILE / web_identity_token_file is set but no role "
                "(AWS_ROLE_ARN / role_arn)")
        from edgecore_ports.credentials_http import WebIdentityProvider

        return WebIdentityProvider(
            role_arn, awsconfig.expand_path(token_file, self.shared.environ),
            session_name=setting("role_session_name", "AWS_ROLE_SESSION_NAME"),
            **self.sts_kwargs())

    def sts_kwargs(self):
        shared = self.shared
        endpoint_url = _config_call(shared.endpoint_url, "sts")
        fips = _config_call(shared.use_fips_endpoint)
        dualstack = _config_call(shared.use_dualstack_endpoint, "sts")
        return dict(self.kwargs, region=self.region, endpoint_url=endpoint_url, fips=fips,
                    dualstack=dualstack, proxy=self.proxy)

    def assume_role(self, name, visited):
        """botocore's AssumeRoleProvider for profile ``name`` (``visited``: the chain)."""
        from edgecore_ports.credentials_http import AssumeRoleProvider

        profile = self._profile(name)
        where = "profile %s" % name
        source_profile = profile.get("source_profile")
        credential_source = profile.get("credential_source")
        if source_profile and credential_source:
            raise CredentialsConfigError(where, "source_profile",
                                         "give source_profile or credential_source, not both")
        if profile.get("mfa_serial"):
            raise CredentialsConfigError(where, "mfa_serial",
                                         "an MFA token needs a prompt; not available on a device")
        duration = profile.get("duration_seconds")
        try:
            duration = int(duration) if duration is not None else None
        except ValueError:
            duration = None  # botocore ignores a non-integer too
        if credential_source:
            source = self.credential_source(where, credential_source)
        elif source_profile:
            source = self.source_profile(name, source_profile, visited)
        else:
            raise CredentialsConfigError(where, "source_profile",
                                         "role_arn needs source_profile or credential_source")
        return AssumeRoleProvider(profile["role_arn"], source,
                                  external_id=profile.get("external_id"),
                                  duration_seconds=duration,
                                  session_name=profile.get("role_session_name"),
                                  **self.sts_kwargs())

    def credential_source(self, where, name):
        from edgecore_ports.credentials_http import ContainerProvider

        if name == "Environment":
            found = _from_environ(self.shared.environ)
        elif name == "EcsContainer":
            found = ContainerProvider.from_environ(self.shared.environ, **self.kwargs)
        elif name == "Ec2InstanceMetadata":
            raise CredentialsConfigError(where, "credential_source",
                                         "Ec2InstanceMetadata: no instance metadata on a device")
        else:
            raise CredentialsConfigError(
                where, "credential_source",
                "expected Environment or EcsContainer, got %s" % printable(name, 40))
        if found is None:
            raise CredentialsConfigError(where, "credential_source",
                                         "%s has no credentials" % name)
        return found

    def source_profile(self, parent, name, visited):
        where = "profile %s" % parent
        if name not in self.shared.profiles:
            raise CredentialsConfigError(where, "source_profile",
                                         "profile %s does not exist" % printable(name, 64))
        profile = self._profile(name)
        has_static = "aws_access_key_id" in profile or "aws_secret_access_key" in profile
        if name in visited and not (name == parent and has_static):
            raise CredentialsConfigError(where, "source_profile",
                                         "a loop: %s" % " -> ".join(visited + [name]))
        if has_static or "role_arn" not in profile or name == parent:
            found = self.profile_providers(name, profile, disable_env=True)
            if found is None:
                raise CredentialsConfigError(where, "source_profile",
                                             "profile %s has no credentials" % name)
            return found
        return self.assume_role(name, visited + [name])


def default_provider(environ=None, profile=None, region=None, clock=None, rng=None,
                     proxy=None, shared=None):
    """botocore's default credential chain (module doc, 3a-3g) as a provider.

    ``profile``: an explicit profile (skips the environment keys); ``region``: for STS
    (default ``AWS_DEFAULT_REGION`` / ``AWS_REGION`` / the profile's, else the global
    endpoint); ``shared``: an ``awsconfig.SharedConfig`` already read (for ``profile``).
    Raises ``NoCredentialsError`` naming every place looked, and
    ``CredentialsConfigError`` for a source that is present but malformed.
    """
    if shared is None:
        shared = _config_call(awsconfig.SharedConfig, environ, profile)
    if region is None:
        region = _config_call(shared.region)
    chain = _Chain(shared, region, clock, rng, proxy)
    found = chain.resolve()
    if found is None:
        raise NoCredentialsError(chain.looked + ['config["iot"] (not set)'])
    return found


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
    profile = config.get("profile")
    if profile is not None:
        profile = _need_str("config", "profile", profile)
    region = config.get("region") if isinstance(config.get("region"), str) else None
    return default_provider(environ, profile, region, clock, rng, config.get("proxy"))
