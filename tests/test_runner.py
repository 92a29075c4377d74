"""Tests of edgecore_ports.runner: the agent's I/O executor (CPython).

A real HTTP server on 127.0.0.1 plays both S3 (GET /<bucket>/<key>, XML errors) and a
minimal Edge Manager endpoint (POST /GetDeployments, /SendHeartbeat); the runner uses
the real CPython port, the real file system under tmp_path and real SigV4 signing. Only
free space and the clock are swapped (by wrapping the real port) where a test needs it.
"""

import email.utils
import hashlib
import json
import os
import stat
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from edgecore import Credentials, agentstate
from edgecore.amztime import amz_date
from edgecore_ports import cpython
from edgecore_ports import runner as runner_mod
from edgecore_ports.runner import Runner, load_config

CREDS = Credentials("AKIDTEST", "secret-key-do-not-log")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def date_time_string(self, timestamp=None):
        return email.utils.formatdate(self.server.clock(), usegmt=True)

    def _send(self, status, body=b"", ctype="application/json", headers=None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _skewed(self):
        if self.server.max_skew is None:
            return False
        sent = self.headers.get("X-Amz-Date", "")
        return (
            sent != amz_date(int(self.server.clock()))
            and abs(_parse_amz(sent) - self.server.clock()) > self.server.max_skew
        )

    def do_GET(self):
        srv = self.server
        srv.gets.append(self.path)
        assert self.headers["Authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDTEST/")
        assert self.headers["X-Amz-Content-Sha256"]
        if self._skewed():
            return self._send(
                403,
                b"<Error><Code>RequestTimeTooSkewed</Code><Message>The "
                b"difference between the request time and the current time is "
                b"too large.</Message></Error>",
                "application/xml",
            )
        scope = self.headers["Authorization"].split("Credential=", 1)[1].split("/")
        srv.regions.append(scope[2])
        if srv.bucket_region and scope[2] != srv.bucket_region:
            # S3's answer to a request signed for another region than the bucket's.
            return self._send(
                301,
                b"<Error><Code>PermanentRedirect</Code><Message>The bucket you are "
                b"attempting to access must be addressed using the specified "
                b"endpoint.</Message></Error>",
                "application/xml",
                headers={"x-amz-bucket-region": srv.bucket_region},
            )
        if srv.get_faults:
            status, code = srv.get_faults.pop(0)
            return self._send(
                status,
                ("<Error><Code>%s</Code><Message>try again</Message></Error>" % code).encode(),
                "application/xml",
            )
        data = srv.objects.get(self.path)
        if data is None:
            return self._send(
                404,
                b"<?xml version='1.0'?><Error><Code>NoSuchKey</Code><Message>"
                b"The specified key does not exist.</Message></Error>",
                "application/xml",
            )
        extra = dict(srv.object_headers.get(self.path, {}))
        rng = self.headers.get("Range")
        srv.ranges.append(rng)
        if rng and srv.honour_range:
            start = int(rng[len("bytes=") : -1])
            extra["Content-Range"] = "bytes %d-%d/%d" % (start, len(data) - 1, len(data))
            return self._send(206, data[start:], "application/octet-stream", extra)
        if srv.cut_after:
            # Send part of the body, then drop the connection.
            cut, srv.cut_after = srv.cut_after.pop(0), srv.cut_after[1:] or None
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:cut])
            self.wfile.flush()
            self.close_connection = True
            return None
        if srv.short_body:
            # Declare more than is sent, then close: a truncated download.
            self.send_response(200)
            self.send_header("Content-Length", str(len(data) + 10))
            self.end_headers()
            self.wfile.write(data)
            self.close_connection = True
            return None
        return self._send(200, data, "application/octet-stream", extra)

    def do_POST(self):
        srv = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        op = self.path.strip("/")
        if self._skewed():
            return self._send(
                403,
                json.dumps(
                    {"message": "Signature expired: 19700101T001640Z is now earlier than ..."}
                ).encode(),
                headers={"x-amzn-ErrorType": "InvalidSignatureException"},
            )
        if srv.post_faults.get(op):
            status, code = srv.post_faults[op].pop(0)
            return self._send(
                status,
                json.dumps({"message": "injected"}).encode(),
                headers={"x-amzn-ErrorType": code},
            )
        if op == "GetDeployments":
            srv.polls += 1
            return self._send(200, json.dumps({"Deployments": srv.deployments}).encode())
        if op == "SendHeartbeat":
            srv.heartbeats.append(json.loads(body))
            return self._send(200, b"")
        return self._send(404, b"{}")


def _parse_amz(value):
    import calendar

    try:
        return calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return 0


