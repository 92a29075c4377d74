"""Fuzz targets: one function per parser that sees network (or on-disk) bytes.

Each ``target(data: bytes)`` runs the parser on ``data`` and returns normally when the
parser either succeeded within its bounds or raised its documented, typed error. Any
other exception (RecursionError, IndexError, an untyped ValueError where a typed error
is promised...) escapes, and so does an AssertionError when a bound is broken. The
same targets are driven by atheris (tests/fuzz/run.py) and by hypothesis
(tests/fuzz/run.py without atheris, and tests/test_hostile_input.py with small budgets).

CPython only. Nothing here opens a socket or a file.
"""

from edgecore import agentstate, amztime, jsonenc, s3url, wire
from edgecore.errors import ClientError, ResponseParseError, TransportError
from edgecore_ports import micropython as mp
from edgecore_ports.credentials import (
    IotCredentialsProvider,
    IotEndpointError,
    IotResponseError,
)

OPERATIONS = ("GetDeployments", "SendHeartbeat", "GetDeviceRegistration")
JSON_MAX_DEPTH = 32


class FeedSocket:
    """A fake socket for the MicroPython transport's injectable ``connect``: returns
    ``script`` ``step`` bytes per readinto (then EOF, or forever with ``forever``), and
    counts what the transport took."""

    def __init__(self, script, step=1 << 20, forever=None):
        self.script = script
        self.pos = 0
        self.step = max(1, step)
        self.forever = forever  # bytes repeated after the script (an endless peer)
        self.taken = 0
        self.written = b""
        self.closed = False

    def write(self, data):
        self.written += bytes(data)
        return len(data)

    def readinto(self, buf):
        if self.pos >= len(self.script):
            if not self.forever:
                return 0
            self.script = self.forever * (1 + len(buf) // len(self.forever))
            self.pos = 0
        n = min(len(buf), self.step, len(self.script) - self.pos)
        buf[0:n] = self.script[self.pos : self.pos + n]
        self.pos += n
        self.taken += n
        return n

    def settimeout(self, seconds):
        pass

    def close(self):
        self.closed = True


def mp_exchange(sock, max_body=mp.DEFAULT_MAX_BODY, method="GET"):
    """One ``transport()`` exchange over ``sock``: (status, headers, body)."""
    t = mp.make_transport(connect=lambda host, port, tls, timeout: sock, max_body=max_body)
    return t.transport(method, "http://device.test/x", {"Authorization": "AWS4-HMAC-SHA256 x"})


def _depth(value):
    if isinstance(value, dict):
        return 1 + max([_depth(v) for v in value.values()] or [0])
    if isinstance(value, list):
        return 1 + max([_depth(v) for v in value] or [0])
    return 0


def mp_http(data):
    """The MicroPython transport's HTTP/1.1 response parser (status, headers, framing)."""
    if len(data) < 2:
        return
    step = 1 + data[0] % 64  # bytes per recv: exercises the line buffer's refills
    max_body = (data[1] % 16) * 256
    method = "HEAD" if data[1] & 0x80 else "GET"
    sock = FeedSocket(data[2:], step=step)
    try:
        status, headers, body = mp_exchange(sock, max_body, method)
    except TransportError:  # HttpProtocolError is one
        return
    assert 100 <= status <= 999, status
    assert len(body) <= max_body, (len(body), max_body)
    assert len(headers) <= mp.MAX_HEADERS
    for name, value in headers.items():
        assert isinstance(name, str) and isinstance(value, str)
        assert name == name.lower()
    if method == "HEAD":
        assert body == b""


def wire_response(data):
    """rest-json responses and error bodies: parse_response / parse_error."""
    if len(data) < 2:
        return
    op = OPERATIONS[data[0] % 3]
    status = (200, 200, 200, 400, 403, 404, 429, 500, 503, 301)[data[1] % 10]
    headers = {}
    if data[1] & 0x80:
        headers["x-amzn-ErrorType"] = data[2:12].decode("latin-1")
    body = data[2:]
    try:
        result = wire.parse_response(op, status, headers, body)
    except (ClientError, ResponseParseError):
        pass
    else:
        assert 200 <= status < 300
        assert result["ResponseMetadata"]["HTTPStatusCode"] == status
    err = wire.parse_error(op, status, headers, body)
    assert isinstance(err, ClientError)
    assert isinstance(err.code, str) and isinstance(err.message, str)


def json_bounded(data):
    """jsonenc.load_bounded: ValueError or a value nested at most JSON_MAX_DEPTH."""
    try:
        value = jsonenc.load_bounded(data, 64 * 1024, JSON_MAX_DEPTH)
    except ValueError:
        return
    assert _depth(value) <= JSON_MAX_DEPTH


def s3_error(data):
    """S3 XML error bodies: (code, message) or (None, None), never raises, bounded."""
    code, message = s3url.parse_error(data)
    assert code is None or (isinstance(code, str) and len(code) <= 100)
    assert message is None or (isinstance(message, str) and len(message) <= 500)
    code2, message2 = s3url.parse_error(data.decode("latin-1"))
    assert code2 is None or len(code2) <= 100
    assert message2 is None or len(message2) <= 500


def s3_url(data):
    """s3url.parse: (bucket, key) or ValueError."""
    text = data.decode("utf-8", "replace")
    for url in (text, "s3://" + text):
        try:
            bucket, key = s3url.parse(url)
        except ValueError:
            continue
        assert bucket and key and len(url) <= s3url.MAX_URL


def http_dates(data):
    """amztime.parse_http_date / parse_iso8601: epoch in 0..MAX_EPOCH or ValueError."""
    text = data.decode("utf-8", "replace")
    for parse in (amztime.parse_http_date, amztime.parse_iso8601):
        try:
            epoch = parse(text)
        except ValueError:
            continue
        assert isinstance(epoch, int) and 0 <= epoch <= amztime.MAX_EPOCH, epoch


_IOT = None


def iot_provider():
    global _IOT
    if _IOT is None:
        _IOT = IotCredentialsProvider(
            "iot.device.test", "edge-role", "thing-1", "/nonexistent/cert", "/nonexistent/key"
        )
    return _IOT


def iot_credentials(data):
    """The IoT credentials provider's 200 body and error body parsers."""
    p = iot_provider()
    try:
        creds = p._parse(data)
    except IotResponseError:
        pass
    else:
        assert creds.access_key and creds.secret_key and creds.session_token
    err = p._endpoint_error(403, {"x-amzn-ErrorType": data[:20].decode("latin-1")}, data)
    assert isinstance(err, IotEndpointError)


def agent_state(data):
    """agentstate.loads (the state file is written by us, but a disk may hand back junk)."""
    try:
        state = agentstate.loads(data)
    except agentstate.StateError:
        return
    assert isinstance(state, dict)


def mutate(args):
    """(seed, cut positions, (position, byte) inserts) -> the mutated seed; the
    hypothesis drivers build their seed-mutation strategies on this."""
    seed, cuts, inserts = args
    data = bytearray(seed)
    for pos, byte in inserts:
        data.insert(pos % (len(data) + 1), byte)
    for pos in cuts:
        if data:
            del data[pos % len(data)]
    return bytes(data)


TARGETS = {
    "mp_http": mp_http,
    "wire_response": wire_response,
    "json_bounded": json_bounded,
    "s3_error": s3_error,
    "s3_url": s3_url,
    "http_dates": http_dates,
    "iot_credentials": iot_credentials,
    "agent_state": agent_state,
}

_VALID_STATE = agentstate.dumps(agentstate.new_state(1700000000))

# Seed inputs (the fuzzers mutate from these).
SEEDS = {
    "mp_http": [
        b"\x05\x10HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello",
        b"\x03\x10HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n0\r\nTrailer: x\r\n\r\n",
        b"\x01\x10HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 404 Not Found\r\n\r\nnope",
        b"\x07\x90HTTP/1.1 204 No Content\r\nContent-Length: 5, 5\r\n\r\n",
    ],
    "wire_response": [
        b"\x00\x00{\"Deployments\": [{\"DeploymentName\": \"d\", \"Definitions\": "
        b"[{\"ModelHandle\": \"m\", \"Checksum\": {\"Type\": \"SHA1\", \"Sum\": \"ab\"}}]}]}",
        b"\x01\x03{\"__type\": \"com.amazon#ValidationException:x\", \"message\": \"bad\"}",
        b"\x02\x07<html>oops</html>",
        b"\x00\x01{\"DeviceRegistration\": \"REGISTERED\", \"CacheTTL\": \"60\"}",
    ],
    "json_bounded": [b'{"a": [1, 2.5, "x\\\\\\"[", {"b": null}]}', b"[" * 33 + b"]" * 33],
    "s3_error": [
        b"<?xml version=\"1.0\"?><Error><Code>NoSuchKey</Code>"
        b"<Message>The key &lt;x&gt; does not exist</Message></Error>",
    ],
    "s3_url": [b"s3://bucket/models/a/b.bin", b"bucket/../../etc/passwd"],
    "http_dates": [
        b"Sun, 06 Nov 1994 08:49:37 GMT",
        b"Sunday, 06-Nov-94 08:49:37 GMT",
        b"Sun Nov  6 08:49:37 1994",
        b"2024-01-01T00:00:00.123+05:30",
    ],
    "iot_credentials": [
        b'{"credentials": {"accessKeyId": "ASIAEXAMPLE", "secretAccessKey": "s3cr3t", '
        b'"sessionToken": "tok", "expiration": "2099-01-01T00:00:00Z"}}',
        b'{"message": "Access Denied"}',
    ],
    "agent_state": [_VALID_STATE],
}
