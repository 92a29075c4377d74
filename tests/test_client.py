# Runs under MicroPython too
"""Client: framing, signing and parsing wired together over a recording transport."""

import json

import edgecore
from edgecore.errors import ClientError, ParamValidationError, TransportError

SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
TOKEN = "FQoGZXIvYXdzEXAMPLETOKEN"
NOW = 1700000000  # 2023-11-14T22:13:20Z


class Recorder:
    def __init__(self, status=200, headers=None, body=b"{}"):
        self.calls = []
        self.reply = (status, headers or {"x-amzn-requestid": "req-1"}, body)

    def __call__(self, method, url, headers, body):
        self.calls.append((method, url, headers, body))
        return self.reply


def make_client(transport, creds=None, **kw):
    creds = creds or edgecore.Credentials("AKIDEXAMPLE", SECRET, TOKEN)
    return edgecore.Client(
        region="us-west-2", credentials=creds, transport=transport, clock=lambda: NOW, **kw
    )


def header(headers, name):
    for k in headers:
        if k.lower() == name.lower():
            return headers[k]
    return None


def test_get_deployments_request_is_framed_and_signed():
    body = {"Deployments": [{"DeploymentName": "d1", "Type": "Model"}]}
    rec = Recorder(body=json.dumps(body).encode())
    out = make_client(rec).get_deployments(DeviceName="cam-1", DeviceFleetName="fleet-a")
    assert out["Deployments"] == body["Deployments"]
    assert out["ResponseMetadata"]["HTTPStatusCode"] == 200
    method, url, headers, sent = rec.calls[0]
    assert method == "POST"
    assert url == "https://edge.sagemaker.us-west-2.amazonaws.com/GetDeployments"
    assert sent == b'{"DeviceName": "cam-1", "DeviceFleetName": "fleet-a"}'
    assert header(headers, "X-Amz-Date") == "20231114T221320Z"
    assert header(headers, "X-Amz-Security-Token") == TOKEN
    auth = header(headers, "Authorization")
    assert auth.startswith(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-west-2/sagemaker/aws4_request, "
    )
    assert "SignedHeaders=" in auth and "Signature=" in auth


def test_body_buffer_holds_the_body_the_transport_gets():
    """A board's client writes bodies into one buffer: the transport gets a view of it,
    signed over the same bytes as a plain client's body."""
    plain, buffered = Recorder(), Recorder()
    buf = bytearray(1024)
    params = {"DeviceName": "cam-1", "DeviceFleetName": "fleet-a"}
    make_client(plain).get_deployments(**params)
    make_client(buffered, body_buffer=buf).get_deployments(**params)
    body = buffered.calls[0][3]
    assert isinstance(body, memoryview) and bytes(body) == plain.calls[0][3]
    assert bytes(buf[:len(body)]) == plain.calls[0][3]
    assert buffered.calls[0][2] == plain.calls[0][2]  # same headers, same signature


def test_endpoint_url_override_keeps_path_and_port():
    rec = Recorder()
    client = make_client(rec, endpoint_url="http://127.0.0.1:8123/")
    client.get_device_registration(DeviceName="cam-1", DeviceFleetName="fleet-a")
    assert rec.calls[0][1] == "http://127.0.0.1:8123/GetDeviceRegistration"
    assert header(rec.calls[0][2], "Host") == "127.0.0.1:8123"


def test_send_heartbeat_result_is_only_metadata():
    rec = Recorder(body=b"")
    out = make_client(rec).send_heartbeat(
        AgentVersion="1.0", DeviceName="cam-1", DeviceFleetName="fleet-a"
    )
    assert list(out) == ["ResponseMetadata"]
    assert json.loads(rec.calls[0][3]) == {
        "AgentVersion": "1.0",
        "DeviceName": "cam-1",
        "DeviceFleetName": "fleet-a",
    }


def test_bad_params_never_reach_the_transport():
    rec = Recorder()
    client = make_client(rec)
    for params in (
        {"DeviceName": "cam-1"},
        {"DeviceName": "cam 1", "DeviceFleetName": "fleet-a"},
        {"DeviceName": "cam-1", "DeviceFleetName": "fleet-a", "Extra": 1},
    ):
        try:
            client.get_deployments(**params)
        except ParamValidationError as exc:
            assert exc.operation == "GetDeployments"
        else:
            raise AssertionError("accepted %r" % (params,))
    assert rec.calls == []


