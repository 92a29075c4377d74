"""MicroPython port: an HTTP/1.1 client over ``socket`` + ``ssl``, ``os`` files, ``time``
clock and ``gc`` / ``os.statvfs`` metrics. Also runs on CPython (its tests do).

The socket layer is injectable: ``make_transport(connect=f)`` where
``f(host, port, use_tls, timeout)`` returns an object with ``write(bytes) -> n``,
``readinto(buf) -> n`` and ``close()`` (optionally ``settimeout(s)``). Tests feed it
exact bytes; runtimes without sockets (the WebAssembly port) supply their own.

Reads are bounded: a status, header or chunk-size line longer than ``MAX_LINE``,
more than ``MAX_HEADERS`` headers, a bad Content-Length or chunk size raise
``HttpProtocolError`` (a ``TransportError``). A body that ends before its
Content-Length or last chunk raises ``TransportError``. ``open()`` streams: its
``readinto`` de-chunks into the caller's buffer without holding the body.

Deadline: ``open``/``transport`` take ``deadline``, an absolute value of this port's
``monotonic()`` by which the whole exchange (connect, TLS handshake, request, response
head, body, chunked trailers) must end. Every socket operation's timeout is capped to
the time left, and past the deadline the socket is closed and ``TransportError``
("deadline exceeded") raised. ``Response.deadline`` may be moved while the body is read.
On MicroPython a socket's own ``readinto``/``write`` wait until the WHOLE buffer is
done, the timeout applying to each raw recv: a peer trickling a byte at a time would
hold them forever. So the socket is made non-blocking and put in a guard
(``_guard_class``) that takes what the socket has and waits with ``select.poll`` only for
the time left; every plain read or write, and every TLS operation with all the raw
reads and writes it makes (the handshake included), is bounded as a whole.
DNS is not bounded: MicroPython's ``getaddrinfo`` takes no timeout (the unix port calls
libc's resolver, bounded by resolv.conf's ``timeout`` x ``attempts``, 5 s x 2 per server
by default; lwIP ports wait for lwIP's own DNS retries). The time it takes is taken
from the connect timeout, and a deadline that passes meanwhile ends the exchange right
after it; a host given as an IP address skips the resolver.

Memory: each Transport allocates its buffers once: ``BUFSIZE`` bytes that are the
connection's read buffer and, before the response, the send buffer (head and as much
body as fits leave in ONE write: two small writes on a kept-alive socket stall ~40 ms,
Nagle + the server's delayed ACK, where TCP_NODELAY is missing), and a small scratch
buffer for bodies of unknown length. The rest of a large body is written straight from
the caller's memory, never joined to the head. TCP_NODELAY is set (``_no_delay``).

TLS: verification is on; MicroPython has no system CA store, so ``ca_bundle`` (a file
of one or more CA certificates, PEM or DER) is required for https unless
``verify=False`` (which prints a loud warning once). MicroPython's mbedtls configuration
parses DER only: PEM files are turned into DER here (the base64 between the armour
lines), CA certificates, client certificates and keys alike. ``client_cert`` +
``client_key`` (PEM or DER files) authenticate the device (mTLS: the AWS IoT
credentials provider). The bare ``tls`` module is used where micropython-lib's ``ssl``
is not in the firmware. A certificate the device refuses (unknown CA, wrong host name,
expired) or a CA/key file it cannot use raises ``TlsError``: a ``TransportError`` with
``retryable = False`` naming what failed; retrying cannot fix it.

Files: MicroPython has no fsync; ``atomic_write`` flushes, calls ``os.sync()`` where
the port has it, then renames. On FAT a rename cannot replace a file, so the old one
is removed first: a power cut in that instant leaves only ``path + ".tmp"``, which
``read_atomic`` falls back to.

Metrics (Dimension / MetricName): memory / HeapFreeBytes, HeapAllocatedBytes,
HeapUtilization (percent); disk/model-dir / DiskTotalBytes, DiskFreeBytes,
DiskUtilization. Microcontroller floats may be single precision: values lose digits.
"""

import os
import time

from edgecore import client
from edgecore.errors import TransportError
from edgecore.wire import utf8_buffer
from edgecore_ports import HttpProtocolError, ascii_digits, disk_metrics, edge_metric

_builtin_open = open

MAX_LINE = 8192  # status line, one header line, one chunk-size line
MAX_HEADERS = 100
MAX_HEAD = 16384  # a whole response head (or chunked trailer): what a small heap can hold
BUFSIZE = 2048
SCRATCH = 256
DEFAULT_TIMEOUT = (5, 30)
# transport() bound: the client's (1 MiB; 1/20 of the heap on a board, at most 64 KiB):
# an answer longer than that is refused before it is allocated.
DEFAULT_MAX_BODY = client.DEFAULT_MAX_BODY
SEND_WHOLE = 16384  # the largest single write of a big body's remainder
USER_AGENT = "edgecore/0.1.0"
_NO_BODY = ("HEAD",)
_warned_insecure = False


