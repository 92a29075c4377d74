"""The agent under network faults: ``tests/faults/proxy.py`` between the agent and the
local cloud / moto S3 (CPython only; fixtures from conftest.py).

One test per fault kind: the agent recovers (bounded retries with backoff, one clock
correction, one credentials refresh), never activates a corrupt or truncated artifact,
resumes a cut download with a ``Range`` request, and delivers every deployment result at
least once (a lost heartbeat response means the result is sent again). The Runner runs
in-process with a recording no-op ``sleep``; one test drives the CLI subprocess.
"""

import hashlib
import json
import os
import subprocess
import sys
import time

import pytest

from edgecore_ports.runner import Runner, load_config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faults.proxy import FaultProxy  # noqa: E402


class Rig:
    """The local cloud behind two proxies (edge, S3) and a factory of runners."""

    def __init__(self, cloud, tmp_path, edge_offset=0):
        self.cloud = cloud
        self.tmp = tmp_path
        self.edge = FaultProxy(cloud.endpoint_url, "edge", server_clock_offset=edge_offset)
        self.s3 = FaultProxy(cloud.s3_endpoint_url, "s3", server_clock_offset=edge_offset)
        self.edge.start()
        self.s3.start()

    def stop(self):
        self.edge.stop()
        self.s3.stop()

    def config(self, **extra):
        extra.setdefault("max_retries", 3)
        extra.setdefault("retry_time_budget", 60)
        return self.cloud.agent_config(
            self.tmp / "models",
            self.tmp / "state",
            endpoint_url=self.edge.url,
            s3_endpoint_url=self.s3.url,
            **extra,
        )

    def runner(self, credentials=None, http=None, **extra):
        config = load_config(self.config(**extra), environ={})
        events, sleeps = [], []
        r = Runner(
            config,
            environ={},
            credentials=credentials,
            http=http,
            log=lambda level, event, **f: events.append((event, f)),
            sleep=sleeps.append,
        )
        r.events, r.sleeps = events, sleeps
        return r

    def active_bytes(self, handle="cam"):
        link = self.tmp / "models" / handle
        assert link.is_symlink(), handle
        files = [p for p in link.iterdir() if p.name != "edgecore.json"]
        assert len(files) == 1
        return files[0].read_bytes()

    def results(self):
        return dict((r["deployment"], r["body"]) for r in self.cloud.results())

    def result_sends(self, name):
        """How many heartbeats the cloud received carrying deployment ``name``'s result."""
        return sum(
            1
            for hb in self.cloud.heartbeats()
            if (hb["body"].get("DeploymentResult") or {}).get("DeploymentName") == name
        )


@pytest.fixture
def rig(local_cloud, tmp_path):
    r = Rig(local_cloud, tmp_path)
    yield r
    r.stop()


def events(runner, name):
    return [f for e, f in runner.events if e == name]


def deploy(rig, version, size=300000):
    data = os.urandom(size)
    d = rig.cloud.deploy("cam", "detector", version, data=data)
    return d["DeploymentName"], data


def no_staging(rig):
    staging = rig.tmp / "models" / ".staging"
    return not staging.exists() or not os.listdir(str(staging))


# ---- the proxy itself ----------------------------------------------------------


def test_proxy_is_transparent_and_keeps_connections_alive(rig):
    name, data = deploy(rig, "1.0")
    r = rig.runner()
    assert r.cycle()["ok"]
    assert r.cycle()["ok"]
    assert rig.active_bytes() == data
    assert rig.results()[name]["DeploymentStatus"] == "SUCCESS"
    ops = [e["op"] for e in rig.edge.log]
    assert ops == ["GetDeployments", "SendHeartbeat"] * 2
    # Several requests, one TCP connection: the agent reuses it through the proxy.
    assert len(rig.edge.log) >= 3 and rig.edge.connections == 1
    assert [e["op"] for e in rig.s3.log] == ["GetObject"]
    assert sum(rig.edge.counts.values()) + sum(rig.s3.counts.values()) == 0


