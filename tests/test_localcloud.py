"""The local cloud (the fleet server embedded): botocore-signed requests pass, bad ones
are rejected as AWS rejects them, fleet state is kept; its admin helpers, CLI and the
demo's cloud side. CPython only (botocore, boto3, moto)."""

import datetime
import hashlib
import http.client
import json
import os
import sys
import time
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from edgecore_fleet import sigcheck
from edgecore_ports import credentials as ec
from edgecore_tools.localcloud import admin
from edgecore_tools.localcloud.__main__ import main as cli_main

DEVICE = {"DeviceName": "test-device", "DeviceFleetName": "test-fleet"}


def raw_call(cloud, operation, body, key=None, when=None, mutate=None, sign=True):
    """POST /operation signed by botocore at `when` (datetime, default now); `mutate`
    may change (headers, body) after signing. Returns (status, headers, parsed JSON)."""
    key = key or cloud.key
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = AWSRequest(
        "POST",
        cloud.endpoint_url + "/" + operation,
        data=data,
        headers={"Content-Type": "application/json"},
    )
    if sign:
        creds = Credentials(
            key["access_key_id"], key["secret_access_key"], key.get("session_token")
        )
        when = when or datetime.datetime.now(datetime.timezone.utc)
        with mock.patch("botocore.auth.get_current_datetime", return_value=when):
            SigV4Auth(creds, "sagemaker", cloud.region).add_auth(request)
    headers = dict(request.headers.items())
    if mutate is not None:
        headers, data = mutate(headers, data)
    url = urlsplit(cloud.endpoint_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
    try:
        conn.request("POST", "/" + operation, body=data, headers=headers)
        resp = conn.getresponse()
        payload = resp.read()
        return (
            resp.status,
            {k.lower(): v for k, v in resp.getheaders()},
            (json.loads(payload) if payload else None),
        )
    finally:
        conn.close()


def assert_aws_error(status, headers, body, want_status, code, message_start):
    assert status == want_status
    assert headers["x-amzn-errortype"] == code
    assert headers["x-amzn-requestid"]
    assert headers["date"].endswith("GMT")
    assert body["message"].startswith(message_start), body


def client_error(call):
    with pytest.raises(ClientError) as info:
        call()
    return info.value.response


# --------------------------------------------------------------- happy path, shapes
def test_botocore_client_all_three_operations(local_cloud):
    dep = local_cloud.deploy(
        handle="m1", data=b"model-bytes", model_name="model-a", model_version="1.0"
    )
    edge = local_cloud.edge_client()
    got = edge.get_deployments(**DEVICE)
    sha1 = hashlib.sha1(b"model-bytes").hexdigest()
    assert got["Deployments"] == [
        {
            "DeploymentName": dep["DeploymentName"],
            "Type": "Model",
            "FailureHandlingPolicy": "ROLLBACK_ON_FAILURE",
            "Definitions": [
                {
                    "ModelHandle": "m1",
                    "S3Url": "s3://%s/models/m1/%s/model.bin" % (local_cloud.bucket, sha1),
                    "Checksum": {"Type": "SHA1", "Sum": sha1},
                    "State": "DEPLOY",
                }
            ],
        }
    ]
    reg = edge.get_device_registration(**DEVICE)
    assert reg["DeviceRegistration"] == "REGISTERED" and reg["CacheTTL"] == "3600"
    hb = edge.send_heartbeat(AgentVersion="1.0", **DEVICE)
    meta = hb["ResponseMetadata"]
    assert meta["HTTPStatusCode"] == 200 and meta["RequestId"]
    assert meta["HTTPHeaders"]["date"].endswith("GMT")
    assert len(local_cloud.heartbeats()) == 1


def test_the_artifact_is_in_s3_and_readable_with_the_device_key(local_cloud):
    dep = local_cloud.deploy(
        handle="m1", data=b"\x00weights" * 100, model_name="model-a", model_version="2.0"
    )
    bucket, _, key = dep["Definitions"][0]["S3Url"][5:].partition("/")
    obj = local_cloud.s3_client().get_object(Bucket=bucket, Key=key)
    body = obj["Body"].read()
    assert body == b"\x00weights" * 100
    # What the agent reports as the model's name and version (x-amz-meta-model-*).
    assert obj["Metadata"] == {"model-name": "model-a", "model-version": "2.0"}
    assert hashlib.sha1(body).hexdigest() == dep["Definitions"][0]["Checksum"]["Sum"]


def test_deployments_fleet_device_supersede_undeploy(local_cloud):
    cloud = local_cloud
    cloud.add_device("other-device")
    fleet_dep = cloud.deploy(
        handle="shared",
        data=b"s",
        model_name="shared-model",
        model_version="1",
        fleet="test-fleet",
        policy="DO_NOTHING",
    )
    v1 = cloud.deploy(handle="m1", data=b"v1", model_name="model-a", model_version="1")
    v2 = cloud.deploy(handle="m1", data=b"v2", model_name="model-a", model_version="2")
    names = [
        d["DeploymentName"] for d in cloud.edge_client().get_deployments(**DEVICE)["Deployments"]
    ]
    # v2 supersedes v1 for the same handle; the fleet deployment still applies.
    assert names == [fleet_dep["DeploymentName"], v2["DeploymentName"]]
    assert v1["DeploymentName"] not in names
    other_key = cloud.create_key(device="other-device", s3=False)
    other = cloud.edge_client(other_key).get_deployments(
        DeviceName="other-device", DeviceFleetName="test-fleet"
    )
    assert [d["DeploymentName"] for d in other["Deployments"]] == [fleet_dep["DeploymentName"]]
    assert other["Deployments"][0]["FailureHandlingPolicy"] == "DO_NOTHING"

    undo = cloud.deploy(handle="m1", model_name="model-a", model_version="2", undeploy=True)
    deps = cloud.edge_client().get_deployments(**DEVICE)["Deployments"]
    assert [d["DeploymentName"] for d in deps] == [
        fleet_dep["DeploymentName"],
        undo["DeploymentName"],
    ]
    (definition,) = deps[1]["Definitions"]
    assert definition["State"] == "UNDEPLOY"
    assert definition["Checksum"] == v2["Definitions"][0]["Checksum"]
    cloud.cancel_deployment(undo["DeploymentName"])
    cloud.cancel_deployment(fleet_dep["DeploymentName"])
    assert cloud.edge_client().get_deployments(**DEVICE)["Deployments"] == []


def test_heartbeats_and_results_are_stored(local_cloud):
    dep = local_cloud.deploy(handle="m1", data=b"x", model_name="model-a", model_version="1")
    now = int(time.time())
    local_cloud.edge_client().send_heartbeat(
        AgentVersion="0.1",
        **DEVICE,
        AgentMetrics=[{"Dimension": "cpu", "MetricName": "load1", "Value": 0.25, "Timestamp": now}],
        Models=[
            {
                "ModelName": "model-a",
                "ModelVersion": "1",
                "LatestInference": now,
                "ModelMetrics": [],
            }
        ],
        DeploymentResult={
            "DeploymentName": dep["DeploymentName"],
            "DeploymentStatus": "SUCCESS",
            "DeploymentStartTime": now,
            "DeploymentEndTime": now,
            "DeploymentModels": [
                {
                    "ModelHandle": "m1",
                    "ModelName": "model-a",
                    "ModelVersion": "1",
                    "DesiredState": "DEPLOY",
                    "State": "DEPLOY",
                    "Status": "SUCCESS",
                }
            ],
        },
    )
    temp = local_cloud.create_key(temporary=True, expires_in=600, s3=False)
    local_cloud.edge_client(temp).send_heartbeat(AgentVersion="0.1", **DEVICE)
    beats = local_cloud.heartbeats()
    assert [b["device"] for b in beats] == ["test-device", "test-device"]
    # Which key signed each one.
    assert [b["access_key_id"] for b in beats] == [local_cloud.access_key, temp["access_key_id"]]
    assert [(r["operation"], r["status"], r["access_key_id"]) for r in local_cloud.requests()] == [
        ("SendHeartbeat", 200, local_cloud.access_key),
        ("SendHeartbeat", 200, temp["access_key_id"]),
    ]
    body = beats[0]["body"]
    assert body["AgentMetrics"] == [
        {"Dimension": "cpu", "MetricName": "load1", "Value": 0.25, "Timestamp": now}
    ]
    assert body["Models"][0]["LatestInference"] == now
    assert "DeploymentResult" not in beats[1]["body"]
    (result,) = local_cloud.results()
    assert result["deployment"] == dep["DeploymentName"] and result["status"] == "SUCCESS"
    assert result["body"]["DeploymentModels"][0]["Status"] == "SUCCESS"


# --------------------------------------------------------------- signature rejections
def test_wrong_secret_is_invalid_signature(local_cloud):
    key = dict(local_cloud.key, secret_access_key="x" * 40)
    resp = client_error(lambda: local_cloud.edge_client(key).get_deployments(**DEVICE))
    assert resp["Error"]["Code"] == "InvalidSignatureException"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert resp["Error"]["Message"].startswith(sigcheck.MSG_MISMATCH)
    assert "x" * 40 not in resp["Error"]["Message"]


def test_unknown_access_key(local_cloud):
    key = dict(local_cloud.key, access_key_id="AKIAUNKNOWN123456789")
    resp = client_error(
        lambda: local_cloud.edge_client(key).send_heartbeat(AgentVersion="1", **DEVICE)
    )
    assert resp["Error"] == {
        "Code": "UnrecognizedClientException",
        "Message": "The security token included in the request is invalid.",
    }
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert local_cloud.heartbeats() == []
    (req,) = local_cloud.requests()  # recorded with the key it named
    assert (req["operation"], req["status"], req["error"], req["access_key_id"]) == (
        "SendHeartbeat", 403, "UnrecognizedClientException", "AKIAUNKNOWN123456789"
    )


def test_missing_authentication(local_cloud):
    status, headers, body = raw_call(local_cloud, "GetDeployments", DEVICE, sign=False)
    assert_aws_error(
        status,
        headers,
        body,
        403,
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )


@pytest.mark.parametrize(
    "minutes, message, suffix",
    [
        (-16, "Signature expired: %s is now earlier than ", " - 15 min.)"),
        (16, "Signature not yet current: %s is still later than ", " + 15 min.)"),
    ],
    ids=["stale", "future"],
)
def test_signature_outside_fifteen_minutes_is_rejected(local_cloud, minutes, message, suffix):
    then = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=minutes)
    status, headers, body = raw_call(local_cloud, "GetDeployments", DEVICE, when=then)
    assert_aws_error(
        status,
        headers,
        body,
        403,
        "InvalidSignatureException",
        message % then.strftime("%Y%m%dT%H%M%SZ"),
    )
    assert body["message"].endswith(suffix)


