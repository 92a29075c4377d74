"""Hostile input for every parser that sees network bytes (CPython; hypothesis).

Only typed edgecore errors may escape, and every read is bounded: the MicroPython
transport's HTTP/1.1 response parser (fed through a fake socket, including endless
peers), rest-json responses and error bodies, JSON depth, S3 XML errors, the IoT
credentials JSON, dates, and the agent's state file. The same target functions are
fuzzed at length by tests/fuzz/run.py (see tests/fuzz/README.md).
"""

import json
import os
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecore import agentstate, jsonenc, s3url, wire
from edgecore.errors import ClientError, ResponseParseError, TransportError
from edgecore_ports import HttpProtocolError
from edgecore_ports import micropython as mp
from edgecore_ports.credentials import IotResponseError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz"))
import edgecore_fuzz_targets as targets  # noqa: E402

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIGHT = settings(FAST, max_examples=80)  # for the costlier generated JSON documents
DEEP = 5000  # nesting beyond CPython's recursion limit


# ---- every target over raw bytes and mutated seeds -------------------------------------


def _mutated(name):
    return st.tuples(
        st.sampled_from(targets.SEEDS[name]),
        st.lists(st.integers(0, 4096), max_size=6),
        st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), max_size=6),
    ).map(targets.mutate)


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_target_only_raises_typed_errors(name):
    target = targets.TARGETS[name]

    @FAST
    @given(st.one_of(st.binary(max_size=512), _mutated(name)))
    def check(data):
        target(data)

    check()


def test_seeds_are_accepted_inputs():
    # The seeds are meaningful: the valid ones parse (so mutations start from real input).
    assert targets.mp_exchange(targets.FeedSocket(targets.SEEDS["mp_http"][1][2:]))[2] == b"hello"
    assert s3url.parse_error(targets.SEEDS["s3_error"][0]) == (
        "NoSuchKey", "The key <x> does not exist")
    creds = targets.iot_provider()._parse(targets.SEEDS["iot_credentials"][0])
    assert creds.access_key == "ASIAEXAMPLE"
    assert agentstate.loads(targets.SEEDS["agent_state"][0])["schema"] == agentstate.SCHEMA_VERSION


# ---- MicroPython transport: framing round trip, truncation, corruption -----------------

HEADER_NAME = st.text("abcdefghijklmnopqrstuvwxyz-0123456789", min_size=1, max_size=20).filter(
    lambda s: s not in ("content-length", "transfer-encoding", "connection"))
HEADER_VALUE = st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40)


def _frame(status, headers, body, chunks):
    """A response with ``body`` framed by Content-Length (chunks None) or chunked."""
    head = "HTTP/1.1 %d X\r\n" % status
    for name, value in headers:
        head += "%s: %s\r\n" % (name, value)
    if chunks is None:
        head += "Content-Length: %d\r\n\r\n" % len(body)
        return head.encode() + body
    head += "Transfer-Encoding: chunked\r\n\r\n"
    out = bytearray(head.encode())
    pos = 0
    for size in chunks:
        piece = body[pos : pos + size]
        if not piece:
            break
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        pos += len(piece)
    if pos < len(body):
        out += b"%x\r\n" % (len(body) - pos) + body[pos:] + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)


RESPONSES = st.tuples(
    st.sampled_from([200, 201, 206, 400, 403, 404, 500, 503]),
    st.lists(st.tuples(HEADER_NAME, HEADER_VALUE), max_size=8, unique_by=lambda h: h[0]),
    st.binary(max_size=3000),
    st.one_of(st.none(), st.lists(st.integers(1, 700), max_size=8)),
    st.integers(1, 97),
)


@FAST
@given(RESPONSES)
def test_mp_framed_body_round_trips(args):
    status, headers, body, chunks, step = args
    wire_bytes = _frame(status, headers, body, chunks)
    got_status, got_headers, got_body = targets.mp_exchange(
        targets.FeedSocket(wire_bytes, step=step))
    assert (got_status, got_body) == (status, body)
    for name, value in headers:
        assert got_headers[name] == value.strip()


