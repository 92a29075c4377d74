"""Credentials fetched over HTTP: the container endpoint and STS, each under a deadline.

- ``fetch(method, url, ...)``: one HTTP(S) exchange (``http.client``) bounded by a
  wall-clock deadline over the WHOLE exchange -- connect, TLS, the response head, the
  body and chunked trailers: a watchdog shuts the socket down when the deadline passes,
  so a peer trickling bytes cannot hold the caller. Bodies are bounded too. Used by
  these providers and by the AWS IoT credentials provider.
- ``ContainerProvider``: ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` or
  ``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` (on ``http://169.254.170.2``), with
  ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`` (re-read on every fetch) or
  ``AWS_CONTAINER_AUTHORIZATION_TOKEN`` as the ``Authorization`` header: ECS, EKS Pod
  Identity, and the token exchange service AWS IoT Greengrass v2 gives its components.
  As botocore: a full URI must be https, or http to a loopback address, ``localhost``
  or the ECS/EKS link-local hosts.
- ``AssumeRoleProvider``: STS ``AssumeRole`` signed with edgecore's SigV4 by source
  credentials (another provider), for ``role_arn`` profiles.
- ``WebIdentityProvider``: STS ``AssumeRoleWithWebIdentity`` (unsigned) with the token
  read from ``web_identity_token_file`` on every fetch.

The parsing of the answers and the refresh decisions are the core's
(``edgecore.credsource``); the STS endpoint comes from ``edgecore.endpoints`` unless the
shared configuration names one (``AWS_ENDPOINT_URL_STS`` ...). CPython only.
"""

import http.client
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request

from edgecore import endpoints, sigv4
from edgecore.credsource import (
    MAX_BODY,
    CredentialsParseError,
    parse_container_credentials,
    parse_sts_credentials,
    parse_sts_error,
    server_skew,
)
from edgecore.errors import TransportError
from edgecore_ports.credentials import (
    CredentialsConfigError,
    CredentialsError,
    RefreshingProvider,
    printable,
)

DEFAULT_DEADLINE = 10.0  # seconds for a whole credentials exchange
CONTAINER_HOST = "169.254.170.2"
_CONTAINER_HOSTS = ("169.254.170.2", "169.254.170.23", "fd00:ec2::23", "localhost")
STS_VERSION = "2011-06-15"


class FetchError(TransportError):
    """An exchange did not complete: ``cause`` is the underlying exception (or None),
    ``timed_out`` whether the deadline cut it."""

    def __init__(self, detail, cause=None, timed_out=False):
        super().__init__(detail)
        self.cause = cause
        self.timed_out = timed_out


class FetchTooLarge(FetchError):
    """The answer was larger than the bound."""


class CredentialsFetchError(CredentialsError):
    """A credentials endpoint did not answer, or answered with an error (``status``,
    ``code``); ``retryable`` for network failures, 429 and 5xx."""

    def __init__(self, source, detail, status=None, code=None, retryable=True):
        self.source = source
        self.status = status
        self.code = code
        self.retryable = retryable
        super().__init__("credentials from %s: %s" % (source, detail))


# ---- one bounded exchange ---------------------------------------------------------------


def _proxy_for(parts, proxy):
    # An explicit proxy URL, False for none, or None: the environment (HTTPS_PROXY,
    # NO_PROXY ...), as requests does.
    if proxy is False:
        return None
    if proxy:
        return proxy
    if urllib.request.proxy_bypass(parts.hostname or ""):
        return None
    return urllib.request.getproxies().get(parts.scheme)


def _abort(conn, state):
    state["timed_out"] = True
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked in the other thread
        except OSError:
            pass