class Cloud:
    """The test server and helpers to publish models and deployments."""

    def __init__(self):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        s = self.httpd
        s.objects = {}
        s.object_headers = {}
        s.deployments = []
        s.heartbeats = []
        s.gets = []
        s.get_faults = []
        s.post_faults = {}
        s.polls = 0
        s.max_skew = None
        s.bucket_region = None  # answer 301 + x-amz-bucket-region to other regions
        s.regions = []  # the region of every GET's credential scope
        s.short_body = False
        s.cut_after = None
        s.honour_range = True
        s.ranges = []
        s.clock = time.time
        # A short poll interval: stop() (shutdown) waits for one poll, in every test.
        self.thread = threading.Thread(
            target=s.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()
        self.url = "http://127.0.0.1:%d" % s.server_address[1]
        self.n = 0

    def put(self, key, data, headers=None):
        self.httpd.objects["/models/" + key] = data
        if headers:
            self.httpd.object_headers["/models/" + key] = headers
        return "s3://models/" + key, hashlib.sha1(data).hexdigest()

    def deploy(self, *defs, policy="ROLLBACK_ON_FAILURE"):
        self.n += 1
        name = "dep-%d" % self.n
        self.httpd.deployments.append(
            {
                "DeploymentName": name,
                "Type": "Model",
                "FailureHandlingPolicy": policy,
                "Definitions": [dict(d) for d in defs],
            }
        )
        return name

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def deploy_def(handle, url, sha1):
    return {
        "ModelHandle": handle,
        "S3Url": url,
        "Checksum": {"Type": "SHA1", "Sum": sha1},
        "State": "DEPLOY",
    }


def undeploy_def(handle):
    return {"ModelHandle": handle, "State": "UNDEPLOY"}


@pytest.fixture
def cloud():
    c = Cloud()
    yield c
    c.stop()


def make_config(tmp_path, cloud, **extra):
    config = {
        "device_name": "dev-1",
        "fleet_name": "fleet-1",
        "region": "us-west-2",
        "model_dir": str(tmp_path / "models"),
        "state_dir": str(tmp_path / "state"),
        "endpoint_url": cloud.url,
        "s3_endpoint_url": cloud.url,
        "max_retries": 3,
        "retry_time_budget": 30,
        "free_space_reserve_bytes": 0,
    }
    config.update(extra)
    return load_config(config, environ={})


def port_with(**overrides):
    """The real CPython port with some functions replaced."""
    port = types.SimpleNamespace(
        **{
            n: getattr(cpython, n)
            for n in (
                "clock",
                "monotonic",
                "atomic_write",
                "free_space",
                "metrics",
                "make_transport",
            )
        }
    )
    for k, v in overrides.items():
        setattr(port, k, v)
    return port


class Events:
    def __init__(self):
        self.items = []

    def __call__(self, level, event, **fields):
        self.items.append((level, event, fields))

    def names(self):
        return [e for _, e, _ in self.items]


def make_runner(
    tmp_path, cloud, port=None, reload_hook=None, crash_hook=None, credentials=CREDS, **extra
):
    sleeps = []
    r = Runner(
        make_config(tmp_path, cloud, **extra),
        port=port or port_with(),
        credentials=credentials,
        reload_hook=reload_hook,
        log=Events(),
        rand=lambda: 0.5,
        sleep=sleeps.append,
        crash_hook=crash_hook,
    )
    r.sleeps = sleeps
    return r


def read_active(tmp_path, handle):
    link = tmp_path / "models" / handle
    assert link.is_symlink()
    files = [p for p in link.iterdir() if p.name != "edgecore.json"]
    assert len(files) == 1
    return files[0].read_bytes()


def test_full_cycle_deploys_and_reports(tmp_path, cloud):
    data = os.urandom(300000)
    url, sha = cloud.put("cam/v1/model.tar.gz", data)
    cloud.deploy(deploy_def("cam", url, sha))
    r = make_runner(tmp_path, cloud)
    report = r.cycle()
    assert report["ok"], report
    assert report["results"][0]["DeploymentStatus"] == "SUCCESS"
    assert read_active(tmp_path, "cam") == data
    assert os.readlink(str(tmp_path / "models" / "cam")) == ".versions/cam-" + sha
    assert (tmp_path / "models" / "cam" / "model.tar.gz").exists()
    assert not (tmp_path / "models" / ".staging").exists()
    st = os.stat(str(tmp_path / "state" / "state.json"))
    assert stat.S_IMODE(st.st_mode) == 0o600
    hb = cloud.httpd.heartbeats[-1]
    assert hb["DeviceName"] == "dev-1" and hb["DeviceFleetName"] == "fleet-1"
    assert hb["AgentVersion"] == runner_mod.AGENT_VERSION
    assert hb["Models"] == [{"ModelName": "cam-model", "ModelVersion": sha[:12]}]
    assert hb["DeploymentResult"]["DeploymentStatus"] == "SUCCESS"
    assert hb["DeploymentResult"]["DeploymentModels"][0]["ModelHandle"] == "cam"
    assert any(m["MetricName"] for m in hb.get("AgentMetrics", []))
    # Second cycle: nothing downloaded again, no result left to send.
    gets = len(cloud.httpd.gets)
    assert r.cycle()["ok"]
    assert len(cloud.httpd.gets) == gets
    assert "DeploymentResult" not in cloud.httpd.heartbeats[-1]
    # Secrets never reach the log.
    assert "secret-key-do-not-log" not in repr(r.log.items)


def test_update_undeploy_and_cleanup(tmp_path, cloud):
    url1, sha1 = cloud.put("cam/1/m.bin", b"version one")
    url2, sha2 = cloud.put("cam/2/m.bin", b"version two")
    cloud.deploy(deploy_def("cam", url1, sha1))
    r = make_runner(tmp_path, cloud)
    assert r.cycle()["ok"]
    cloud.deploy(deploy_def("cam", url2, sha2))
    assert r.cycle()["ok"]
    assert read_active(tmp_path, "cam") == b"version two"
    assert os.listdir(str(tmp_path / "models" / ".versions")) == ["cam-" + sha2]
    cloud.deploy(undeploy_def("cam"))
    assert r.cycle()["ok"]
    assert not os.path.lexists(str(tmp_path / "models" / "cam"))
    assert os.listdir(str(tmp_path / "models" / ".versions")) == []
    results = [h["DeploymentResult"] for h in cloud.httpd.heartbeats if "DeploymentResult" in h]
    assert [x["DeploymentStatus"] for x in results] == ["SUCCESS"] * 3
    assert "Models" not in cloud.httpd.heartbeats[-1]


def test_checksum_mismatch_keeps_previous_and_reports(tmp_path, cloud):
    url1, sha1 = cloud.put("cam/1/m.bin", b"good")
    cloud.deploy(deploy_def("cam", url1, sha1))
    r = make_runner(tmp_path, cloud)
    assert r.cycle()["ok"]
    url2, _ = cloud.put("cam/2/m.bin", b"corrupted bytes")
    cloud.deploy(deploy_def("cam", url2, hashlib.sha1(b"what it should be").hexdigest()))
    report = r.cycle()
    assert report["ok"]
    res = report["results"][0]
    assert res["DeploymentStatus"] == "FAIL"
    m = res["DeploymentModels"][0]
    assert "checksum mismatch" in m["StatusReason"]
    assert m["State"] == "DEPLOY"
    assert read_active(tmp_path, "cam") == b"good"
    assert os.listdir(str(tmp_path / "models" / ".versions")) == ["cam-" + sha1]
    assert not (tmp_path / "models" / ".staging").exists()
    assert cloud.httpd.heartbeats[-1]["DeploymentResult"]["DeploymentStatus"] == "FAIL"


def test_missing_object_is_a_clear_failure(tmp_path, cloud):
    cloud.deploy(deploy_def("cam", "s3://models/nope/m.bin", "a" * 40))
    r = make_runner(tmp_path, cloud)
    res = r.cycle()["results"][0]
    reason = res["DeploymentModels"][0]["StatusReason"]
    assert "HTTP 404 NoSuchKey: The specified key does not exist." in reason
    assert "s3://models/nope/m.bin" in reason
    assert r.sleeps == []  # a 404 is not retried


def test_retries_5xx_then_succeeds(tmp_path, cloud):
    url, sha = cloud.put("cam/m.bin", b"payload")
    cloud.deploy(deploy_def("cam", url, sha))
    cloud.httpd.get_faults = [(503, "SlowDown"), (500, "InternalError")]
    cloud.httpd.post_faults = {"GetDeployments": [(400, "ThrottlingException")]}
    r = make_runner(tmp_path, cloud)
    report = r.cycle()
    assert report["ok"] and report["results"][0]["DeploymentStatus"] == "SUCCESS"
    # Full jitter with rand()=0.5: half of 1, 1 (the API call), then 2.
    assert r.sleeps == [0.5, 0.5, 1.0]
    assert "download.retry" in r.log.names()


def test_retry_cap_fails_the_model_and_goes_on(tmp_path, cloud):
    url, sha = cloud.put("cam/m.bin", b"payload")
    url2, sha2 = cloud.put("gps/m.bin", b"gps")
    cloud.deploy(deploy_def("cam", url, sha), deploy_def("gps", url2, sha2), policy="DO_NOTHING")
    cloud.httpd.get_faults = [(503, "SlowDown")] * 4
    r = make_runner(tmp_path, cloud, max_retries=3)
    report = r.cycle()
    assert report["ok"]
    cam, gps = report["results"][0]["DeploymentModels"]
    assert cam["Status"] == "FAIL"
    assert cam["StatusReason"].startswith("download failed: gave up after 4 attempt(s)")
    assert "503 SlowDown" in cam["StatusReason"]
    assert gps["Status"] == "SUCCESS"
    assert len(r.sleeps) == 3


def test_not_enough_free_space(tmp_path, cloud):
    url, sha = cloud.put("cam/m.bin", b"x" * 5000)
    cloud.deploy(deploy_def("cam", url, sha))
    r = make_runner(
        tmp_path, cloud, port=port_with(free_space=lambda path: 6000), free_space_reserve_bytes=2000
    )
    res = r.cycle()["results"][0]
    reason = res["DeploymentModels"][0]["StatusReason"]
    assert "not enough free space" in reason and "need 5000 bytes + 2000 reserve" in reason
    assert os.listdir(str(tmp_path / "models" / ".versions")) == []
    assert not (tmp_path / "models" / ".staging").exists()


def test_truncated_body_is_not_kept(tmp_path, cloud):
    url, sha = cloud.put("cam/m.bin", b"x" * 1000)
    cloud.deploy(deploy_def("cam", url, sha))
    cloud.httpd.short_body = True
    cloud.httpd.honour_range = False
    r = make_runner(tmp_path, cloud, max_retries=1)
    res = r.cycle()["results"][0]
    assert res["DeploymentStatus"] == "FAIL"
    assert not os.path.lexists(str(tmp_path / "models" / "cam"))
    assert os.listdir(str(tmp_path / "models" / ".versions")) == []


def test_reload_hook_failure_rolls_back(tmp_path, cloud):
    url1, sha1 = cloud.put("cam/1/m.bin", b"one")
    url2, sha2 = cloud.put("cam/2/m.bin", b"two")
    calls = []

    def hook(handle, path):
        calls.append((handle, path and os.readlink(path)))
        if path and os.readlink(path).endswith(sha2):
            raise RuntimeError("model does not load")

    cloud.deploy(deploy_def("cam", url1, sha1))
    r = make_runner(tmp_path, cloud, reload_hook=hook)
    assert r.cycle()["ok"]
    cloud.deploy(deploy_def("cam", url2, sha2))
    res = r.cycle()["results"][0]
    m = res["DeploymentModels"][0]
    assert m["Status"] == "FAIL"
    assert m["StatusReason"] == "reload failed: RuntimeError: model does not load"
    assert "RollbackFailureReason" not in m
    assert read_active(tmp_path, "cam") == b"one"
    assert calls[-1] == ("cam", ".versions/cam-" + sha1)


def test_reload_command_failure(tmp_path, cloud):
    url, sha = cloud.put("cam/m.bin", b"one")
    cloud.deploy(deploy_def("cam", url, sha))
    r = make_runner(
        tmp_path,
        cloud,
        reload_command=["sh", "-c", 'echo "cannot load $EDGECORE_MODEL_HANDLE" >&2; exit 3'],
    )
    m = r.cycle()["results"][0]["DeploymentModels"][0]
    assert m["Status"] == "FAIL"
    assert "reload_command sh exited with 3: cannot load cam" in m["StatusReason"]
    assert not os.path.lexists(str(tmp_path / "models" / "cam"))


def test_reload_command_gets_no_secrets(tmp_path, cloud, monkeypatch):
    url, sha = cloud.put("cam/m.bin", b"one")
    cloud.deploy(deploy_def("cam", url, sha))
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-do-not-pass")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-token-do-not-pass")
    monkeypatch.setenv("EDGECORE_TEST_KEEP", "kept")
    out = tmp_path / "env.txt"
    r = make_runner(tmp_path, cloud, reload_command=["sh", "-c", "env > %s" % out])
    assert r.cycle()["ok"]
    env = out.read_text()
    assert "env-secret" not in env and "env-token" not in env
    assert "EDGECORE_TEST_KEEP=kept" in env and "EDGECORE_MODEL_HANDLE=cam" in env
    assert "EDGECORE_MODEL_SHA1=" + sha in env


