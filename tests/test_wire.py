# Runs under MicroPython too
"""Tests for edgecore.wire (and edgecore.jsonenc): request framing, validation, response
and error parsing, retry classification.

Plain functions with bare asserts: runs under pytest and under MicroPython
(python tests/micropython/run_real.py unix tests/test_wire.py). botocore cross-checks are in
tests/test_wire_botocore.py, hypothesis properties in tests/test_wire_props.py.
"""

from edgecore import jsonenc, wire
from edgecore.errors import ClientError, ParamValidationError, ResponseParseError, TransportError

JSON = {"Content-Type": "application/json"}


# A port built with 32-bit floats (the qemu Cortex-M3 port): a float carries ~7 digits,
# so fractional epoch seconds cannot survive there (near 1.7e9 floats are 128 s apart).
SINGLE_FLOAT = float("16777217") == float("16777216")


def _huge(digits):
    """10**digits, computed at run time: a constant that large cannot be frozen into
    firmware (mpy-tool cannot write it), and these files are frozen for the qemu port."""
    return 10**digits


def _raises(exc_type, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc_type as exc:
        return exc
    raise AssertionError("%s not raised" % exc_type.__name__)


def _invalid(params, op="SendHeartbeat"):
    return _raises(ParamValidationError, wire.build_request, op, params)


def _hb(**extra):
    params = {"AgentVersion": "1.0", "DeviceName": "cam-1", "DeviceFleetName": "fleet-a"}
    params.update(extra)
    return params


FULL_HEARTBEAT = {
    "DeploymentResult": {
        "DeploymentModels": [
            {
                "RollbackFailureReason": "none",
                "StatusReason": "fine",
                "Status": "SUCCESS",
                "State": "DEPLOY",
                "DesiredState": "DEPLOY",
                "ModelVersion": "1.0",
                "ModelName": "resnet-50",
                "ModelHandle": "h1",
            }
        ],
        "DeploymentEndTime": 1699999999.5,
        "DeploymentStartTime": 1699999990,
        "DeploymentStatusMessage": "ok \u00e9\n",
        "DeploymentStatus": "SUCCESS",
        "DeploymentName": "dep-1",
    },
    "DeviceFleetName": "fleet_a",
    "DeviceName": "cam-1",
    "AgentVersion": "1.2.3",
    "Models": [
        {
            "ModelMetrics": [
                {
                    "Timestamp": 1700000003,
                    "Value": 3,
                    "MetricName": "LatencyMs",
                    "Dimension": "model/latency",
                }
            ],
            "LatestInference": 1700000002,
            "LatestSampleTime": 1700000001.75,
            "ModelVersion": "1.0",
            "ModelName": "resnet-50",
        }
    ],
    "AgentMetrics": [
        {
            "Timestamp": 1700000000,
            "Value": 12.5,
            "MetricName": "CpuUtilization",
            "Dimension": "agent/cpu",
        }
    ],
}

# json.dumps of the same params in model order, as botocore sends them (dicts above are
# deliberately in reverse order: the core writes model order whatever the dict order).
FULL_HEARTBEAT_BODY = (
    b'{"AgentMetrics": [{"Dimension": "agent/cpu", "MetricName": "CpuUtilization", '
    b'"Value": 12.5, "Timestamp": 1700000000}], "Models": [{"ModelName": "resnet-50", '
    b'"ModelVersion": "1.0", "LatestSampleTime": 1700000001.75, "LatestInference": 1700000002, '
    b'"ModelMetrics": [{"Dimension": "model/latency", "MetricName": "LatencyMs", "Value": 3, '
    b'"Timestamp": 1700000003}]}], "AgentVersion": "1.2.3", "DeviceName": "cam-1", '
    b'"DeviceFleetName": "fleet_a", "DeploymentResult": {"DeploymentName": "dep-1", '
    b'"DeploymentStatus": "SUCCESS", "DeploymentStatusMessage": "ok \\u00e9\\n", '
    b'"DeploymentStartTime": 1699999990, "DeploymentEndTime": 1699999999.5, "DeploymentModels": '
    b'[{"ModelHandle": "h1", "ModelName": "resnet-50", "ModelVersion": "1.0", "DesiredState": '
    b'"DEPLOY", "State": "DEPLOY", "Status": "SUCCESS", "StatusReason": "fine", '
    b'"RollbackFailureReason": "none"}]}}'
)


# ---- requests -------------------------------------------------------------------------


def test_get_deployments_request_bytes():
    req = wire.build_request(
        "GetDeployments", {"DeviceFleetName": "fleet-a", "DeviceName": "cam-1"}
    )
    assert req == (
        "POST",
        "/GetDeployments",
        JSON,
        b'{"DeviceName": "cam-1", "DeviceFleetName": "fleet-a"}',
    )


def test_get_device_registration_request_bytes():
    req = wire.build_request("GetDeviceRegistration", {"DeviceName": "d", "DeviceFleetName": "f"})
    assert req == (
        "POST",
        "/GetDeviceRegistration",
        JSON,
        b'{"DeviceName": "d", "DeviceFleetName": "f"}',
    )


def test_full_send_heartbeat_request_bytes():
    method, path, headers, body = wire.build_request("SendHeartbeat", FULL_HEARTBEAT)
    assert (method, path, headers) == ("POST", "/SendHeartbeat", JSON)
    expected = FULL_HEARTBEAT_BODY
    if SINGLE_FLOAT:  # both fractional timestamps round to the float 1.7e9 there
        expected = expected.replace(b"1700000001.75", b"1700000000")
        expected = expected.replace(b"1699999999.5", b"1700000000")
    assert body == expected


def test_body_written_into_a_buffer():
    """``into``: the body is a view of the caller's buffer, the same bytes as without it
    (a board's heap holds no pieces, joined copy or encoded copy of it)."""
    plain = wire.build_request("SendHeartbeat", FULL_HEARTBEAT)
    for buf in (bytearray(4096), memoryview(bytearray(len(plain[3])))):
        framed = wire.build_request("SendHeartbeat", FULL_HEARTBEAT, buf)
        assert framed[:3] == plain[:3]
        body = framed[3]
        assert isinstance(body, memoryview) and bytes(body) == plain[3]
        assert bytes(buf[:len(body)]) == plain[3]
    # Longer than the buffer: a bytearray of its size; the buffer's bytes past it untouched.
    small = bytearray(b"#" * 64)
    body = wire.build_request("SendHeartbeat", FULL_HEARTBEAT, memoryview(small)[:32])[3]
    assert type(body) is bytearray and body == plain[3] and small[32:] == b"#" * 32
    # Validation is the same: nothing is framed for bad params.
    exc = _raises(ParamValidationError, wire.build_request, "SendHeartbeat",
                  _hb(AgentMetrics=[{"Value": "x"}]), bytearray(512))
    assert exc.field == "AgentMetrics[0].Value"


def test_minimal_heartbeat_and_empty_containers():
    body = wire.build_request("SendHeartbeat", _hb(AgentMetrics=[], DeploymentResult={}))[3]
    assert body == (
        b'{"AgentMetrics": [], "AgentVersion": "1.0", "DeviceName": "cam-1", '
        b'"DeviceFleetName": "fleet-a", "DeploymentResult": {}}'
    )


def test_tuples_are_lists():
    body = wire.build_request("SendHeartbeat", _hb(AgentMetrics=({"Value": 1.0},)))[3]
    assert body.startswith(b'{"AgentMetrics": [{"Value": 1.0}], ')


def test_string_escaping_matches_json_dumps():
    cases = [
        ("plain", '"plain"'),
        ("a\x7fb", '"a\\u007fb"'),
        ('q"b\\s/', '"q\\"b\\\\s/"'),
        ("\b\f\n\r\t\x00\x1f\x7f", '"\\b\\f\\n\\r\\t\\u0000\\u001f\\u007f"'),
        ("\u00e9\u20ac\uffff", '"\\u00e9\\u20ac\\uffff"'),
        ("\U0001f600", '"\\ud83d\\ude00"'),
        ("", '""'),
    ]
    for s, expected in cases:
        assert jsonenc.dump_str(s) == expected, s


def test_numbers():
    assert jsonenc.dump_number(3) == "3"
    assert jsonenc.dump_number(-(10**20)) == "-100000000000000000000"
    assert jsonenc.dump_number(0.1) == "0.1"
    assert jsonenc.dump_number(1e16) == "1e+16"
    # float(): frozen into firmware, the literal -0.0 loses its sign (mpy-tool writes
    # "(mp_float_t)-0", an integer zero).
    assert jsonenc.dump_number(float("-0.0")) == "-0.0"
    assert jsonenc.dump_number(100.0) == "100.0"


def _metric_value_body(value):
    body = wire.build_request("SendHeartbeat", _hb(AgentMetrics=[{"Value": value}]))[3]
    return body[len(b'{"AgentMetrics": [{"Value": ') : body.index(b"}")]


def test_double_values():
    assert _metric_value_body(7) == b"7"
    assert _metric_value_body(2.5) == b"2.5"
    assert _metric_value_body(1e-05) == b"1e-05"


def _timestamp_body(value):
    body = wire.build_request("SendHeartbeat", _hb(AgentMetrics=[{"Timestamp": value}]))[3]
    text = body[len(b'{"AgentMetrics": [{"Timestamp": ') : body.index(b"}")]
    return float(text) if b"." in text else int(text)


def test_timestamps_carry_microseconds_as_botocore_does():
    assert _timestamp_body(1700000000) == 1700000000
    assert _timestamp_body(1700000000.0) == 1700000000  # a whole second is written as an int
    assert _timestamp_body(1.5) == 1.5
    assert _timestamp_body(1.9999996) == 2  # microseconds round half-even, then carry
    assert _timestamp_body(1.9999994) == 1.999999
    assert _timestamp_body(1700000000.123456) == 1700000000.123456
    assert _timestamp_body(-0.5) == -0.5
    assert _timestamp_body(-1.0) == -1
    assert _timestamp_body(0) == 0
    assert _timestamp_body(wire.MAX_TIMESTAMP) == wire.MAX_TIMESTAMP
    assert _timestamp_body(wire.MIN_TIMESTAMP) == wire.MIN_TIMESTAMP


class _Delta:
    def __init__(self, days, seconds, microseconds):
        self.days = days
        self.seconds = seconds
        self.microseconds = microseconds


class _FakeDatetime:
    """Duck-typed datetime (MicroPython has none): what the core reads of one."""

    def __init__(self, y, mo, d, h, mi, s, us=0, offset=None):
        self.year, self.month, self.day = y, mo, d
        self.hour, self.minute, self.second, self.microsecond = h, mi, s, us
        self._offset = offset

    def utcoffset(self):
        return self._offset


def test_datetime_timestamps():
    assert _timestamp_body(_FakeDatetime(2023, 11, 14, 22, 13, 20)) == 1700000000  # naive = UTC
    assert _timestamp_body(_FakeDatetime(1970, 1, 1, 0, 0, 0)) == 0
    assert _timestamp_body(_FakeDatetime(1969, 12, 31, 23, 59, 59, 500000)) == -0.5
    assert _timestamp_body(_FakeDatetime(2000, 3, 1, 0, 0, 0)) == 951868800
    # +02:00: 02:00 local is 00:00 UTC
    plus2 = _Delta(0, 7200, 0)
    assert _timestamp_body(_FakeDatetime(1970, 1, 1, 2, 0, 0, 0, plus2)) == 0
    # -00:00:00.5 (timedelta(days=-1, seconds=86399, microseconds=500000))
    minus_half = _Delta(-1, 86399, 500000)
    assert _timestamp_body(_FakeDatetime(1970, 1, 1, 0, 0, 0, 0, minus_half)) == 0.5
    assert _timestamp_body(_FakeDatetime(9999, 12, 31, 23, 59, 59)) == wire.MAX_TIMESTAMP
    assert _timestamp_body(_FakeDatetime(1, 1, 1, 0, 0, 0)) == wire.MIN_TIMESTAMP


class _FakeDecimal:
    """Duck-typed decimal.Decimal (MicroPython has none): what the core reads of one."""

    def __init__(self, text):
        self.text = text

    def as_tuple(self):
        raise AssertionError("not needed")

    def is_finite(self):
        return self.text not in ("NaN", "Infinity")

    def __float__(self):
        return float(self.text)


def test_decimal_doubles_and_timestamps():
    assert _metric_value_body(_FakeDecimal("1.5")) == b"1.5"
    assert _metric_value_body(_FakeDecimal("10")) == b"10.0"  # a float, as botocore sends it
    assert _timestamp_body(_FakeDecimal("1700000000.5")) == 1700000000.5
    assert _timestamp_body(_FakeDecimal("1700000000")) == 1700000000
    for bad in ("NaN", "Infinity", "1e400"):
        exc = _invalid(_hb(AgentMetrics=[{"Value": _FakeDecimal(bad)}]))
        assert exc.field == "AgentMetrics[0].Value" and exc.rule == "finite", bad
        exc = _invalid(_hb(AgentMetrics=[{"Timestamp": _FakeDecimal(bad)}]))
        assert exc.field == "AgentMetrics[0].Timestamp" and exc.rule == "finite", bad


def test_timestamp_strings_as_botocore_reads_them():
    assert _timestamp_body("1700000000") == 1700000000
    assert _timestamp_body("1700000000.25") == 1700000000.25
    assert _timestamp_body("-5") == -5
    assert _timestamp_body("2023-11-14T22:13:20Z") == 1700000000
    assert _timestamp_body("2023-11-14t22:13:20z") == 1700000000
    assert _timestamp_body("2023-11-14 22:13:20") == 1700000000  # naive: UTC
    assert _timestamp_body("2023-11-14T22:13") == 1699999980
    assert _timestamp_body("2023-11-14") == 1699920000
    assert _timestamp_body("2023-11-15T00:13:20.5+02:00") == 1700000000.5
    assert _timestamp_body("2023-11-14T20:13:20,1234569-0200") == 1700000000.123456
    assert _timestamp_body("2023-11-14T23:13:20+01") == 1700000000
    assert _timestamp_body("0001-01-01T00:00:00Z") == wire.MIN_TIMESTAMP
    assert _timestamp_body("9999-12-31T23:59:59Z") == wire.MAX_TIMESTAMP
    for bad in ("yesterday", "2023-13-01", "2023-02-29", "2023-11-14T24:00:00", "2023-11-14T",
                "2023-11-14T22:13:20+2400", "2023-11-14T22:13:20.Z", "2023-11-14T22Z", "",
                "nan", "inf", "Tue, 14 Nov 2023 22:13:20 GMT"):
        exc = _invalid(_hb(AgentMetrics=[{"Timestamp": bad}]))
        assert exc.field == "AgentMetrics[0].Timestamp" and exc.rule == "type", (bad, exc.rule)
    exc = _invalid(_hb(AgentMetrics=[{"Timestamp": "9999-12-31T23:59:59-01:00"}]))
    assert exc.rule == "range"


def test_member_order_ignores_dict_order():
    a = wire.build_request("GetDeployments", {"DeviceName": "a", "DeviceFleetName": "b"})
    b = wire.build_request("GetDeployments", {"DeviceFleetName": "b", "DeviceName": "a"})
    assert a == b


# ---- validation: one test per rule, with the field path ---------------------------------


def test_required():
    err = _invalid({"DeviceName": "cam-1", "DeviceFleetName": "f"})
    assert (err.operation, err.field, err.rule) == ("SendHeartbeat", "AgentVersion", "required")
    err = _invalid({"DeviceName": "cam-1"}, "GetDeployments")
    assert (err.field, err.rule) == ("DeviceFleetName", "required")
    assert "GetDeployments" in str(err) and "DeviceFleetName" in str(err)


def test_unknown():
    err = _invalid(_hb(Zeta=1, Alpha=2))
    assert (err.field, err.rule) == ("Alpha", "unknown")  # the first in sorted order
    err = _invalid(_hb(DeploymentResult={"DeploymentModels": [{}, {"Bogus": 1}]}))
    assert (err.field, err.rule) == ("DeploymentResult.DeploymentModels[1].Bogus", "unknown")
    assert "ModelHandle" in str(err)  # lists what is allowed
    err = _invalid(_hb(**{"devicename": "x"}))
    assert err.rule == "unknown"  # names are case-sensitive


def test_type():
    cases = [
        (None, ""),
        (["x"], ""),
        (_hb(DeviceName=5), "DeviceName"),
        (_hb(DeviceName=None), "DeviceName"),
        (_hb(DeviceName=b"cam-1"), "DeviceName"),
        (_hb(AgentMetrics={"Value": 1}), "AgentMetrics"),
        (_hb(AgentMetrics=["x"]), "AgentMetrics[0]"),
        (_hb(AgentMetrics=[{"Value": "1"}]), "AgentMetrics[0].Value"),
        (_hb(AgentMetrics=[{"Value": True}]), "AgentMetrics[0].Value"),
        (_hb(AgentMetrics=[{"Timestamp": False}]), "AgentMetrics[0].Timestamp"),
        (_hb(AgentMetrics=[{"Timestamp": "yesterday"}]), "AgentMetrics[0].Timestamp"),
        (_hb(AgentMetrics=[{"Timestamp": None}]), "AgentMetrics[0].Timestamp"),
        (_hb(DeploymentResult=[]), "DeploymentResult"),
    ]
    for params, field in cases:
        err = _invalid(params)
        assert (err.field, err.rule) == (field, "type"), (params, err.field, err.rule)


def test_min_max_count_characters():
    err = _invalid(_hb(DeviceName=""))
    assert (err.field, err.rule) == ("DeviceName", "min")
    err = _invalid(_hb(DeviceName="a" * 64))
    assert (err.field, err.rule) == ("DeviceName", "max")
    wire.build_request("SendHeartbeat", _hb(DeviceName="a" * 63))
    err = _invalid(_hb(Models=[{"ModelName": "abc"}]))
    assert (err.field, err.rule) == ("Models[0].ModelName", "min")
    # 64 two-byte characters are 64 characters, not 128 bytes: the length is fine and the
    # pattern check is what rejects "é" in an agent version... which it does not: search.
    wire.build_request("SendHeartbeat", _hb(AgentVersion="\u00e9" * 63 + "1"))
    err = _invalid(_hb(AgentVersion="\u00e9" * 64 + "1"))
    assert (err.field, err.rule) == ("AgentVersion", "max")
    err = _invalid(_hb(Models=[{"ModelMetrics": [{"Dimension": "a" * 1001}]}]))
    assert (err.field, err.rule) == ("Models[0].ModelMetrics[0].Dimension", "max")


def test_pattern():
    err = _invalid(_hb(DeviceFleetName="fleet a"))
    assert (err.field, err.rule) == ("DeviceFleetName", "pattern")
    assert "^[a-zA-Z0-9](-*_*[a-zA-Z0-9])*$" in str(err)
    err = _invalid(_hb(AgentVersion="///"))
    assert (err.field, err.rule) == ("AgentVersion", "pattern")
    err = _invalid(_hb(DeviceName="cam-1\n"))
    assert (err.field, err.rule) == ("DeviceName", "pattern")
    err = _invalid(_hb(AgentMetrics=[{"MetricName": "cpu_load"}]))
    assert (err.field, err.rule) == ("AgentMetrics[0].MetricName", "pattern")


def test_enum_with_nested_path():
    models = [{"Status": "SUCCESS"}, {"Status": "FAIL"}, {"Status": "success"}]
    err = _invalid(_hb(DeploymentResult={"DeploymentModels": models}))
    assert err.field == "DeploymentResult.DeploymentModels[2].Status"
    assert err.rule == "enum"
    assert "SUCCESS, FAIL" in str(err)


def test_finite_and_range():
    for bad in (float("nan"), float("inf"), float("-inf"), _huge(400)):
        err = _invalid(_hb(AgentMetrics=[{"Value": bad}]))
        assert (err.field, err.rule) == ("AgentMetrics[0].Value", "finite"), bad
    err = _invalid(_hb(Models=[{"LatestInference": float("nan")}]))
    assert (err.field, err.rule) == ("Models[0].LatestInference", "finite")
    bads = [wire.MAX_TIMESTAMP + 1, wire.MIN_TIMESTAMP - 1, 1e30]  # 1e30: finite in 32 bits
    if not SINGLE_FLOAT:  # with 32-bit floats this IS MAX_TIMESTAMP (in range)
        bads.append(wire.MAX_TIMESTAMP + 0.9999996)
    for bad in bads:
        err = _invalid(_hb(Models=[{"LatestInference": bad}]))
        assert (err.field, err.rule) == ("Models[0].LatestInference", "range"), bad


def test_unknown_operation():
    err = _raises(ParamValidationError, wire.build_request, "DeleteEverything", {})
    assert err.rule == "unknown"


def test_validate_only():
    assert wire.validate("GetDeployments", {"DeviceName": "a", "DeviceFleetName": "b"}) is None
    _raises(ParamValidationError, wire.validate, "GetDeployments", {"DeviceName": "a"})


# ---- responses --------------------------------------------------------------------------

DEPLOYMENTS_BODY = (
    b'{"Deployments": [{"DeploymentName": "dep-1", "Type": "Model", '
    b'"FailureHandlingPolicy": "ROLLBACK_ON_FAILURE", "Definitions": [{"ModelHandle": "h1", '
    b'"S3Url": "s3://bucket/model.tar.gz", "Checksum": {"Type": "SHA1", "Sum": "abc123"}, '
    b'"State": "DEPLOY", "Extra": [1, {"x": 2}]}], "NewField": "x"}], "Unmodelled": {"a": 1}}'
)


def test_parse_get_deployments():
    headers = {"X-Amzn-RequestId": "rid-1", "Content-Type": "application/json"}
    got = wire.parse_response("GetDeployments", 200, headers, DEPLOYMENTS_BODY)
    assert got == {
        "Deployments": [
            {
                "DeploymentName": "dep-1",
                "Type": "Model",
                "FailureHandlingPolicy": "ROLLBACK_ON_FAILURE",
                "Definitions": [
                    {
                        "ModelHandle": "h1",
                        "S3Url": "s3://bucket/model.tar.gz",
                        "Checksum": {"Type": "SHA1", "Sum": "abc123"},
                        "State": "DEPLOY",
                    }
                ],
            }
        ],
        "ResponseMetadata": {
            "RequestId": "rid-1",
            "HTTPStatusCode": 200,
            "HTTPHeaders": {"x-amzn-requestid": "rid-1", "content-type": "application/json"},
            "RetryAttempts": 0,
        },
    }


def test_parse_get_device_registration_and_retry_attempts():
    body = b'{"DeviceRegistration": "REGISTERED", "CacheTTL": "3600"}'
    got = wire.parse_response("GetDeviceRegistration", 200, {}, body, retry_attempts=2)
    assert got == {
        "DeviceRegistration": "REGISTERED",
        "CacheTTL": "3600",
        "ResponseMetadata": {"HTTPStatusCode": 200, "HTTPHeaders": {}, "RetryAttempts": 2},
    }


def test_send_heartbeat_has_only_metadata():
    got = wire.parse_response("SendHeartbeat", 200, {"x-amzn-requestid": "r"}, b"{}")
    assert got == {
        "ResponseMetadata": {
            "RequestId": "r",
            "HTTPStatusCode": 200,
            "HTTPHeaders": {"x-amzn-requestid": "r"},
            "RetryAttempts": 0,
        }
    }
    got = wire.parse_response("SendHeartbeat", 200, None, b"")
    assert list(got) == ["ResponseMetadata"]


def test_empty_and_whitespace_bodies():
    for body in (b"", b" \r\n", None, bytearray(), bytearray(b" \t\x0b\x0c"), memoryview(b"\n")):
        got = wire.parse_response("GetDeployments", 200, {}, body)
        assert list(got) == ["ResponseMetadata"], body


def test_bytearray_and_memoryview_bodies_parse_as_bytes():
    """A port may hand over the bytearray it read the body into (no copy as bytes)."""
    body = DEPLOYMENTS_BODY
    want = wire.parse_response("GetDeployments", 200, {}, body)
    for other in (bytearray(body), memoryview(body)):
        assert wire.parse_response("GetDeployments", 200, {}, other) == want
    exc = _error(500, {}, bytearray(b'{"__type": "InternalServiceException", "message": "m"}'))
    assert exc.code == "InternalServiceException" and exc.message == "m"
    exc = _raises(ResponseParseError, wire.parse_response, "GetDeployments", 200, {},
                  bytearray(b'{"Deployments": "\xff"}'))
    assert "UTF-8" in str(exc)


def test_s3_style_request_id_and_host_id():
    headers = {"x-amz-request-id": "r2", "x-amz-id-2": "h2"}
    meta = wire.parse_response("GetDeployments", 200, headers, b"{}")["ResponseMetadata"]
    assert meta["RequestId"] == "r2" and meta["HostId"] == "h2"


def test_nulls_as_botocore():
    body = b'{"Deployments": [null, {"DeploymentName": null, "Definitions": [null]}]}'
    got = wire.parse_response("GetDeployments", 200, {}, body)
    assert got["Deployments"] == [None, {"Definitions": [None]}]
    got = wire.parse_response("GetDeployments", 200, {}, b'{"Deployments": null}')
    assert "Deployments" not in got


def test_escaped_surrogate_pairs_are_joined():
    body = b'{"DeviceRegistration": "a\\ud83d\\ude00b\\u00e9"}'
    got = wire.parse_response("GetDeviceRegistration", 200, {}, body)
    assert got["DeviceRegistration"] == "a\U0001f600b\u00e9"


def _bad_response(body, op="GetDeployments", status=200, headers=None, **kw):
    return _raises(ResponseParseError, wire.parse_response, op, status, headers, body, **kw)


def test_wrong_types_name_the_path():
    cases = [
        (b'{"Deployments": {}}', "Deployments"),
        (b'{"Deployments": [1]}', "Deployments[0]"),
        (
            b'{"Deployments": [{"Definitions": [{"Checksum": {"Sum": 5}}]}]}',
            "Deployments[0].Definitions[0].Checksum.Sum",
        ),
        (b'{"Deployments": [{"Type": true}]}', "Deployments[0].Type"),
        (b'{"Deployments": [{"Definitions": "x"}]}', "Deployments[0].Definitions"),
    ]
    for body, field in cases:
        err = _bad_response(body)
        assert err.field == field, (body, err.field)
        assert err.status == 200 and err.operation == "GetDeployments"


def test_malformed_bodies():
    for body in (
        b"[]",
        b'"x"',
        b"null",
        b"1",
        b"<html>captive portal</html>",
        b'{"Deployments": [',
        b"\xff\xfe{}",
    ):
        err = _bad_response(body)
        assert err.field == "", body
    _bad_response(b"<html/>", op="SendHeartbeat")  # a 2xx that is not JSON is not success


def test_body_limits():
    err = _bad_response(
        b'{"CacheTTL": "' + b"1" * 100 + b'"}', op="GetDeviceRegistration", max_body=64
    )
    assert "limit" in str(err)
    deep = b'{"x": ' + b"[" * 40 + b"]" * 40 + b"}"
    err = _bad_response(deep)
    assert "deeper" in str(err)
    # brackets inside strings do not count, nor do escaped quotes end a string
    ok = b'{"x": "' + b"[" * 100 + b'\\"' + b"{" * 100 + b'", "Deployments": []}'
    assert wire.parse_response("GetDeployments", 200, {}, ok)["Deployments"] == []
    err = _bad_response(b'{"x": [[[[]]]]}', max_depth=4)
    assert "deeper" in str(err)
    wire.parse_response("GetDeployments", 200, {}, b'{"x": [[[]]]}', max_depth=4)


def test_oversized_error_body_keeps_its_status():
    err = _bad_response(b"x" * 65, status=503, max_body=64)
    assert err.status == 503 and wire.retry_kind(err) == "transient"
    err = _raises(ResponseParseError, wire.parse_error, "SendHeartbeat", 400, {}, b"x" * 65, 64)
    assert err.status == 400


class _HeaderMapping:
    """Not a dict, but has items(): like a transport's case-insensitive header object."""

    def items(self):
        return [("X-Amzn-RequestId", "r9")]


def test_header_mappings_are_accepted():
    got = wire.parse_response("SendHeartbeat", 200, _HeaderMapping(), b"")
    assert got["ResponseMetadata"]["RequestId"] == "r9"


def test_depth_scan():
    assert not jsonenc._too_deep(b"[[[]]]", 3)
    assert jsonenc._too_deep(b"[[[[]]]]", 3)
    assert not jsonenc._too_deep(b'["[[[[", "\\\\", [[]]]', 3)
    assert jsonenc._too_deep(b'["\\\\", [[[]]]]', 3)
    assert not jsonenc._too_deep(b'"unterminated [[[[[', 3)


def test_bad_transport_values():
    _bad_response(b"{}", status="200")
    _bad_response(b"{}", status=True)
    _bad_response(b"{}", status=99)
    _bad_response("{}")
    _bad_response(b"{}", headers=[("a", "b")])
    _bad_response(b"{}", headers={"a": 1})


# ---- errors ---------------------------------------------------------------------------


def _error(status, headers, body, op="GetDeployments"):
    return _raises(ClientError, wire.parse_response, op, status, headers, body)


def test_error_from_header_and_body():
    err = _error(
        500,
        {
            "X-Amzn-ErrorType": "InternalServiceException:http://internal.amazon.com/coral/",
            "X-Amzn-RequestId": "r1",
        },
        b'{"message": "try again"}',
    )
    assert (err.code, err.message, err.status, err.request_id) == (
        "InternalServiceException",
        "try again",
        500,
        "r1",
    )
    assert err.operation == "GetDeployments"
    assert err.response["Error"] == {"Code": "InternalServiceException", "Message": "try again"}
    assert str(err) == (
        "An error occurred (InternalServiceException) when calling the GetDeployments operation: "
        "try again"
    )


def test_error_code_variants():
    cases = [
        (
            400,
            {},
            b'{"__type": "com.amazon.coral#ValidationException", "Message": "bad"}',
            "ValidationException",
            "bad",
        ),
        (400, {}, b'{"code": "Foo", "__type": "Bar"}', "Foo", ""),
        (400, {}, b'{"Code": "Foo:x", "message": "m", "Message": "M"}', "Foo", "m"),
        (400, {"x-amzn-errortype": "H#Hdr"}, b'{"code": "Foo"}', "Hdr", ""),
        (403, {}, b'{"errorMessage": "denied"}', "403", "denied"),
        (403, {}, b"Forbidden", "403", "Forbidden"),
        (404, {}, b"", "404", ""),
        (400, {}, b"[1]", "400", "[1]"),
        (400, {}, b'{"message": 5, "__type": 7}', "400", "5"),
        (429, {"X-Amzn-ErrorType": "ThrottlingException"}, b"{}", "ThrottlingException", ""),
        (503, {}, b"", "503", "Service Unavailable"),
        (
            502,
            {"x-amzn-errortype": "Ignored"},
            b"  <html><body>bad gateway</body></html>",
            "502",
            "Bad Gateway",
        ),
        (
            500,
            {},
            b'{"__type": "aws#InternalServiceException", "Message": "boom"}',
            "InternalServiceException",
            "boom",
        ),
        (500, {}, b"\xff", "500", ""),
    ]
    for status, headers, body, code, message in cases:
        err = _error(status, headers, body)
        assert (err.code, err.message, err.status) == (code, message, status), (
            body,
            err.code,
            err.message,
        )


def test_error_parse_is_not_limited_by_bad_json():
    deep = b"[" * 100 + b"]" * 100
    err = _error(400, {"x-amzn-errortype": "X"}, deep)
    assert err.code == "X" and err.message == deep.decode()


def test_retry_classification():
    def ce(code, status):
        return ClientError("GetDeployments", code, "", status)

    assert wire.retry_kind(ce("ThrottlingException", 400)) == "throttling"
    assert wire.retry_kind(ce("TooManyRequestsException", 400)) == "throttling"
    assert wire.retry_kind(ce("429", 429)) == "throttling"
    assert wire.retry_kind(ce("InternalServiceException", 500)) == "transient"
    # A 429 carrying an error the model declares (not retryable there) is not throttling;
    # a 429 with any other code is (botocore's standard mode).
    assert wire.retry_kind(ce("InternalServiceException", 429)) is None
    assert wire.retry_kind(ce("SomethingElse", 429)) == "throttling"
    assert wire.retry_kind(ResponseParseError("GetDeployments", "", "x", 429)) == "throttling"
    assert wire.retry_kind(ce("503", 503)) == "transient"
    assert wire.retry_kind(ce("RequestTimeout", 400)) == "transient"
    assert wire.retry_kind(TransportError("reset")) == "transient"
    assert wire.retry_kind(ResponseParseError("GetDeployments", "", "x", 502)) == "transient"
    assert wire.retry_kind(ResponseParseError("GetDeployments", "", "x", 200)) is None
    assert wire.retry_kind(ce("501", 501)) is None
    assert wire.retry_kind(ce("InvalidSignatureException", 403)) is None
    assert wire.retry_kind(ParamValidationError("GetDeployments", "x", "min", "d")) is None
    assert wire.retry_kind(ValueError()) is None
    assert wire.is_retryable(ce("SlowDown", 503)) and not wire.is_retryable(ce("x", 400))


def test_client_error_response_has_boto3s_shape():
    err = _error(500, {"X-Amzn-RequestId": "r1", "X-Amzn-ErrorType": "InternalServiceException"},
                 b'{"Message": "boom"}')
    assert err.response == {
        "Error": {"Code": "InternalServiceException", "Message": "boom"},
        "ResponseMetadata": {
            "RequestId": "r1",
            "HTTPStatusCode": 500,
            "HTTPHeaders": {"x-amzn-requestid": "r1",
                            "x-amzn-errortype": "InternalServiceException"},
            "RetryAttempts": 0,
        },
        "Message": "boom",  # the modelled member, at the top as boto3 puts it
    }
    # Not modelled: no top-level members; a bare 5xx: no RequestId (as botocore).
    err = _error(400, {}, b'{"__type": "ValidationException", "Message": "m"}')
    assert sorted(err.response) == ["Error", "ResponseMetadata"]
    err = _error(503, {"x-amzn-requestid": "r2"}, b"")
    assert err.request_id == "r2" and "RequestId" not in err.response["ResponseMetadata"]
    assert err.response["Error"] == {"Code": "503", "Message": "Service Unavailable"}


def test_parse_error_directly():
    err = wire.parse_error(
        "SendHeartbeat", 400, {"X-Amzn-ErrorType": "ValidationException"}, b'{"message": "m"}'
    )
    assert isinstance(err, ClientError) and err.code == "ValidationException" and err.message == "m"


def test_huge_ints_give_typed_errors():
    # repr() of a >4300-digit int raises ValueError on CPython; messages must not.
    big = _huge(5000)
    metric = {"MetricName": "CpuLoad", "Value": 1.0, "Timestamp": 1}
    exc = _invalid(_hb(AgentMetrics=[dict(metric, Timestamp=big)]))
    assert exc.field == "AgentMetrics[0].Timestamp" and exc.rule == "range"
    assert len(str(exc)) < 300
    exc = _invalid(_hb(AgentMetrics=[dict(metric, Value=big)]))
    assert exc.field == "AgentMetrics[0].Value" and exc.rule == "finite"
    params = _hb()
    params[big] = 1
    exc = _invalid(params)
    assert exc.rule == "unknown" and len(str(exc)) < 300
    exc = _raises(ResponseParseError, wire.parse_response, "GetDeployments", big, {}, b"{}")
    assert exc.field == "status" and len(str(exc)) < 300