@FAST
@given(RESPONSES, st.integers(0, 1 << 20))
def test_mp_truncated_response_is_a_transport_error(args, cut_at):
    status, headers, body, chunks, step = args
    wire_bytes = _frame(status, headers, body, chunks)
    cut = cut_at % len(wire_bytes)  # strictly shorter than the whole response
    with pytest.raises(TransportError):
        targets.mp_exchange(targets.FeedSocket(wire_bytes[:cut], step=step))


@FAST
@given(RESPONSES, st.integers(0, 1 << 20), st.integers(0, 255))
def test_mp_corrupted_byte_is_parsed_or_typed_error(args, where, byte):
    status, headers, body, chunks, step = args
    data = bytearray(_frame(status, headers, body, chunks))
    data[where % len(data)] = byte
    try:
        targets.mp_exchange(targets.FeedSocket(bytes(data), step=step))
    except TransportError:
        pass


# ---- MicroPython transport: every read is bounded, even against an endless peer ---------

BOUND = mp.MAX_LINE + 2 * mp.BUFSIZE  # what one bounded line may cost at most


def _endless(head, forever, max_body=mp.DEFAULT_MAX_BODY):
    sock = targets.FeedSocket(head, step=mp.BUFSIZE, forever=forever)
    with pytest.raises(TransportError) as info:
        targets.mp_exchange(sock, max_body=max_body)
    return sock, info.value


def test_mp_endless_status_line_is_cut_at_max_line():
    sock, err = _endless(b"", b"HTTP/1.1 200 OKOKOKOK")
    assert isinstance(err, HttpProtocolError) and "status line longer than" in str(err)
    assert sock.taken <= BOUND


def test_mp_endless_header_line_is_cut_at_max_line():
    sock, err = _endless(b"HTTP/1.1 200 OK\r\nX-Big: ", b"a" * 1000)
    assert isinstance(err, HttpProtocolError) and "header line longer than" in str(err)
    assert sock.taken <= BOUND


def test_mp_endless_headers_are_cut_at_max_headers():
    line = b"X-Many: y\r\n"
    sock, err = _endless(b"HTTP/1.1 200 OK\r\n", line)
    assert isinstance(err, HttpProtocolError)
    assert "more than %d response headers" % mp.MAX_HEADERS in str(err)
    assert sock.taken <= (mp.MAX_HEADERS + 2) * len(line) + 2 * mp.BUFSIZE


def test_mp_endless_interim_responses_are_cut():
    sock, err = _endless(b"", b"HTTP/1.1 100 Continue\r\n\r\n")
    assert isinstance(err, HttpProtocolError) and "interim" in str(err)
    assert sock.taken <= 12 * 26 + 2 * mp.BUFSIZE


def test_mp_endless_chunked_body_stops_at_max_body():
    chunk = b"400\r\n" + b"z" * 0x400 + b"\r\n"
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    sock, err = _endless(head, chunk, max_body=8192)
    assert "exceeds the 8192 byte bound" in str(err)
    assert sock.taken <= len(head) + 8192 + 2 * len(chunk) + mp.BUFSIZE


def test_mp_endless_close_delimited_body_stops_at_max_body():
    head = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"
    sock, err = _endless(head, b"x" * 512, max_body=8192)
    assert "exceeds the 8192 byte bound" in str(err)
    assert sock.taken <= len(head) + 8192 + 2 * mp.BUFSIZE


def test_mp_endless_chunk_trailers_are_cut():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    sock, err = _endless(head, b"T: x\r\n")
    assert isinstance(err, HttpProtocolError) and "trailer lines" in str(err)
    assert sock.taken <= len(head) + (mp.MAX_HEADERS + 2) * 6 + 2 * mp.BUFSIZE


def test_mp_endless_chunk_size_line_is_cut():
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    sock, err = _endless(head, b"0000000000")
    assert isinstance(err, HttpProtocolError)
    assert sock.taken <= len(head) + BOUND


def test_mp_declared_content_length_over_bound_is_refused_before_the_body():
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n"
    sock, err = _endless(head, b"x" * 4096, max_body=8192)
    assert "exceeds the 8192 byte bound" in str(err)
    assert sock.taken <= len(head) + mp.BUFSIZE


@pytest.mark.parametrize(
    "value",
    ["-1", "+5", "0x10", "5, 6", "1_0", " ", "99999999999999999999",
     "\u0661\u0662", "\u00b2"])