def test_clock_skew_is_corrected_from_date_header(tmp_path, cloud):
    url, sha = cloud.put("cam/m.bin", b"one")
    cloud.deploy(deploy_def("cam", url, sha))
    cloud.httpd.max_skew = 300
    boot = [1000]  # a device without RTC: 1970

    def clock():
        boot[0] += 1
        return boot[0]

    r = make_runner(tmp_path, cloud, port=port_with(clock=clock))
    report = r.cycle()
    assert report["ok"], report
    assert report["results"][0]["DeploymentStatus"] == "SUCCESS"
    assert abs(r.state["clock_offset"] - (time.time() - boot[0])) < 120
    assert "clock.corrected" in r.log.names()
    # The floor is persisted: a restart at 1970 again signs with a sane time.
    saved = agentstate.loads((tmp_path / "state" / "state.json").read_bytes())
    assert saved["clock_floor"] > 1600000000


def test_a_bucket_in_another_region_is_signed_for_it_as_boto3_does(tmp_path, cloud):
    """Issue 12 item 4: S3 answers 301 with x-amz-bucket-region to a request signed for
    another region: retried once, signed for that region, remembered for the bucket.
    boto3 against the same server makes the same requests."""
    import boto3
    from botocore.config import Config

    url1, sha1 = cloud.put("cam/1/m.bin", b"one")
    url2, sha2 = cloud.put("cam/2/m.bin", b"two")
    cloud.httpd.bucket_region = "eu-west-1"
    s3 = boto3.client("s3", region_name="us-west-2", endpoint_url=cloud.url,
                      aws_access_key_id="AKIDTEST", aws_secret_access_key="x",
                      config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))
    for key in ("cam/1/m.bin", "cam/2/m.bin"):
        assert s3.get_object(Bucket="models", Key=key)["Body"].read()
    boto3_regions = list(cloud.httpd.regions)
    assert boto3_regions == ["us-west-2", "eu-west-1", "eu-west-1"]
    cloud.httpd.regions[:] = []
    cloud.deploy(deploy_def("cam", url1, sha1))
    r = make_runner(tmp_path, cloud)
    assert r.cycle()["ok"]
    cloud.deploy(deploy_def("cam", url2, sha2))
    assert r.cycle()["ok"]
    assert read_active(tmp_path, "cam") == b"two"
    assert cloud.httpd.regions == boto3_regions
    assert r.sleeps == []  # at once, not after a backoff
    assert ("warning", "s3.bucket_region", {"bucket": "models", "region": "eu-west-1"}) \
        in r.log.items