def test_within_fifteen_minutes_is_accepted(local_cloud):
    then = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=14)
    status, _, body = raw_call(local_cloud, "GetDeployments", DEVICE, when=then)
    assert status == 200 and body == {"Deployments": []}


def test_server_clock_skew_shows_in_date_header(local_cloud):
    local_cloud.set_clock_offset(3600)
    resp = client_error(lambda: local_cloud.edge_client().get_deployments(**DEVICE))
    assert resp["Error"]["Message"].startswith("Signature expired")
    server_date = resp["ResponseMetadata"]["HTTPHeaders"]["date"]
    from email.utils import parsedate_to_datetime

    skew = parsedate_to_datetime(server_date).timestamp() - time.time()
    assert 3500 < skew < 3700


def test_tampered_body_is_rejected(local_cloud):
    def tamper(headers, data):
        return headers, data.replace(b"test-device", b"test-devicf")

    status, headers, body = raw_call(local_cloud, "GetDeployments", DEVICE, mutate=tamper)
    assert_aws_error(status, headers, body, 403, "InvalidSignatureException", sigcheck.MSG_MISMATCH)


def test_tampered_signed_header_is_rejected(local_cloud):
    def tamper(headers, data):
        headers = dict(headers, **{"Content-Type": "application/x-amz-json-1.1"})
        return headers, data

    status, headers, body = raw_call(local_cloud, "GetDeployments", DEVICE, mutate=tamper)
    assert_aws_error(status, headers, body, 403, "InvalidSignatureException", sigcheck.MSG_MISMATCH)