def fetch(method, url, headers=None, body=None, deadline=DEFAULT_DEADLINE, connect_timeout=None,
          cert=None, key=None, ca=None, verify=True, proxy=None, max_bytes=MAX_BODY):
    """``(status, headers, body)`` of one exchange; header names lower-cased.

    ``deadline`` seconds bound the whole exchange (see the module doc); ``cert``/``key``
    a TLS client certificate; ``ca`` a CA file (default: the system store); ``proxy`` see
    ``_proxy_for``. Raises ``FetchError`` (a TransportError); TLS set-up errors (a key
    that is not the certificate's) come out as ``FetchError`` with the ``ssl`` cause.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError("not an http(s) URL with a host")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    target = (parts.path or "/") + ("?" + parts.query if parts.query else "")
    connect_timeout = min(connect_timeout or deadline, deadline)
    state = {"timed_out": False}
    conn = None
    timer = None
    try:
        context = None
        if https:
            context = ssl.create_default_context(cafile=ca)
            if not verify:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            if cert:
                context.load_cert_chain(cert, key)
        via = _proxy_for(parts, proxy)
        if via:
            pp = urllib.parse.urlsplit(via)
            if https:
                conn = http.client.HTTPSConnection(pp.hostname, pp.port or 80,
                                                   timeout=connect_timeout, context=context)
                conn.set_tunnel(parts.hostname, port)
            else:
                conn = http.client.HTTPConnection(pp.hostname, pp.port or 80,
                                                  timeout=connect_timeout)
                target = url
        elif https:
            conn = http.client.HTTPSConnection(parts.hostname, port, timeout=connect_timeout,
                                               context=context)
        else:
            conn = http.client.HTTPConnection(parts.hostname, port, timeout=connect_timeout)
        timer = threading.Timer(deadline, _abort, (conn, state))
        timer.daemon = True
        timer.start()
        conn.request(method, target, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise FetchTooLarge("answer larger than %d bytes" % max_bytes)
        if not resp.isclosed():
            resp.read(1)  # the end of a chunked body (trailers): also under the deadline
        if state["timed_out"]:
            # The watchdog's shutdown can look like a clean end of the answer (a cut head
            # or body parses as an empty one): never hand that out as an answer.
            raise FetchError("no complete answer within %s s (deadline)" % deadline, None, True)
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data
    except FetchError:
        raise
    except (OSError, http.client.HTTPException, ValueError) as exc:
        if state["timed_out"]:
            raise FetchError("no complete answer within %s s (deadline)" % deadline, exc,
                             True) from None
        raise FetchError("%s: %s" % (type(exc).__name__, printable(str(exc), 300)), exc) from None
    finally:
        if timer is not None:
            timer.cancel()
        if conn is not None:
            conn.close()


# ---- container credentials -------------------------------------------------------------


def _allowed_container_url(url):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https":
        return True
    if parts.scheme != "http":
        return False
    host = parts.hostname or ""
    try:
        if ipaddress.ip_address(host).is_loopback:
            return True
    except ValueError:
        pass
    return host in _CONTAINER_HOSTS


class ContainerProvider(RefreshingProvider):
    """Credentials from the container credentials endpoint; see the module doc."""

    def __init__(self, url, token=None, token_file=None, deadline=DEFAULT_DEADLINE, **kwargs):
        super().__init__(**kwargs)
        self.url = url
        self.token = token
        self.token_file = token_file
        self.deadline = deadline
        self.source = "container credentials endpoint %s" % printable(url, 120)

    @classmethod
    def from_environ(cls, environ, **kwargs):
        """The provider the environment configures, or None when it names no endpoint."""
        relative = environ.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
        full = environ.get("AWS_CONTAINER_CREDENTIALS_FULL_URI")
        if relative is None and full is None:
            return None
        source = "environment"
        if relative is not None:
            url = "http://%s%s" % (CONTAINER_HOST, relative)
        else:
            url = full
            if not _allowed_container_url(url):
                raise CredentialsConfigError(
                    source, "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                    "expected an https URL, or http to a loopback address, localhost or %s"
                    % ", ".join(_CONTAINER_HOSTS[:3]))
        token_file = environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE")
        token = None if token_file else environ.get("AWS_CONTAINER_AUTHORIZATION_TOKEN")
        if token is not None:
            _check_token(source, "AWS_CONTAINER_AUTHORIZATION_TOKEN", token)
        return cls(url, token=token, token_file=token_file, **kwargs)

    def _headers(self):
        headers = {"Accept": "application/json"}
        token = self.token
        if self.token_file:
            try:
                with open(self.token_file, "rb") as f:
                    raw = f.read(16 * 1024 + 1)
            except OSError as exc:
                raise CredentialsConfigError(
                    "environment", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                    "cannot read %s (%s)" % (self.token_file, type(exc).__name__)) from None
            if len(raw) > 16 * 1024:
                raise CredentialsConfigError(
                    "environment", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "larger than 16 KiB")
            token = raw.decode("utf-8", "replace")
            _check_token("environment", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token)
        if token is not None:
            headers["Authorization"] = token
        return headers

    def _load(self, now):
        try:
            status, headers, body = fetch("GET", self.url, self._headers(),
                                          deadline=self.deadline, proxy=False)
        except FetchError as exc:
            raise CredentialsFetchError(self.source, str(exc)) from None
        if status != 200:
            raise CredentialsFetchError(
                self.source, "HTTP %d from the endpoint" % status, status,
                retryable=status == 429 or status >= 500)
        try:
            creds = parse_container_credentials(body, self.source)
        except CredentialsParseError as exc:
            raise CredentialsFetchError(self.source, str(exc), 200, retryable=False) from None
        self.fetch_skew = server_skew(headers.get("date"), now)
        return creds

    def __repr__(self):
        return "ContainerProvider(url=%r, token=%s)" % (
            self.url, "<redacted>" if (self.token or self.token_file) else "None")


def _check_token(source, field, token):
    if "\r" in token or "\n" in token:
        # botocore's rule too: a header value cannot carry a line break.
        raise CredentialsConfigError(source, field, "must not contain a line break")


# ---- STS -----------------------------------------------------------------------------------


def default_session_name():
    """botocore's default RoleSessionName."""
    return "botocore-session-%d" % int(time.time())