def test_heartbeat_failure_keeps_result_for_next_cycle(tmp_path, cloud):
    url, sha = cloud.put("cam/m.bin", b"one")
    name = cloud.deploy(deploy_def("cam", url, sha))
    cloud.httpd.post_faults = {"SendHeartbeat": [(400, "ValidationException")]}
    r = make_runner(tmp_path, cloud)
    report = r.cycle()
    assert not report["ok"]
    assert "SendHeartbeat" in report["errors"][0]
    assert [p["DeploymentName"] for p in r.state["pending"]] == [name]
    # A restart does not lose it.
    r2 = make_runner(tmp_path, cloud)
    assert r2.cycle()["ok"]
    assert cloud.httpd.heartbeats[-1]["DeploymentResult"]["DeploymentName"] == name
    assert r2.state["pending"] == []


def test_poll_failure_is_reported_and_heartbeat_still_sent(tmp_path, cloud):
    cloud.httpd.post_faults = {"GetDeployments": [(403, "AccessDeniedException")]}
    r = make_runner(tmp_path, cloud)
    report = r.cycle()
    assert not report["ok"]
    assert report["errors"][0].startswith(
        "GetDeployments: An error occurred (AccessDeniedException)"
    )
    assert len(cloud.httpd.heartbeats) == 1