def test_mp_bad_content_length_is_a_protocol_error(value):
    data = ("HTTP/1.1 200 OK\r\nContent-Length: %s\r\n\r\nhello" % value).encode()
    with pytest.raises(HttpProtocolError):
        targets.mp_exchange(targets.FeedSocket(data))


@pytest.mark.parametrize("size", [b"-5", b"+5", b"0x5", b"5_0", b"", b"g", b"1" * 16])
def test_mp_bad_chunk_size_is_a_protocol_error(size):
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    data = head + size + b"\r\nhello\r\n0\r\n\r\n"
    with pytest.raises(HttpProtocolError):
        targets.mp_exchange(targets.FeedSocket(data))


@pytest.mark.parametrize(
    "line",
    [b"HTTP/2 200 OK", b"HTTP/1.1 20 OK", b"HTTP/1.1 2000 OK", b"ICY 200 OK", b"HTTP/1.1 +20 OK",
     b"HTTP/1.1 \xff\xfe\xfd", b"\x00"],
)
def test_mp_malformed_status_line_is_a_protocol_error(line):
    with pytest.raises(HttpProtocolError):
        targets.mp_exchange(targets.FeedSocket(line + b"\r\n\r\n"))


@pytest.mark.parametrize(
    "header", [b" folded: x", b"no colon", b"bad name: x", b": empty", b"X-A: \xc3\x28"])
def test_mp_malformed_header_is_a_protocol_error(header):
    data = b"HTTP/1.1 200 OK\r\nX-Ok: 1\r\n" + header + b"\r\nContent-Length: 0\r\n\r\n"
    with pytest.raises(HttpProtocolError):
        targets.mp_exchange(targets.FeedSocket(data))


# ---- rest-json responses, error bodies, JSON depth -------------------------------------

OPS = st.sampled_from(targets.OPERATIONS)
JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["Deployments", "DeviceRegistration", "CacheTTL", "Definitions",
                         "ModelHandle", "message", "Message", "__type", "code", "x"]),
        inner, max_size=5),
    max_leaves=20,
)


@LIGHT
@given(OPS, st.sampled_from([200, 400, 403, 429, 500, 503]), JSONISH)
def test_wire_any_json_body_is_parsed_or_typed_error(op, status, doc):
    body = json.dumps(doc).encode()
    try:
        result = wire.parse_response(op, status, {"x-amzn-RequestId": "r"}, body)
    except (ClientError, ResponseParseError) as exc:
        assert exc.operation == op
    else:
        assert result["ResponseMetadata"]["RequestId"] == "r"
    assert isinstance(wire.parse_error(op, status, {}, body), ClientError)


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_wire_deep_nesting_is_a_parse_error_not_a_recursion_error(opener):
    body = opener * DEEP
    with pytest.raises(ResponseParseError) as info:
        wire.parse_response("GetDeployments", 200, {}, body)
    assert "deeper than %d" % wire.MAX_DEPTH in str(info.value)
    err = wire.parse_error("GetDeployments", 400, {}, body)  # a non-JSON error body
    assert isinstance(err, ClientError) and err.code == "400"


def test_wire_oversize_body_is_refused_for_every_status():
    body = b" " * (wire.MAX_BODY + 1)
    for status in (200, 400, 500):
        with pytest.raises(ResponseParseError) as info:
            wire.parse_response("SendHeartbeat", status, {}, body)
        assert "exceeds the %d byte limit" % wire.MAX_BODY in str(info.value)


def _nest(depth, kinds, leaf):
    value = leaf
    for i in range(depth):
        value = [value] if kinds[i % len(kinds)] else {"k[{\\\"": value}
    return value


@FAST
@given(st.integers(0, 60), st.lists(st.booleans(), min_size=1, max_size=5),
       st.text(alphabet='[]{}"\\ab', max_size=12), st.integers(1, 40))
def test_json_depth_limit_is_exact(depth, kinds, leaf, limit):
    # Brackets, quotes and backslashes inside strings do not count towards the depth.
    data = json.dumps(_nest(depth, kinds, leaf)).encode()
    if depth > limit:
        with pytest.raises(ValueError):
            jsonenc.load_bounded(data, 1 << 20, limit)
    else:
        assert jsonenc.load_bounded(data, 1 << 20, limit) == json.loads(data)


