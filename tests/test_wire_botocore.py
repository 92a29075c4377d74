"""CPython-only: edgecore.wire and edgecore.shapes cross-checked against botocore.

- the shape tables equal botocore's loaded sagemaker-edge model (types, member order,
  required, min/max, patterns, enums);
- for random VALID params (generated from botocore's model, not from edgecore's tables),
  botocore's serializer (request captured with a before-send hook, no network) and
  edgecore produce the same method, path, Content-Type and body bytes;
- for random response bytes, botocore's rest-json parser and edgecore give the same dict
  (and, for error responses, the same code and message).
"""

import datetime
import json
import os
import re
import string
import sys
from urllib.parse import urlsplit

import botocore.session
from botocore.awsrequest import AWSResponse
from botocore.parsers import create_parser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecore import shapes, wire
from edgecore.errors import ClientError

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "scripts"))
from boto_capture import capture  # noqa: E402

_SESSION = botocore.session.get_session()
MODEL = _SESSION.get_service_model("sagemaker-edge")
OPERATIONS = ("GetDeployments", "GetDeviceRegistration", "SendHeartbeat")
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---- the tables are the model -----------------------------------------------------------


def _all_shapes():
    seen = {}
    todo = []
    for op in OPERATIONS:
        om = MODEL.operation_model(op)
        for s in (om.input_shape, om.output_shape, *om.error_shapes):
            if s is not None:
                todo.append(s)
    while todo:
        s = todo.pop()
        if s.name in seen:
            continue
        seen[s.name] = s
        if s.type_name == "structure":
            todo.extend(s.members.values())
        elif s.type_name == "list":
            todo.append(s.member)
    return seen


def test_tables_equal_botocore_model():
    model_shapes = _all_shapes()
    assert set(model_shapes) == set(shapes.SHAPES)
    for name, s in model_shapes.items():
        row = shapes.SHAPES[name]
        assert row[0] == s.type_name, name
        if s.type_name == "structure":
            assert tuple((m, ms.name) for m, ms in s.members.items()) == row[1], name
            assert tuple(s.required_members) == row[2], name
        elif s.type_name == "list":
            assert row[1] == s.member.name
        elif s.type_name == "string":
            md = s.metadata
            assert (md.get("min"), md.get("max"), md.get("pattern")) == row[1:4], name
            assert (tuple(s.enum) or None) == row[4], name
    for op in OPERATIONS:
        om = MODEL.operation_model(op)
        out = om.output_shape.name if om.output_shape is not None else None
        assert shapes.OPERATIONS[op] == (
            om.http["method"],
            om.http["requestUri"],
            om.input_shape.name,
            out,
        )


# ---- strategies from botocore's model ---------------------------------------------------


def _ecma(pattern):
    # Smithy patterns are ECMA-262: '$' is end of input, '.' excludes line terminators.
    pattern = pattern.replace(".*", "[^\\n\\r\\u2028\\u2029]*")
    return pattern[:-1] + "\\Z" if pattern.endswith("$") else pattern


# Characters json.dumps escapes in every way it knows (short, \\u00XX, surrogate pairs).
_ESCAPES = 'a"\\/\b\f\n\r\t\x00\x1f\x7f\u00e9\u2028\uffff\U0001f600'
_ALNUM = string.ascii_letters + string.digits
_LOWER = string.ascii_lowercase + string.digits
# Candidate alphabets per anchored pattern (head, tail); every candidate is then filtered
# with the model's literal pattern (ECMA-262 reading), so the strategies cannot drift
# from the model. (st.from_regex is ~25 ms/example here: too slow for CI.)
_ALPHABETS = {
    "^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$": (_ALNUM, _ALNUM + "-_"),
    "^[a-zA-Z0-9](-*[a-zA-Z0-9])*$": (_ALNUM, _ALNUM + "-"),
    "^[a-zA-Z0-9](-*[a-zA-Z0-9\\/])*$": (_ALNUM, _ALNUM + "-/"),
    "^[a-z0-9](-*[a-z0-9])*$": (_LOWER, _LOWER + "-"),
}