def test_service_error_becomes_client_error():
    rec = Recorder(
        status=500,
        headers={"x-amzn-errortype": "InternalServiceException:http://internal/"},
        body=b'{"message": "try again"}',
    )
    try:
        make_client(rec).get_deployments(DeviceName="cam-1", DeviceFleetName="fleet-a")
    except ClientError as exc:
        assert exc.code == "InternalServiceException"
        assert exc.message == "try again"
        assert exc.status == 500
    else:
        raise AssertionError("no ClientError")


def test_socket_error_becomes_transport_error():
    def broken(method, url, headers, body):
        raise OSError(104, "connection reset")

    try:
        make_client(broken).get_deployments(DeviceName="cam-1", DeviceFleetName="fleet-a")
    except TransportError as exc:
        assert "GetDeployments" in str(exc)
    else:
        raise AssertionError("no TransportError")


def test_credentials_provider_is_asked_at_each_call():
    class Provider:
        def __init__(self):
            self.asked = []
            self.keys = ["AKIDONE", "AKIDTWO"]

        def get(self, now):
            self.asked.append(now)
            return edgecore.Credentials(self.keys[len(self.asked) - 1], SECRET)

    rec = Recorder()
    provider = Provider()
    client = make_client(rec, creds=provider)
    client.get_deployments(DeviceName="cam-1", DeviceFleetName="fleet-a")
    client.get_deployments(DeviceName="cam-1", DeviceFleetName="fleet-a")
    assert provider.asked == [NOW, NOW]
    assert "Credential=AKIDTWO/" in header(rec.calls[1][2], "Authorization")
    assert header(rec.calls[1][2], "X-Amz-Security-Token") is None


def test_secrets_never_in_repr_or_errors():
    rec = Recorder(status=403, headers={}, body=b'{"__type": "InvalidSignatureException"}')
    client = make_client(rec)
    texts = [repr(client), str(client)]
    try:
        client.get_deployments(DeviceName="cam-1", DeviceFleetName="fleet-a")
    except ClientError as exc:
        texts.append(str(exc))
        texts.append(repr(exc.response))
    for text in texts:
        assert SECRET not in text and TOKEN not in text, text


def test_bad_construction_is_rejected():
    creds = edgecore.Credentials("AKID", SECRET)
    bad = (
        {"region": "us-west-2/evil.example", "credentials": creds},
        {"region": "", "credentials": creds},
        {"region": "us-west-2", "credentials": "AKID:SECRET"},
        {"region": "us-west-2", "credentials": creds, "endpoint_url": "ftp://x"},
        {"region": "us-west-2", "credentials": creds, "endpoint_url": "https://h/?q=1"},
    )
    for kwargs in bad:
        try:
            edgecore.Client(transport=Recorder(), clock=lambda: NOW, **kwargs)
        except (ValueError, TypeError) as exc:
            assert SECRET not in str(exc)
        else:
            raise AssertionError("accepted %r" % (kwargs,))


def _no_secret_anywhere(exc, secret):
    # Not in the message, the repr, nor any exception it chains (cause or context).
    seen = 0
    while exc is not None and seen < 10:
        assert secret not in str(exc) and secret not in repr(exc), repr(exc)
        for arg in exc.args:
            assert secret not in str(arg)
        # getattr: MicroPython has no exception chaining attributes.
        exc = getattr(exc, "__cause__", None) or getattr(exc, "__context__", None)
        seen += 1


def test_endpoint_url_with_userinfo_is_refused_without_echo():
    for url in ("https://admin:hunter2pw@edge.example.com", "http://admin:hunter2pw@127.0.0.1:80/x",
                "admin:hunter2pw@edge.example.com"):
        try:
            edgecore.Client("us-west-2", edgecore.Credentials("AKID", SECRET),
                            endpoint_url=url, transport=Recorder(), clock=lambda: NOW)
        except ValueError as exc:
            assert "userinfo" in str(exc)
            _no_secret_anywhere(exc, "hunter2pw")
        else:
            raise AssertionError("accepted %r" % url)


def test_lone_surrogate_secret_is_a_valueerror_without_the_secret():
    secret = "wJalrXUtnFEMI/K7MDENG" + "\udc80" + "bPxRfiCYEXAMPLEKEY"
    try:
        secret.encode()
        return  # MicroPython: its str encodes any code point, there is nothing to refuse
    except UnicodeError:
        pass
    client = make_client(Recorder(), creds=edgecore.Credentials("AKIDEXAMPLE", secret))
    try:
        client.get_deployments(DeviceName="cam-1", DeviceFleetName="fleet-a")
    except ValueError as exc:
        assert "secret_key" in str(exc)
        _no_secret_anywhere(exc, "K7MDENG")
        assert getattr(exc, "__cause__", None) is None
        assert getattr(exc, "__context__", None) is None
    else:
        raise AssertionError("signed with an unencodable secret")