@pytest.mark.parametrize("kind", ["http500", "http503", "http429", "skew", "expired_token"])
def test_proxy_error_answers_parse_as_aws_errors(rig, kind):
    """The proxy's own answers are what edgecore's parsers expect of AWS."""
    from edgecore import s3url, wire
    from edgecore.errors import ClientError

    status, head, body = rig.edge._own_answer(kind, "SendHeartbeat")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(
        (k.strip().lower(), v.strip()) for k, _, v in (x.partition(":") for x in lines[1:] if x)
    )
    assert headers["date"]
    with pytest.raises(ClientError) as info:
        wire.parse_response("SendHeartbeat", status, headers, body)
    assert info.value.status == status
    assert info.value.code == headers["x-amzn-errortype"].split(":")[0]
    status, head, body = rig.s3._own_answer(kind, "GetObject")
    code, message = s3url.parse_error(body)
    assert code and message
    assert b"<Error><Code>" + code.encode() + b"</Code>" in body


# ---- throttling and server errors: retried with backoff -------------------------


@pytest.mark.parametrize("kind", ["http500", "http503", "http429"])
def test_edge_server_errors_are_retried(rig, kind):
    name, data = deploy(rig, "1.0")
    rig.edge.add_fault(kind, op="GetDeployments", times=2)
    rig.edge.add_fault(kind, op="SendHeartbeat", times=1)
    r = rig.runner()
    report = r.cycle()
    assert report["ok"], report
    assert rig.edge.counts[kind] == 3
    assert len(events(r, "api.retry")) == 3
    assert len(r.sleeps) == 3 and all(s >= 0 for s in r.sleeps)
    assert [e["fault"] for e in rig.edge.requests("GetDeployments")] == [kind, kind, None]
    assert rig.edge.connections == 1  # faults per request on one keep-alive connection
    assert rig.active_bytes() == data
    assert rig.results()[name]["DeploymentStatus"] == "SUCCESS"


def test_persistent_throttling_gives_up_after_max_retries_then_recovers(rig):
    name, data = deploy(rig, "1.0")
    rig.edge.add_fault("http429", op="GetDeployments", times=100)
    r = rig.runner(max_retries=2)
    report = r.cycle()
    assert not report["ok"]
    assert "ThrottlingException" in report["errors"][0]
    assert len(rig.edge.requests("GetDeployments")) == 3  # 1 + max_retries, no more
    rig.edge.clear()
    assert r.cycle()["ok"]
    assert rig.active_bytes() == data
    assert rig.results()[name]["DeploymentStatus"] == "SUCCESS"


@pytest.mark.parametrize("kind", ["http500", "http503", "http429"])
def test_s3_server_errors_are_retried(rig, kind):
    name, data = deploy(rig, "1.0")
    rig.s3.add_fault(kind, op="GetObject", times=2)
    r = rig.runner()
    assert r.cycle()["ok"]
    assert len(events(r, "download.retry")) == 2
    assert [e["fault"] for e in rig.s3.log] == [kind, kind, None]
    assert rig.active_bytes() == data
    assert rig.results()[name]["DeploymentStatus"] == "SUCCESS"


# ---- slow links -----------------------------------------------------------------


def test_latency_and_throttled_bandwidth(rig):
    name, data = deploy(rig, "1.0", size=200000)
    rig.edge.add_fault("latency", times=2, delay=0.2)
    rig.s3.add_fault("throttle", op="GetObject", bps=1000000)
    r = rig.runner()
    assert r.cycle()["ok"]
    assert rig.edge.counts["latency"] == 2 and rig.s3.counts["throttle"] == 1
    assert not events(r, "api.retry") and not events(r, "download.retry")
    assert rig.active_bytes() == data


def test_short_stall_below_the_read_timeout_is_ridden_out(rig):
    name, data = deploy(rig, "1.0")
    rig.s3.add_fault("stall", op="GetObject", after=100000, stall=0.5)
    r = rig.runner()
    assert r.cycle()["ok"]
    assert not events(r, "download.retry")
    assert rig.active_bytes() == data


