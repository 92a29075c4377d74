"""CPython port: HTTP over ``requests`` (one Session, connections reused), clock, files
and generic Linux metrics (from ``edgecore_ports.linux``).

Decisions:
- Redirects are never followed (``allow_redirects=False``): a 3xx goes back to the caller,
  because a signed request must not be replayed to another host by the library.
- Bodies are read from the raw urllib3 stream without content decoding and with
  ``Accept-Encoding: identity`` by default, so the bytes hashed are the bytes stored,
  and a body shorter than its Content-Length is an error, not a short file.
- ``trust_env`` is off (no ~/.netrc Authorization sneaking into signed requests, no
  REQUESTS_CA_BUNDLE surprises); proxies still come from HTTP(S)_PROXY/NO_PROXY unless
  ``proxy`` is given (a URL) or ``proxy=False``.
- Error messages name the method, scheme://host:port and the failure; never headers,
  never the query string, never proxy credentials.
"""

import http.client
import logging
import time

from edgecore.errors import TransportError
from edgecore_ports import HttpProtocolError
from edgecore_ports.linux import atomic_write, free_space, fsync_dir, metrics

__all__ = [
    "Response", "Transport", "atomic_write", "clock", "configure", "free_space", "fsync_dir",
    "make_transport", "metrics", "monotonic", "open", "transport",
]

log = logging.getLogger("edgecore")

DEFAULT_TIMEOUT = (5, 30)  # (connect, read) seconds
DEFAULT_MAX_BODY = 16 * 1024 * 1024  # transport() bound: API responses are small
USER_AGENT = "edgecore/0.1.0"
_warned_insecure = False