def _string_strategy(shape):
    md = shape.metadata
    if shape.enum:
        return st.sampled_from(list(shape.enum))
    lo = md.get("min", 0)
    hi = md.get("max", 200)
    pattern = md.get("pattern")
    if pattern is None:
        text = st.text(max_size=min(hi, 40)) | st.text(st.sampled_from(_ESCAPES), max_size=8)
        return text.filter(lambda s: lo <= len(s) <= hi)
    if pattern in _ALPHABETS:
        head, tail = _ALPHABETS[pattern]
        base = st.builds(
            lambda h, t: h + t, st.sampled_from(head), st.text(st.sampled_from(tail), max_size=hi)
        )
    elif pattern.startswith("^s3://"):
        base = st.builds(
            lambda b, k: "s3://" + b + k,
            st.text(min_size=1, max_size=20).filter(lambda b: "/" not in b),
            st.text(max_size=40),
        )
    else:  # the unanchored Version pattern: anything containing a match, as AWS reads it
        base = st.builds(
            lambda a, m, b: a + m + b,
            st.text(max_size=5),
            st.text(st.sampled_from(_ALNUM + " _."), min_size=1, max_size=hi),
            st.text(max_size=5),
        )
    regex = re.compile(_ecma(pattern))
    return base.filter(lambda s: lo <= len(s) <= hi and regex.search(s))


_TZ = st.builds(
    datetime.timezone,
    st.timedeltas(
        min_value=datetime.timedelta(hours=-23, minutes=-59),
        max_value=datetime.timedelta(hours=23, minutes=59),
    ),
)
def _iso(dt, sep, fraction, zone):
    text = dt.strftime("%Y-%m-%d") + sep + dt.strftime("%H:%M:%S")
    if fraction:
        text += fraction
    if dt.tzinfo is None:
        return text + zone[:1].replace("+", "")  # "", "Z" or "z"
    off = dt.utcoffset()
    minutes = off.days * 1440 + off.seconds // 60
    sign = "-" if minutes < 0 else "+"
    hh, mm = divmod(abs(minutes), 60)
    if zone == "+HH" and mm == 0:
        return text + "%s%02d" % (sign, hh)
    return text + ("%s%02d%02d" if zone == "+HHMM" else "%s%02d:%02d") % (sign, hh, mm)


_MINUTE_TZ = st.builds(
    lambda m: datetime.timezone(datetime.timedelta(minutes=m)), st.integers(-23 * 60, 23 * 60))
_ISO_STRINGS = st.one_of(
    st.builds(
        _iso,
        st.datetimes(min_value=datetime.datetime(1000, 1, 2),
                     max_value=datetime.datetime(9998, 12, 30),
                     timezones=st.none() | _MINUTE_TZ).map(lambda d: d.replace(microsecond=0)),
        st.sampled_from(["T", " ", "t"]),
        st.none() | st.builds(lambda sep, digits: sep + digits, st.sampled_from(".,"),
                              st.text(st.sampled_from("0123456789"), min_size=1, max_size=9)),
        st.sampled_from(["", "Z", "z", "+HH:MM", "+HHMM", "+HH"]),
    ),
    st.dates(min_value=datetime.date(1000, 1, 1)).map(lambda d: d.isoformat()),
    st.datetimes(min_value=datetime.datetime(1000, 1, 1)).map(
        lambda d: d.strftime("%Y-%m-%dT%H:%M")),
)
_NUMERIC_STRINGS = st.one_of(
    st.integers(wire.MIN_TIMESTAMP, wire.MAX_TIMESTAMP).map(str),
    st.floats(0, 4102444800, allow_nan=False).map(repr),
    st.floats(-1e6, 1e10, allow_nan=False).map(lambda f: " %e " % f),
    st.decimals(0, 4102444800, places=7).map(str),
)
_TIMESTAMPS = st.one_of(
    _ISO_STRINGS,
    _NUMERIC_STRINGS,
    st.decimals(wire.MIN_TIMESTAMP, wire.MAX_TIMESTAMP, allow_nan=False, places=6),
    st.integers(wire.MIN_TIMESTAMP, wire.MAX_TIMESTAMP),
    st.integers(0, 4102444800),
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(0, 4102444800, allow_nan=False),
    st.floats(wire.MIN_TIMESTAMP, wire.MAX_TIMESTAMP, allow_nan=False),
    st.datetimes(
        min_value=datetime.datetime(2, 1, 1),
        max_value=datetime.datetime(9998, 12, 31),
        timezones=st.none() | _TZ,
    ),
)
_DOUBLES = st.one_of(
    st.decimals(-10**300, 10**300, allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False),
    st.integers(-(2**63), 2**63),
    st.integers(),
)


