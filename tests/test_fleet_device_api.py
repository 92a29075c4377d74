# Not under emulated ARM: the fleet server runs on the operator's hosts, never on a device
"""The fleet server's device API against hostile and mistaken clients: device scoping,
wrong and expired signatures, replays, oversized and malformed bodies, each refused
with AWS's error code and nothing recorded; /healthz and /metrics. Requests are signed
with edgecore's own signer and sent as raw HTTP. CPython only."""

import http.client
import json
import time
from urllib.parse import urlsplit

import pytest

from edgecore import sigv4

DEV = {"DeviceName": "test-device", "DeviceFleetName": "test-fleet"}


def call(cloud, operation, body, key=None, when=None, extra_headers=None, raw=None):
    """POST /operation signed by edgecore at `when`; (status, headers, JSON or None)."""
    key = key or cloud.key
    data = raw if raw is not None else json.dumps(body).encode()
    url = cloud.endpoint_url + "/" + operation
    headers = sigv4.sign_request(
        "POST", url, dict({"Content-Type": "application/json"}, **(extra_headers or {})),
        data, access_key=key["access_key_id"], secret_key=key["secret_access_key"],
        session_token=key.get("session_token"), region=cloud.region, service="sagemaker",
        timestamp=int(when if when is not None else time.time()))
    return send(cloud, "POST", "/" + operation, headers, data)


def send(cloud, method, path, headers, data):
    u = urlsplit(cloud.endpoint_url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=20)
    try:
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        lowered = dict((k.lower(), v) for k, v in resp.getheaders())
        try:
            parsed = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload
        return resp.status, lowered, parsed
    finally:
        conn.close()


def refused(result, status, code):
    got_status, headers, body = result
    assert (got_status, headers.get("x-amzn-errortype")) == (status, code), body
    assert headers["x-amzn-requestid"] and isinstance(body["message"], str)
    return body["message"]


@pytest.fixture
def two(local_cloud):
    """The cloud, plus device B with its own key."""
    local_cloud.add_device("device-b")
    key_b = local_cloud.create_key(device="device-b", s3=False)
    local_cloud.deploy("cam", "model-b", "1.0", data=b"bbb", device="device-b")
    return local_cloud, key_b


def test_a_device_key_cannot_read_or_report_for_another_device(two):
    cloud, key_b = two
    b = {"DeviceName": "device-b", "DeviceFleetName": "test-fleet"}
    for op, body in (("GetDeployments", b), ("GetDeviceRegistration", b),
                     ("SendHeartbeat", dict(b, AgentVersion="1", DeploymentResult={
                         "DeploymentName": "x", "DeploymentStatus": "SUCCESS"}))):
        message = refused(call(cloud, op, body), 403, "AccessDeniedException")
        assert "device-b" in message and cloud.access_key in message
    assert cloud.heartbeats() == [] and cloud.results() == []
    status, _, got = call(cloud, "GetDeployments", b, key=key_b)
    assert status == 200 and len(got["Deployments"]) == 1
    status, _, got = call(cloud, "GetDeployments", DEV)
    assert status == 200 and got["Deployments"] == []  # A sees none of B's
    # An admin key is for the control plane only.
    refused(call(cloud, "GetDeployments", DEV, key=cloud.admin_key), 403,
            "AccessDeniedException")


def test_signatures_keys_and_time(local_cloud):
    cloud = local_cloud
    refused(call(cloud, "GetDeployments", DEV, key=dict(cloud.key, secret_access_key="x" * 40)),
            403, "InvalidSignatureException")
    refused(call(cloud, "GetDeployments", DEV, key=dict(cloud.key, access_key_id="AKIANOPE")),
            403, "UnrecognizedClientException")
    message = refused(call(cloud, "GetDeployments", DEV, when=time.time() - 16 * 60), 403,
                      "InvalidSignatureException")
    assert message.startswith("Signature expired")
    message = refused(call(cloud, "GetDeployments", DEV, when=time.time() + 16 * 60), 403,
                      "InvalidSignatureException")
    assert message.startswith("Signature not yet current")
    expired = cloud.create_key(temporary=True, expires_in=-1, s3=False)
    refused(call(cloud, "GetDeployments", DEV, key=expired), 403, "ExpiredTokenException")
    refused(send(cloud, "POST", "/GetDeployments", {"Content-Type": "application/json"},
                 json.dumps(DEV).encode()), 403, "MissingAuthenticationTokenException")