def parse_url(url):
    """(scheme, host, port, target, authority) of an http(s) URL; ValueError if not one."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise ValueError("url: expected http:// or https://, got %r" % url[:60])
    end = len(rest)
    for mark in "/?#":
        i = rest.find(mark)
        if 0 <= i < end:
            end = i
    authority = rest[:end]
    target = rest[end:].split("#", 1)[0]
    if not target or target[0] != "/":
        target = "/" + target
    if "@" in authority:
        raise ValueError("url: credentials in the URL are not supported")
    port = 443 if scheme == "https" else 80
    if authority.startswith("["):  # IPv6 literal
        close = authority.find("]")
        if close < 0:
            raise ValueError("url: unterminated IPv6 literal")
        host, tail = authority[1:close], authority[close + 1:]
    else:
        host, colon, tail = authority.partition(":")
        tail = colon + tail
    if tail:
        if tail[0] != ":" or not tail[1:].isdigit():
            raise ValueError("url: bad port in %r" % authority)
        port = int(tail[1:])
    if not host:
        raise ValueError("url: no host")
    return scheme, host, port, target, authority


def _check_token(text, what):
    for ch in text:
        if ch in "\r\n\x00":
            raise ValueError("request: %s must not contain CR, LF or NUL" % what)


def _as_str(value):
    if isinstance(value, (bytes, bytearray)):
        return str(bytes(value), "utf-8")
    return str(value)


def head_pieces(method, target, authority, headers, body_len, keep_alive,
                user_agent=USER_AGENT):
    """The request head as a list of str pieces, checked (ValueError: CR, LF or NUL):
    request line, Host (the caller's if given, as it is signed), the caller's headers
    sorted by name (dict order differs between runtimes; sorting makes the bytes
    identical), User-Agent, Content-Length, Connection. ``_send`` copies the pieces into
    the send buffer: no line, joined head or encoded copy of it is built."""
    _check_token(method, "method")
    _check_token(target, "target")
    own = {}
    for name in headers:
        own[_as_str(name).lower()] = name
    out = [method, " ", target, " HTTP/1.1\r\n"]
    if "host" not in own:
        out.extend(("Host: ", authority, "\r\n"))
    rest = []
    for lname in sorted(own):
        if lname in ("content-length", "connection", "transfer-encoding"):
            continue  # framing is ours
        name = _as_str(own[lname])
        value = _as_str(headers[own[lname]])
        _check_token(name, "header name")
        _check_token(value, "header %s" % name)
        (out if lname == "host" else rest).extend((name, ": ", value, "\r\n"))
    out.extend(rest)
    if user_agent and "user-agent" not in own:
        out.extend(("User-Agent: ", user_agent, "\r\n"))
    if body_len or method not in ("GET", "HEAD", "DELETE", "OPTIONS"):
        out.extend(("Content-Length: ", str(body_len), "\r\n"))
    out.append("Connection: keep-alive\r\n\r\n" if keep_alive else "Connection: close\r\n\r\n")
    return out


def build_request(method, target, authority, headers, body_len, keep_alive, user_agent=USER_AGENT):
    """The request head as bytes (``head_pieces`` joined)."""
    return "".join(head_pieces(method, target, authority, headers, body_len, keep_alive,
                               user_agent)).encode()


class _SocketStream:
    """Adapts a CPython socket (send/recv_into) to the write/readinto interface."""

    def __init__(self, sock):
        self.sock = sock

    def write(self, data):
        self.sock.sendall(data)
        return len(data)

    def readinto(self, buf):
        return self.sock.recv_into(buf)

    def settimeout(self, seconds):
        self.sock.settimeout(seconds)

    def close(self):
        self.sock.close()


class TlsError(TransportError):
    """TLS cannot succeed as configured: a refused certificate (unknown CA, wrong host
    name, expired), an unusable CA, certificate or key file."""

    retryable = False


def pem_to_der(data, what="certificate"):
    """The DER blocks of a PEM file (every ``-----BEGIN ...-----`` block), or ``[data]``
    when it is DER already. TlsError when a PEM block is broken."""
    import binascii

    if b"-----BEGIN" not in data:
        return [data]
    out = []
    rest = data
    while True:
        start = rest.find(b"-----BEGIN")
        if start < 0:
            break
        body = rest.find(b"-----", start + 10)  # the end of the BEGIN line's armour
        end = rest.find(b"-----END", body + 5)
        if body < 0 or end < 0:
            raise TlsError("%s: unterminated PEM block" % what)
        try:
            out.append(binascii.a2b_base64(rest[body + 5:end]))
        except ValueError:
            raise TlsError("%s: PEM block is not base64" % what) from None
        rest = rest[end + 8:]
    if not out:
        raise TlsError("%s: no PEM block" % what)
    return out


def _read_file(path, what):
    try:
        with _builtin_open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise TlsError("%s: cannot read %s (%s)" % (what, path, exc)) from None


def _tls_module():
    """micropython-lib's ``ssl`` (and CPython's), else the bare ``tls`` module."""
    try:
        import ssl
    except ImportError:
        import tls as ssl
    return ssl


def _tls_failure(exc, client_cert=False):
    """(text, retryable) for an exception of the TLS layer, or None if it is not one.
    MicroPython's mbedtls raises ValueError with the verification's reason ("The
    certificate is not correctly signed by the trusted CA", "... Common Name (CN) does
    not match ...", "The certificate validity has expired", "invalid cert") and OSError
    with a negative mbedtls code (below -255) for other handshake failures; CPython
    raises ssl.SSLError (SSLCertVerificationError when the certificate is refused).
    With a client certificate, a fatal alert from the server (mbedtls does not say
    which) is taken as that certificate refused, as CPython's provider takes "unknown
    ca": retrying with the same files meets the same answer."""
    name = exc.__class__.__name__
    if name == "SSLCertVerificationError":
        return "certificate refused (%s)" % getattr(exc, "verify_message", exc), False
    if name.startswith("SSL"):
        return "TLS failure (%s: %s)" % (name, exc), True
    if isinstance(exc, ValueError):
        reason = " ".join(str(exc).split()) or "invalid certificate"
        return "certificate refused (%s)" % reason, False
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
    if code <= -256:  # an mbedtls error code
        text = "TLS failure (mbedtls -0x%04x%s)" % (
            -code, (": " + str(exc.args[1])) if len(exc.args) > 1 else "")
        if code == -0x7780 and client_cert:  # MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE
            return "the server refused the TLS handshake, most likely the client " \
                "certificate (not issued by a CA it trusts, revoked or inactive): " + text, \
                False
        # -0x2700 X509_CERT_VERIFY_FAILED: refused; others: the handshake failed.
        return text, code != -0x2700
    return None


class DeadlineExceeded(TransportError):
    """The exchange did not end by its deadline (the socket was closed)."""


def _capped(timeout, deadline):
    """``timeout`` (seconds or None) capped to the time left before ``deadline``;
    DeadlineExceeded when none is left."""
    if deadline is None:
        return timeout
    left = deadline - monotonic()
    if left <= 0:
        raise DeadlineExceeded("deadline exceeded")
    if timeout is None or left < timeout:
        return max(left, 0.001)  # 0 would mean "non-blocking" to a socket
    return timeout


class _Reader:
    """Buffered, bounded reads over a write/readinto stream, each stream operation
    under ``timeout`` capped to the time left before ``deadline``."""

    def __init__(self, stream, buf, timeout):
        self.stream = stream
        self.buf = buf
        self.mv = memoryview(buf)
        self.start = 0
        self.end = 0
        self.received = 0  # bytes taken from the stream so far
        self.timeout = timeout
        self.deadline = None
        self._applied = -1  # the timeout the stream has now (-1: none set yet)
        self._timed = hasattr(stream, "settimeout")

    def arm(self):
        """Before each stream operation: raise past the deadline, else cap its timeout."""
        t = _capped(self.timeout, self.deadline)
        if t != self._applied and self._timed:
            self.stream.settimeout(t)
            self._applied = t

    def write(self, data):
        self.arm()
        return self.stream.write(data)

    def _recv(self, mv):
        self.arm()
        n = self.stream.readinto(mv)
        if n is None:  # a non-blocking socket with nothing to give: treat as timeout
            raise OSError(110, "read timed out")
        self.received += n
        return n

    def _fill(self):
        """Read more into the buffer; 0 at end of stream."""
        if self.start == self.end:
            self.start = self.end = 0
        elif self.end == len(self.buf):
            left = self.end - self.start
            self.buf[0:left] = self.mv[self.start:self.end]
            self.start, self.end = 0, left
        n = self._recv(self.mv[self.end:])
        self.end += n
        return n

    def readline(self, limit, what):
        """One line (with its newline) of at most ``limit`` bytes; b"" at a clean EOF.
        A longer line raises HttpProtocolError; EOF mid-line raises TransportError."""
        parts = b""
        while True:
            i = self.buf.find(b"\n", self.start, self.end)
            if i >= 0:
                line = bytes(self.mv[self.start:i + 1])
                if parts:
                    line = parts + line
                self.start = i + 1
                if len(line) > limit:
                    break
                return line
            parts += bytes(self.mv[self.start:self.end])
            self.start = self.end
            if len(parts) > limit:
                break
            if self._fill() == 0:
                if parts:
                    raise TransportError("connection closed in the middle of the %s" % what)
                return b""
        raise HttpProtocolError("%s longer than %d bytes" % (what, limit))

    def readinto(self, mv):
        """Buffered bytes first, then straight from the stream (no copy for big bodies)."""
        if self.start < self.end:
            n = min(len(mv), self.end - self.start)
            mv[0:n] = self.mv[self.start:self.start + n]
            self.start += n
            return n
        return self._recv(mv)


def _parse_status(line):
    text = _decode(line, "status line").strip()
    parts = text.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or len(parts[1]) != 3 \
            or not ascii_digits(parts[1]):
        raise HttpProtocolError("malformed status line %r" % text[:80])
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else ""


def _decode(line, what):
    try:
        return str(line, "utf-8")
    except UnicodeError:
        raise HttpProtocolError("%s is not UTF-8/ASCII" % what) from None


def _read_headers(reader):
    headers = {}
    count = 0
    size = 0
    while True:
        line = reader.readline(MAX_LINE, "header line")
        if not line:
            raise TransportError("connection closed in the response headers")
        if line in (b"\r\n", b"\n"):
            return headers
        count += 1
        if count > MAX_HEADERS:
            raise HttpProtocolError("more than %d response headers" % MAX_HEADERS)
        size += len(line)
        if size > MAX_HEAD:
            raise HttpProtocolError("response headers longer than %d bytes" % MAX_HEAD)
        if line[0] in (32, 9):
            raise HttpProtocolError("obsolete folded header line")
        text = _decode(line, "header line")
        name, sep, value = text.partition(":")
        name = name.strip()
        if not sep or not name or " " in name or "\t" in name:
            raise HttpProtocolError("malformed header line %r" % text[:80])
        name = name.lower()
        value = value.strip()
        if name in headers:
            headers[name] = headers[name] + ", " + value
        else:
            headers[name] = value


def _chunk_size_value(line):
    """The hex size of a chunk-size line (extensions after ';' ignored), -1 if bad.
    Parsed byte by byte: strict (no sign, 0x or _ that int() would take) and no
    allocation per chunk on the download path."""
    value = 0
    digits = 0
    for c in line:
        if 48 <= c <= 57:
            d = c - 48
        elif 97 <= c <= 102:
            d = c - 87
        elif 65 <= c <= 70:
            d = c - 55
        elif c in (59, 13, 10, 32, 9):  # ';' CR LF SP HT end the digits
            break
        else:
            return -1
        digits += 1
        if digits > 15:
            return -1
        value = value * 16 + d
    return value if digits else -1


def _content_length(value):
    # "5, 5" (a repeated header) is allowed when every copy agrees.
    values = [v.strip() for v in value.split(",")]
    for v in values:
        if not ascii_digits(v) or len(v) > 18 or v != values[0]:
            raise HttpProtocolError("bad Content-Length %r" % value[:40])
    return int(values[0])


class Response:
    """A streamed response; see the port interface in ``edgecore_ports``."""

    def __init__(self, owner, key, reader, method, origin, version, status, reason, headers):
        self._owner = owner
        self._key = key
        self._reader = reader
        self.deadline = reader.deadline  # may be moved while the body is read
        self._origin = origin
        self._method = method
        self.status = status
        self.reason = reason
        self.headers = headers
        self._done = False
        self._remaining = 0  # bytes left in the body (length) or current chunk (chunked)
        self._reusable = version == "HTTP/1.1" and "close" not in headers.get(
            "connection", "").lower()
        te = headers.get("transfer-encoding")
        if method in _NO_BODY or status < 200 or status in (204, 304):
            self._mode = "none"
        elif te is not None:
            codings = [c.strip().lower() for c in te.split(",")]
            if codings[-1] == "chunked":
                self._mode = "chunked"
            else:  # a non-chunked coding is delimited by close (RFC 9112 6.3)
                self._mode = "close"
                self._reusable = False
        elif "content-length" in headers:
            self._mode = "length"
            self._remaining = _content_length(headers["content-length"])
        else:
            self._mode = "close"
            self._reusable = False
        if self._mode == "none" or (self._mode == "length" and self._remaining == 0):
            self._finish()

    def _finish(self):
        self._done = True
        reader, self._reader = self._reader, None
        if reader is not None:
            self._owner._release(self._key, reader, self._reusable)

    def _chunk_size(self):
        line = self._reader.readline(MAX_LINE, "chunk size line")
        if not line:
            raise TransportError("body truncated before a chunk size line")
        size = _chunk_size_value(line)
        if size < 0:
            raise HttpProtocolError("bad chunk size line %r" % line[:20])
        return size

    def _next_chunk(self):
        """Move to the next chunk; False after the last one (trailers consumed)."""
        size = self._chunk_size()
        if size == 0:
            # Trailers are read and dropped: bounded in lines and bytes (and by the deadline).
            total = 0
            for _ in range(MAX_HEADERS + 1):
                line = self._reader.readline(MAX_LINE, "trailer line")
                if not line:
                    raise TransportError("body truncated in the chunked trailer")
                if line in (b"\r\n", b"\n"):
                    return False
                total += len(line)
                if total > MAX_HEAD:
                    raise HttpProtocolError("chunked trailer longer than %d bytes" % MAX_HEAD)
            raise HttpProtocolError("more than %d trailer lines" % MAX_HEADERS)
        self._remaining = size
        return True

    def readinto(self, buf):
        """Fill buf with the next body bytes (de-chunked); 0 at the end."""
        if self._done or not len(buf):
            return 0
        self._reader.deadline = self.deadline
        try:
            if self._mode == "chunked" and self._remaining == 0 and not self._next_chunk():
                self._finish()
                return 0
            target = buf
            if self._mode != "close" and self._remaining < len(buf):
                # Only a body's tail needs a view; the common case allocates nothing.
                target = memoryview(buf)[:self._remaining]
            n = self._reader.readinto(target)
            if n == 0:
                if self._mode == "close":
                    self._finish()
                    return 0
                raise TransportError(
                    "response body truncated: connection closed with %d bytes of the %s "
                    "still expected"
                    % (self._remaining, "chunk" if self._mode == "chunked" else "Content-Length")
                )
            if self._mode != "close":
                self._remaining -= n
                if self._remaining == 0:
                    if self._mode == "length":
                        self._finish()
                    else:
                        line = self._reader.readline(4, "chunk terminator")
                        if not line:
                            raise TransportError("response body truncated after a chunk")
                        if line not in (b"\r\n", b"\n"):
                            raise HttpProtocolError("chunk not followed by CRLF")
            return n
        except TransportError as exc:
            self.close()
            raise exc.__class__("%s %s: %s" % (self._method, self._origin, exc)) from None
        except OSError as exc:
            self.close()
            if self.deadline is not None and monotonic() >= self.deadline:
                # The read was cut at the deadline (its timeout was the time left).
                raise DeadlineExceeded("%s %s: deadline exceeded"
                                       % (self._method, self._origin)) from None
            raise TransportError(
                "%s %s: %s" % (self._method, self._origin, _oserror_text(exc))
            ) from None

    def read(self, n=-1):
        """Up to n bytes (all that is left when n < 0); b"" at the end."""
        if n is None or n < 0:
            out = bytearray()
            buf = bytearray(BUFSIZE)
            while True:
                k = self.readinto(buf)
                if not k:
                    return bytes(out)
                out.extend(memoryview(buf)[:k])
        buf = bytearray(n)
        k = self.readinto(buf)
        return bytes(memoryview(buf)[:k])

    def close(self):
        """Drop the connection unless the body was read to its end."""
        if self._reader is not None:
            self._reusable = False
            self._finish()
        self._done = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _oserror_text(exc):
    if "imeout" in exc.__class__.__name__:  # CPython's TimeoutError / socket.timeout
        return "timed out"
    if exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]
        if code in (110, 116, -116):  # ETIMEDOUT / MicroPython's timeout codes
            return "timed out (errno %d)" % code
        return "network error (errno %d)" % code
    return "network error (%s)" % exc.__class__.__name__