def test_long_stall_times_out_and_resumes(rig):
    from edgecore_ports import cpython

    name, data = deploy(rig, "1.0")
    rig.s3.add_fault("stall", op="GetObject", after=100000, stall=3.0)
    r = rig.runner(http=cpython.make_transport(timeout=(2, 0.5)))
    assert r.cycle()["ok"]
    retries = events(r, "download.retry")
    assert len(retries) == 1 and "timed out" in retries[0]["reason"].lower()
    first, second = rig.s3.requests("GetObject")
    have = retries[0]["have"]
    assert 0 < have <= 100000
    assert second["headers"]["range"] == "bytes=%d-" % have
    assert second["status"] == 206 and second["body_len"] == len(data) - have
    assert rig.active_bytes() == data


def test_refused_write_mid_download_resumes_without_a_hole(rig):
    """A write the kernel refuses part-way (EFBIG from RLIMIT_FSIZE here: a real failing
    write, as a flaky SD card gives) is retried with Range, and the activated file holds
    exactly the bytes that were hashed. A throttled body arrives in small reads, which a
    buffered file would hold back: `have` must count bytes the kernel took, not bytes in
    a buffer that the failing flush then drops."""
    import resource

    name, data = deploy(rig, "1.0", size=150000)
    rig.s3.add_fault("throttle", op="GetObject", bps=100000)  # 5000-byte sends
    r = rig.runner()
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    def limit_once_downloading(handle, done, total):  # process-wide: only for this window
        if not r.sleeps:
            resource.setrlimit(resource.RLIMIT_FSIZE, (101000, hard))

    def lift_limit(delay):  # the backoff wait before the retry
        r.sleeps.append(delay)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    r.progress, r.sleep = limit_once_downloading, lift_limit
    try:
        assert r.cycle()["ok"]
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    retries = events(r, "download.retry")
    assert len(retries) == 1 and "File too large" in retries[0]["reason"], r.events
    assert 0 < retries[0]["have"] <= 101000
    resumed = rig.s3.requests("GetObject")[1]
    assert resumed["headers"]["range"] == "bytes=%d-" % retries[0]["have"]
    assert rig.active_bytes() == data
    assert rig.results()[name]["DeploymentStatus"] == "SUCCESS"


# ---- cut connections: resume with Range, never activate a partial file ------------


@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_cut_download_resumes_with_range(rig, kind):
    v1 = deploy(rig, "1.0", size=50000)[1]
    r = rig.runner()
    assert r.cycle()["ok"]
    name, data = deploy(rig, "2.0", size=400000)
    rig.s3.add_fault(kind, op="GetObject", after=150000)
    assert r.cycle()["ok"]
    retries = events(r, "download.retry")
    assert len(retries) == 1, r.events
    have = retries[0]["have"]
    cut, resumed = rig.s3.requests("GetObject")[1:]
    assert cut["fault"] == kind and cut["body_sent"] == 150000
    assert "range" not in cut["headers"]
    # The resumed request continues from the bytes on disk...
    assert 0 < have <= 150000
    assert resumed["headers"]["range"] == "bytes=%d-" % have
    assert resumed["status"] == 206 and resumed["body_len"] == len(data) - have
    # ...so the bytes fetched twice are only those lost in flight (< one socket buffer).
    refetched = cut["body_sent"] + resumed["body_sent"] - len(data)
    assert 0 <= refetched < 150000
    assert rig.active_bytes() == data != v1
    assert rig.results()[name]["DeploymentStatus"] == "SUCCESS"
    assert no_staging(rig)


def test_resumed_download_sends_if_match(rig):
    """A changed object must restart cleanly (412), not be spliced onto the old prefix."""
    deploy(rig, "1.0")
    rig.s3.add_fault("reset", op="GetObject", after=150000)
    r = rig.runner()
    assert r.cycle()["ok"]
    resumed = rig.s3.requests("GetObject")[-1]
    assert "range" in resumed["headers"]
    assert resumed["headers"].get("if-match")


class Killed(Exception):
    pass