def test_content_sha256_header_must_match_the_body(local_cloud):
    # botocore's signer trusts X-Amz-Content-SHA256 instead of hashing the body; a
    # replayed header with a swapped body must not pass.
    def tamper(headers, data):
        headers = dict(headers, **{"X-Amz-Content-SHA256": hashlib.sha256(data).hexdigest()})
        return headers, data.replace(b"test-device", b"test-devicf")

    status, headers, body = raw_call(local_cloud, "GetDeployments", DEVICE, mutate=tamper)
    assert status in (400, 403)
    assert headers["x-amzn-errortype"] == "InvalidSignatureException"


def test_other_service_scope_is_rejected(local_cloud):
    def rescope(headers, data):
        auth = headers["Authorization"].replace("/sagemaker/", "/s3/")
        return dict(headers, Authorization=auth), data

    status, headers, body = raw_call(local_cloud, "GetDeployments", DEVICE, mutate=rescope)
    assert_aws_error(
        status,
        headers,
        body,
        403,
        "InvalidSignatureException",
        "Credential should be scoped to correct service: 'sagemaker'.",
    )


def test_malformed_authorization_is_incomplete(local_cloud):
    def strip(headers, data):
        return dict(headers, Authorization="AWS4-HMAC-SHA256 Credential=AKIA/x"), data

    status, headers, body = raw_call(local_cloud, "GetDeployments", DEVICE, mutate=strip)
    assert_aws_error(
        status,
        headers,
        body,
        400,
        "IncompleteSignatureException",
        "Authorization header requires 'Signature' parameter.",
    )


