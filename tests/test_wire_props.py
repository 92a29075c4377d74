"""CPython-only property tests for edgecore.shapes and edgecore.wire (hypothesis).

- each hand-written pattern checker agrees with Python's ``re`` on the model's literal
  pattern (for values without line terminators, where Python's and ECMA-262's readings
  coincide) and with its ECMA-262 reading (``$`` = end of input, ``.`` excludes line
  terminators) for every value;
- parse_response, fed random JSON, bytes, headers and status codes, only ever raises
  ClientError or ResponseParseError;
- random invalid params only ever raise ParamValidationError and never reach the transport.
"""

import json
import re

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from test_wire_botocore import _ecma, _params

from edgecore import Credentials, jsonenc, shapes, wire
from edgecore.client import Client
from edgecore.errors import ClientError, ParamValidationError, ResponseParseError

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
OPERATIONS = tuple(shapes.OPERATIONS)

# ---- pattern checkers vs re --------------------------------------------------------------

# Per pattern, small tokens it cares about, so that the corner cases ("a_-b",
# "s3://b/k\n", "a-", "A" in a checksum) come up in a couple of hundred examples.
_TOKENS = {
    "^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$": ["a", "Z9", "-", "_", "-_", "_-", ".", "\n"],
    "^[a-zA-Z0-9](-*[a-zA-Z0-9])*$": ["a", "Z9", "-", "--", "_", "\n"],
    "^[a-zA-Z0-9](-*[a-zA-Z0-9\\/])*$": ["a", "Z9", "-", "/", "-/", "_", "\n"],
    "^[a-z0-9](-*[a-z0-9])*$": ["a", "9", "-", "A", "\n"],
    "^s3://([^/]+)/?(.*)$": ["s3://", "b", "/", "\n", "\r", "\u2028", "\u2029", ":", "S"],
    "[a-zA-Z0-9\\ \\_\\.]+": ["a", " ", "_", ".", "-", "/", "\u00e9", "\U0001f600", "\n"],
}
_LINE_TERMINATORS = "\n\r\u2028\u2029"


def _pattern_text(pattern):
    tokens = st.lists(st.sampled_from(_TOKENS[pattern]), max_size=6).map("".join)
    if "s3" in pattern:
        tokens = st.builds(lambda a, b: a + b, st.sampled_from(["", "s3://", "s3:/"]), tokens)
    return st.one_of(tokens, tokens, st.text(max_size=12))


def _check_against_re(pattern, value):
    got = shapes.PATTERNS[pattern](value)
    assert got == bool(re.search(_ecma(pattern), value)), (pattern, value)
    if not any(c in value for c in _LINE_TERMINATORS):
        assert got == bool(re.search(pattern, value)), (pattern, value)
        if pattern.startswith("^"):
            assert got == bool(re.fullmatch(pattern, value)), (pattern, value)


def test_every_model_pattern_is_covered():
    assert sorted(_TOKENS) == sorted(shapes.PATTERNS)


@SETTINGS
@given(st.sampled_from(sorted(_TOKENS)).flatmap(lambda p: st.tuples(st.just(p), _pattern_text(p))))
@example(("^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$", "a_-b"))
@example(("^s3://([^/]+)/?(.*)$", "s3://b/k\n"))
@example(("^s3://([^/]+)/?(.*)$", "s3://b\n/k"))
@example(("^[a-zA-Z0-9](-*[a-zA-Z0-9])*$", "ab\n"))
def test_checkers_match_re(pattern_value):
    _check_against_re(*pattern_value)


# ---- responses: only typed errors --------------------------------------------------------

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


def _near_shape(name):
    """JSON that follows an output shape most of the time and breaks it sometimes."""
    row = shapes.SHAPES[name]
    if row[0] == shapes.STRUCTURE:
        members = {m: st.deferred(lambda s=s: _near_shape(s)) for m, s in row[1]}
        good = st.fixed_dictionaries({}, optional=members)
        return st.one_of(good, good, _JSON)
    if row[0] == shapes.LIST:
        return st.one_of(st.lists(st.deferred(lambda: _near_shape(row[1])), max_size=3), _JSON)
    return st.one_of(st.text(max_size=8), _JSON)


def _doc_body(op):
    out = shapes.OPERATIONS[op][3]
    doc = _near_shape(out) if out else _JSON
    return doc.map(lambda d: json.dumps(d).encode("utf-8"))


_BODIES = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"[" * 5000,
            b"{" * 100 + b"}" * 100,
            b'{"a":' * 50 + b"1" + b"}" * 50,
            b"\xff",
            b"1e999999",
        ]
    ),
    st.text(max_size=30).map(lambda t: t.encode("utf-8")),
)
_HEADERS = st.one_of(
    st.none(),
    st.dictionaries(
        st.sampled_from(["x-amzn-requestid", "X-Amzn-ErrorType", "content-type"])
        | st.text(max_size=5),
        st.text(max_size=10),
        max_size=3,
    ),
    st.dictionaries(
        st.text(max_size=3) | st.integers(), st.integers() | st.binary(max_size=3), max_size=2
    ),
    st.lists(st.text(max_size=3), max_size=2),
)
_STATUS = st.one_of(
    st.sampled_from([200, 204, 400, 403, 404, 429, 500, 502, 503]),
    st.integers(-10, 1000),
    st.booleans(),
    st.text(max_size=3),
    st.none(),
)


def _only_typed_errors(op, status, headers, body):
    try:
        result = wire.parse_response(op, status, headers, body)
    except (ClientError, ResponseParseError) as err:
        str(err)
        return None
    assert isinstance(result, dict) and "ResponseMetadata" in result
    return result