def test_download_resumes_after_a_restart(rig):
    """Power loss mid-download (the common case on devices): the restarted agent should
    continue from the bytes on disk, as after a cut connection."""
    deploy(rig, "1.0", size=600000)
    chunks = []

    def crash_hook(point):
        if point == "download-chunk":
            chunks.append(point)
            if len(chunks) == 4:
                raise Killed(point)

    r = rig.runner()
    r.crash_hook = crash_hook
    with pytest.raises(Killed):
        r.cycle()
    r2 = rig.runner()
    assert r2.cycle()["ok"]
    resumed = rig.s3.requests("GetObject")[-1]
    assert resumed["headers"].get("range", "").startswith("bytes=")


def test_cut_on_every_attempt_fails_cleanly_and_keeps_previous(rig):
    v1 = deploy(rig, "1.0", size=50000)[1]
    r = rig.runner(max_retries=2)
    assert r.cycle()["ok"]
    name, _ = deploy(rig, "2.0")
    rig.s3.add_fault("truncate", op="GetObject", times=10, after=0)
    assert r.cycle()["ok"]  # the FAIL result was reported
    res = rig.results()[name]
    assert res["DeploymentStatus"] == "FAIL"
    assert "gave up after 3 attempt(s)" in res["DeploymentModels"][0]["StatusReason"]
    assert len(rig.s3.requests("GetObject")) == 1 + 3
    assert rig.active_bytes() == v1
    assert no_staging(rig)


def test_corrupt_byte_is_never_activated(rig):
    v1 = deploy(rig, "1.0", size=50000)[1]
    r = rig.runner()
    assert r.cycle()["ok"]
    name, v2 = deploy(rig, "2.0")
    rig.s3.add_fault("corrupt", op="GetObject", at=123456)
    assert r.cycle()["ok"]
    res = rig.results()[name]
    assert res["DeploymentStatus"] == "FAIL"
    assert "SHA1 checksum mismatch" in res["DeploymentModels"][0]["StatusReason"]
    assert rig.active_bytes() == v1
    sha2 = hashlib.sha1(v2).hexdigest()
    assert not (rig.tmp / "models" / ".versions" / ("cam-" + sha2)).exists()
    assert no_staging(rig)
    # A later deployment over a clean link goes through.
    name3, v3 = deploy(rig, "3.0")
    assert r.cycle()["ok"]
    assert rig.active_bytes() == v3


def test_corrupt_byte_after_a_resume_is_caught(rig):
    """The hash resumed over the partial file still covers every byte."""
    deploy(rig, "1.0", size=50000)
    r = rig.runner()
    assert r.cycle()["ok"]
    name, _ = deploy(rig, "2.0")
    rig.s3.add_fault("reset", op="GetObject", after=150000)
    rig.s3.add_fault("corrupt", op="GetObject", at=100000)
    assert r.cycle()["ok"]
    assert rig.s3.counts["corrupt"] == 1
    assert rig.results()[name]["DeploymentStatus"] == "FAIL"
    assert "checksum mismatch" in rig.results()[name]["DeploymentModels"][0]["StatusReason"]
    assert no_staging(rig)


# ---- heartbeats: at-least-once results -------------------------------------------


def test_dropped_heartbeat_response_resends_result_next_cycle(rig):
    name, data = deploy(rig, "1.0")
    rig.edge.add_fault("drop_response", op="SendHeartbeat")
    r = rig.runner(max_retries=0)
    report = r.cycle()
    assert not report["ok"] and "SendHeartbeat" in report["errors"][0]
    # The cloud got the result, the agent does not know it: it keeps it pending.
    assert rig.result_sends(name) == 1
    assert r.state["pending"]
    assert r.cycle()["ok"]
    assert rig.result_sends(name) == 2  # at least once (here: twice)
    assert not r.state["pending"]
    assert rig.results()[name]["DeploymentStatus"] == "SUCCESS"
    n = rig.result_sends(name)
    assert r.cycle()["ok"]
    assert rig.result_sends(name) == n  # acknowledged: not sent again


