"""End to end: the agent against the local cloud (Edge Manager stand-in, every signature
checked by botocore) and moto's S3 server (signatures checked). CPython only.

Most tests drive ``edgecore_ports.runner.Runner`` in-process (the real port, transport,
credentials provider and file system); the CLI ones run ``python -m edgecore_tools.cli``
as a subprocess (fixtures ``run_cli`` / ``agent_env`` in conftest.py). SIGKILLs at every
stage of a deployment are tests/test_crash.py's.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from edgecore_ports.runner import Runner, load_config


def make_runner(cloud, tmp_path, **extra):
    config = load_config(
        cloud.agent_config(tmp_path / "models", tmp_path / "state", **extra), environ={}
    )
    events = []
    r = Runner(
        config,
        environ={},
        log=lambda level, event, **f: events.append((event, f)),
        sleep=lambda s: None,
    )
    r.events = events
    return r


def active_bytes(tmp_path, handle):
    link = tmp_path / "models" / handle
    assert link.is_symlink(), handle
    files = [p for p in link.iterdir() if p.name != "edgecore.json"]
    assert len(files) == 1
    return files[0].read_bytes()


def runner_with_active(cloud, tmp_path, data):
    """A runner whose first cycle made `data` the active "cam" model."""
    cloud.deploy("cam", "detector", "1.0", data=data)
    r = make_runner(cloud, tmp_path)
    assert r.cycle()["ok"]
    return r


def results_by_name(cloud):
    return dict((r["deployment"], r["body"]) for r in cloud.results())


def test_deploy_update_undeploy(local_cloud, tmp_path):
    cloud = local_cloud
    v1 = os.urandom(100000)
    v2 = os.urandom(120000)
    d1 = cloud.deploy("cam", "detector", "1.0", data=v1)
    r = make_runner(cloud, tmp_path)
    report = r.cycle()
    assert report["ok"], report
    assert active_bytes(tmp_path, "cam") == v1
    res = results_by_name(cloud)[d1["DeploymentName"]]
    assert res["DeploymentStatus"] == "SUCCESS"
    assert res["DeploymentModels"][0]["State"] == "DEPLOY"
    hb = cloud.heartbeats()[-1]["body"]
    # The cloud's deploy put the name/version on the S3 object; the agent reports them.
    assert hb["Models"] == [{"ModelName": "detector", "ModelVersion": "1.0"}]
    model = res["DeploymentModels"][0]
    assert (model["ModelName"], model["ModelVersion"]) == ("detector", "1.0")
    assert hb["AgentMetrics"]

    d2 = cloud.deploy("cam", "detector", "2.0", data=v2)
    assert r.cycle()["ok"]
    assert active_bytes(tmp_path, "cam") == v2
    assert results_by_name(cloud)[d2["DeploymentName"]]["DeploymentStatus"] == "SUCCESS"
    assert os.listdir(str(tmp_path / "models" / ".versions")) == [
        "cam-" + hashlib.sha1(v2).hexdigest()
    ]

    d3 = cloud.deploy("cam", "detector", "2.0", undeploy=True)
    assert r.cycle()["ok"]
    assert not os.path.lexists(str(tmp_path / "models" / "cam"))
    res = results_by_name(cloud)[d3["DeploymentName"]]
    assert res["DeploymentStatus"] == "SUCCESS"
    assert res["DeploymentModels"][0]["State"] == "UNDEPLOY"
    assert "Models" not in cloud.heartbeats()[-1]["body"]
    # Nothing left to do: a further cycle downloads nothing and reports nothing new.
    n = len(cloud.results())
    assert r.cycle()["ok"]
    assert len(cloud.results()) == n


def test_corrupted_artifact_fails_and_keeps_previous(local_cloud, tmp_path):
    cloud = local_cloud
    v1 = b"good model " * 1000
    r = runner_with_active(cloud, tmp_path, v1)
    d2 = cloud.deploy("cam", "detector", "2.0", data=b"new model " * 1000)
    cloud.put_object(d2["Definitions"][0]["S3Url"], b"tampered bytes" * 500)
    assert r.cycle()["ok"]
    res = results_by_name(cloud)[d2["DeploymentName"]]
    assert res["DeploymentStatus"] == "FAIL"
    m = res["DeploymentModels"][0]
    assert m["Status"] == "FAIL"
    assert "SHA1 checksum mismatch" in m["StatusReason"]
    assert m["State"] == "DEPLOY"
    assert "rolled back" in res["DeploymentStatusMessage"]
    assert active_bytes(tmp_path, "cam") == v1
    assert not (tmp_path / "models" / ".staging").exists()


def test_rollback_of_a_two_model_deployment(local_cloud, tmp_path):
    cloud = local_cloud
    cam1 = b"cam v1" * 100
    r = runner_with_active(cloud, tmp_path, cam1)
    # One deployment: cam -> v2 (fine), gps (corrupt). ROLLBACK_ON_FAILURE restores cam.
    defs = []
    for handle, data, stored in (
        ("cam", b"cam v2" * 100, None),
        ("gps", b"gps v1" * 100, b"corrupt"),
    ):
        key = "models/%s/%s/model.bin" % (handle, hashlib.sha1(data).hexdigest())
        cloud.s3.put_object(cloud.bucket, key, stored or data)
        defs.append(
            {
                "ModelHandle": handle,
                "ModelName": handle + "-model",
                "ModelVersion": "2.0",
                "State": "DEPLOY",
                "S3Url": "s3://%s/%s" % (cloud.bucket, key),
                "Checksum": {"Type": "SHA1", "Sum": hashlib.sha1(data).hexdigest()},
            }
        )
    cloud.db.add_deployment("two-models", "ROLLBACK_ON_FAILURE", defs, device=cloud.device_name)
    assert r.cycle()["ok"]
    res = results_by_name(cloud)["two-models"]
    assert res["DeploymentStatus"] == "FAIL"
    assert "1 model(s) restored" in res["DeploymentStatusMessage"]
    cam, gps = res["DeploymentModels"]
    assert cam["Status"] == "FAIL" and cam["StatusReason"].startswith("rolled back")
    assert "checksum mismatch" in gps["StatusReason"]
    assert active_bytes(tmp_path, "cam") == cam1
    assert not os.path.lexists(str(tmp_path / "models" / "gps"))


def test_missing_object_is_reported(local_cloud, tmp_path):
    cloud = local_cloud
    d = cloud.deploy("cam", "detector", "1.0", data=b"will vanish")
    cloud.delete_object(d["Definitions"][0]["S3Url"])
    r = make_runner(cloud, tmp_path)
    assert r.cycle()["ok"]
    res = results_by_name(cloud)[d["DeploymentName"]]
    reason = res["DeploymentModels"][0]["StatusReason"]
    assert "HTTP 404 NoSuchKey" in reason, reason
    assert not os.path.lexists(str(tmp_path / "models" / "cam"))


def test_throttling_is_retried(local_cloud, tmp_path):
    cloud = local_cloud
    cloud.deploy("cam", "detector", "1.0", data=b"m" * 100)
    cloud.inject_fault(
        "GetDeployments", status=400, code="ThrottlingException", message="Rate exceeded", times=2
    )
    cloud.inject_fault("SendHeartbeat", status=500, times=1)
    r = make_runner(cloud, tmp_path)
    report = r.cycle()
    assert report["ok"], report
    retries = [f["operation"] for e, f in r.events if e == "api.retry"]
    assert retries == ["get_deployments", "get_deployments", "send_heartbeat"]


def test_clock_skew_is_corrected(local_cloud, tmp_path):
    cloud = local_cloud
    cloud.deploy("cam", "detector", "1.0", data=b"m" * 100)
    cloud.set_clock_offset(3 * 3600)  # the device is 3 h behind the service
    r = make_runner(cloud, tmp_path)
    report = r.cycle()
    assert report["ok"], report
    assert abs(r.state["clock_offset"] - 3 * 3600) < 60
    assert any(e == "clock.corrected" for e, _ in r.events)


def test_wrong_credentials_give_a_clear_error(local_cloud, tmp_path, run_cli):
    cloud = local_cloud
    cfg = cloud.agent_config(tmp_path / "models", tmp_path / "state")
    cfg["credentials"]["secret_access_key"] = "WRONG" + cfg["credentials"]["secret_access_key"]
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(cfg))
    proc = run_cli(["run", "--config", str(path), "--once"])
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edgecore: error: GetDeployments: An error occurred (")
    assert "signature" in last.lower()
    assert cfg["credentials"]["secret_access_key"] not in proc.stderr
    for line in proc.stderr.strip().splitlines()[:-1]:
        json.loads(line)


@pytest.mark.parametrize("first", ["status", "run"])
def test_cli_run_and_status(local_cloud, tmp_path, first, run_cli):
    cloud = local_cloud
    d = cloud.deploy("cam", "detector", "1.0", data=b"m" * 1000)
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(cloud.agent_config(tmp_path / "models", tmp_path / "state")))
    if first == "status":
        proc = run_cli(["status", "--config", str(path)])
        assert proc.returncode == 0
        assert "active models: none" in proc.stdout and "last heartbeat: never" in proc.stdout
        return
    proc = run_cli(["run", "--config", str(path), "--once"])
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line)["event"] for line in proc.stderr.splitlines()]
    assert events[0] == "agent.started" and "heartbeat.sent" in events
    proc = run_cli(["status", "--config", str(path)])
    assert proc.returncode == 0
    assert "cam " in proc.stdout and "sha1 " in proc.stdout
    assert "last deployment: %s SUCCESS" % d["DeploymentName"] in proc.stdout
    assert "last heartbeat: 20" in proc.stdout
    proc = run_cli(["status", "--config", str(path), "--json"])
    doc = json.loads(proc.stdout)
    assert doc["active_models"][0]["handle"] == "cam"
    assert doc["pending_results"] == []


def test_s3_rejecting_the_key_fails_the_model(local_cloud, tmp_path):
    cloud = local_cloud
    d = cloud.deploy("cam", "detector", "1.0", data=b"m" * 100)
    edge_only = cloud.create_key(s3=False)  # valid for the edge endpoint, unknown to S3
    r = make_runner(cloud, tmp_path, credentials=cloud.credentials_config(edge_only))
    assert r.cycle()["ok"]
    m = results_by_name(cloud)[d["DeploymentName"]]["DeploymentModels"][0]
    assert m["Status"] == "FAIL"
    assert "HTTP 403 InvalidAccessKeyId" in m["StatusReason"], m["StatusReason"]


def test_expired_credentials_are_refreshed(local_cloud, tmp_path):
    from edgecore import Credentials

    cloud = local_cloud
    cloud.deploy("cam", "detector", "1.0", data=b"m" * 100)
    old = cloud.create_key(temporary=True, expires_in=-60)  # already expired: no sleep
    new = cloud.create_key(temporary=True, expires_in=3600)

    class Provider:
        """Hands out `old` until invalidated (what an IoT provider's cache would do)."""

        def __init__(self):
            self.key = old
            self.invalidations = 0

        def get(self, now=None):
            k = self.key
            return Credentials(k["access_key_id"], k["secret_access_key"], k["session_token"])

        def invalidate(self):
            self.invalidations += 1
            self.key = new

    provider = Provider()
    config = load_config(cloud.agent_config(tmp_path / "models", tmp_path / "state"), environ={})
    r = Runner(config, credentials=provider, sleep=lambda s: None)
    report = r.cycle()
    assert report["ok"], report
    assert provider.invalidations == 1
    assert active_bytes(tmp_path, "cam") == b"m" * 100


def test_cli_service_mode_stops_on_sigterm(local_cloud, tmp_path, agent_env):
    cloud = local_cloud
    cloud.deploy("cam", "detector", "1.0", data=b"m" * 1000)
    path = tmp_path / "agent.json"
    cfg = cloud.agent_config(tmp_path / "models", tmp_path / "state", heartbeat_interval=0.2)
    path.write_text(json.dumps(cfg))
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecore_tools.cli", "run", "--config", str(path)],
        env=agent_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(cloud.heartbeats()) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(cloud.heartbeats()) >= 3
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-2000:]
    events = [json.loads(line)["event"] for line in err.splitlines()]
    # The cycle in progress (if any) is finished, then the agent stops.
    assert events[-1] == "agent.stopped" and "agent.stopping" in events
    assert events[events.index("agent.stopping") :].count("poll.done") <= 1
    assert active_bytes(tmp_path, "cam") == b"m" * 1000


def test_model_without_name_metadata_reports_its_sha1(local_cloud, tmp_path):
    cloud = local_cloud
    data = b"m" * 1000
    d = cloud.deploy("cam", "detector", "1.0", data=data)
    # An artifact uploaded by other tooling, without the model-name/-version metadata.
    cloud.put_object(d["Definitions"][0]["S3Url"], data)
    r = make_runner(cloud, tmp_path)
    assert r.cycle()["ok"]
    assert cloud.heartbeats()[-1]["body"]["Models"] == [
        {"ModelName": "cam-model", "ModelVersion": hashlib.sha1(data).hexdigest()[:12]}
    ]