def test_transport_result_that_is_not_a_3_tuple_is_a_transport_error():
    for reply in (None, b"{}", (200, {}), (200, {}, b"{}", "extra"), "abc", 200):
        def transport(method, url, headers, body, reply=reply):
            return reply

        try:
            make_client(transport).get_deployments(DeviceName="cam-1", DeviceFleetName="fleet-a")
        except TransportError as exc:
            assert "GetDeployments" in str(exc), str(exc)
            assert "expected a tuple" in str(exc)
        else:
            raise AssertionError("accepted %r" % (reply,))


def test_max_body_bounds_the_response():
    import sys

    from edgecore import client as client_module
    from edgecore.errors import ResponseParseError

    expected = 1024 * 1024
    if sys.implementation.name == "micropython":  # 1/20 of the heap (3,200 bytes of 64 KiB)
        import gc

        expected = min(64 * 1024, (gc.mem_free() + gc.mem_alloc()) // 20)
    assert expected == client_module.DEFAULT_MAX_BODY
    assert make_client(Recorder()).max_body == expected
    body = b'{"Deployments": [], "pad": "' + b"x" * 2000 + b'"}'
    assert make_client(Recorder(body=body), max_body=4096).get_deployments(
        DeviceName="cam-1", DeviceFleetName="fleet-a")["Deployments"] == []
    try:
        make_client(Recorder(body=body), max_body=1024).get_deployments(
            DeviceName="cam-1", DeviceFleetName="fleet-a")
    except ResponseParseError as exc:
        assert "1024" in str(exc)
    else:
        raise AssertionError("max_body not applied")
    for bad in (0, -1, "1", True, 1.5):
        try:
            make_client(Recorder(), max_body=bad)
        except ValueError:
            pass
        else:
            raise AssertionError("accepted max_body=%r" % (bad,))


def test_hosts_of_every_partition_and_flag():
    # Explicit flags win over anything the platform would read (none here on MicroPython).
    cases = (
        ({"region": "cn-north-1"}, "https://edge.sagemaker.cn-north-1.amazonaws.com.cn"),
        ({"region": "us-iso-east-1"}, "https://edge.sagemaker.us-iso-east-1.c2s.ic.gov"),
        ({"region": "us-west-2", "use_fips_endpoint": True},
         "https://edge.sagemaker-fips.us-west-2.amazonaws.com"),
        ({"region": "us-west-2", "use_dualstack_endpoint": True},
         "https://edge.sagemaker.us-west-2.api.aws"),
        ({"region": "us-gov-west-1-fips"}, "https://edge.sagemaker-fips.us-gov-west-1.amazonaws.com"),
    )
    for kw, url in cases:
        kw = dict(kw)
        kw.setdefault("use_fips_endpoint", False)
        kw.setdefault("use_dualstack_endpoint", False)
        rec = Recorder()
        client = edgecore.Client(credentials=edgecore.Credentials("AKIDEXAMPLE", SECRET),
                                 transport=rec, clock=lambda: NOW, **kw)
        assert client.endpoint_url == url, kw
        client.send_heartbeat(AgentVersion="1", DeviceName="d", DeviceFleetName="f")
        auth = header(rec.calls[0][2], "Authorization")
        region = kw["region"].replace("-fips", "")
        assert "/%s/sagemaker/aws4_request" % region in auth, auth


def test_the_transport_gets_the_url_that_was_signed():
    # A raw space in an endpoint's path is encoded once; that is the URL sent and signed.
    rec = Recorder()
    client = make_client(rec, endpoint_url="http://127.0.0.1:8123/edge api")
    client.get_device_registration(DeviceName="cam-1", DeviceFleetName="fleet-a")
    assert rec.calls[0][1] == "http://127.0.0.1:8123/edge%20api/GetDeviceRegistration"


def test_no_region_or_credentials_is_a_clear_error():
    for kw, words in (({"credentials": edgecore.Credentials("A", "S"), "region": "12"},
                       "region must be"),
                      ({"region": "us-west-2", "credentials": 5}, "credentials must be")):
        try:
            edgecore.Client(transport=Recorder(), clock=lambda: NOW, endpoint_url="http://h",
                            use_fips_endpoint=False, use_dualstack_endpoint=False, **kw)
        except (ValueError, TypeError) as exc:
            assert words in str(exc), str(exc)
        else:
            raise AssertionError("accepted %r" % (kw,))
