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
- A ``deadline`` (an absolute ``monotonic()`` value) bounds the whole exchange: connect,
  TLS handshake, request, response head, body and chunked trailers. Socket timeouts alone
  cannot (a peer trickling a byte a second never trips them), so a timer shuts the
  connection's socket down when the deadline passes; ``Response.deadline`` may be moved
  while the body is read. The trailer of a chunked body is bounded to MAX_TRAILER_LINES.
"""

import http.client
import logging
import socket
import threading
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
MAX_TRAILER_LINES = 100  # chunked trailer lines read before the response is refused
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


# -- deadlines -------------------------------------------------------------------------

_sending = threading.local()  # .deadline: the _Deadline of the request this thread sends


class _Deadline:
    """The deadline of one exchange. When it passes, a timer thread shuts down the
    sockets of the connections the exchange used: a read that is blocked or being fed a
    byte at a time ends at once, and ``expired`` tells the reader why."""

    def __init__(self, at):
        self.expired = False
        self.at = None
        self._conns = []
        self._timer = None
        self._lock = threading.Lock()
        self.move(at)

    def move(self, at):
        """Enforce ``at`` (a monotonic() value, None: no deadline) from now on."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self.at = at
            if at is None or self.expired:
                return
            left = at - monotonic()
            if left > 0:
                self._timer = threading.Timer(left, self.expire)
                self._timer.daemon = True
                self._timer.start()
                return
        self.expire()

    def expire(self):
        with self._lock:
            self.expired = True
            conns = list(self._conns)
        for conn in conns:
            conn.abort()

    def attach(self, conn):
        with self._lock:
            if conn not in self._conns:
                self._conns.append(conn)
            expired = self.expired
        if expired:
            conn.abort()

    def left(self):
        return None if self.at is None else self.at - monotonic()

    def end(self):
        """The exchange is over: no timer, and its connections are free for others."""
        self.move(None)
        with self._lock:
            self._conns = []

    def error(self, method, url):
        exc = TransportError("%s %s: deadline passed before the exchange completed"
                             % (method, _origin(url)))
        exc.kind = "deadline passed"
        return exc


class _Guarded:
    """Mixin for urllib3's connection classes: keeps a second descriptor of the TCP
    socket (``shutdown`` acts on the socket, whichever descriptor names it, and the TLS
    layer wraps the same socket), so the deadline timer can end a blocked read from
    another thread; registers the connection with the deadline of the request sent."""

    _guard = None

    def _new_conn(self):
        sock = super()._new_conn()
        self._drop_guard()
        self._guard = sock.dup()
        self._attach()
        return sock

    def request(self, *args, **kwargs):
        self._attach()
        return super().request(*args, **kwargs)

    def _attach(self):
        deadline = getattr(_sending, "deadline", None)
        if deadline is not None:
            deadline.attach(self)

    def abort(self):
        guard = self._guard
        if guard is not None:
            try:
                guard.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed meanwhile

    def close(self):
        try:
            super().close()
        finally:
            self._drop_guard()

    def _drop_guard(self):
        guard, self._guard = self._guard, None
        if guard is not None:
            guard.close()


_classes = {}


def _adapter(pool_maxsize):
    """A requests adapter whose pools make _Guarded connections (classes built on first
    use: requests and urllib3 are imported only by a Transport)."""
    if not _classes:
        import urllib3
        from requests.adapters import HTTPAdapter
        from urllib3.connection import HTTPConnection, HTTPSConnection

        class GuardedHTTP(_Guarded, HTTPConnection):
            pass

        class GuardedHTTPS(_Guarded, HTTPSConnection):
            pass

        class HTTPPool(urllib3.HTTPConnectionPool):
            ConnectionCls = GuardedHTTP

        class HTTPSPool(urllib3.HTTPSConnectionPool):
            ConnectionCls = GuardedHTTPS

        pools = {"http": HTTPPool, "https": HTTPSPool}

        class Adapter(HTTPAdapter):
            def init_poolmanager(self, *args, **kwargs):
                super().init_poolmanager(*args, **kwargs)
                self.poolmanager.pool_classes_by_scheme = pools

            def proxy_manager_for(self, proxy, **kwargs):
                manager = super().proxy_manager_for(proxy, **kwargs)
                if not proxy.lower().startswith("socks"):
                    manager.pool_classes_by_scheme = pools
                return manager

        _classes["adapter"] = Adapter
    # No urllib3 retries: the agent owns retry policy (backoff, budgets).
    return _classes["adapter"](pool_connections=pool_maxsize, pool_maxsize=pool_maxsize,
                               max_retries=0)


def _discard_trailer(resp):
    """http.client's trailer reader, bounded in lines (its own reads lines until a blank
    one, without end)."""
    for _ in range(MAX_TRAILER_LINES):
        line = resp.fp.readline(http.client._MAXLINE + 1)
        if len(line) > http.client._MAXLINE:
            raise HttpProtocolError("chunked trailer line longer than %d bytes"
                                    % http.client._MAXLINE)
        if line in (b"\r\n", b"\n", b""):
            return
    raise HttpProtocolError("more than %d chunked trailer lines" % MAX_TRAILER_LINES)