def _timeouts(timeout):
    if isinstance(timeout, tuple):
        return timeout[0], timeout[1]
    return timeout, timeout


class Transport:
    """An HTTP/1.1 client; ``make_transport`` builds one."""

    def __init__(self, verify=True, ca_bundle=None, timeout=DEFAULT_TIMEOUT,
                 max_body=DEFAULT_MAX_BODY, keep_alive=False, connect=None,
                 user_agent=USER_AGENT, client_cert=None, client_key=None):
        global _warned_insecure
        if not verify and not _warned_insecure:
            _warned_insecure = True
            print("WARNING: edgecore: TLS CERTIFICATE VERIFICATION IS DISABLED: any host can "
                  "impersonate the service and the model store")
        self.verify = verify
        self.ca_bundle = ca_bundle
        if bool(client_cert) != bool(client_key):
            raise ValueError("make_transport: client_cert and client_key go together")
        self.client_cert = client_cert
        self.client_key = client_key
        self.timeout = timeout
        self.max_body = max_body
        self.keep_alive = keep_alive
        self.user_agent = user_agent
        self._sockets = connect is None  # this port's own sockets (the guard below)
        self._connect = connect or self._socket_connect
        self._tls = None
        self._idle = None  # (key, reader) of one reusable connection
        # Allocated once: a small heap fragments when a request allocates its buffers.
        self._buf = bytearray(BUFSIZE)  # a connection's read buffer, and the send buffer
        self._buf_taken = False  # held by a live connection (a second one gets its own)
        self._scratch = bytearray(SCRATCH)  # transport(): bodies of unknown length

    def prepare(self, tls=True):
        """Allocate now what the first request would allocate and keep: the socket guard
        class and, with ``tls``, the TLS context (its CA parsed). A board calls this at
        start, so these long-lived objects sit with the other early ones instead of
        among a cycle's short-lived allocations, where they would split the free heap
        (a 64 KiB heap then has no block left for a request). A TLS setup that fails is
        left for the first https request to report (TlsError)."""
        import sys

        if self._sockets and sys.implementation.name == "micropython":
            _guard_class()
        if tls:
            try:
                self._context()
            except TransportError:
                pass

    def _context(self):
        if self._tls is None:
            import sys

            ssl = _tls_module()
            micropython = sys.implementation.name == "micropython"
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            if self.client_cert:
                if micropython:  # DER bytes: mbedtls here has no PEM parser
                    cert = pem_to_der(_read_file(self.client_cert, "client_cert"),
                                      "client_cert")[0]
                    key = pem_to_der(_read_file(self.client_key, "client_key"),
                                     "client_key")[0]
                    _tls_call(ctx.load_cert_chain, "client_cert/client_key", cert, key)
                else:
                    _tls_call(ctx.load_cert_chain, "client_cert/client_key",
                              self.client_cert, self.client_key)
            if not self.verify:
                if hasattr(ctx, "check_hostname"):
                    ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            elif self.ca_bundle:
                if micropython:
                    for der in pem_to_der(_read_file(self.ca_bundle, "ca_bundle"), "ca_bundle"):
                        try:
                            _tls_call(ctx.load_verify_locations, "ca_bundle", cadata=der)
                        except TypeError:  # the bare tls module takes no keyword
                            _tls_call(ctx.load_verify_locations, "ca_bundle", der)
                else:
                    _tls_call(ctx.load_verify_locations, "ca_bundle", cafile=self.ca_bundle)
                ctx.verify_mode = ssl.CERT_REQUIRED
            elif not micropython:
                ctx.load_default_certs()
            else:
                raise TlsError("https: TLS verification needs ca_bundle (a CA file) "
                               "on MicroPython, which has no system CA store")
            self._tls = ctx
        return self._tls

    def _socket_connect(self, host, port, use_tls, timeout):
        import socket

        started = monotonic()
        # DNS cannot be bounded here: getaddrinfo takes no timeout (see the module doc).
        info = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
        if timeout is not None:
            timeout -= monotonic() - started  # the resolution spent part of the budget
            if timeout <= 0:
                raise OSError(110, "name resolution took the whole connect timeout")
        sock = socket.socket(info[0], socket.SOCK_STREAM, info[2])
        try:
            if timeout is not None:
                sock.settimeout(timeout)
            sock.connect(info[-1])
            _no_delay(socket, sock)
            if not hasattr(sock, "readinto"):  # CPython (the port's tests)
                if use_tls:
                    sock = self._context().wrap_socket(sock, server_hostname=host)
                return _SocketStream(sock)
            # MicroPython: the socket's own readinto/write wait for the whole buffer, each
            # raw recv under the timeout: a peer trickling bytes would hold them forever.
            sock = _guard_class()(sock)
            sock.timeout = timeout
            if not use_tls:
                return _Stream(sock)
            sock.arm()  # the handshake: the connect timeout in all
            return _Stream(sock, self._context().wrap_socket(sock, server_hostname=host))
        except BaseException:
            sock.close()
            raise

    def _reader(self, stream, timeout):
        if self._buf_taken:  # a response still open on another connection
            return _Reader(stream, bytearray(BUFSIZE), timeout)
        self._buf_taken = True
        return _Reader(stream, self._buf, timeout)

    def _release(self, key, reader, reusable):
        # Bytes past the response would be read as the next one's: never reuse then.
        if reusable and self.keep_alive and self._idle is None and reader.start == reader.end:
            self._idle = (key, reader)
            return
        if reader.buf is self._buf:
            self._buf_taken = False
        try:
            reader.stream.close()
        except OSError:
            pass

    def _take_idle(self, key):
        idle, self._idle = self._idle, None
        if idle is None:
            return None
        if idle[0] == key:
            return idle[1]
        self._release(idle[0], idle[1], False)
        return None

    def open(self, method, url, headers, body=b"", timeout=None, deadline=None):
        """Send the request; return a streamed Response (the caller closes it).
        ``deadline``: see the module docstring."""
        scheme, host, port, target, authority = parse_url(url)
        origin = "%s://%s" % (scheme, authority)
        body = body or b""
        head = head_pieces(method, target, authority, headers, len(body), self.keep_alive,
                           self.user_agent)
        key = (scheme, host, port)
        connect_timeout, read_timeout = _timeouts(timeout or self.timeout)
        reader = self._take_idle(key)
        reused = reader is not None
        while True:
            before = reader.received if reader is not None else 0
            try:
                if reader is None:
                    stream = self._connect(host, port, scheme == "https",
                                           _capped(connect_timeout, deadline))
                    reader = self._reader(stream, read_timeout)
                reader.timeout = read_timeout
                reader.deadline = deadline
                _send(reader, head, body)
                return self._response(reader, key, method, origin)
            except (OSError, TransportError, ValueError) as exc:
                received = reader.received - before if reader is not None else 0
                if reader is not None:
                    self._release(key, reader, False)
                    reader = None
                # A kept-alive connection the server closed meanwhile: retry once, fresh.
                if reused and received == 0 and not isinstance(exc, DeadlineExceeded):
                    reused = False
                    continue
                if isinstance(exc, TransportError):
                    raise exc.__class__("%s %s: %s" % (method, origin, exc)) from None
                if deadline is not None and monotonic() >= deadline:  # e.g. in the handshake
                    raise DeadlineExceeded("%s %s: deadline exceeded" % (method, origin)) \
                        from None
                tls = _tls_failure(exc, bool(self.client_cert)) if scheme == "https" \
                    else None
                if tls is not None:
                    err = (TransportError if tls[1] else TlsError)(
                        "%s %s: %s" % (method, origin, tls[0]))
                    raise err from None
                raise TransportError("%s %s: %s" % (method, origin, _oserror_text(exc))) \
                    from None

    def _response(self, reader, key, method, origin):
        for _ in range(10):  # skip interim 1xx responses (100 Continue, 103 Early Hints)
            line = reader.readline(MAX_LINE, "status line")
            if not line:
                raise TransportError("connection closed before a response")
            version, status, reason = _parse_status(line)
            headers = _read_headers(reader)
            if status >= 200 or status == 101:
                return Response(self, key, reader, method, origin, version, status, reason,
                                headers)
        raise HttpProtocolError("too many interim responses")

    def transport(self, method, url, headers, body=b"", timeout=None, deadline=None):
        """One exchange, body read whole (bounded): (status, lower-cased headers, body);
        the body is the bytearray it was read into (a copy as bytes would need as much
        heap again)."""
        # deadline passed only when set: callers may have wrapped open() without it.
        resp = self.open(method, url, headers, body, timeout) if deadline is None else \
            self.open(method, url, headers, body, timeout, deadline)
        with resp:
            declared = resp.headers.get("content-length", "")
            if ascii_digits(declared) and int(declared) > self.max_body:
                raise TransportError("%s %s: response body of %s bytes exceeds the %d byte "
                                     "bound" % (method, resp._origin, declared, self.max_body))
            if resp._mode == "length":
                # Known length: read straight into one buffer of that size.
                out = bytearray(resp._remaining)
                mv = memoryview(out)
                got = 0
                while got < len(out):
                    got += resp.readinto(mv[got:])
                return resp.status, resp.headers, out
            out = bytearray()
            buf = self._scratch
            while True:
                n = resp.readinto(buf)
                if not n:
                    return resp.status, resp.headers, out
                if len(out) + n > self.max_body:
                    raise TransportError("%s %s: response body exceeds the %d byte bound"
                                         % (method, resp._origin, self.max_body))
                out.extend(memoryview(buf)[:n])

    def close(self):
        idle, self._idle = self._idle, None
        if idle is not None:
            self._release(idle[0], idle[1], False)


