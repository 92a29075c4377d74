# Runs under MicroPython too
"""The MicroPython port's HTTP/1.1 client fed a fake socket with exact bytes, its
clock, files and metrics. Plain functions: the same file runs under pytest and on the
real MicroPython unix binary (``tests/micropython/run_real.py``). Real sockets on the
binary: ``tests/test_mp_tls.py``."""

from edgecore.errors import TransportError
from edgecore_ports import HttpProtocolError
from edgecore_ports import micropython as mp

SECRET = "Signature=0123456789abcdefsecret"


class FakeSocket:
    """Gives ``script`` back ``step`` bytes per readinto; records what is written.
    ``fail_read`` makes readinto raise that OSError once the script is used up."""

    def __init__(self, script, step=1 << 20, fail_read=None):
        self.script = script
        self.pos = 0
        self.step = step
        self.written = b""
        self.writes = []  # the length of each write call
        self.closed = False
        self.fail_read = fail_read
        self.timeouts = []

    def write(self, data):
        self.written += bytes(data)
        self.writes.append(len(data))
        return len(data)

    def readinto(self, buf):
        if self.pos >= len(self.script) and self.fail_read is not None:
            raise self.fail_read
        n = min(len(buf), self.step, len(self.script) - self.pos)
        buf[0:n] = self.script[self.pos : self.pos + n]
        self.pos += n
        return n

    def settimeout(self, seconds):
        self.timeouts.append(seconds)

    def close(self):
        self.closed = True


class Connector:
    """The injectable connect(): hands out the given sockets in order."""

    def __init__(self, *sockets):
        self.sockets = list(sockets)
        self.calls = []

    def __call__(self, host, port, use_tls, timeout):
        self.calls.append((host, port, use_tls, timeout))
        if not self.sockets:
            raise OSError(111, "connection refused")
        return self.sockets.pop(0)


def transport_for(*sockets, **kwargs):
    conn = Connector(*sockets)
    return mp.make_transport(connect=conn, **kwargs), conn


def raises(exc_type, func, *args):
    try:
        func(*args)
    except exc_type as exc:
        return exc
    raise AssertionError("expected %s" % exc_type.__name__)


OK_5 = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Amzn-RequestId: r-1\r\n\r\nhello"


def test_get_request_bytes_exact():
    sock = FakeSocket(OK_5)
    t, conn = transport_for(sock)
    headers = {"X-Amz-Date": "20240102T030405Z", "Authorization": "AWS4 " + SECRET}
    status, rheaders, body = t.transport("GET", "https://edge.example.com/a%20b?x=1&y=2", headers)
    assert (status, body) == (200, b"hello")
    assert rheaders["x-amzn-requestid"] == "r-1"
    assert rheaders["content-length"] == "5"
    assert sock.written == (
        b"GET /a%20b?x=1&y=2 HTTP/1.1\r\n"
        b"Host: edge.example.com\r\n"
        b"Authorization: AWS4 " + SECRET.encode() + b"\r\n"
        b"X-Amz-Date: 20240102T030405Z\r\n"
        b"User-Agent: edgecore/0.1.0\r\n"
        b"Connection: close\r\n\r\n"
    )
    assert conn.calls == [("edge.example.com", 443, True, 5)]
    assert sock.timeouts == [30]
    assert sock.closed