class Response:
    """A streamed response; see the port interface in ``edgecore_ports``. Assigning
    ``deadline`` moves the deadline of the exchange (e.g. once the length is known)."""

    def __init__(self, resp, method, url, deadline):
        self._resp = resp
        self._raw = resp.raw
        self._method = method
        self._url = url
        self._deadline = deadline
        self._eof = False
        self._closed = False
        # The http.client response under urllib3's, when it is one and nothing has
        # been buffered above it (always, as this class does all the reading).
        fp = getattr(self._raw, "_fp", None)
        self._fp = fp if isinstance(fp, http.client.HTTPResponse) else None
        if self._fp is not None and hasattr(self._fp, "_read_and_discard_trailer"):
            self._fp._read_and_discard_trailer = lambda: _discard_trailer(fp)
        self.status = resp.status_code
        self.reason = resp.reason
        self.headers = {k.lower(): v for k, v in resp.headers.items()}

    @property
    def deadline(self):
        return self._deadline.at

    @deadline.setter
    def deadline(self, at):
        self._deadline.move(at)

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
        a minimum rate between reads sees a trickling peer (one copy per read, the price
        of not blocking until 64 KiB have come). Past the deadline: TransportError (a
        socket shut down by the timer may look like a clean end to http.client)."""
        if self._eof or self._closed or not len(buf):
            return 0
        try:
            if self._deadline.expired:
                raise self._deadline.error(self._method, self._url)
            if self._fp is not None:
                data = self._fp.read1(len(buf))
                n = len(data)
                if self._deadline.expired:
                    raise self._deadline.error(self._method, self._url)
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
                    self._end()
                return n
            data = self._raw.read(len(buf), decode_content=False)
            if self._deadline.expired:
                raise self._deadline.error(self._method, self._url)
        except TransportError:
            self.close()
            raise
        except Exception as exc:  # urllib3/http.client/socket errors mid-body
            self.close()
            if self._deadline.expired:
                raise self._deadline.error(self._method, self._url) from None
            raise _map_error(exc, self._method, self._url) from None
        n = len(data)
        if not n:
            self._end()
        buf[:n] = data
        return n

    def _end(self):
        self._eof = True
        self._deadline.end()  # before the connection can serve another request

    def close(self):
        """Give a fully read connection back to the pool; drop a half-read one."""
        if self._closed:
            return
        self._closed = True
        self._deadline.end()
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
        adapter = _adapter(pool_maxsize)
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

    def open(self, method, url, headers, body=b"", timeout=None, deadline=None):
        """Send the request; return a streamed Response (the caller closes it).

        ``deadline``: the port's monotonic() time by which the whole exchange must be
        over (None: none); socket timeouts are capped to the time left.

        The request line carries ``url``'s path and query exactly as given: requests would
        otherwise re-quote it and resolve dot segments, and the server would check the
        signature against a different path than the one signed. (edgecore.sigv4 refuses
        what urllib3 itself still rewrites: lower-case escapes, ``[`` ``]``.)
        """
        import requests

        watch = _Deadline(deadline)
        if watch.expired:
            raise watch.error(method, url)
        connect, read = _timeouts(timeout or self.timeout)
        left = watch.left()
        if left is not None:
            connect = left if connect is None else min(connect, left)
            read = left if read is None else min(read, left)
        _sending.deadline = watch
        try:
            prep = self.session.prepare_request(
                requests.Request(method, url, headers=headers, data=body or None)
            )
            prep.url = url  # verbatim: no requote, no dot-segment removal
            resp = self.session.send(
                prep, stream=True, allow_redirects=False, timeout=(connect, read),
                proxies=self._proxies(url),
            )
        except Exception as exc:
            watch.end()
            if watch.expired:
                raise watch.error(method, url) from None
            raise _map_error(exc, method, url) from None
        finally:
            _sending.deadline = None
        response = Response(resp, method, url, watch)
        if watch.expired:  # the head arrived as the socket was shut down
            response.close()
            raise watch.error(method, url)
        return response

    def transport(self, method, url, headers, body=b"", timeout=None, deadline=None):
        """One exchange, body read whole: (status, lower-cased headers, body bytes)."""
        with self.open(method, url, headers, body, timeout, deadline) as resp:
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


def _timeouts(timeout):
    if isinstance(timeout, (tuple, list)):
        return timeout[0], timeout[1]
    return timeout, timeout


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


def transport(method, url, headers, body=b"", timeout=None, deadline=None):
    return default_transport().transport(method, url, headers, body, timeout, deadline)


def open(method, url, headers, body=b"", timeout=None, deadline=None):
    return default_transport().open(method, url, headers, body, timeout, deadline)


def clock():
    """Epoch seconds."""
    return int(time.time())


def monotonic():
    """Seconds from an arbitrary origin, never going back."""
    return time.monotonic()