class _Stream:
    """A MicroPython socket as a bounded stream: ``settimeout(s)`` gives every later
    operation (a read or a write; under TLS, with every raw read and write it makes)
    s seconds in all. ``guard`` is the raw socket's ``_guard_class()``, ``tls`` the TLS
    socket over it (None: plain)."""

    def __init__(self, guard, tls=None):
        self.guard = guard
        self.tls = tls
        self._io = guard if tls is None else tls

    def write(self, data):
        self.guard.arm()
        return _checked(self._io.write(data))

    def readinto(self, buf):
        self.guard.arm()
        return _checked(self._io.readinto(buf))

    def settimeout(self, seconds):
        self.guard.timeout = seconds

    def close(self):
        self._io.close()  # a TLS socket closes the raw one (through the guard's ioctl)


def _checked(n):
    """A guard's -errno as the OSError it stands for."""
    if n is not None and n < 0:
        raise OSError(-n, "timed out" if n == -110 else "socket error")
    return n


_Guard = None


def _guard_class():
    """The guard of a MicroPython socket (built on first use: not every port has
    ``io.IOBase``, which the ``tls`` module needs to read and write through it). The
    socket is made non-blocking: a read or write takes what the socket has now, and
    waits with ``select.poll`` only for the time left before ``until`` (set by
    ``arm()`` from ``timeout``); past it the guard answers ETIMEDOUT. Errors are returned
    as -errno, never raised: an exception must not unwind through mbedtls (which raises
    them as OSError)."""
    global _Guard
    if _Guard is None:
        import io
        import select

        class Guard(io.IOBase):
            def __init__(self, sock):
                self.sock = sock
                self.timeout = None  # seconds per operation (None: no bound)
                self.until = None
                sock.setblocking(False)
                self.poller = select.poll()
                self.poller.register(sock, select.POLLIN)

            def arm(self):
                t = self.timeout
                self.until = None if t is None else monotonic() + t

            def _io(self, method, buf, event):
                try:
                    while True:
                        n = method(buf)
                        if n is not None:  # None: nothing there yet (non-blocking)
                            return n
                        ms = -1
                        if self.until is not None:
                            left = self.until - monotonic()
                            if left <= 0:
                                return -110
                            ms = int(left * 1000) + 1
                        self.poller.modify(self.sock, event)
                        if not self.poller.poll(ms):
                            return -110
                except OSError as exc:
                    return -(exc.args[0] if exc.args and isinstance(exc.args[0], int) else 5)

            def readinto(self, buf):
                return self._io(self.sock.readinto, buf, select.POLLIN)

            def write(self, buf):
                return self._io(self.sock.write, buf, select.POLLOUT)

            def ioctl(self, request, arg):
                if request == 4:  # MP_STREAM_CLOSE
                    self.sock.close()
                return 0

            def close(self):
                self.sock.close()

        _Guard = Guard
    return _Guard