# --------------------------------------------------------------- session tokens
def test_session_token_keys(local_cloud):
    temp = local_cloud.create_key(temporary=True, expires_in=3600)
    assert temp["session_token"]
    edge = local_cloud.edge_client(temp)
    assert edge.get_deployments(**DEVICE)["Deployments"] == []
    for token in ("not-the-token", None):
        key = dict(temp, session_token=token)
        resp = client_error(lambda k=key: local_cloud.edge_client(k).get_deployments(**DEVICE))
        assert resp["Error"]["Code"] == "UnrecognizedClientException"
    # A long-term key must not come with a token.
    key = dict(local_cloud.key, session_token="stray")
    resp = client_error(lambda: local_cloud.edge_client(key).get_deployments(**DEVICE))
    assert resp["Error"]["Code"] == "UnrecognizedClientException"


def test_expired_temporary_key(local_cloud):
    temp = local_cloud.create_key(temporary=True, expires_in=-1, s3=False)
    resp = client_error(lambda: local_cloud.edge_client(temp).get_deployments(**DEVICE))
    assert resp["Error"]["Code"] == "ExpiredTokenException"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_temporary_key_from_start_is_valid_for_s3_too(local_cloud_factory):
    cloud = local_cloud_factory(temporary_key=True)
    assert cloud.session_token
    dep = cloud.deploy(handle="m1", data=b"abc", model_name="model-a", model_version="1")
    bucket, _, key = dep["Definitions"][0]["S3Url"][5:].partition("/")
    assert cloud.s3_client().get_object(Bucket=bucket, Key=key)["Body"].read() == b"abc"
    assert cloud.edge_client().get_deployments(**DEVICE)["Deployments"]


# --------------------------------------------------------------- validation, routing
def test_missing_required_member_is_validation_error(local_cloud):
    status, headers, body = raw_call(local_cloud, "SendHeartbeat", {"DeviceName": "test-device"})
    assert_aws_error(
        status, headers, body, 400, "ValidationException", "2 validation errors detected: "
    )
    assert "Value null at 'agentVersion' failed to satisfy constraint" in body["message"]
    assert "Value null at 'deviceFleetName'" in body["message"]


def test_bad_enum_and_pattern_are_validation_errors(local_cloud):
    params = dict(
        DEVICE,
        AgentVersion="1",
        DeploymentResult={
            "DeploymentName": "d1",
            "DeploymentModels": [{"ModelHandle": "m1", "Status": "MAYBE"}],
        },
    )
    status, headers, body = raw_call(local_cloud, "SendHeartbeat", params)
    assert_aws_error(status, headers, body, 400, "ValidationException", "1 validation error")
    assert (
        "Value 'MAYBE' at 'deploymentResult.deploymentModels.1.member.status' failed to "
        "satisfy constraint: Member must satisfy enum value set: [SUCCESS, FAIL]" in body["message"]
    )
    resp = client_error(
        lambda: local_cloud.edge_client().get_deployments(
            DeviceName="bad name", DeviceFleetName="test-fleet"
        )
    )
    assert resp["Error"]["Code"] == "ValidationException"
    assert "regular expression pattern" in resp["Error"]["Message"]