def test_dropped_heartbeat_response_is_retried_within_the_cycle(rig):
    name, _ = deploy(rig, "1.0")
    rig.edge.add_fault("drop_response", op="SendHeartbeat")
    r = rig.runner()
    assert r.cycle()["ok"]
    assert rig.result_sends(name) == 2
    assert len(events(r, "api.retry")) == 1
    assert not r.state["pending"]


def test_heartbeat_failing_a_whole_cycle_is_delivered_later(rig):
    name, _ = deploy(rig, "1.0")
    rig.edge.add_fault("http503", op="SendHeartbeat", times=3)
    r = rig.runner(max_retries=2)
    assert not r.cycle()["ok"]
    assert rig.result_sends(name) == 0
    assert r.cycle()["ok"]
    assert rig.result_sends(name) == 1


# ---- clock skew and expired credentials -------------------------------------------


@pytest.mark.parametrize("kind,op", [("skew", "GetDeployments"), ("sig_expired", "SendHeartbeat")])
def test_skew_error_corrects_clock_from_date_and_retries_once(local_cloud, tmp_path, kind, op):
    rig = Rig(local_cloud, tmp_path, edge_offset=120)
    try:
        name, data = deploy(rig, "1.0")
        rig.edge.add_fault(kind, op=op)
        r = rig.runner()
        assert r.cycle()["ok"]
        assert len(events(r, "clock.corrected")) == 1
        assert 110 <= r.state["clock_offset"] <= 130
        assert [e["fault"] for e in rig.edge.requests(op)][:2] == [kind, None]
        assert not r.sleeps  # a corrected clock is retried at once, not after a backoff
        assert rig.results()[name]["DeploymentStatus"] == "SUCCESS"
    finally:
        rig.stop()


def test_device_clock_ahead_is_corrected(local_cloud, tmp_path):
    rig = Rig(local_cloud, tmp_path)
    try:
        deploy(rig, "1.0")
        local_cloud.set_clock_offset(-3600)  # the service is an hour behind the device
        r = rig.runner()
        assert r.cycle()["ok"]
        assert -3610 <= r.state["clock_offset"] <= -3590
    finally:
        rig.stop()


def test_signature_not_yet_current_is_a_skew_error(rig):
    rig.edge.add_fault("sig_future", op="GetDeployments")
    r = rig.runner(max_retries=0)
    assert r.cycle()["ok"]
    assert len(events(r, "clock.corrected")) == 1


def test_device_clock_behind_is_corrected(local_cloud, tmp_path):
    rig = Rig(local_cloud, tmp_path)
    try:
        name, data = deploy(rig, "1.0")
        local_cloud.set_clock_offset(3600)  # the service is an hour ahead of the device
        r = rig.runner()
        assert r.cycle()["ok"]
        assert 3590 <= r.state["clock_offset"] <= 3610
        assert rig.active_bytes() == data
    finally:
        rig.stop()


def test_persistent_skew_is_corrected_only_once(rig):
    rig.edge.add_fault("skew", op="GetDeployments", times=10)
    r = rig.runner()
    report = r.cycle()
    assert not report["ok"]
    assert "RequestTimeTooSkewed" in report["errors"][0]
    assert len(rig.edge.requests("GetDeployments")) == 2


def test_s3_skew_is_corrected_and_the_download_retried(local_cloud, tmp_path):
    rig = Rig(local_cloud, tmp_path, edge_offset=60)
    try:
        name, data = deploy(rig, "1.0")
        rig.s3.add_fault("skew", op="GetObject")
        r = rig.runner()
        assert r.cycle()["ok"]
        assert len(events(r, "clock.corrected")) == 1
        assert 50 <= r.state["clock_offset"] <= 70
        assert rig.active_bytes() == data
    finally:
        rig.stop()


class SpyProvider:
    """Wraps the real provider; counts invalidate() calls."""

    def __init__(self, inner):
        self.inner = inner
        self.invalidated = 0

    def get(self, now):
        return self.inner.get(now)

    def invalidate(self):
        self.invalidated += 1
        self.inner.invalidate()