@SETTINGS
@given(
    st.sampled_from(OPERATIONS).flatmap(lambda op: st.tuples(st.just(op), _doc_body(op))),
    _HEADERS,
    _STATUS,
)
def test_random_json_only_typed_errors(op_body, headers, status):
    op, body = op_body
    _only_typed_errors(op, status, headers, body)
    _only_typed_errors(op, 200, headers, body)


@SETTINGS
@given(st.sampled_from(OPERATIONS), _STATUS, _HEADERS, _BODIES | st.none() | st.integers())
def test_random_bytes_only_typed_errors(op, status, headers, body):
    _only_typed_errors(op, status, headers, body)
    _only_typed_errors(op, 200, {}, body)
    _only_typed_errors(op, 500, {}, body)


@SETTINGS
@given(_near_shape("GetDeploymentsResult"))
def test_parsed_output_has_only_modelled_members(doc):
    body = json.dumps(doc).encode("utf-8")
    result = _only_typed_errors("GetDeployments", 200, {}, body)
    if result is None:
        return
    for dep in result.get("Deployments", []):
        assert dep is None or set(dep) <= set(shapes.member_names("EdgeDeployment"))


# ---- params: only ParamValidationError, and the transport is never reached ---------------

_JUNK_VALUES = st.one_of(
    _JSON,
    st.sampled_from([float("nan"), float("inf"), -float("inf"), 10**400, True, b"x", (), object()]),
    st.just([[[[[[[[[[[]]]]]]]]]]] * 2),
    st.just({"a": {"b": {"c": {}}}}),
)


def _mutate(data, value):
    """Break a valid params dict in one random place: junk value, missing or unknown key."""
    node = value
    for _ in range(6):
        if isinstance(node, dict) and node:
            key = data.draw(st.sampled_from(sorted(node)))
            child = node[key]
            if not isinstance(child, (dict, list)) or not child or data.draw(st.booleans()):
                action = data.draw(st.sampled_from(["junk", "delete", "unknown"]))
                if action == "junk":
                    node[key] = data.draw(_JUNK_VALUES)
                elif action == "delete":
                    del node[key]
                else:
                    node[data.draw(st.text(max_size=6))] = data.draw(_JUNK_VALUES)
                return value
            node = child
        elif isinstance(node, list) and node:
            i = data.draw(st.integers(0, len(node) - 1))
            if not isinstance(node[i], (dict, list)) or data.draw(st.booleans()):
                node[i] = data.draw(_JUNK_VALUES)
                return value
            node = node[i]
        else:
            break
    return value


def _client(calls):
    def transport(method, url, headers, body):
        calls.append((method, url))
        return 200, {"x-amzn-requestid": "r"}, b"{}"

    return Client(
        "us-west-2",
        Credentials("AKIDEXAMPLE", "SECRET"),
        transport=transport,
        clock=lambda: 1700000000,
    )


_METHOD = {
    "GetDeployments": "get_deployments",
    "GetDeviceRegistration": "get_device_registration",
    "SendHeartbeat": "send_heartbeat",
}


@SETTINGS
@given(st.data(), st.sampled_from(OPERATIONS))
def test_invalid_params_only_param_validation_error(data, op):
    params = _mutate(data, data.draw(_params(op)))
    try:
        wire.build_request(op, params)
    except ParamValidationError as err:
        assert err.operation == op
        assert err.rule in (
            "required",
            "type",
            "min",
            "max",
            "pattern",
            "enum",
            "unknown",
            "finite",
            "range",
        )
        valid = False
    else:
        valid = True  # the mutation may keep params valid (e.g. an optional member removed)
    calls = []
    try:
        getattr(_client(calls), _METHOD[op])(**params)
    except ParamValidationError:
        assert not valid and not calls
    else:
        assert valid and len(calls) == 1


@SETTINGS
@given(st.sampled_from(OPERATIONS), _JUNK_VALUES)
def test_junk_params_only_param_validation_error(op, junk):
    try:
        wire.build_request(op, junk)
    except ParamValidationError:
        return
    raise AssertionError("junk accepted: %r" % (junk,))


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
@example(245010723912258.12)  # an exact tie at 17 digits: half to even
@example(5e-324)
@example(9.77215304)
def test_portable_float_repr_is_cpython_repr(value):
    # The formatter MicroPython uses (both its paths), called directly on CPython.
    assert jsonenc.float_repr(value) == repr(value)
    assert jsonenc.float_repr(value, exact=False) == repr(value)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**64 - 1))
def test_portable_float_repr_on_random_bit_patterns(bits):
    import struct

    value = struct.unpack(">d", struct.pack(">Q", bits))[0]
    if value == value and value not in (float("inf"), float("-inf")):
        assert jsonenc.float_repr(value) == repr(value)


@settings(max_examples=300, deadline=None)
@given(st.floats(min_value=2.2250738585072014e-308, allow_nan=False, allow_infinity=False))
def test_runtime_repr_fast_path(value):
    # A <= 15-digit repr that reads back is accepted as is; a 17-digit non-shortest form
    # (what MicroPython's repr gives for ~5% of doubles) is refused, never mis-laid out.
    found = jsonenc._short_enough(value, repr(value))
    text = repr(value)
    if found is not None:
        assert jsonenc._layout("", found[0], found[1]) == text
    long_form = "%.16e" % value
    found = jsonenc._short_enough(value, long_form)
    if found is not None:
        assert len(found[0]) <= 15 and jsonenc._layout("", found[0], found[1]) == text
    assert jsonenc._short_enough(9.77215304, "9.772153039999999") is None