def _tls_call(func, what, *args, **kwargs):
    """Load a certificate or key into the TLS context; TlsError naming ``what`` if the
    TLS layer refuses it (a TypeError passes: the caller retries without keywords)."""
    try:
        return func(*args, **kwargs)
    except (ValueError, OSError) as exc:
        raise TlsError("%s: the TLS layer refused it (%s)" % (what, exc)) from None


def _no_delay(socket, sock):
    """Set TCP_NODELAY; True when the stack took it. Requests already leave in few, large
    writes, so Nagle saves next to nothing and can hold a request's tail back until the
    peer's delayed ACK (~40 ms). MicroPython's unix port has no names for the option:
    Linux's numbers then (lwIP ports have the names, with lwIP's own values)."""
    level = getattr(socket, "IPPROTO_TCP", None)
    option = getattr(socket, "TCP_NODELAY", None)
    if level is None or option is None:
        import sys

        if sys.platform != "linux":
            return False
        level, option = 6, 1
    try:
        sock.setsockopt(level, option, 1)
    except (OSError, AttributeError):
        return False  # a stack that refuses the option costs latency, not correctness
    return True


def _send(reader, head, body):
    """The head (``head_pieces``) and as much of the body as fits, copied into the
    reader's buffer (free until the response comes) and sent in ONE write: a second
    small write on a kept-alive socket waits for the ACK of the first (Nagle), which the
    server delays (~40 ms per request). The rest of a larger body follows straight from
    the caller's memory in writes of at most SEND_WHOLE bytes: nothing is joined or
    copied whole."""
    mv = reader.mv
    size = len(mv)
    views = [utf8_buffer(piece) for piece in head]
    used = 0
    for view in views:
        used += len(view)
    if used > size:  # a head longer than the buffer (e.g. a huge token header): alone
        _write_all(reader, "".join(head).encode())
        used = 0
    else:
        used = 0
        for view in views:
            mv[used:used + len(view)] = view
            used += len(view)
    first = min(len(body), size - used)
    if first:
        mv[used:used + first] = memoryview(body)[:first]
    if used + first:
        _write_all(reader, mv[:used + first])
    view = memoryview(body)
    for off in range(first, len(view), SEND_WHOLE):
        _write_all(reader, view[off:off + SEND_WHOLE])