def test_wrong_types_and_bad_json_are_serialization_errors(local_cloud):
    status, headers, _ = raw_call(local_cloud, "GetDeployments", b"{not json")
    assert status == 400 and headers["x-amzn-errortype"] == "SerializationException"
    status, headers, _ = raw_call(
        local_cloud, "GetDeployments", {"DeviceName": 5, "DeviceFleetName": "test-fleet"}
    )
    assert status == 400 and headers["x-amzn-errortype"] == "SerializationException"


def test_unknown_device_or_fleet(local_cloud):
    edge = local_cloud.edge_client()
    # The key is scoped to test-device: another device name is refused outright.
    resp = client_error(lambda: edge.get_deployments(DeviceName="nobody",
                                                     DeviceFleetName="test-fleet"))
    assert resp["Error"]["Code"] == "AccessDeniedException"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 403
    # Its own name in another fleet: not registered there.
    params = {"DeviceName": "test-device", "DeviceFleetName": "other-fleet"}
    resp = client_error(lambda: edge.get_deployments(**params))
    assert resp["Error"]["Code"] == "ValidationException"
    assert resp["ResponseMetadata"]["HTTPStatusCode"] == 400
    resp = client_error(lambda: edge.send_heartbeat(AgentVersion="1", **params))
    assert resp["Error"]["Code"] == "ValidationException"
    assert edge.get_device_registration(**params)["DeviceRegistration"] == "NOT_REGISTERED"
    local_cloud.set_registration("test-device", "DEREGISTERED")
    assert edge.get_device_registration(**DEVICE)["DeviceRegistration"] == "NOT_REGISTERED"
    resp = client_error(lambda: edge.get_deployments(**DEVICE))
    assert resp["Error"]["Code"] == "ValidationException"
    assert local_cloud.heartbeats() == []


def test_unknown_operation_after_auth(local_cloud):
    status, headers, _ = raw_call(local_cloud, "DeleteEverything", {})
    assert status == 404 and headers["x-amzn-errortype"] == "UnknownOperationException"
    status, headers, _ = raw_call(local_cloud, "DeleteEverything", {}, sign=False)
    assert status == 403


def test_injected_fault_reaches_the_client(local_cloud):
    local_cloud.inject_fault("GetDeployments", 400, "ThrottlingException", "Rate exceeded")
    resp = client_error(lambda: local_cloud.edge_client().get_deployments(**DEVICE))
    assert resp["Error"] == {"Code": "ThrottlingException", "Message": "Rate exceeded"}
    assert local_cloud.edge_client().get_deployments(**DEVICE)["Deployments"] == []


# --------------------------------------------------------------- admin API and CLI
def test_admin_rejects_names_the_service_could_not_send(local_cloud):
    with pytest.raises(admin.AdminError):
        local_cloud.deploy(handle="bad handle", data=b"x", model_name="model-a", model_version="1")
    with pytest.raises(admin.AdminError):
        local_cloud.deploy(handle="m1", data=b"x", model_name="abc", model_version="1")
    with pytest.raises(admin.AdminError):
        local_cloud.deploy(
            handle="m1", data=b"x", model_name="model-a", model_version="1", device="nobody"
        )