def test_record_inference_reaches_heartbeat(tmp_path, cloud):
    url, sha = cloud.put(
        "camera/m.bin",
        b"one",
        headers={"x-amz-meta-model-name": "detector", "x-amz-meta-model-version": "2.1"},
    )
    cloud.deploy(deploy_def("camera", url, sha))
    r = make_runner(tmp_path, cloud)
    assert r.cycle()["ok"]
    assert r.record_inference("camera", latency_ms=12.5, sample_time=1700000000)
    assert not r.record_inference("other", latency_ms=1)
    assert r.cycle()["ok"]
    model = cloud.httpd.heartbeats[-1]["Models"][0]
    assert model["ModelName"] == "detector" and model["ModelVersion"] == "2.1"
    assert model["LatestSampleTime"] == 1700000000
    names = sorted(m["MetricName"] for m in model["ModelMetrics"])
    assert names == ["inference-count", "latency-max-ms", "latency-mean-ms"]


def test_recover_fixes_disk_from_state(tmp_path, cloud):
    url, sha = cloud.put("cam/m.bin", b"one")
    cloud.deploy(deploy_def("cam", url, sha))
    r = make_runner(tmp_path, cloud)
    assert r.cycle()["ok"]
    models = tmp_path / "models"
    (models / ".staging" / "x-y").mkdir(parents=True)
    (models / ".staging" / "x-y" / "part").write_bytes(b"half")
    os.unlink(str(models / "cam"))
    os.symlink(".versions/gone-" + "b" * 40, str(models / "stray"))
    (models / "user-file").write_bytes(b"not ours")
    os.symlink(".versions/cam-" + sha, str(models / ".cam.link-tmp"))
    (tmp_path / "state" / ".state.json.abc123.tmp").write_bytes(b"{half")
    r2 = make_runner(tmp_path, cloud)
    r2.start()
    assert sorted(os.listdir(str(tmp_path / "state"))) == ["state.json"]
    assert not os.path.lexists(str(models / ".cam.link-tmp"))
    assert not (models / ".staging").exists()
    assert read_active(tmp_path, "cam") == b"one"
    assert not os.path.lexists(str(models / "stray"))
    assert (models / "user-file").read_bytes() == b"not ours"


def test_corrupt_state_file_is_a_typed_error(tmp_path, cloud):
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.json").write_bytes(b'{"schema": 1, "active": []}')
    r = make_runner(tmp_path, cloud)
    with pytest.raises(agentstate.StateError) as info:
        r.start()
    assert "invalid active" in str(info.value)


class Crash(BaseException):
    """Not an Exception: nothing in the runner may swallow it (like SIGKILL)."""