def _write_all(reader, data):
    mv = memoryview(data)
    off = 0
    while off < len(mv):
        n = reader.write(mv[off:])
        if not n:
            raise OSError(5, "write made no progress")
        off += n


def make_transport(verify=True, ca_bundle=None, timeout=DEFAULT_TIMEOUT,
                   max_body=DEFAULT_MAX_BODY, keep_alive=False, connect=None, proxy=None,
                   client_cert=None, client_key=None):
    """A Transport. ``connect(host, port, use_tls, timeout)`` replaces the socket layer.
    ``proxy`` is accepted for interface parity and must be None (no proxy support)."""
    if proxy:
        raise ValueError("make_transport: proxy is not supported by the MicroPython port")
    return Transport(verify=verify, ca_bundle=ca_bundle, timeout=timeout, max_body=max_body,
                     keep_alive=keep_alive, connect=connect, client_cert=client_cert,
                     client_key=client_key)


_default = None


def default_transport():
    global _default
    if _default is None:
        _default = make_transport()
    return _default


def configure(**kwargs):
    """Replace the module-level default transport (same arguments as make_transport)."""
    global _default
    new = make_transport(**kwargs)  # first: a bad argument keeps the old transport usable
    if _default is not None:
        _default.close()
    _default = new
    return _default