def test_json_size_limit():
    with pytest.raises(ValueError):
        jsonenc.load_bounded(b"[" + b"1," * 600 + b"1]", 1000, 32)


# ---- S3 XML errors ---------------------------------------------------------------------

XML_TEXT = st.text(st.characters(blacklist_categories=["Cs"]), max_size=700)


def _xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


@FAST
@given(XML_TEXT, XML_TEXT, st.text(max_size=50), st.booleans())
def test_s3_error_round_trips_and_is_bounded(code, message, prefix, as_bytes):
    body = "%s<Error><Code>%s</Code><Message>%s</Message><RequestId>r</RequestId></Error>" % (
        _xml_escape(prefix).replace("<Error>", ""), _xml_escape(code), _xml_escape(message))
    got_code, got_message = s3url.parse_error(body.encode() if as_bytes else body)
    if len(body.encode()) <= s3url.MAX_ERROR_BODY:
        assert got_code == code.strip()[:100]
        assert got_message == message.strip()[:500]
    assert got_code is None or len(got_code) <= 100
    assert got_message is None or len(got_message) <= 500


def test_s3_error_only_scans_a_bounded_prefix():
    body = b"<Error>" + b" " * (s3url.MAX_ERROR_BODY + 10) + b"<Code>Late</Code></Error>"
    assert s3url.parse_error(body) == (None, None)
    assert s3url.parse_error(b"<Error><Code>" + b"A" * 100000) == (None, None)
    assert s3url.parse_error(None) == (None, None)


# ---- IoT credentials JSON --------------------------------------------------------------

CRED_VALUE = st.one_of(
    st.none(), st.integers(), st.booleans(), st.lists(st.integers(), max_size=2),
    st.text(max_size=30), st.sampled_from(["ASIA123", "2099-01-01T00:00:00Z", "x y", ""]),
)
CRED_NAMES = ["accessKeyId", "secretAccessKey", "sessionToken", "expiration"]


@FAST
@given(st.dictionaries(st.sampled_from(CRED_NAMES + ["other"]), CRED_VALUE),
       st.sampled_from(["credentials", "Credentials", "other"]))
def test_iot_credentials_json_is_parsed_or_typed_error(inner, outer):
    body = json.dumps({outer: inner}).encode()
    try:
        creds = targets.iot_provider()._parse(body)
    except IotResponseError as exc:
        assert exc.operation == "AssumeRoleWithCertificate"
    else:
        assert outer == "credentials"
        assert creds.secret_key == inner["secretAccessKey"]


@FAST
@given(st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=60))
def test_iot_error_never_echoes_a_secret_in_the_wrong_member(secret):
    # A secret key landing in "expiration" must not be copied into the error message.
    # The "~~" prefix keeps a short draw ("endpoint") from matching the message's own words.
    secret = "~~" + secret
    doc = {"credentials": {"accessKeyId": "ASIA1", "secretAccessKey": "k",
                           "sessionToken": "t", "expiration": secret}}
    try:
        targets.iot_provider()._parse(json.dumps(doc).encode())
    except IotResponseError as exc:
        if any(c not in "0123456789-:.+TZtz " for c in secret):
            assert secret not in str(exc)


def test_iot_deeply_nested_body_is_a_typed_error():
    p = targets.iot_provider()
    with pytest.raises(IotResponseError):
        p._parse(b"[" * DEEP)
    p._endpoint_error(403, {}, b"[" * DEEP)


# ---- agent state file ------------------------------------------------------------------


@LIGHT
@given(st.dictionaries(st.sampled_from(["schema", "active", "done", "inflight", "x"]), JSONISH))
def test_agentstate_any_json_is_loaded_or_state_error(doc):
    base = json.loads(agentstate.dumps(agentstate.new_state(0)))
    base.update(doc)
    try:
        agentstate.loads(json.dumps(base).encode())
    except agentstate.StateError:
        pass


def test_agentstate_oversize_is_a_state_error():
    with pytest.raises(agentstate.StateError):
        agentstate.loads(b" " * (agentstate.MAX_STATE_BYTES + 1))


def test_agentstate_deeply_nested_is_a_state_error():
    with pytest.raises(agentstate.StateError):
        agentstate.loads(b"[" * DEEP)