def _strategy(shape):
    kind = shape.type_name
    if kind == "string":
        return _string_strategy(shape)
    if kind == "double":
        return _DOUBLES
    if kind == "timestamp":
        return _TIMESTAMPS
    if kind == "list":
        return st.lists(st.deferred(lambda: _strategy(shape.member)), max_size=3)
    required = {m: _strategy(shape.members[m]) for m in shape.required_members}
    optional = {
        m: st.deferred(lambda ms=ms: _strategy(ms))
        for m, ms in shape.members.items()
        if m not in shape.required_members
    }
    order = list(shape.members)
    # botocore writes members in the caller's dict order: give them in model order.
    return st.fixed_dictionaries(required, optional=optional).map(
        lambda d: {k: d[k] for k in order if k in d}
    )


def _params(op):
    return _strategy(MODEL.operation_model(op).input_shape)


# ---- requests ---------------------------------------------------------------------------


class _Raw:
    def __init__(self, body):
        self._body = body

    def stream(self, **kwargs):
        yield self._body


def _botocore_client():
    client = _SESSION.create_client(
        "sagemaker-edge",
        region_name="us-west-2",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="SECRETEXAMPLE",
    )
    captured = []

    def before_send(request, **kwargs):
        captured.append(request)
        return AWSResponse(request.url, 200, {"x-amzn-requestid": "r"}, _Raw(b"{}"))

    client.meta.events.register("before-send.sagemaker-edge.*", before_send)
    return client, captured


_CLIENT, _CAPTURED = _botocore_client()
_METHODS = {
    "GetDeployments": _CLIENT.get_deployments,
    "GetDeviceRegistration": _CLIENT.get_device_registration,
    "SendHeartbeat": _CLIENT.send_heartbeat,
}


def _botocore_request(op, params):
    del _CAPTURED[:]
    _METHODS[op](**params)
    (req,) = _CAPTURED
    return req.method, urlsplit(req.url).path, req.headers["Content-Type"], req.body


def _check_same_request(op, params):
    method, path, headers, body = wire.build_request(op, params)
    b_method, b_path, b_ctype, b_body = _botocore_request(op, params)
    assert (method, path) == (b_method, b_path)
    assert headers == {"Content-Type": b_ctype.decode() if isinstance(b_ctype, bytes) else b_ctype}
    assert body == b_body, (body, b_body)


@SETTINGS
@given(_params("GetDeployments"))
def test_get_deployments_request_matches_botocore(params):
    _check_same_request("GetDeployments", params)


@SETTINGS
@given(_params("GetDeviceRegistration"))
def test_get_device_registration_request_matches_botocore(params):
    _check_same_request("GetDeviceRegistration", params)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(_params("SendHeartbeat"))
def test_send_heartbeat_request_matches_botocore(params):
    _check_same_request("SendHeartbeat", params)


@SETTINGS
@given(_TIMESTAMPS)
def test_timestamp_conversion_matches_botocore(value):
    params = {
        "Models": [{"LatestInference": value}],
        "AgentVersion": "1",
        "DeviceName": "d",
        "DeviceFleetName": "f",
    }
    _check_same_request("SendHeartbeat", params)