def test_a_replayed_request_is_refused_once_out_of_the_window(local_cloud):
    cloud = local_cloud
    body = dict(DEV, AgentVersion="1")
    data = json.dumps(body).encode()
    url = cloud.endpoint_url + "/SendHeartbeat"
    headers = sigv4.sign_request(
        "POST", url, {"Content-Type": "application/json"}, data,
        access_key=cloud.access_key, secret_key=cloud.secret_key, region=cloud.region,
        service="sagemaker", timestamp=int(time.time()))
    assert send(cloud, "POST", "/SendHeartbeat", headers, data)[0] == 200
    cloud.set_clock_offset(16 * 60)  # the captured request, replayed 16 minutes later
    message = refused(send(cloud, "POST", "/SendHeartbeat", headers, data), 403,
                      "InvalidSignatureException")
    assert message.startswith("Signature expired")
    # The same bytes with another body: the signature no longer matches.
    cloud.set_clock_offset(0)
    refused(send(cloud, "POST", "/SendHeartbeat", headers,
                 data.replace(b'"1"', b'"2"')), 403, "InvalidSignatureException")
    assert len(cloud.heartbeats()) == 1


def test_oversized_malformed_and_mistyped_bodies(local_cloud):
    cloud = local_cloud
    big = b'{"DeviceName": "' + b"a" * (1 << 20) + b'"}'
    refused(call(cloud, "GetDeployments", None, raw=big), 413,
            "RequestEntityTooLargeException")
    refused(call(cloud, "GetDeployments", None, raw=b"{not json"), 400,
            "SerializationException")
    refused(call(cloud, "GetDeployments", None, raw=b"[" * 100 + b"]" * 100), 400,
            "SerializationException")
    refused(call(cloud, "GetDeployments", None, raw=b'"a string"'), 400,
            "SerializationException")
    refused(call(cloud, "SendHeartbeat", dict(DEV, AgentVersion=1)), 400,
            "SerializationException")
    message = refused(call(cloud, "SendHeartbeat", dict(DEV, AgentVersion="1", AgentMetrics=[
        {"Dimension": "bad dim", "MetricName": "x", "Value": 1}])), 400, "ValidationException")
    assert "agentMetrics.1.member.dimension" in message and "metricName" in message
    refused(call(cloud, "SendHeartbeat", None, raw=b'{"DeviceName": "test-device", '
                 b'"DeviceFleetName": "test-fleet", "AgentVersion": "1", "AgentMetrics": '
                 b'[{"Value": NaN}]}'), 400, "SerializationException")
    status, headers, _ = call(cloud, "Nope", DEV)
    assert status == 404 and headers["x-amzn-errortype"] == "UnknownOperationException"
    assert cloud.heartbeats() == []
    # The server is still fine.
    assert call(cloud, "GetDeployments", DEV)[0] == 200


def test_healthz_metrics_and_dashboard_are_served(local_cloud):
    cloud = local_cloud
    call(cloud, "SendHeartbeat", dict(DEV, AgentVersion="1"))
    status, _, body = send(cloud, "GET", "/healthz", {}, None)
    assert (status, body) == (200, {"status": "ok"})
    status, headers, text = send(cloud, "GET", "/metrics", {}, None)
    text = text.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'edgecore_fleet_requests_total{api="device",operation="SendHeartbeat",' \
           'status="200"} 1.0' in text
    assert "edgecore_fleet_request_seconds_bucket" in text
    assert "edgecore_fleet_devices_seen 1.0" in text and "edgecore_fleet_heartbeats 1.0" in text
    status, headers, page = send(cloud, "GET", "/dashboard/fleets/test-fleet", {}, None)
    assert status == 200 and b"test-device" in page
    assert send(cloud, "GET", "/dashboard/fleets/<script>", {}, None)[0] == 404