def test_post_request_bytes_with_given_host_and_keep_alive():
    sock = FakeSocket(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    t, conn = transport_for(sock, keep_alive=True)
    body = b'{"DeviceName":"cam-1"}'
    headers = {"host": "127.0.0.1:8080", "content-length": "999", "Content-Type": "a/b"}
    status, _, rbody = t.transport(
        "POST", "http://127.0.0.1:8080/GetDeployments", headers, body, timeout=7
    )
    assert (status, rbody) == (200, b"{}")
    assert sock.written == (
        b"POST /GetDeployments HTTP/1.1\r\n"
        b"host: 127.0.0.1:8080\r\n"
        b"Content-Type: a/b\r\n"
        b"User-Agent: edgecore/0.1.0\r\n"
        b"Content-Length: 22\r\n"
        b"Connection: keep-alive\r\n\r\n" + body
    )
    assert conn.calls == [("127.0.0.1", 8080, False, 7)]
    assert not sock.closed  # kept for reuse


def test_small_body_leaves_in_the_same_write_as_the_head():
    """Head and body in two small writes stall ~40 ms on a kept-alive socket (Nagle +
    delayed ACK): a body that fits the transport's buffer with the head goes out in the
    head's write, on a fresh and on a reused connection."""
    head_len = len(mp.build_request("POST", "/SendHeartbeat", "h", {}, 1000, True))
    for size in (1, 1000, mp.BUFSIZE - head_len):
        # One response per read: a server answers a request only once it was sent.
        sock = FakeSocket(OK_5 + OK_5, step=len(OK_5))
        t, conn = transport_for(sock, keep_alive=True)
        body = bytes(range(256)) * (size // 256) + b"b" * (size % 256)
        t.transport("POST", "http://h/SendHeartbeat", {}, body)
        head = sock.written[: len(sock.written) - size]
        assert head.endswith(b"Content-Length: %d\r\nConnection: keep-alive\r\n\r\n" % size)
        assert sock.written == head + body
        assert sock.writes == [len(head) + size], (size, sock.writes)
        t.transport("POST", "http://h/SendHeartbeat", {}, bytearray(body))  # reused socket
        assert len(conn.calls) == 1
        assert sock.writes == [len(head) + size] * 2
        assert sock.written == (head + body) * 2
    sock = FakeSocket(OK_5)
    transport_for(sock)[0].transport("GET", "http://h/", {})
    assert len(sock.writes) == 1  # no body: the head alone, no empty write


def test_large_body_fills_the_buffer_then_streams_from_the_callers_memory():
    size = 2 * mp.SEND_WHOLE + 5
    body = memoryview(bytes(range(251)) * (size // 251) + b"t" * (size % 251))
    sock = FakeSocket(OK_5)
    t, _ = transport_for(sock)
    t.transport("PUT", "http://h/blob", {}, body)
    head = mp.build_request("PUT", "/blob", "h", {}, size, False)
    assert sock.written == head + bytes(body)
    first = mp.BUFSIZE - len(head)  # the head and the body's start fill one buffer
    rest = size - first
    assert sock.writes == [mp.BUFSIZE, mp.SEND_WHOLE, rest - mp.SEND_WHOLE]


def test_a_head_longer_than_the_buffer_is_written_alone_then_the_body():
    token = "t" * (mp.BUFSIZE + 10)  # e.g. a long session token
    sock = FakeSocket(OK_5)
    t, _ = transport_for(sock)
    t.transport("POST", "http://h/x", {"X-Amz-Security-Token": token}, b"abc")
    head = mp.build_request("POST", "/x", "h", {"X-Amz-Security-Token": token}, 3, False)
    assert sock.written == head + b"abc"
    assert sock.writes == [len(head), 3]


class PartialSocket(FakeSocket):
    """Accepts at most ``cap`` bytes per write, as a MicroPython socket may."""

    def __init__(self, script, cap):
        FakeSocket.__init__(self, script)
        self.cap = cap

    def write(self, data):
        return FakeSocket.write(self, data[: self.cap])


def test_partial_writes_still_send_every_byte_once():
    for size in (10, mp.SEND_WHOLE + 1):
        body = b"p" * (size - 1) + b"!"
        sock = PartialSocket(OK_5, 1000)
        t, _ = transport_for(sock)
        t.transport("POST", "http://h/x", {}, body)
        assert sock.written == mp.build_request("POST", "/x", "h", {}, size, False) + body
        assert max(sock.writes) <= 1000


class SockOpts:
    def __init__(self, refuse=False):
        self.opts = []
        self.refuse = refuse

    def setsockopt(self, level, option, value):
        if self.refuse:
            raise OSError(95, "EOPNOTSUPP")
        self.opts.append((level, option, value))


class SocketModule:
    """A stand-in for a socket module; only the given constants exist."""

    def __init__(self, **constants):
        for name in constants:
            setattr(self, name, constants[name])


def test_no_delay_uses_the_modules_names_else_linuxs_numbers():
    import sys

    sock = SockOpts()
    # lwIP's value (TF_NODELAY): the module's names win.
    assert mp._no_delay(SocketModule(IPPROTO_TCP=6, TCP_NODELAY=0x40), sock) is True
    assert sock.opts == [(6, 0x40, 1)]
    linux = sys.platform == "linux"
    for module in (SocketModule(), SocketModule(IPPROTO_TCP=6), SocketModule(TCP_NODELAY=1)):
        sock = SockOpts()
        # MicroPython's unix port has no names: Linux's numbers there, nothing elsewhere.
        assert mp._no_delay(module, sock) is linux
        assert sock.opts == ([(6, 1, 1)] if linux else [])
    assert mp._no_delay(SocketModule(IPPROTO_TCP=6, TCP_NODELAY=1), SockOpts(refuse=True)) \
        is False
    assert mp._no_delay(SocketModule(IPPROTO_TCP=6, TCP_NODELAY=1), object()) is False


def test_post_empty_body_sends_content_length_zero():
    sock = FakeSocket(OK_5)
    t, _ = transport_for(sock)
    t.user_agent = None
    t.transport("PUT", "http://h/k", {}, b"")
    assert sock.written == (
        b"PUT /k HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )


def test_content_length_body_one_byte_reads():
    sock = FakeSocket(OK_5, step=1)
    t, _ = transport_for(sock)
    assert t.transport("GET", "http://h/", {}) == (
        200,
        {"content-length": "5", "x-amzn-requestid": "r-1"},
        b"hello",
    )


def test_chunked_body_one_byte_reads_with_extensions_and_trailers():
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n"
        b"1\r\n,\r\n"
        b"A\r\n world!!!!\r\n"
        b"0\r\nX-Trailer: 1\r\n\r\n"
    )
    for step in (1, 3, 1 << 20):
        sock = FakeSocket(raw, step=step)
        t, _ = transport_for(sock)
        status, headers, body = t.transport("GET", "http://h/", {})
        assert status == 200 and body == b"hello, world!!!!", (step, body)
        assert headers["transfer-encoding"] == "chunked"


def test_streaming_readinto_small_buffer_dechunks():
    payload = bytes(range(256)) * 40
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    for i in range(0, len(payload), 1000):
        piece = payload[i : i + 1000]
        raw += ("%x\r\n" % len(piece)).encode() + piece + b"\r\n"
    raw += b"0\r\n\r\n"
    sock = FakeSocket(raw, step=777)
    t, _ = transport_for(sock)
    got = bytearray()
    buf = bytearray(300)
    with t.open("GET", "http://h/model.bin", {"Range": "bytes=0-"}) as resp:
        assert resp.status == 200
        while True:
            n = resp.readinto(buf)
            if not n:
                break
            assert n <= 300
            got.extend(buf[:n])
        assert resp.readinto(buf) == 0
        assert resp.read(10) == b""
    assert bytes(got) == payload
    assert b"Range: bytes=0-\r\n" in sock.written
    assert sock.closed


def test_read_n_and_read_all():
    sock = FakeSocket(b"HTTP/1.1 206 Partial Content\r\nContent-Length: 10\r\n\r\n0123456789")
    t, _ = transport_for(sock)
    resp = t.open("GET", "http://h/", {})
    assert resp.status == 206 and resp.reason == "Partial Content"
    assert resp.read(3) == b"012"
    assert resp.read() == b"3456789"
    assert resp.read() == b""
    resp.close()


def test_body_until_close_without_length():
    sock = FakeSocket(b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nall of it", step=2)
    t, _ = transport_for(sock, keep_alive=True)
    assert t.transport("GET", "http://h/", {})[2] == b"all of it"
    assert sock.closed  # no framing: never reused


def test_head_and_204_have_no_body():
    sock = FakeSocket(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    t, _ = transport_for(sock)
    assert t.transport("HEAD", "http://h/", {}) == (200, {"content-length": "1000"}, b"")
    sock = FakeSocket(b"HTTP/1.1 204 No Content\r\n\r\n")
    t, _ = transport_for(sock)
    assert t.transport("DELETE", "http://h/", {})[:2] == (204, {})


def test_interim_100_continue_skipped():
    sock = FakeSocket(b"HTTP/1.1 100 Continue\r\n\r\n" + OK_5, step=4)
    t, _ = transport_for(sock)
    status, _, body = t.transport("GET", "http://h/", {})
    assert (status, body) == (200, b"hello")


def test_lf_only_lines_and_folded_duplicates():
    sock = FakeSocket(b"HTTP/1.1 200 OK\nA: 1\nA: 2\nContent-Length: 1\n\nz")
    t, _ = transport_for(sock)
    status, headers, body = t.transport("GET", "http://h/", {})
    assert headers["a"] == "1, 2" and body == b"z"


def test_redirect_is_returned_not_followed():
    sock = FakeSocket(
        b"HTTP/1.1 307 Temporary Redirect\r\nLocation: http://other/\r\nContent-Length: 0\r\n\r\n"
    )
    t, conn = transport_for(sock)
    status, headers, _ = t.transport("GET", "http://h/", {})
    assert status == 307 and headers["location"] == "http://other/"
    assert len(conn.calls) == 1


def test_oversize_status_line_is_protocol_error():
    sock = FakeSocket(b"HTTP/1.1 200 " + b"O" * 9000 + b"\r\n\r\n", step=512)
    t, _ = transport_for(sock)
    exc = raises(HttpProtocolError, t.transport, "GET", "http://h/", {})
    assert "status line" in str(exc) and "8192" in str(exc)
    assert isinstance(exc, TransportError)
    assert str(exc).startswith("GET http://h: ")
    assert sock.closed


def test_oversize_header_line_is_protocol_error():
    sock = FakeSocket(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 8200 + b"\r\n\r\n")
    t, _ = transport_for(sock)
    exc = raises(HttpProtocolError, t.transport, "GET", "http://h/", {})
    assert "header line" in str(exc)


def test_too_many_headers_is_protocol_error():
    raw = b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"Content-Length: 0\r\n\r\n"
    t, _ = transport_for(FakeSocket(raw))
    exc = raises(HttpProtocolError, t.transport, "GET", "http://h/", {})
    assert "100" in str(exc)
    raw = b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 99 + b"Content-Length: 0\r\n\r\n"
    t, _ = transport_for(FakeSocket(raw))
    assert t.transport("GET", "http://h/", {})[0] == 200


def test_malformed_heads_are_protocol_errors():
    bad = [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 20x OK\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n;x\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1000000000000000\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: \xff\xfe\r\n\r\n",
    ]
    for raw in bad:
        t, _ = transport_for(FakeSocket(raw))
        raises(HttpProtocolError, t.transport, "GET", "http://h/", {})


def test_truncated_bodies_are_transport_errors():
    cases = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Len",
        b"HTTP/1.1 200",
        b"",
    ]
    for raw in cases:
        sock = FakeSocket(raw, step=3)
        t, _ = transport_for(sock)
        exc = raises(TransportError, t.transport, "GET", "http://h:81/", {"Authorization": SECRET})
        assert not isinstance(exc, HttpProtocolError), raw
        assert "GET http://h:81" in str(exc)
        assert SECRET not in str(exc)
        assert sock.closed


def test_truncated_stream_raises_from_readinto():
    sock = FakeSocket(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
    t, _ = transport_for(sock)
    resp = t.open("GET", "http://h/", {})
    buf = bytearray(4)
    assert resp.readinto(buf) == 4
    assert resp.readinto(buf) == 1
    exc = raises(TransportError, resp.readinto, buf)
    assert "truncated" in str(exc) and "5 bytes" in str(exc)
    assert sock.closed


def test_max_body_bound():
    t, _ = transport_for(
        FakeSocket(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world"), max_body=10
    )
    exc = raises(TransportError, t.transport, "GET", "http://h/", {})
    assert "11 bytes" in str(exc) and "10 byte bound" in str(exc)
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n"
    )
    sock = FakeSocket(raw)
    t, _ = transport_for(sock, max_body=10)
    raises(TransportError, t.transport, "GET", "http://h/", {})
    assert sock.closed
    t, _ = transport_for(FakeSocket(raw), max_body=11)
    assert t.transport("GET", "http://h/", {})[2] == b"hello world"


def test_keep_alive_reuses_one_connection():
    # One response per read: a server answers a request only once it was sent.
    sock = FakeSocket(OK_5 + b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye", step=len(OK_5))
    t, conn = transport_for(sock, keep_alive=True)
    assert t.transport("GET", "http://h/1", {})[2] == b"hello"
    assert t.transport("GET", "http://h/2", {})[2] == b"bye"
    assert len(conn.calls) == 1
    assert sock.written.count(b"Connection: keep-alive") == 2
    t.close()
    assert sock.closed


def test_keep_alive_not_reused_when_bytes_follow_the_response():
    # Bytes the server sent beyond the response would be taken for the next answer.
    sock = FakeSocket(OK_5 + b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbad")
    t, conn = transport_for(sock, FakeSocket(OK_5), keep_alive=True)
    assert t.transport("GET", "http://h/1", {})[2] == b"hello"
    assert sock.closed
    assert t.transport("GET", "http://h/2", {})[2] == b"hello"
    assert len(conn.calls) == 2


def test_keep_alive_not_reused_after_connection_close_or_partial_read():
    sock = FakeSocket(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx")
    sock2 = FakeSocket(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabcd")
    sock3 = FakeSocket(OK_5)
    t, conn = transport_for(sock, sock2, sock3, keep_alive=True)
    t.transport("GET", "http://h/", {})
    assert sock.closed
    resp = t.open("GET", "http://h/", {})
    assert resp.read(2) == b"ab"
    resp.close()  # half read: the connection cannot carry another response
    assert sock2.closed
    assert t.transport("GET", "http://h/", {})[2] == b"hello"
    assert len(conn.calls) == 3


def test_stale_keep_alive_connection_retried_once_on_fresh_one():
    stale = FakeSocket(OK_5)  # answers once, then the server closed it
    fresh = FakeSocket(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    t, conn = transport_for(stale, fresh, keep_alive=True)
    t.transport("GET", "http://h/", {})
    assert t.transport("POST", "http://h/x", {}, b"abc")[2] == b"ok"
    assert len(conn.calls) == 2 and stale.closed
    assert fresh.written.endswith(b"\r\n\r\nabc")


def test_connect_failure_names_host_not_secret():
    t, _ = transport_for()
    exc = raises(
        TransportError,
        t.transport,
        "POST",
        "https://edge.example.com/SendHeartbeat",
        {"Authorization": SECRET, "X-Amz-Security-Token": "tok-secret"},
        b"{}",
    )
    text = str(exc)
    assert "POST https://edge.example.com" in text and "111" in text
    assert SECRET not in text and "tok-secret" not in text


def test_read_timeout_is_transport_error():
    sock = FakeSocket(
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", fail_read=OSError(110, "ETIMEDOUT")
    )
    t, _ = transport_for(sock)
    resp = t.open("GET", "http://h/", {})
    assert resp.read(3) == b"abc"
    exc = raises(TransportError, resp.read, 3)
    assert "timed out" in str(exc)
    sock = FakeSocket(b"", fail_read=OSError(110, "ETIMEDOUT"))
    t, _ = transport_for(sock)
    exc = raises(TransportError, t.transport, "GET", "http://h/", {})
    assert "timed out" in str(exc)


class Clock:
    """A stand-in for the port's monotonic(): seconds advance only when told."""

    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now


class TrickleSocket(FakeSocket):
    """A peer that sends ``step`` bytes per read and takes ``delay`` seconds of ``clock``
    for each (then, once its script is used up, the same trickle of ``forever``)."""

    def __init__(self, script, clock, delay=1.0, step=1, forever=b""):
        FakeSocket.__init__(self, script, step=step)
        self.clock = clock
        self.delay = delay
        self.forever = forever
        self.reads = 0

    def readinto(self, buf):
        if self.closed:
            raise OSError(9, "read on a closed socket")
        self.reads += 1
        self.clock.now += self.delay
        if self.pos >= len(self.script) and self.forever:
            self.script += self.forever
        return FakeSocket.readinto(self, buf)


def with_clock(func):
    """Run func(clock) with the port's monotonic() replaced by a Clock."""
    saved = mp.monotonic
    clock = Clock()
    mp.monotonic = clock
    try:
        return func(clock)
    finally:
        mp.monotonic = saved


def test_deadline_cuts_a_head_trickled_one_byte_per_second():
    def run(clock):
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        sock = TrickleSocket(head, clock)  # 1 byte/s: each read well within its timeout
        t, _ = transport_for(sock)
        exc = raises(TransportError, t.transport, "GET", "http://h/", {}, b"", None,
                     clock.now + 10)
        assert "deadline exceeded" in str(exc) and "GET http://h" in str(exc), str(exc)
        assert sock.closed
        assert sock.reads <= 11 and clock.now <= 100 + 11
        # Each read's timeout was capped to the time left (30 s alone would allow more).
        assert sock.timeouts[0] <= 10 and sock.timeouts[-1] <= 1.0, sock.timeouts
        # Without a deadline the same peer gets its answer through (timeouts per read).
        sock = TrickleSocket(head, clock)
        assert transport_for(sock)[0].transport("GET", "http://h/", {})[2] == b"hello"

    with_clock(run)


def test_deadline_caps_the_connect_timeout_and_refuses_when_already_past():
    def run(clock):
        sock = FakeSocket(OK_5)
        t, conn = transport_for(sock, timeout=(5, 30))
        t.transport("GET", "http://h/", {}, b"", None, clock.now + 2)
        assert conn.calls[0][3] == 2 and sock.timeouts == [2]
        t, conn = transport_for(FakeSocket(OK_5))
        exc = raises(TransportError, t.transport, "GET", "http://h/", {}, b"", None, clock.now)
        assert "deadline exceeded" in str(exc) and conn.calls == []

    with_clock(run)


def test_deadline_bounds_a_trickled_body_and_can_be_moved():
    def run(clock):
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
        sock = TrickleSocket(head, clock, delay=0.0, step=1 << 20, forever=b"x")
        t, _ = transport_for(sock)
        resp = t.open("GET", "http://h/", {}, deadline=clock.now + 5)
        assert resp.status == 200 and resp.deadline == clock.now + 5
        sock.delay = 1.0
        buf = bytearray(10)
        got = resp.readinto(buf)
        resp.deadline = clock.now + 20  # e.g. moved once the length is known
        while clock.now < 118:
            got += resp.readinto(buf)
        exc = raises(TransportError, lambda: [resp.readinto(buf) for _ in range(10)])
        assert "deadline exceeded" in str(exc) and sock.closed
        assert got < 100

    with_clock(run)


def test_deadline_bounds_endless_chunked_trailers():
    def run(clock):
        head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n"
        sock = TrickleSocket(head, clock, delay=0.5, step=4, forever=b"T: x\r\n")
        t, _ = transport_for(sock)
        exc = raises(TransportError, t.transport, "GET", "http://h/", {}, b"", None,
                     clock.now + 8)
        assert "deadline exceeded" in str(exc) and sock.closed

    with_clock(run)


def test_chunked_trailers_and_heads_are_bounded_in_bytes():
    long_line = b"T: " + b"y" * 4000 + b"\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    t, _ = transport_for(FakeSocket(head + long_line * 6 + b"\r\n"))
    exc = raises(HttpProtocolError, t.transport, "GET", "http://h/", {})
    assert "chunked trailer longer than %d bytes" % mp.MAX_HEAD in str(exc)
    head = b"HTTP/1.1 200 OK\r\n" + long_line.replace(b"T:", b"X:") * 6 + b"\r\n"
    t, _ = transport_for(FakeSocket(head))
    exc = raises(HttpProtocolError, t.transport, "GET", "http://h/", {})
    assert "response headers longer than %d bytes" % mp.MAX_HEAD in str(exc)


def test_a_kept_alive_connection_is_not_retried_past_the_deadline():
    def run(clock):
        sock = FakeSocket(OK_5, step=len(OK_5))
        t, conn = transport_for(sock, FakeSocket(OK_5), keep_alive=True)
        t.transport("GET", "http://h/", {})
        exc = raises(TransportError, t.transport, "GET", "http://h/", {}, b"", None, clock.now)
        assert "deadline exceeded" in str(exc) and len(conn.calls) == 1

    with_clock(run)


def test_buffers_are_allocated_once_per_transport():
    socks = [FakeSocket(OK_5, step=len(OK_5)) for _ in range(3)]
    t, _ = transport_for(*socks)
    buf = t._buf
    for _ in range(3):
        t.transport("POST", "http://h/x", {}, b"{}")
    assert t._buf is buf and not t._buf_taken
    # A response left open keeps the buffer; a second connection meanwhile gets its own.
    t, _ = transport_for(FakeSocket(OK_5), FakeSocket(OK_5))
    first = t.open("GET", "http://h/", {})
    assert t.transport("GET", "http://other/", {})[2] == b"hello"
    assert first.read() == b"hello" and not t._buf_taken


def test_transport_body_is_the_buffer_it_was_read_into():
    """No copy as bytes of a body read whole: a board's heap would need it twice."""
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n")
    for script in (OK_5, chunked):
        body = transport_for(FakeSocket(script))[0].transport("GET", "http://h/", {})[2]
        assert type(body) is bytearray and body == b"hello"


def test_prepare_allocates_the_tls_context_up_front():
    t, conn = transport_for(FakeSocket(OK_5), verify=False)
    t.prepare()
    ctx = t._tls
    assert ctx is not None and conn.calls == []  # nothing is sent
    t.prepare()
    assert t._tls is ctx  # once
    # A TLS setup that cannot work is left for the first https request to report.
    t, _ = transport_for(FakeSocket(OK_5), ca_bundle="/nonexistent/ca.pem")
    t.prepare()
    assert t._tls is None
    t.prepare(tls=False)
    assert t._tls is None


def test_header_injection_rejected():
    t, conn = transport_for(FakeSocket(OK_5))
    raises(ValueError, t.transport, "GET", "http://h/", {"X-A": "1\r\nX-B: 2"})
    raises(ValueError, t.transport, "GET", "http://h/a b\r\n", {})
    assert conn.calls == []


def test_parse_url():
    assert mp.parse_url("https://Host.example:8443/p/q?x=1#frag") == (
        "https",
        "Host.example",
        8443,
        "/p/q?x=1",
        "Host.example:8443",
    )
    assert mp.parse_url("http://h") == ("http", "h", 80, "/", "h")
    assert mp.parse_url("http://h?x") == ("http", "h", 80, "/?x", "h")
    assert mp.parse_url("HTTPS://[::1]:9/") == ("https", "::1", 9, "/", "[::1]:9")
    for bad in (
        "ftp://h/",
        "h/path",
        "http://user:pw@h/",
        "http://h:x/",
        "http:///p",
        "http://[::1/",
    ):
        raises(ValueError, mp.parse_url, bad)


def test_tls_flag_and_default_ports():
    sock = FakeSocket(OK_5)
    t, conn = transport_for(sock, timeout=(2, 9))
    t.transport("GET", "http://plain.example/", {})
    assert conn.calls == [("plain.example", 80, False, 2)] and sock.timeouts == [9]


def test_proxy_not_supported():
    raises(ValueError, lambda: mp.make_transport(proxy="http://proxy:3128"))


def test_clock_and_monotonic():
    now = mp.clock()
    assert isinstance(now, int)
    assert now > 1600000000  # 2020: the 2000-epoch correction is applied where needed
    a = mp.monotonic()
    b = mp.monotonic()
    assert b >= a >= 0


def _tmpdir():
    try:
        import tempfile
    except ImportError:
        return "/tmp"
    return tempfile.mkdtemp()


def _rmdir(d):
    """Remove a directory of _tmpdir() (emptied by the test), never MicroPython's /tmp."""
    import os

    if d != "/tmp":
        os.rmdir(d)


def test_atomic_write_replace_and_read_back():
    import os

    d = _tmpdir()
    path = d + "/state.json"
    mp.atomic_write(path, b'{"v": 1}')
    mp.atomic_write(path, '{"v": 2}')
    assert mp.read_atomic(path) == b'{"v": 2}'
    assert "state.json.tmp" not in os.listdir(d)
    # A cut between remove and rename (FAT) leaves only the temp file: still readable.
    os.rename(path, path + ".tmp")
    assert mp.read_atomic(path) == b'{"v": 2}'
    os.remove(path + ".tmp")
    assert mp.read_atomic(path) is None
    _rmdir(d)


def test_atomic_write_from_a_fill_callable():
    import os

    d = _tmpdir()
    path = d + "/state.json"

    def fill(write):
        write(b"par")
        write(b"ts")
        return "digest"

    assert mp.atomic_write(path, fill) == "digest"
    assert mp.read_atomic(path) == b"parts"

    def broken(write):
        write(b"half")
        raise ValueError("too big")

    try:
        mp.atomic_write(path, broken)
    except ValueError:
        pass
    else:
        raise AssertionError("expected the fill's error")
    assert mp.read_atomic(path) == b"parts"
    assert "state.json.tmp" not in os.listdir(d)
    os.remove(path)
    _rmdir(d)


def test_free_space_and_metrics():
    d = _tmpdir()
    assert mp.free_space(d) >= 0
    out = mp.metrics(d, 1700000000)
    names = {}
    for m in out:
        assert m["Timestamp"] == 1700000000
        assert isinstance(m["Value"], float)
        assert valid_metric_name(m["MetricName"]), m
        assert valid_dimension(m["Dimension"]), m
        names[(m["Dimension"], m["MetricName"])] = m["Value"]
    assert ("disk/model-dir", "DiskFreeBytes") in names
    assert names[("disk/model-dir", "DiskTotalBytes")] >= names[("disk/model-dir", "DiskFreeBytes")]
    import gc

    if hasattr(gc, "mem_free"):
        assert names[("memory", "HeapFreeBytes")] > 0
        assert 0 <= names[("memory", "HeapUtilization")] <= 100
    missing = mp.metrics(d + "/missing", 1)
    assert [m for m in missing if m["Dimension"] != "memory"] == []
    _rmdir(d)


def _alnum(ch):
    return ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9")


def valid_metric_name(name):
    """^[a-zA-Z0-9](-*[a-zA-Z0-9])*$, 4..100 (hand-written: MicroPython's re is minimal)."""
    return (
        4 <= len(name) <= 100
        and _alnum(name[0])
        and _alnum(name[-1])
        and all(_alnum(c) or c == "-" for c in name)
    )


def valid_dimension(name):
    """^[a-zA-Z0-9](-*[a-zA-Z0-9/])*$, 1..1000."""
    return (
        1 <= len(name) <= 1000
        and _alnum(name[0])
        and name[-1] != "-"
        and all(_alnum(c) or c in "-/" for c in name)
    )


def test_parser_never_raises_untyped_errors():
    """Every prefix of every response, at every read size, ends in a result or a
    TransportError: never an IndexError/ValueError from the parser."""
    raws = [OK_5, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"]
    for raw in raws:
        for cut in range(len(raw) + 1):
            for step in (1, 5):
                t, _ = transport_for(FakeSocket(raw[:cut], step=step))
                try:
                    t.transport("GET", "http://h/", {})
                except TransportError:
                    pass


class BigSource(FakeSocket):
    """Serves ``count`` 4 KiB blocks (chunked, or under one Content-Length) without
    storing the body, copying from a memoryview so the source allocates no strings."""

    def __init__(self, count, chunked):
        if chunked:
            head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            block = b"1000\r\n" + b"m" * 4096 + b"\r\n"
            tail = b"0\r\n\r\n"
        else:
            head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (count * 4096)
            block = b"m" * 4096
            tail = b""
        FakeSocket.__init__(self, head)
        self.block = memoryview(block)
        self.last = memoryview(block + tail)
        self.count = count

    def readinto(self, buf):
        if self.pos >= len(self.script):
            if self.count == 0:
                return 0
            self.count -= 1
            self.script = self.block if self.count else self.last
            self.pos = 0
        n = min(len(buf), len(self.script) - self.pos)
        buf[0:n] = self.script[self.pos:self.pos + n]
        self.pos += n
        return n


def _word_size():
    import sys

    return 8 if sys.maxsize > 0x7FFFFFFF else 4


def test_streaming_allocates_far_less_than_the_body():
    """2 MiB through open().readinto with a 1 KiB buffer. gc.mem_alloc() growth without
    a collection is the total allocated (less if the GC runs meanwhile): it must stay
    a small fraction of the body (no per-byte or per-body copies; chunked
    framing costs a few small objects per 4 KiB chunk)."""
    import gc

    for chunked, bound in ((False, 16), (True, 8)):
        t, _ = transport_for(BigSource(512, chunked))
        buf = bytearray(1024)
        total = 0
        gc.collect()
        base = gc.mem_alloc() if hasattr(gc, "mem_alloc") else 0
        with t.open("GET", "http://h/big", {}) as resp:
            while True:
                n = resp.readinto(buf)
                if not n:
                    break
                total += n
        assert total == 512 * 4096
        if hasattr(gc, "mem_alloc"):
            grown = gc.mem_alloc() - base
            print("streamed %d bytes (chunked=%s): heap grew %d" % (total, chunked, grown))
            # Objects are made of words: count in 4-byte words so that a 64-bit build,
            # whose objects are twice the size, meets the same bound as a 32-bit one.
            assert grown * 4 // _word_size() < total // bound, grown


def test_a_fatal_alert_with_a_client_certificate_is_final():
    alert = OSError(-0x7780, "MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE")
    text, retryable = mp._tls_failure(alert)
    assert retryable is True and "mbedtls -0x7780" in text
    text, retryable = mp._tls_failure(alert, client_cert=True)
    assert retryable is False and "client certificate" in text and "-0x7780" in text
    assert mp._tls_failure(OSError(-0x2700, "verify"), True)[1] is False
    assert mp._tls_failure(OSError(104), True) is None  # a plain socket error