def test_full_heartbeat_example_matches_botocore():
    from test_wire import FULL_HEARTBEAT, FULL_HEARTBEAT_BODY

    ordered = json.loads(FULL_HEARTBEAT_BODY)
    assert _botocore_request("SendHeartbeat", ordered)[3] == FULL_HEARTBEAT_BODY
    assert wire.build_request("SendHeartbeat", FULL_HEARTBEAT)[3] == FULL_HEARTBEAT_BODY


# ---- responses --------------------------------------------------------------------------

_JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _response_value(shape):
    """Valid response JSON for ``shape``: any text for strings, nulls, unknown members."""
    kind = shape.type_name
    if kind == "string":
        return st.text(max_size=20)
    if kind == "list":
        return st.lists(st.none() | st.deferred(lambda: _response_value(shape.member)), max_size=3)
    members = {
        m: st.none() | st.deferred(lambda ms=ms: _response_value(ms))
        for m, ms in shape.members.items()
    }
    extra = st.dictionaries(
        st.text(max_size=8).filter(lambda k: k not in shape.members), _JUNK, max_size=2
    )
    return st.builds(lambda d, e: {**e, **d}, st.fixed_dictionaries({}, optional=members), extra)


_HEADERS = st.dictionaries(
    st.sampled_from(["x-amzn-requestid", "content-type", "x-amz-request-id", "x-amz-id-2", "date"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=10),
    max_size=4,
)


def _botocore_parse(op, status, headers, body):
    om = MODEL.operation_model(op)
    response = {"status_code": status, "headers": dict(headers), "body": body}
    return create_parser("rest-json").parse(response, om.output_shape)


def _mixed_case(headers):
    return {k.upper() if i % 2 else k.title(): v for i, (k, v) in enumerate(headers.items())}


def _output(op):
    shape = MODEL.operation_model(op).output_shape
    return _response_value(shape) if shape is not None else st.just({})


@SETTINGS
@given(
    st.sampled_from(OPERATIONS).flatmap(lambda op: st.tuples(st.just(op), _output(op))),
    _HEADERS,
    st.booleans(),
)
def test_response_parse_matches_botocore(op_doc, headers, ascii_only):
    op, doc = op_doc
    body = json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8")
    expected = _botocore_parse(op, 200, headers, body)
    expected["ResponseMetadata"]["RetryAttempts"] = 0
    assert wire.parse_response(op, 200, _mixed_case(headers), body) == expected


_ERROR_CODES = st.one_of(
    st.sampled_from(["InternalServiceException", "ThrottlingException", "ValidationException", ""]),
    st.from_regex(r"\A[A-Za-z.]{1,8}#[A-Za-z]{1,10}(:[a-z:/.]{0,10})?\Z"),
    st.text(max_size=10),
)
_ERROR_DOCS = st.fixed_dictionaries(
    {},
    optional={
        "__type": _ERROR_CODES,
        "code": _ERROR_CODES,
        "Code": _ERROR_CODES,
        "message": st.text(max_size=20),
        "Message": st.text(max_size=20),
        "other": _JUNK,
    },
)


def _not_json(text):
    try:
        json.loads(text)
    except ValueError:
        return True
    return False


_ERROR_BODIES = st.one_of(
    _ERROR_DOCS.map(lambda d: json.dumps(d).encode()),
    st.just(b""),
    st.sampled_from([b"<html><body>oops</body></html>", b"  \n", b"Forbidden"]),
    st.text(max_size=30).filter(_not_json).map(lambda t: t.encode("utf-8")),
)


@SETTINGS
@given(
    st.sampled_from(OPERATIONS),
    st.integers(400, 599) | st.sampled_from([301, 302, 304]),
    _HEADERS,
    st.none() | _ERROR_CODES,
    _ERROR_BODIES,
)
def test_error_parse_matches_botocore(op, status, headers, header_code, body):
    headers = dict(headers)
    if header_code is not None:
        headers["x-amzn-errortype"] = header_code
    expected = _botocore_parse(op, status, headers, body)["Error"]
    try:
        wire.parse_response(op, status, _mixed_case(headers), body)
    except ClientError as err:
        assert (err.code, err.message) == (expected["Code"], expected["Message"])
        assert err.status == status
        assert err.request_id == (
            headers.get("x-amzn-requestid") or headers.get("x-amz-request-id")
        )
    else:
        raise AssertionError("no ClientError")


# ---- ClientError.response and retry classification as a real boto3 client -------------

_MINIMAL = {
    "GetDeployments": {"DeviceName": "d", "DeviceFleetName": "f"},
    "GetDeviceRegistration": {"DeviceName": "d", "DeviceFleetName": "f"},
    "SendHeartbeat": {"AgentVersion": "1", "DeviceName": "d", "DeviceFleetName": "f"},
}


@SETTINGS
@given(
    st.sampled_from(OPERATIONS),
    st.integers(400, 599),
    _HEADERS,
    st.none() | _ERROR_CODES | st.just("InternalServiceException"),
    _ERROR_BODIES
    | st.builds(lambda m: json.dumps({"__type": "InternalServiceException", "Message": m}).encode(),
                st.text(max_size=10)),
)
def test_client_error_response_is_boto3s(op, status, headers, header_code, body):
    headers = dict(headers)
    if header_code is not None:
        headers["x-amzn-errortype"] = header_code
    sent = capture("sagemaker-edge", op, _MINIMAL[op], response=(status, headers, body))
    expected = sent.error.response
    # boto3 notes that its retries ran out; edgecore's client makes one attempt and never
    # claims that (the caller decides about retries, see retry_kind).
    expected["ResponseMetadata"].pop("MaxAttemptsReached", None)
    try:
        wire.parse_response(op, status, _mixed_case(headers), body)
    except ClientError as err:
        assert err.response == expected
    else:
        raise AssertionError("no ClientError")


def _botocore_retry_kind(op, status, code):
    from botocore.retries import standard

    context = standard.RetryContext(
        attempt_number=1,
        operation_model=MODEL.operation_model(op),
        parsed_response={"Error": {"Code": code, "Message": ""}} if code is not None else {},
        http_response=AWSResponse("https://h/", status, {}, _Raw(b"")),
    )
    if not standard.StandardRetryConditions(max_attempts=3).is_retryable(context):
        return None
    detector = standard.ThrottlingErrorDetector(None)
    return "throttling" if detector.is_throttling_error_from_context(context) else "transient"


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(OPERATIONS),
    st.integers(400, 599) | st.sampled_from([429, 500, 502, 503, 504]),
    st.sampled_from(wire.THROTTLING_CODES + wire.TRANSIENT_CODES
                    + ("InternalServiceException", "ValidationException",
                       "AccessDeniedException", "InvalidSignatureException"))
    | _ERROR_CODES,
)
def test_retry_kind_is_botocore_standard_mode(op, status, code):
    err = ClientError(op, code, "m", status)
    assert wire.retry_kind(err) == _botocore_retry_kind(op, status, code), (status, code)


def test_a_429_with_a_modelled_error_is_not_throttling():
    err = wire.parse_error("GetDeployments", 429, {},
                           b'{"__type": "InternalServiceException", "Message": "m"}')
    assert wire.retry_kind(err) is None
    assert _botocore_retry_kind("GetDeployments", 429, "InternalServiceException") is None
    err = wire.parse_error("GetDeployments", 429, {}, b'{"__type": "SomethingElse"}')
    assert wire.retry_kind(err) == "throttling"


def test_timestamp_strings_botocore_guesses_but_edgecore_refuses():
    # botocore hands these to dateutil's guesser; edgecore takes numeric and ISO 8601 only.
    for text in ("Tue, 14 Nov 2023 22:13:20 GMT", "20231114T221320Z", "Nov 14 2023"):
        params = {"Models": [{"LatestInference": text}], "AgentVersion": "1",
                  "DeviceName": "d", "DeviceFleetName": "f"}
        _botocore_request("SendHeartbeat", params)  # accepted there
        try:
            wire.build_request("SendHeartbeat", params)
        except wire.ParamValidationError as exc:
            assert exc.field == "Models[0].LatestInference" and "ISO 8601" in str(exc)
        else:
            raise AssertionError("accepted %r" % text)