def transport(method, url, headers, body=b"", timeout=None, deadline=None):
    return default_transport().transport(method, url, headers, body, timeout, deadline)


def open(method, url, headers, body=b"", timeout=None, deadline=None):
    return default_transport().open(method, url, headers, body, timeout, deadline)


# -- clock -------------------------------------------------------------------------------

_epoch_offset = None
_ticks_last = None
_ticks_total = 0


def clock():
    """Epoch (1970) seconds. Some MicroPython ports count from 2000: corrected."""
    global _epoch_offset
    if _epoch_offset is None:
        _epoch_offset = 946684800 if time.gmtime(0)[0] == 2000 else 0
    return int(time.time()) + _epoch_offset


def monotonic():
    """Seconds since the first call, never going back. ``ticks_ms`` wraps (every ~12.4
    days on most ports); ``ticks_diff`` is exact for gaps under half that, so call this
    at least every few days (the agent calls it every cycle)."""
    global _ticks_last, _ticks_total
    if not hasattr(time, "ticks_ms"):
        return time.monotonic()
    now = time.ticks_ms()
    if _ticks_last is not None:
        step = time.ticks_diff(now, _ticks_last)
        if step > 0:
            _ticks_total += step
    _ticks_last = now
    return _ticks_total / 1000


# -- files -------------------------------------------------------------------------------