def test_crash_at_every_point_converges(tmp_path, cloud):
    data1 = os.urandom(200000)
    data2 = os.urandom(150000)
    url1, sha1 = cloud.put("cam/1/m.bin", data1)
    url2, sha2 = cloud.put("cam/2/m.bin", data2)
    url3, sha3 = cloud.put("gps/1/m.bin", b"gps")
    cloud.deploy(deploy_def("cam", url1, sha1))
    cloud.deploy(deploy_def("cam", url2, sha2), deploy_def("gps", url3, sha3))
    cloud.deploy(undeploy_def("gps"))
    # Count the crash points of an uninterrupted run, then crash at each in turn. A run of
    # "download-chunk" points counts once: how many reads a body takes depends on how the
    # bytes arrive (the port returns what has come), so only its first point is stable.
    def stable(points):
        def hook(point):
            if not (point == "download-chunk" and points and points[-1] == point):
                points.append(point)

        return hook

    points = []
    base = tmp_path / "reference"
    r = make_runner(base, cloud, crash_hook=stable(points))
    assert r.cycle()["ok"]
    assert len(points) > 10
    for k in range(len(points)):
        work = tmp_path / ("crash-%d" % k)
        seen = []
        count = stable(seen)

        def hook(point, k=k, seen=seen, count=count):
            count(point)
            if len(seen) == k + 1 and seen[-1] == point == points[k]:
                raise Crash(point)

        r = make_runner(work, cloud, crash_hook=hook)
        with pytest.raises(Crash):
            r.cycle()
        # Whatever is active after the crash is complete and verified.
        for name in os.listdir(str(work / "models")):
            if not name.startswith("."):
                content = read_active(work, name)
                assert hashlib.sha1(content).hexdigest() in (sha1, sha2, sha3)
        r2 = make_runner(work, cloud)
        report = r2.cycle()
        assert report["ok"], (k, report)
        assert read_active(work, "cam") == data2, k
        assert not os.path.lexists(str(work / "models" / "gps"))
        assert os.listdir(str(work / "models" / ".versions")) == ["cam-" + sha2]
        assert r2.state["pending"] == [] and r2.state["inflight"] is None
        assert sorted(r2.state["done"]) == ["dep-1", "dep-2", "dep-3"]


def test_inference_spool_from_another_process(tmp_path, cloud):
    url, sha = cloud.put("cam/m.bin", b"one")
    cloud.deploy(deploy_def("cam", url, sha))
    r = make_runner(tmp_path, cloud)
    assert r.cycle()["ok"]
    state_dir = str(tmp_path / "state")
    runner_mod.record_inference(
        state_dir, "cam", latency_ms=10, sample_time=1700000001, now=1700000005
    )
    runner_mod.record_inference(state_dir, "cam", latency_ms=30, now=1700000006)
    runner_mod.record_inference(state_dir, "not-active", latency_ms=1, now=1700000007)
    with open(os.path.join(state_dir, "inference.jsonl"), "a") as f:
        f.write("{broken\n")
        f.write('{"h": "cam", "l": 1, "s": null, "t": 1e400}\n')  # inf: OverflowError in int()
    for bad in (-1, float("nan"), float("inf"), 10**12):
        with pytest.raises(ValueError):
            runner_mod.record_inference(state_dir, "cam", latency_ms=bad)
    assert r.cycle()["ok"]
    model = cloud.httpd.heartbeats[-1]["Models"][0]
    assert model["LatestInference"] == 1700000006
    assert model["LatestSampleTime"] == 1700000001
    values = dict((m["MetricName"], m["Value"]) for m in model["ModelMetrics"])
    assert values == {"inference-count": 2.0, "latency-mean-ms": 20.0, "latency-max-ms": 30.0}
    assert ("warning", "inference.bad_lines", {"count": 2}) in r.log.items
    assert not os.path.exists(os.path.join(state_dir, "inference.jsonl"))
    assert not os.path.exists(os.path.join(state_dir, "inference.jsonl.ingest"))
    # Acknowledged: the next heartbeat has no metrics for the interval.
    assert r.cycle()["ok"]
    assert "ModelMetrics" not in cloud.httpd.heartbeats[-1]["Models"][0]


@pytest.mark.parametrize("honour_range", [True, False])
def test_interrupted_download_resumes_with_range(tmp_path, cloud, honour_range):
    data = os.urandom(1000000)
    url, sha = cloud.put("cam/m.bin", data)
    cloud.deploy(deploy_def("cam", url, sha))
    cloud.httpd.cut_after = [300000]
    cloud.httpd.honour_range = honour_range
    r = make_runner(tmp_path, cloud)
    report = r.cycle()
    assert report["ok"] and report["results"][0]["DeploymentStatus"] == "SUCCESS", report
    assert read_active(tmp_path, "cam") == data
    if honour_range:
        # The second request asks for what is missing, and gets only that.
        assert cloud.httpd.ranges == [None, "bytes=300000-"]
    else:
        assert cloud.httpd.ranges[1] == "bytes=300000-"  # ignored: 200, started over
    retries = [f for level, e, f in r.log.items if e == "download.retry"]
    assert retries and retries[0]["have"] == 300000


def test_cycle_reports_every_result_and_logs_each(tmp_path, cloud):
    url, sha = cloud.put("cam/m.bin", b"one")
    cloud.deploy(deploy_def("cam", url, sha))
    cloud.deploy(deploy_def("cam", url, sha))  # already satisfied: no I/O at all
    cloud.deploy(undeploy_def("nothing"))
    r = make_runner(tmp_path, cloud)
    report = r.cycle()
    assert [x["DeploymentName"] for x in report["results"]] == ["dep-1", "dep-2", "dep-3"]
    done = [f for level, e, f in r.log.items if e == "deployment.done"]
    assert [f["deployment"] for f in done] == ["dep-1", "dep-2", "dep-3"]
    assert all(f["status"] == "SUCCESS" for f in done)
    # Three results, one per heartbeat, all sent within the cycle.
    sent = [h["DeploymentResult"]["DeploymentName"] for h in cloud.httpd.heartbeats]
    assert sent == ["dep-1", "dep-2", "dep-3"]
    assert r.state["pending"] == []