def _origin(url):
    """scheme://host[:port] of url, without userinfo, path or query."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "<invalid url>"
    authority = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]
    return "%s://%s" % (scheme, authority.rpartition("@")[2])


def _root_cause(exc):
    """The innermost exception (urllib3 wraps socket/ssl errors two or three deep)."""
    seen = 0
    while seen < 10:
        seen += 1
        inner = getattr(exc, "reason", None)
        if not isinstance(inner, BaseException):
            inner = exc.__cause__ or exc.__context__
            if inner is None and exc.args and isinstance(exc.args[0], BaseException):
                inner = exc.args[0]
        if not isinstance(inner, BaseException) or inner is exc:
            return exc
        exc = inner
    return exc


def _describe(exc):
    import re

    cause = _root_cause(exc)
    text = str(cause)
    # urllib3 puts pool reprs and URLs (maybe with user:pass@ of a proxy) in messages.
    text = re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]*", "<url>", text)
    text = re.sub(r"\S+:\S+@", "", text)
    return "%s: %s" % (cause.__class__.__name__, text[:300])


def _map_error(exc, method, url):
    """A TransportError for a requests/urllib3/socket failure, naming host and failure."""
    import requests
    import urllib3.exceptions as u3

    if isinstance(exc, (requests.exceptions.SSLError, u3.SSLError)):
        kind = "TLS failure"
    elif isinstance(exc, (requests.exceptions.Timeout, u3.TimeoutError, TimeoutError)):
        kind = "timed out"
    elif isinstance(exc, (requests.exceptions.ProxyError, u3.ProxyError)):
        kind = "proxy failure"
    elif isinstance(exc, (requests.exceptions.ChunkedEncodingError, u3.ProtocolError)):
        kind = "connection broken mid-response"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        kind = "connection failed"
    elif isinstance(exc, (http.client.IncompleteRead, ConnectionError)):
        kind = "connection broken mid-response"
    elif isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
                          requests.exceptions.InvalidSchema)):
        kind = "invalid URL"
    else:
        kind = "failed"
    cls = TransportError
    cause = _root_cause(exc)
    if isinstance(cause, http.client.HTTPException) and not isinstance(
        cause, (http.client.RemoteDisconnected, http.client.IncompleteRead)
    ):
        # LineTooLong, "got more than 100 headers", BadStatusLine: a framing error.
        cls, kind = HttpProtocolError, "malformed HTTP response"
    error = cls("%s %s: %s (%s)" % (method, _origin(url), kind, _describe(exc)))
    error.kind = kind
    return error


class Response:
    """A streamed response; see the port interface in ``edgecore_ports``."""

    def __init__(self, resp, method, url):
        self._resp = resp
        self._raw = resp.raw
        self._method = method
        self._url = url
        self._eof = False
        self._closed = False
        # The http.client response under urllib3's, when it is one and nothing has
        # been buffered above it (always, as this class does all the reading).
        fp = getattr(self._raw, "_fp", None)
        self._fp = fp if isinstance(fp, http.client.HTTPResponse) else None
        self.status = resp.status_code
        self.reason = resp.reason
        self.headers = {k.lower(): v for k, v in resp.headers.items()}

    def read(self, n=-1):
        """Up to n bytes (all that is left when n < 0); b"" at the end."""
        if n is None or n < 0:
            chunks = []
            buf = bytearray(1 << 16)
            while True:
                k = self.readinto(buf)
                if not k:
                    return b"".join(chunks)
                chunks.append(bytes(buf[:k]))
        buf = bytearray(n)
        k = self.readinto(buf)
        return bytes(memoryview(buf)[:k])

    def readinto(self, buf):
        """Fill buf (bytearray/memoryview) with the next bytes; 0 at the end.

        Reads from http.client's response (it honours Content-Length and chunking) with
        ``read1``: what has arrived, without waiting to fill ``buf``, so a caller checking
        a deadline or a minimum rate between reads sees a trickling peer (one copy per
        read, the price of not blocking until 64 KiB have come)."""
        if self._eof or self._closed or not len(buf):
            return 0
        try:
            if self._fp is not None:
                data = self._fp.read1(len(buf))
                n = len(data)
                buf[:n] = data
                if self._fp.length == 0 or (n == 0 and self._fp.length is None):
                    # Unlike readinto, read1 does not release the connection at the end
                    # of the body; an empty readinto does, so the pool can reuse it.
                    self._fp.readinto(bytearray(0))
                if n == 0:
                    if self._fp.length:  # http.client returns 0 on a short body
                        raise TransportError(
                            "%s %s: connection broken mid-response (body ended with %d "
                            "bytes of its Content-Length missing)"
                            % (self._method, _origin(self._url), self._fp.length)
                        )
                    self._eof = True
                return n
            data = self._raw.read(len(buf), decode_content=False)
        except TransportError:
            self.close()
            raise
        except Exception as exc:  # urllib3/http.client/socket errors mid-body
            self.close()
            raise _map_error(exc, self._method, self._url) from None
        n = len(data)
        if not n:
            self._eof = True
        buf[:n] = data
        return n

    def close(self):
        """Give a fully read connection back to the pool; drop a half-read one."""
        if self._closed:
            return
        self._closed = True
        if self._eof:
            self._raw.release_conn()
        else:
            self._raw.close()
            self._raw.release_conn()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def __repr__(self):
        return "<Response %d from %s>" % (self.status, _origin(self._url))


class Transport:
    """A configured HTTP client: ``make_transport`` builds one."""

    def __init__(self, verify=True, ca_bundle=None, proxy=None, timeout=DEFAULT_TIMEOUT,
                 max_body=DEFAULT_MAX_BODY, pool_maxsize=4):
        global _warned_insecure
        import requests
        from requests.adapters import HTTPAdapter

        if not verify and not _warned_insecure:
            _warned_insecure = True
            log.warning(
                "TLS CERTIFICATE VERIFICATION IS DISABLED (verify_tls=false): any host can "
                "impersonate the service and the model store. Use only for local testing."
            )
        self.timeout = timeout
        self.max_body = max_body
        self.proxy = proxy
        session = requests.Session()
        session.trust_env = False
        session.verify = (ca_bundle or True) if verify else False
        session.headers.clear()
        session.headers["User-Agent"] = USER_AGENT
        session.headers["Accept-Encoding"] = "identity"
        # No urllib3 retries: the agent owns retry policy (backoff, budgets).
        adapter = HTTPAdapter(
            pool_connections=pool_maxsize, pool_maxsize=pool_maxsize, max_retries=0
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self.session = session

    def _proxies(self, url):
        if self.proxy is False:
            return {}
        if self.proxy:
            return {"http": self.proxy, "https": self.proxy}
        from requests.utils import get_environ_proxies

        return get_environ_proxies(url)

    def open(self, method, url, headers, body=b"", timeout=None):
        """Send the request; return a streamed Response (the caller closes it).

        The request line carries ``url``'s path and query exactly as given: requests would
        otherwise re-quote it and resolve dot segments, and the server would check the
        signature against a different path than the one signed. (edgecore.sigv4 refuses
        what urllib3 itself still rewrites: lower-case escapes, ``[`` ``]``.)
        """
        import requests

        try:
            prep = self.session.prepare_request(
                requests.Request(method, url, headers=headers, data=body or None)
            )
            prep.url = url  # verbatim: no requote, no dot-segment removal
            resp = self.session.send(
                prep, stream=True, allow_redirects=False, timeout=timeout or self.timeout,
                proxies=self._proxies(url),
            )
        except Exception as exc:
            raise _map_error(exc, method, url) from None
        return Response(resp, method, url)

    def transport(self, method, url, headers, body=b"", timeout=None):
        """One exchange, body read whole: (status, lower-cased headers, body bytes)."""
        with self.open(method, url, headers, body, timeout) as resp:
            declared = resp.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body:
                raise TransportError(
                    "%s %s: response body of %s bytes exceeds the %d byte bound"
                    % (method, _origin(url), declared, self.max_body)
                )
            chunks = []
            size = 0
            while True:
                data = resp.read(65536)
                if not data:
                    break
                size += len(data)
                if size > self.max_body:
                    raise TransportError(
                        "%s %s: response body exceeds the %d byte bound"
                        % (method, _origin(url), self.max_body)
                    )
                chunks.append(data)
            return resp.status, resp.headers, b"".join(chunks)

    def close(self):
        self.session.close()


def make_transport(verify=True, ca_bundle=None, proxy=None, timeout=DEFAULT_TIMEOUT,
                   max_body=DEFAULT_MAX_BODY):
    """A Transport. ``verify=False`` disables TLS checks (logged loudly, once);
    ``ca_bundle`` is a PEM file path; ``proxy`` a URL (None: from the environment,
    False: none); ``timeout`` seconds or (connect, read); ``max_body`` bounds transport()."""
    return Transport(verify=verify, ca_bundle=ca_bundle, proxy=proxy, timeout=timeout,
                     max_body=max_body)


_default = None


def default_transport():
    """The module's shared Transport, created on first use."""
    global _default
    if _default is None:
        _default = make_transport()
    return _default


def configure(**kwargs):
    """Replace the module-level default transport (same arguments as make_transport)."""
    global _default
    old, _default = _default, make_transport(**kwargs)
    if old is not None:
        old.close()
    return _default


def transport(method, url, headers, body=b"", timeout=None):
    return default_transport().transport(method, url, headers, body, timeout)


def open(method, url, headers, body=b"", timeout=None):
    return default_transport().open(method, url, headers, body, timeout)


def clock():
    """Epoch seconds."""
    return int(time.time())


def monotonic():
    """Seconds from an arbitrary origin, never going back."""
    return time.monotonic()