def spy_provider(rig):
    from edgecore_ports.credentials import provider_from_config

    return SpyProvider(provider_from_config(load_config(rig.config(), environ={}), environ={}))


def test_expired_token_refreshes_credentials_and_retries(rig):
    name, data = deploy(rig, "1.0")
    rig.edge.add_fault("expired_token", op="GetDeployments")
    rig.s3.add_fault("expired_token", op="GetObject")
    spy = spy_provider(rig)
    r = rig.runner(credentials=spy)
    assert r.cycle()["ok"]
    assert spy.invalidated == 2
    assert rig.edge.counts["expired_token"] == rig.s3.counts["expired_token"] == 1
    assert rig.active_bytes() == data


def test_persistent_expired_token_is_refreshed_only_once(rig):
    rig.edge.add_fault("expired_token", op="GetDeployments", times=10)
    spy = spy_provider(rig)
    r = rig.runner(credentials=spy)
    report = r.cycle()
    assert not report["ok"] and "ExpiredTokenException" in report["errors"][0]
    assert spy.invalidated == 1
    assert len(rig.edge.requests("GetDeployments")) == 2


# ---- the CLI, as deployed -----------------------------------------------------------


def test_cli_run_once_through_faults(rig, agent_env):
    name, data = deploy(rig, "1.0")
    rig.edge.add_fault("http503", op="GetDeployments")
    rig.s3.add_fault("reset", op="GetObject", after=100000)
    rig.edge.add_fault("drop_response", op="SendHeartbeat")
    path = rig.tmp / "agent.json"
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(rig.config(retry_time_budget=30), f)
    proc = subprocess.run(
        [sys.executable, "-m", "edgecore_tools.cli", "run", "--config", str(path), "--once"],
        capture_output=True,
        text=True,
        env=agent_env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert rig.active_bytes() == data
    assert rig.result_sends(name) == 2
    resumed = rig.s3.requests("GetObject")[-1]
    assert resumed["headers"]["range"].startswith("bytes=")
    logged = [json.loads(x)["event"] for x in proc.stderr.splitlines() if x.startswith("{")]
    assert "api.retry" in logged and "download.retry" in logged


# ---- resumable downloads: If-Match, across restarts, minimum rate --------------------


def stale_deployment(rig, size=400000):
    """A deployment of NEW bytes whose S3 object still holds OLD bytes (same key): the
    object changes when the test re-uploads NEW between attempts."""
    old, new = os.urandom(size), os.urandom(size)
    d = rig.cloud.deploy("cam", "detector", "1.0", data=new)
    url = d["Definitions"][0]["S3Url"]
    rig.cloud.put_object(url, old)
    return d["DeploymentName"], url, new


def test_changed_object_between_attempts_restarts_cleanly(rig):
    name, url, new = stale_deployment(rig)
    rig.s3.add_fault("reset", op="GetObject", after=150000)
    r = rig.runner()
    r.sleep = lambda s: rig.cloud.put_object(url, new)  # re-uploaded while we back off
    assert r.cycle()["ok"]
    first, resumed, fresh = rig.s3.requests("GetObject")
    assert first["fault"] == "reset" and "if-match" not in first["headers"]
    assert resumed["headers"]["range"].startswith("bytes=")
    assert resumed["headers"]["if-match"].strip('"')  # the first response's ETag
    assert resumed["status"] == 412  # the object changed: nothing spliced onto old bytes
    assert "range" not in fresh["headers"] and fresh["status"] == 200
    retries = events(r, "download.retry")
    assert len(retries) == 2 and "412" in retries[1]["reason"] and retries[1]["have"] == 0
    assert rig.active_bytes() == new
    assert rig.results()[name]["DeploymentStatus"] == "SUCCESS"
    assert no_staging(rig)


def kill_mid_download(rig, after_chunks=4):
    chunks = []

    def crash_hook(point):
        if point == "download-chunk":
            chunks.append(point)
            if len(chunks) == after_chunks:
                raise Killed(point)

    r = rig.runner()
    r.crash_hook = crash_hook
    with pytest.raises(Killed):
        r.cycle()
    staged = rig.tmp / "models" / ".staging"
    (part,) = os.listdir(str(staged))
    return staged / part


def test_restart_resumes_with_range_and_if_match_fetching_only_the_rest(rig):
    name, data = deploy(rig, "1.0", size=600000)
    part = kill_mid_download(rig)
    files = sorted(os.listdir(str(part)))
    assert ".resume.json" in files
    artifact = [f for f in files if f != ".resume.json"][0]
    have = (part / artifact).stat().st_size
    sidecar = json.loads((part / ".resume.json").read_text())
    assert sidecar["sha1"] == hashlib.sha1(data).hexdigest()
    assert 0 < have < len(data)
    r2 = rig.runner()
    assert r2.cycle()["ok"]
    assert events(r2, "download.resume")[0]["have"] == have
    first, resumed = rig.s3.requests("GetObject")
    assert resumed["headers"]["range"] == "bytes=%d-" % have
    assert resumed["headers"]["if-match"] == sidecar["etag"] == '"%s"' % hashlib.md5(
        data
    ).hexdigest()  # S3's ETag of a single-part upload
    assert resumed["status"] == 206 and resumed["body_len"] == len(data) - have
    assert not events(r2, "download.retry")
    assert rig.active_bytes() == data
    assert rig.results()[name]["DeploymentStatus"] == "SUCCESS"
    assert no_staging(rig)
    # The version directory holds the artifact and edgecore.json only (no sidecar).
    (vdir,) = os.listdir(str(rig.tmp / "models" / ".versions"))
    assert sorted(os.listdir(str(rig.tmp / "models" / ".versions" / vdir))) == sorted(
        [artifact, "edgecore.json"]
    )


def test_restart_after_the_object_changed_restarts_from_zero(rig):
    name, url, new = stale_deployment(rig, size=600000)
    kill_mid_download(rig)
    rig.cloud.put_object(url, new)  # changed while the agent was down
    r2 = rig.runner()
    assert r2.cycle()["ok"]
    resumed, fresh = rig.s3.requests("GetObject")[1:]
    assert resumed["headers"]["if-match"] and resumed["status"] == 412
    assert "range" not in fresh["headers"] and fresh["status"] == 200
    assert rig.active_bytes() == new
    assert rig.results()[name]["DeploymentStatus"] == "SUCCESS"
    assert no_staging(rig)


@pytest.mark.parametrize("damage", ["missing", "corrupt", "other-url", "other-sha1", "no-etag"])
def test_staged_bytes_without_a_matching_sidecar_are_not_resumed(rig, damage):
    name, data = deploy(rig, "1.0", size=600000)
    part = kill_mid_download(rig)
    sidecar = part / ".resume.json"
    doc = json.loads(sidecar.read_text())
    if damage == "missing":
        sidecar.unlink()
    elif damage == "corrupt":
        sidecar.write_bytes(b'{"sha1": "')
    elif damage == "other-url":
        doc["url"] = doc["url"] + "-old"
        sidecar.write_text(json.dumps(doc))
    elif damage == "other-sha1":
        doc["sha1"] = "0" * 40
        sidecar.write_text(json.dumps(doc))
    else:
        del doc["etag"]
        sidecar.write_text(json.dumps(doc))
    r2 = rig.runner()
    assert r2.cycle()["ok"]
    assert not events(r2, "download.resume")
    restarted = rig.s3.requests("GetObject")[-1]
    assert "range" not in restarted["headers"] and "if-match" not in restarted["headers"]
    assert rig.active_bytes() == data
    assert no_staging(rig)


def test_staged_download_no_deployment_wants_is_removed(rig):
    name, _ = deploy(rig, "1.0", size=600000)
    part = kill_mid_download(rig)
    rig.cloud.cancel_deployment(name)
    stray = rig.tmp / "models" / ".staging" / ("cam-" + "1" * 40)
    stray.mkdir()
    (stray / "model.bin").write_bytes(b"old")
    r2 = rig.runner()
    r2.start()
    # Kept at start while the saved queue still lists the deployment (only the stray
    # goes); dropped once the poll says it is no longer wanted.
    assert not stray.exists() and part.exists()
    assert r2.cycle()["ok"]
    assert not (rig.tmp / "models" / ".staging").exists()
    assert len(rig.s3.requests("GetObject")) == 1


class SteppingClock:
    """A monotonic clock that moves ``step`` seconds at every reading (no real time). It
    starts at the real monotonic time, so deadlines it sets are never in the past for
    the transport, which keeps the real time."""

    def __init__(self, step):
        self.t = time.monotonic()
        self.step = step

    def __call__(self):
        self.t += self.step
        return self.t


class PortWithClock:
    def __init__(self, port, monotonic):
        self._port = port
        self.monotonic = monotonic

    def __getattr__(self, name):
        return getattr(self._port, name)


def test_download_below_min_rate_is_aborted_and_resumed_with_if_match(rig):
    name, data = deploy(rig, "1.0", size=400000)
    rig.s3.sleep = lambda s: None  # throttled in small sends, paced by the fake clock only
    rig.s3.add_fault("throttle", op="GetObject", bps=20000)
    r = rig.runner(min_download_rate=10**6, retry_time_budget=10**7, max_retries=10)
    r.port = PortWithClock(r.port, SteppingClock(20))
    assert r.cycle()["ok"]
    retries = events(r, "download.retry")
    assert retries and all("download too slow" in x["reason"] for x in retries)
    haves = [x["have"] for x in retries]
    assert haves == sorted(set(haves)) and haves[0] > 0  # progress kept at every abort
    gets = rig.s3.requests("GetObject")
    assert gets[0]["fault"] == "throttle" and "range" not in gets[0]["headers"]
    for g, have in zip(gets[1:], haves):
        assert g["headers"]["range"] == "bytes=%d-" % have and g["headers"]["if-match"]
        assert g["status"] == 206
    assert rig.active_bytes() == data
    assert rig.results()[name]["DeploymentStatus"] == "SUCCESS"


def test_restart_with_every_byte_staged_verifies_without_refetching(rig):
    """Killed after the last byte was written, before the commit: the resumed request
    asks past the end (416), and the bytes on disk are checked against the SHA1."""
    name, data = deploy(rig, "1.0", size=600000)
    progress = []

    def crash_hook(point):
        if point == "download-chunk" and progress[-1] == len(data):
            raise Killed(point)

    r = rig.runner()
    r.progress = lambda handle, done, total: progress.append(done)
    r.crash_hook = crash_hook
    with pytest.raises(Killed):
        r.cycle()
    r2 = rig.runner()
    assert r2.cycle()["ok"]
    last = rig.s3.requests("GetObject")[-1]
    assert last["headers"]["range"] == "bytes=%d-" % len(data) and last["status"] == 416
    assert rig.active_bytes() == data
    assert rig.results()[name]["DeploymentStatus"] == "SUCCESS"
    assert no_staging(rig)


def test_garbage_in_staged_bytes_after_a_restart_refetches_once(rig):
    """A power cut can leave an unsynced tail of garbage: the resumed download's
    checksum fails, and the agent fetches the whole object again instead of failing."""
    name, data = deploy(rig, "1.0", size=600000)
    part = kill_mid_download(rig)
    (artifact,) = [p for p in part.iterdir() if p.name != ".resume.json"]
    staged = bytearray(artifact.read_bytes())
    staged[-100:] = b"\0" * 100
    artifact.write_bytes(bytes(staged))
    r2 = rig.runner()
    assert r2.cycle()["ok"]
    resumed, fresh = rig.s3.requests("GetObject")[1:]
    assert resumed["status"] == 206 and fresh["status"] == 200
    assert "range" not in fresh["headers"]
    (retry,) = events(r2, "download.retry")
    assert "checksum mismatch" in retry["reason"] and "restart" in retry["reason"]
    assert rig.active_bytes() == data
    assert rig.results()[name]["DeploymentStatus"] == "SUCCESS"
    assert no_staging(rig)