def test_run_forever_cycles_every_interval_until_stopped(tmp_path, cloud):
    url, sha = cloud.put("cam/m.bin", b"one")
    cloud.deploy(deploy_def("cam", url, sha))
    r = make_runner(tmp_path, cloud, heartbeat_interval=30)
    r.run_forever(stop=lambda: len(cloud.httpd.heartbeats) >= 3)
    assert len(cloud.httpd.heartbeats) == 3
    assert cloud.httpd.polls == 3
    assert len(r.sleeps) == 2 and all(0 < s <= 30 for s in r.sleeps)
    assert read_active(tmp_path, "cam") == b"one"


class FailingProvider:
    """A credentials provider that fails with `error` while it is set; counts calls."""

    def __init__(self, error):
        self.error = error
        self.calls = 0

    def get(self, now=None):
        self.calls += 1
        if self.error is not None:
            raise self.error
        return CREDS

    def invalidate(self):
        pass


def refused_certificate():
    from edgecore_ports.credentials import IotTransportError

    return IotTransportError(
        "iot.example", "Alias", "TLS handshake failed: refused", "TLSV1_ALERT_UNKNOWN_CA"
    )


def test_refused_credentials_fail_at_once_and_skip_the_cycle(tmp_path, cloud):
    provider = FailingProvider(refused_certificate())
    r = make_runner(tmp_path, cloud, credentials=provider)
    report = r.cycle()
    assert not report["ok"]
    # One attempt, no backoff, one error that names the credentials (not the service).
    assert provider.calls == 1 and r.sleeps == []
    assert len(report["errors"]) == 1
    assert report["errors"][0].startswith("credentials: AssumeRoleWithCertificate"), report
    assert "TLS handshake failed" in report["errors"][0]
    assert cloud.httpd.polls == 0 and cloud.httpd.heartbeats == []
    assert "cycle.skipped" in r.log.names() and "api.retry" not in r.log.names()


def test_interrupted_deployment_waits_for_credentials_instead_of_failing(tmp_path, cloud):
    data = os.urandom(200000)
    url, sha = cloud.put("cam/m.bin", data)
    cloud.deploy(deploy_def("cam", url, sha))

    def kill_in_download(point):
        if point == "download-chunk":
            raise Crash(point)

    with pytest.raises(Crash):
        make_runner(tmp_path, cloud, crash_hook=kill_in_download).cycle()
    # Restarted while the device certificate is refused: the deployment is not failed.
    provider = FailingProvider(refused_certificate())
    r = make_runner(tmp_path, cloud, credentials=provider)
    assert not r.cycle()["ok"]
    assert [d["name"] for d in r.state["queue"]] == ["dep-1"] and r.state["pending"] == []
    assert "deployment.done" not in r.log.names() and provider.calls == 1
    # Fixed: it resumes and succeeds.
    provider.error = None
    report = r.cycle()
    assert report["ok"], report
    assert report["results"][0]["DeploymentStatus"] == "SUCCESS"
    assert read_active(tmp_path, "cam") == data


def test_retryable_credentials_failure_is_retried_and_named(tmp_path, cloud):
    from edgecore_ports.credentials import IotTransportError

    provider = FailingProvider(IotTransportError("iot.example", "Alias", "connection refused"))
    r = make_runner(tmp_path, cloud, credentials=provider)
    report = r.cycle()
    # max_retries=3: 4 attempts for the poll, 4 for the heartbeat, each error named once.
    assert provider.calls == 8 and len(r.sleeps) == 6
    assert [e.split(":", 1)[0] for e in report["errors"]] == ["credentials", "credentials"]
    assert cloud.httpd.polls == 0


def test_any_error_marked_not_retryable_is_raised_at_once(tmp_path, cloud):
    from edgecore.errors import TransportError

    class Http:
        def __init__(self):
            self.calls = 0

        def transport(self, method, url, headers, body=b"", deadline=None):
            self.calls += 1
            exc = TransportError("proxy refused the request")
            exc.retryable = not url.endswith("/GetDeployments")  # final for the poll only
            raise exc

    r = make_runner(tmp_path, cloud)
    r.http = Http()
    with pytest.raises(TransportError):
        r.call("get_deployments", DeviceName="dev-1", DeviceFleetName="fleet-1")
    assert r.http.calls == 1 and r.sleeps == []
    report = r.cycle()  # the heartbeat's errors are not marked final: retried
    assert report["errors"] == [
        "GetDeployments: proxy refused the request",
        "SendHeartbeat: proxy refused the request",
    ]
    assert r.http.calls == 1 + 1 + 4 and len(r.sleeps) == 3


# ---- per-attempt bounds: request_timeout (API), min_download_rate (downloads) ----------