def atomic_write(path, data, mode=0o600):
    """Write ``data`` to ``path + ".tmp"``, flush (and ``os.sync()`` where present), then
    rename over ``path``. ``mode`` is applied where ``os.chmod`` exists. ``data`` may be a
    callable ``fill(write)`` writing the content in pieces (nothing the size of the whole
    file in the heap); its return value is returned; if it raises, the temp file goes."""
    if isinstance(data, str):
        data = data.encode()
    tmp = path + ".tmp"
    result = None
    try:
        with _builtin_open(tmp, "wb") as f:
            if callable(data):
                result = data(f.write)
            else:
                f.write(data)
            f.flush()
            if hasattr(os, "fsync"):  # CPython running this module
                os.fsync(f.fileno())
    except Exception:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    if hasattr(os, "chmod"):
        os.chmod(tmp, mode)
    if hasattr(os, "sync"):
        os.sync()
    try:
        os.rename(tmp, path)
    except OSError:
        # FAT: rename cannot replace. read_atomic() recovers from a cut here.
        os.remove(path)
        os.rename(tmp, path)
    if hasattr(os, "sync"):
        os.sync()
    return result


def read_atomic(path):
    """The content atomic_write left at ``path`` (or its ``.tmp`` after a cut between
    remove and rename on FAT); None when neither exists."""
    for candidate in (path, path + ".tmp"):
        try:
            with _builtin_open(candidate, "rb") as f:
                return f.read()
        except OSError:
            pass
    return None


def free_space(path):
    """Bytes available on ``path``'s filesystem."""
    st = os.statvfs(path)
    return st[4] * (st[1] or st[0])


# -- metrics -----------------------------------------------------------------------------


def metrics(model_dir, now):
    """Heap and model_dir filesystem metrics (see the module docstring)."""
    import gc

    out = []
    if hasattr(gc, "mem_free"):
        free = gc.mem_free()
        used = gc.mem_alloc()
        out.append(edge_metric("memory", "HeapFreeBytes", free, now))
        out.append(edge_metric("memory", "HeapAllocatedBytes", used, now))
        if free + used:
            out.append(edge_metric("memory", "HeapUtilization", 100.0 * used / (free + used),
                                   now))
    disk_metrics(out, model_dir, now)
    return out