def test_cli_add_device_deploy_and_list(tmp_path, moto_s3, capsys):
    from edgecore_fleet.store import Store

    db_path = str(tmp_path / "fleet.db")
    db = Store.open(db_path).migrate()
    db.set_setting("s3", moto_s3.connection_info())  # what a running `serve` records
    db.set_setting("bucket", "cli-test-bucket")
    db.close()
    model = tmp_path / "my model.bin"
    model.write_bytes(b"cli-model")
    assert cli_main(["add-device", "--db", db_path, "--device", "cam-1", "--fleet", "f1"]) == 0
    capsys.readouterr()
    assert cli_main(["create-key", "--db", db_path, "--device", "cam-1"]) == 0
    key = json.loads(capsys.readouterr().out)
    assert key["access_key_id"] and key["secret_access_key"]

    def deploy(device):
        return cli_main(
            ["deploy", "--db", db_path, "--device", device, "--handle", "m1"]
            + ["--model-name", "model-a", "--model-version", "1.0", "--file", str(model)]
        )

    assert deploy("cam-1") == 0
    dep = json.loads(capsys.readouterr().out)
    (definition,) = dep["Definitions"]
    assert definition["Checksum"]["Sum"] == hashlib.sha1(b"cli-model").hexdigest()
    assert definition["S3Url"].startswith("s3://cli-test-bucket/models/m1/")
    assert definition["S3Url"].endswith("/my_model.bin")
    s3 = moto_s3.client("s3", key["access_key_id"], key["secret_access_key"])
    obj = s3.get_object(
        Bucket="cli-test-bucket", Key=definition["S3Url"][len("s3://cli-test-bucket/") :]
    )
    assert obj["Body"].read() == b"cli-model"
    assert obj["Metadata"] == {"model-name": "model-a", "model-version": "1.0"}
    assert cli_main(["heartbeats", "--db", db_path]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert deploy("nobody") == 2  # unknown device


def test_cli_serve_with_iot_starts_provisions_and_stops_cleanly(tmp_path, capsys):
    import signal
    import subprocess

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edgecore_tools.localcloud",
            "serve",
            "--db",
            str(tmp_path / "f.db"),
            "--iot",
        ],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        info = json.loads(proc.stdout.readline())
        assert info["endpoint_url"].startswith("http://127.0.0.1:")
        assert info["s3_endpoint_url"].startswith("http://127.0.0.1:")
        # --iot: the IoT credentials endpoint, its CA and how to provision a thing.
        assert info["iot_url"].startswith("https://127.0.0.1:")
        assert info["iot_ca"] == str(tmp_path / "iot-pki" / "ca.pem")
        howto = [proc.stdout.readline() for _ in range(4)]
        assert info["iot_url"] in howto[0] and info["iot_ca"] in howto[0]
        assert "provision-thing --db %s --thing THING --device DEV" % (tmp_path / "f.db") in (
            howto[3]
        )
        # Follow the instructions from another process (here: this one), then fetch
        # credentials with the agent's provider and use them on the edge endpoint.
        db = str(tmp_path / "f.db")
        assert cli_main(["add-device", "--db", db, "--device", "dev-9", "--fleet", "f9"]) == 0
        capsys.readouterr()
        assert cli_main(["provision-thing", "--db", db, "--thing", "thing-9", "--device",
                         "dev-9"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["iot"]["ca"] == info["iot_ca"] and os.path.exists(out["iot"]["key"])
        creds = ec.provider_from_config({"iot": out["iot"]}, environ={}).get()
        edge = boto3.client(
            "sagemaker-edge", endpoint_url=info["endpoint_url"], region_name="us-west-2",
            aws_access_key_id=creds.access_key, aws_secret_access_key=creds.secret_key,
            aws_session_token=creds.session_token,
        )
        got = edge.get_deployments(DeviceName="dev-9", DeviceFleetName="f9")
        assert got["Deployments"] == []
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


# --------------------------------------------------------------- the demo's cloud side
def test_demo_prepare_writes_a_config_the_cloud_accepts(tmp_path, moto_s3):
    from edgecore_tools import demo

    cloud, dep, config_path = demo.prepare(str(tmp_path), model_size=4096, s3=moto_s3)
    try:
        with open(config_path) as f:
            config = json.load(f)
        for name in (
            "device_name",
            "fleet_name",
            "region",
            "model_dir",
            "state_dir",
            "endpoint_url",
            "s3_endpoint_url",
            "credentials",
        ):
            assert config[name]
        assert config["device_name"] == "demo-device" and config["fleet_name"] == "demo-fleet"
        assert os.stat(config_path).st_mode & 0o077 == 0
        edge = cloud.edge_client(
            key={
                "access_key_id": config["credentials"]["access_key_id"],
                "secret_access_key": config["credentials"]["secret_access_key"],
            }
        )
        (got,) = edge.get_deployments(DeviceName="demo-device", DeviceFleetName="demo-fleet")[
            "Deployments"
        ]
        assert got["DeploymentName"] == dep["DeploymentName"]
        with open(tmp_path / "model.bin", "rb") as f:
            assert got["Definitions"][0]["Checksum"]["Sum"] == hashlib.sha1(f.read()).hexdigest()
    finally:
        cloud.stop()


FAKE_AGENT = r'''
"""Stand-in for `edgecore run --config F --once`, built on boto3, to test the demo loop."""
import hashlib, json, os, sys, boto3
cfg = json.load(open(sys.argv[sys.argv.index("--config") + 1]))
c = cfg["credentials"]
kw = dict(region_name=cfg["region"], aws_access_key_id=c["access_key_id"],
          aws_secret_access_key=c["secret_access_key"])
edge = boto3.client("sagemaker-edge", endpoint_url=cfg["endpoint_url"], **kw)
s3 = boto3.client("s3", endpoint_url=cfg["s3_endpoint_url"], **kw)
dev = dict(DeviceName=cfg["device_name"], DeviceFleetName=cfg["fleet_name"])
count_file = os.path.join(cfg["state_dir"], "runs")
os.makedirs(cfg["state_dir"], exist_ok=True)
runs = int(open(count_file).read()) + 1 if os.path.exists(count_file) else 1
open(count_file, "w").write(str(runs))
if runs == 1:
    sys.stderr.write('{"event": "pretend-failure"}\n')
    sys.exit(3)
(dep,) = edge.get_deployments(**dev)["Deployments"]
(d,) = dep["Definitions"]
bucket, _, key = d["S3Url"][5:].partition("/")
data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
assert hashlib.sha1(data).hexdigest() == d["Checksum"]["Sum"]
target = os.path.join(cfg["model_dir"], d["ModelHandle"], "current")
os.makedirs(target, exist_ok=True)
open(os.path.join(target, "model.bin"), "wb").write(data)
edge.send_heartbeat(AgentVersion="fake", **dev, DeploymentResult={
    "DeploymentName": dep["DeploymentName"], "DeploymentStatus": "SUCCESS",
    "DeploymentModels": [{"ModelHandle": d["ModelHandle"], "Status": "SUCCESS",
                          "State": "DEPLOY", "DesiredState": "DEPLOY"}]})
'''


def test_demo_loop_with_a_stand_in_agent(tmp_path, capsys, moto_s3):
    from edgecore_tools import demo

    agent = tmp_path / "fake_agent.py"
    agent.write_text(FAKE_AGENT)
    demo.run_demo(
        str(tmp_path / "work"),
        max_runs=3,
        model_size=8192,
        agent_cmd=[sys.executable, str(agent)],
        s3=moto_s3,
    )
    out = capsys.readouterr().out
    assert "edgecore demo: SUCCESS" in out
    assert "demo-device (fleet demo-fleet)" in out
    assert "agent runs:   2 x" in out  # the first (failing) run was retried
    assert '"DeploymentStatus": "SUCCESS"' in out
    assert "AgentVersion fake" in out
    assert "reported:     the heartbeat lists no model named demo-model" in out
    sha1 = hashlib.sha1((tmp_path / "work" / "model.bin").read_bytes()).hexdigest()
    assert sha1 in out


def test_demo_fails_clearly_when_the_agent_never_succeeds(tmp_path, moto_s3):
    from edgecore_tools import demo

    with pytest.raises(demo.DemoFailed) as info:
        demo.run_demo(
            str(tmp_path / "work"),
            max_runs=2,
            model_size=1024,
            agent_cmd=[sys.executable, "-c", "import sys; sys.exit(4)"],
            s3=moto_s3,
        )
    message = str(info.value)
    assert "after 2 agent runs" in message and "exit code 4" in message


# --------------------------------------------------------------- edgecore's own signer
def _urllib_transport(method, url, headers, body):
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as e:
        with e:
            return e.code, dict(e.headers.items()), e.read()


def test_edgecore_client_is_accepted_by_the_botocore_checked_endpoint(local_cloud):
    client_mod = pytest.importorskip("edgecore.client")
    from edgecore.credentials import Credentials

    dep = local_cloud.deploy(handle="m1", data=b"m", model_name="model-a", model_version="1")

    def client(secret, token=None, access_key=None):
        creds = Credentials(access_key or local_cloud.access_key, secret, token)
        return client_mod.Client(local_cloud.region, creds, endpoint_url=local_cloud.endpoint_url,
                                 transport=_urllib_transport, clock=time.time)

    edge = client(local_cloud.secret_key)
    got = edge.get_deployments(**DEVICE)
    assert [d["DeploymentName"] for d in got["Deployments"]] == [dep["DeploymentName"]]
    assert edge.get_device_registration(**DEVICE)["DeviceRegistration"] == "REGISTERED"
    now = int(time.time())
    edge.send_heartbeat(AgentVersion="1", **DEVICE, DeploymentResult={
        "DeploymentName": dep["DeploymentName"], "DeploymentStatus": "SUCCESS",
        "DeploymentStartTime": now,
        "DeploymentModels": [{"ModelHandle": "m1", "Status": "SUCCESS"}]})
    assert local_cloud.results()[0]["body"]["DeploymentStartTime"] == now
    temp = local_cloud.create_key(temporary=True, expires_in=600, s3=False)
    assert client(temp["secret_access_key"], temp["session_token"],
                  temp["access_key_id"]).get_deployments(**DEVICE)["Deployments"]
    with pytest.raises(Exception) as info:
        client("x" * 40).get_deployments(**DEVICE)
    assert info.value.code == "InvalidSignatureException" and info.value.status == 403


def test_agent_config_file_fixture(agent_config_file, local_cloud):
    path, config = agent_config_file
    with open(path) as f:
        assert json.load(f) == config
    assert config["endpoint_url"] == local_cloud.endpoint_url
    assert config["credentials"]["access_key_id"] == local_cloud.access_key


def test_demo_end_to_end_with_the_real_agent(tmp_path, capsys, moto_s3):
    pytest.importorskip("edgecore_tools.cli")
    from edgecore_tools import demo

    demo.run_demo(str(tmp_path / "work"), max_runs=3, model_size=16384, s3=moto_s3)
    out = capsys.readouterr().out
    assert "edgecore demo: SUCCESS" in out
    sha1 = hashlib.sha1((tmp_path / "work" / "model.bin").read_bytes()).hexdigest()
    assert "SHA1 %s (verified on disk)" % sha1 in out
    # The version printed as deployed is the one the cloud recorded from the device.
    assert "model:        handle demo-model, name demo-model, version 1.0\n" in out
    assert "reported:     name demo-model, version 1.0 (heartbeat Models)\n" in out
    assert '"ModelVersion": "1.0"' in out
    active = out.split("active model: ", 1)[1].split("\n", 1)[0]
    with open(active, "rb") as f:
        assert hashlib.sha1(f.read()).hexdigest() == sha1
    # The application's side: a capture sent through the socket, shown arriving in S3.
    assert "edgecore demo: the application's capture arrived in S3" in out
    assert "  object:       s3://edgecore-models-" in out
    assert "/captures/demo-fleet/demo-device/demo-model/" in out
    record = json.loads(out.split("  record:       ", 1)[1].split("\n", 1)[0])
    assert record["captureId"] == "demo-capture-0001" and record["modelSha1"] == sha1


# --------------------------------------------------------------- CLI plumbing
def _localcloud_cli(args, pythonpath, **kw):
    import subprocess

    return subprocess.Popen([sys.executable, "-m", "edgecore_tools.localcloud"] + args,
                            env=dict(os.environ, PYTHONPATH=pythonpath),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def test_cli_output_into_a_closed_pipe_is_quiet(tmp_path):
    from edgecore_fleet.store import Store

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    db_path = str(tmp_path / "pipe.db")
    db = Store.open(db_path).migrate()
    db.add_device("d1", "f1")
    for _ in range(3000):  # far more than a pipe buffer
        db.add_heartbeat("d1", "f1", {"AgentVersion": "1", "DeviceName": "d1" * 20})
    db.close()
    proc = _localcloud_cli(["heartbeats", "--db", db_path], root)
    proc.stdout.readline()
    proc.stdout.close()  # `| head -n 1`
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(60) == 0
    assert "BrokenPipeError" not in err and "Traceback" not in err


def test_cli_without_the_extra_names_it(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    (tmp_path / "sqlalchemy.py").write_text("raise ImportError('No module named sqlalchemy')")
    proc = _localcloud_cli(["heartbeats", "--db", "x.db"], os.pathsep.join([str(tmp_path),
                                                                            root]))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert b"pip install 'edgecore[localcloud]'" in err and b"Traceback" not in err