class _StsProvider(RefreshingProvider):
    """What AssumeRole and AssumeRoleWithWebIdentity share: endpoint, call, parsing."""

    action = None

    def __init__(self, role_arn, region=None, endpoint_url=None, fips=False, dualstack=False,
                 session_name=None, deadline=DEFAULT_DEADLINE, proxy=None, **kwargs):
        super().__init__(**kwargs)
        self.role_arn = role_arn
        self.session_name = session_name or default_session_name()
        self.deadline = deadline
        self.proxy = proxy
        if endpoint_url:
            self.url, self.region = endpoint_url.rstrip("/") + "/", region or "us-east-1"
        else:
            self.url, self.region = endpoints.resolve("sts", region or "aws-global", fips,
                                                      dualstack)
            self.url += "/"
        self.source = "STS %s (role %s)" % (self.action, role_arn)

    def _params(self):
        raise NotImplementedError

    def _headers(self, body, now):
        return {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}

    def _load(self, now):
        pairs = [("Action", self.action), ("Version", STS_VERSION)] + self._params()
        body = sigv4.encode_query(pairs).encode()
        headers = self._headers(body, now)
        try:
            status, resp_headers, data = fetch("POST", self.url, headers, body,
                                               deadline=self.deadline, proxy=self.proxy)
        except FetchError as exc:
            raise CredentialsFetchError(self.source, str(exc)) from None
        if status != 200:
            code, message = parse_sts_error(data)
            raise CredentialsFetchError(
                self.source, "HTTP %d %s: %s" % (status, printable(code or "?", 100),
                                                 printable(message or "", 300)),
                status, code, retryable=status == 429 or status >= 500
                or code in ("Throttling", "IDPCommunicationError"))
        try:
            creds = parse_sts_credentials(data, self.action, self.source)
        except CredentialsParseError as exc:
            raise CredentialsFetchError(self.source, str(exc), 200, retryable=False) from None
        self.fetch_skew = server_skew(resp_headers.get("date"), now)
        return creds

    def __repr__(self):
        return "%s(role_arn=%r, url=%r)" % (type(self).__name__, self.role_arn, self.url)


class AssumeRoleProvider(_StsProvider):
    """``AssumeRole`` signed by ``source`` (a provider with ``get(now)``)."""

    action = "AssumeRole"

    def __init__(self, role_arn, source, external_id=None, duration_seconds=None, **kwargs):
        self.source_provider = source
        self.external_id = external_id
        self.duration_seconds = duration_seconds
        super().__init__(role_arn, **kwargs)

    def _params(self):
        pairs = [("RoleArn", self.role_arn), ("RoleSessionName", self.session_name)]
        if self.external_id is not None:
            pairs.append(("ExternalId", self.external_id))
        if self.duration_seconds is not None:
            pairs.append(("DurationSeconds", str(self.duration_seconds)))
        return pairs

    def _headers(self, body, now):
        creds = self.source_provider.get(now)
        headers = super()._headers(body, now)
        return sigv4.sign_request("POST", self.url, headers, body,
                                  access_key=creds.access_key, secret_key=creds.secret_key,
                                  session_token=creds.session_token, region=self.region,
                                  service="sts", timestamp=int(now))

    def invalidate(self):
        super().invalidate()
        if hasattr(self.source_provider, "invalidate"):
            self.source_provider.invalidate()


class WebIdentityProvider(_StsProvider):
    """``AssumeRoleWithWebIdentity`` with the token read from ``token_file``."""

    action = "AssumeRoleWithWebIdentity"

    def __init__(self, role_arn, token_file, **kwargs):
        self.token_file = token_file
        super().__init__(role_arn, **kwargs)

    def _params(self):
        try:
            with open(self.token_file, "rb") as f:
                token = f.read(MAX_BODY + 1)
        except OSError as exc:
            raise CredentialsConfigError(
                "web identity", "web_identity_token_file",
                "cannot read %s (%s)" % (self.token_file, type(exc).__name__)) from None
        if not token or len(token) > MAX_BODY:
            raise CredentialsConfigError("web identity", "web_identity_token_file",
                                         "expected a token of 1..%d bytes in %s"
                                         % (MAX_BODY, self.token_file))
        return [("RoleArn", self.role_arn), ("RoleSessionName", self.session_name),
                ("WebIdentityToken", token.decode("utf-8", "replace"))]