class SteppingClock:
    """A monotonic clock that moves ``step`` seconds at every reading: no real time
    passes, the runner just sees a slow link. It starts at the real monotonic time, so
    deadlines it sets are never in the past for the transport (which keeps real time)."""

    def __init__(self, step):
        self.t = time.monotonic()
        self.step = step

    def __call__(self):
        self.t += self.step
        return self.t


def test_download_below_min_rate_is_aborted_and_resumed(tmp_path, cloud):
    data = os.urandom(300000)
    url, sha = cloud.put("cam/m.bin", data)
    cloud.deploy(deploy_def("cam", url, sha))
    r = make_runner(
        tmp_path,
        cloud,
        port=port_with(monotonic=SteppingClock(20)),
        min_download_rate=10**6,
        max_retries=10,
        retry_time_budget=10**7,
    )
    assert r.cycle()["ok"]
    retries = [f for _, e, f in r.log.items if e == "download.retry"]
    assert retries and all("download too slow" in f["reason"] for f in retries)
    haves = [f["have"] for f in retries]
    assert haves == sorted(set(haves)) and haves[0] > 0
    assert cloud.httpd.ranges == [None] + ["bytes=%d-" % h for h in haves]
    assert read_active(tmp_path, "cam") == data
    assert not (tmp_path / "models" / ".staging").exists()


def test_download_that_never_reaches_min_rate_fails_and_keeps_previous(tmp_path, cloud):
    v1 = b"one" * 1000
    url, sha = cloud.put("cam/v1.bin", v1)
    cloud.deploy(deploy_def("cam", url, sha))
    clock = SteppingClock(0)
    r = make_runner(
        tmp_path, cloud, port=port_with(monotonic=clock), max_retries=1, retry_time_budget=10**7
    )
    assert r.cycle()["ok"]
    url2, sha2 = cloud.put("cam/v2.bin", os.urandom(2 * 1024 * 1024))
    cloud.httpd.deployments[:] = []
    cloud.deploy(deploy_def("cam", url2, sha2))
    clock.step = 40  # every reading "takes" 40 s: about 1.6 KB/s, under the floor below
    r.config["min_download_rate"] = 10**5
    assert r.cycle()["ok"]
    res = cloud.httpd.heartbeats[-1]["DeploymentResult"]
    assert res["DeploymentStatus"] == "FAIL"
    reason = res["DeploymentModels"][0]["StatusReason"]
    assert "gave up after 2 attempt(s)" in reason and "download too slow" in reason
    assert read_active(tmp_path, "cam") == v1
    assert not (tmp_path / "models" / ".staging").exists()


def test_min_download_rate_zero_disables_the_rule(tmp_path, cloud):
    data = os.urandom(300000)
    url, sha = cloud.put("cam/m.bin", data)
    cloud.deploy(deploy_def("cam", url, sha))
    r = make_runner(
        tmp_path,
        cloud,
        port=port_with(monotonic=SteppingClock(1000)),
        min_download_rate=0,
        request_timeout=10**6,
        retry_time_budget=10**7,
    )
    assert r.cycle()["ok"]
    assert "download.retry" not in r.log.names()
    assert read_active(tmp_path, "cam") == data


class DeadlineHttp:
    """``transport`` records the deadline it is given and fails as a port does when the
    deadline passes."""

    def __init__(self):
        self.deadlines = []

    def transport(self, method, url, headers, body=b"", deadline=None):
        from edgecore.errors import TransportError

        self.deadlines.append(deadline)
        raise TransportError("%s %s: deadline passed before the exchange completed"
                             % (method, url))


def test_api_call_passes_request_timeout_as_the_deadline(tmp_path, cloud):
    from edgecore.errors import TransportError

    clock = SteppingClock(10)
    r = make_runner(tmp_path, cloud, port=port_with(monotonic=clock), request_timeout=60,
                    max_retries=2, retry_time_budget=10**7)
    r.http = DeadlineHttp()
    with pytest.raises(TransportError) as info:
        r.call("get_deployments", DeviceName="dev-1", DeviceFleetName="fleet-1")
    assert "deadline passed" in str(info.value)
    assert len(r.http.deadlines) == 3 and len(r.sleeps) == 2  # retried like a network error
    # Each attempt gets its own deadline, request_timeout after it starts.
    assert all(d is not None for d in r.http.deadlines)
    assert r.http.deadlines == sorted(set(r.http.deadlines))


def test_api_call_with_a_trickled_head_ends_at_request_timeout(tmp_path, cloud):
    """A control plane trickling its answer's head a byte at a time (each byte well
    within the socket's read timeout) holds a call no longer than request_timeout."""
    from test_ports_cpython import Hostile

    head = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 1000
    srv = Hostile(lambda conn, srv: srv.trickle(conn, head, 0.05))
    try:
        r = make_runner(tmp_path, cloud, endpoint_url=srv.url, request_timeout=1, max_retries=0)
        start = time.monotonic()
        report = r.cycle()
        took = time.monotonic() - start
        assert not report["ok"]
        assert "deadline passed" in report["errors"][0], report
        assert took < 8, took  # the poll and the heartbeat: about a second each
    finally:
        srv.close()
