# Runs under MicroPython too (tests/micropython/run.mjs).
"""Every rule of the executor (edgecore_ports.runner), on CPython and under MicroPython.

A fake cloud in memory (tests/data/fake_cloud.py: the Edge Manager API and S3, faults
on demand) and real files in a temp dir. Each test runs with every store this runtime
has: the pointer layout everywhere, the symlink layout where ``os.symlink`` exists.
The same rules against real servers, processes and kills: test_runner.py, test_faults.py,
test_crash.py, test_soak.py (CPython).
"""

import os

from data.fake_cloud import BUCKET, EDGE, S3, FakeCloud, cleanup, noise, sha1_hex, tempdir

from edgecore import agentstate
from edgecore.credentials import Credentials
from edgecore_ports import runner as runner_mod
from edgecore_ports.agentconfig import load_config
from edgecore_ports.runner import Runner
from edgecore_ports.store import PointerStore, SymlinkStore, exists, isdir, listdir

STORES = [PointerStore] + ([SymlinkStore] if hasattr(os, "symlink") else [])


class Crash(BaseException):
    """Not an Exception: nothing in the runner may swallow it (like a kill)."""


def make_runner(cloud, root, store, **extra):
    doc = {"device_name": "dev-1", "fleet_name": "fleet-1", "region": "us-west-2",
           "model_dir": root + "/models", "state_dir": root + "/state",
           "endpoint_url": EDGE, "s3_endpoint_url": S3, "s3_addressing_style": "path",
           "credentials": {"access_key_id": "AKIDTEST", "secret_access_key": "s3cr3t"},
           "max_retries": 3, "retry_time_budget": 1000, "free_space_reserve_bytes": 0}
    crash_hook = extra.pop("crash_hook", None)
    doc.update(extra)
    events = []
    sleeps = []
    r = Runner(load_config(doc, environ={}), port=cloud.port, http=cloud, store=store,
               credentials=Credentials("AKIDTEST", "s3cr3t"),
               log=lambda level, event, **f: events.append((event, f)),
               sleep=sleeps.append, rand=lambda: 0.5, crash_hook=crash_hook)
    r.events, r.sleeps = events, sleeps
    return r


def each_store(test):
    """The test run once per store, each time in a fresh temp dir, as
    ``test(cloud, root, store)`` (the decorated test takes no argument)."""

    def run():
        for store in STORES:
            root = tempdir()
            try:
                test(FakeCloud(), root, store)
            finally:
                cleanup(root)

    return run


def deploy_def(handle, url, sha1):
    return {"ModelHandle": handle, "S3Url": url, "Checksum": {"Type": "SHA1", "Sum": sha1},
            "State": "DEPLOY"}


def deployed(cloud, data, key="cam/m.bin"):
    """Put ``data`` in S3 and deploy it as model "cam"; (s3 url, sha1)."""
    url, sha = cloud.put(key, data)
    cloud.deploy(deploy_def("cam", url, sha))
    return url, sha


def active_bytes(r, handle):
    path = r.store.active_path(handle)
    if path is None or not exists(path):
        return None
    if os.stat(path)[0] & 0o170000 == 0o040000:  # a link to the version directory
        names = [n for n in listdir(path) if n != "edgecore.json"]
        assert len(names) == 1, names
        path = path + "/" + names[0]
    with open(path, "rb") as f:
        return f.read()


def named(events, name):
    return [f for e, f in events if e == name]


def staged(r):
    """Names left in the store's staging places (download directories in progress)."""
    out = []
    for name in listdir(r.store.root):
        sub = r.store.root + "/" + name
        out += [n for n in listdir(sub) if n.endswith(".tmp") and n != "current.json.tmp"]
    return out + listdir(r.store.root + "/.staging")


@each_store
def test_full_cycle_deploys_reports_and_then_rests(cloud, root, store):
    data = noise(20000)
    url, sha = cloud.put("cam/v1/model.bin", data)
    cloud.deploy(deploy_def("cam", url, sha))
    r = make_runner(cloud, root, store)
    report = r.cycle()
    assert report["ok"], report
    assert report["results"][0]["DeploymentStatus"] == "SUCCESS"
    assert active_bytes(r, "cam") == data
    (result,) = cloud.results()
    assert result["DeploymentModels"][0]["ModelHandle"] == "cam"
    assert cloud.heartbeats[-1]["Models"] == [{"ModelName": "cam-model",
                                               "ModelVersion": sha[:12]}]
    # One buffer for the whole download: reads never exceed it.
    assert len(r.buf) == runner_mod.BUFFER_SIZE
    gets = len(cloud.gets())
    assert r.cycle()["ok"]
    assert len(cloud.gets()) == gets and len(cloud.results()) == 1
    assert staged(r) == []
    assert "s3cr3t" not in repr(r.events)


@each_store
def test_update_then_undeploy_cleans_old_versions(cloud, root, store):
    url1, sha1 = cloud.put("cam/1/m.bin", b"version one")
    url2, sha2 = cloud.put("cam/2/m.bin", b"version two")
    cloud.deploy(deploy_def("cam", url1, sha1))
    r = make_runner(cloud, root, store)
    assert r.cycle()["ok"]
    cloud.deploy(deploy_def("cam", url2, sha2))
    assert r.cycle()["ok"]
    assert active_bytes(r, "cam") == b"version two"
    assert not isdir(r.store.version_dir("cam", sha1))
    assert isdir(r.store.version_dir("cam", sha2))
    cloud.deploy({"ModelHandle": "cam", "State": "UNDEPLOY"})
    assert r.cycle()["ok"]
    assert r.store.active_path("cam") is None or active_bytes(r, "cam") is None
    assert not isdir(r.store.version_dir("cam", sha2))
    assert [x["DeploymentStatus"] for x in cloud.results()] == ["SUCCESS"] * 3


@each_store
def test_checksum_mismatch_fails_and_keeps_the_previous_model(cloud, root, store):
    url1, sha1 = cloud.put("cam/1/m.bin", b"good")
    cloud.deploy(deploy_def("cam", url1, sha1))
    r = make_runner(cloud, root, store)
    assert r.cycle()["ok"]
    url2, _ = cloud.put("cam/2/m.bin", b"tampered")
    cloud.deploy(deploy_def("cam", url2, sha1_hex(b"what was deployed")))
    assert r.cycle()["ok"]
    model = cloud.results()[-1]["DeploymentModels"][0]
    assert model["Status"] == "FAIL" and "checksum mismatch" in model["StatusReason"]
    assert active_bytes(r, "cam") == b"good"
    assert staged(r) == []


@each_store
def test_an_s3_key_with_a_long_name_is_stored_under_a_short_one(cloud, root, store):
    url, sha = cloud.put("cam/" + "n" * 300 + ".bin", b"model")
    cloud.deploy(deploy_def("cam", url, sha))
    r = make_runner(cloud, root, store)
    assert r.cycle()["ok"]
    assert cloud.results()[-1]["DeploymentStatus"] == "SUCCESS"  # not ENAMETOOLONG
    assert active_bytes(r, "cam") == b"model" and r.sleeps == []


@each_store
def test_retries_back_off_and_are_capped(cloud, root, store):
    url, sha = cloud.put("cam/m.bin", b"payload")
    url2, sha2 = cloud.put("gps/m.bin", b"gps")
    cloud.deploy(deploy_def("cam", url, sha))
    cloud.fault("GetDeployments", "status", (400, "ThrottlingException"))
    cloud.fault("GetObject", "status", (503, "SlowDown"), times=2)
    r = make_runner(cloud, root, store)
    assert r.cycle()["ok"]
    # Full jitter with rand() = 0.5: half of 1 (the poll), then 1 and 2 (the GET).
    assert r.sleeps == [0.5, 0.5, 1.0]
    assert active_bytes(r, "cam") == b"payload"
    # Persistent 503s: 1 + max_retries attempts, then a FAIL; the next model goes on.
    cloud.deploy(deploy_def("cam", url2, sha2), deploy_def("gps", url2, sha2),
                 policy="DO_NOTHING")
    cloud.objects["/%s/gps/m.bin" % BUCKET] = b"gps"
    cloud.fault("GetObject", "status", (503, "SlowDown"), times=4)
    assert r.cycle()["ok"]
    cam, gps = cloud.results()[-1]["DeploymentModels"]
    assert cam["StatusReason"].startswith("download failed: gave up after 4 attempt(s)")
    assert "503 SlowDown" in cam["StatusReason"] and gps["Status"] == "SUCCESS"
    # A 404 is final: no retry.
    before = len(r.sleeps)
    cloud.deploy(deploy_def("cam", "s3://%s/nope" % BUCKET, "a" * 40))
    assert r.cycle()["ok"]
    assert "HTTP 404 NoSuchKey" in cloud.results()[-1]["DeploymentModels"][0]["StatusReason"]
    assert len(r.sleeps) == before


@each_store
def test_skewed_clock_is_corrected_once_and_floored(cloud, root, store):
    url, sha = deployed(cloud, b"one")
    cloud.offset, cloud.max_skew = 3600, 300  # the device is an hour behind
    r = make_runner(cloud, root, store)
    assert r.cycle()["ok"]
    assert r.state["clock_offset"] == 3600
    assert len(named(r.events, "clock.corrected")) == 1 and r.sleeps == []
    with open(r.state_path, "rb") as f:
        saved = agentstate.loads(f.read())
    assert saved["clock_floor"] >= cloud.port.now + 3600
    # A persistent skew error is corrected once per call, then reported.
    cloud.fault("GetDeployments", "skew", times=2)
    report = r.cycle()
    assert not report["ok"] and "Signature expired" in report["errors"][0]
    assert len([q for q in cloud.requests if q["op"] == "GetDeployments"]) == 2 + 2
    # S3's RequestTimeTooSkewed corrects it too, and the download is retried.
    url2, sha2 = cloud.put("cam/2.bin", b"two")
    cloud.deploy(deploy_def("cam", url2, sha2))
    cloud.offset = 7200
    cloud.max_skew = None
    cloud.fault("GetObject", "skew")
    assert r.cycle()["ok"]
    assert r.state["clock_offset"] == 7200 and active_bytes(r, "cam") == b"two"


@each_store
def test_results_are_delivered_at_least_once(cloud, root, store):
    url, sha = cloud.put("cam/m.bin", b"one")
    name = cloud.deploy(deploy_def("cam", url, sha))
    cloud.fault("SendHeartbeat", "drop")
    r = make_runner(cloud, root, store, max_retries=0)
    assert not r.cycle()["ok"]
    assert len(cloud.results()) == 1 and r.state["pending"]  # sent, not acknowledged
    r2 = make_runner(cloud, root, store)  # a restart keeps it
    assert r2.cycle()["ok"]
    assert [x["DeploymentName"] for x in cloud.results()] == [name, name]
    assert r2.state["pending"] == []
    assert r2.cycle()["ok"]
    assert len(cloud.results()) == 2  # acknowledged: not sent again


@each_store
def test_a_cut_download_resumes_with_range_and_if_match(cloud, root, store):
    data = noise(50000)
    url, sha = deployed(cloud, data)
    cloud.fault("GetObject", "cut", 20000)
    r = make_runner(cloud, root, store)
    assert r.cycle()["ok"]
    first, rest = cloud.gets()
    assert "Range" not in first["headers"]
    assert rest["headers"]["Range"] == "bytes=20000-" and rest["status"] == 206
    assert rest["headers"]["If-Match"] == '"%s"' % sha[:32]
    assert named(r.events, "download.retry")[0]["have"] == 20000
    assert active_bytes(r, "cam") == data and staged(r) == []


@each_store
def test_a_download_resumes_across_a_restart(cloud, root, store):
    data = noise(60000)
    url, sha = deployed(cloud, data)
    chunks = []

    def kill(point):
        if point == "download-chunk":
            chunks.append(point)
            if len(chunks) == 2:
                raise Crash(point)

    cloud.fault("GetObject", "slow", (5000, 0))  # 5000-byte reads
    r = make_runner(cloud, root, store, crash_hook=kill)
    try:
        r.cycle()
        raise AssertionError("not killed")
    except Crash:
        pass
    have = 2 * min(5000, len(r.buf))  # two reads staged before the kill
    r2 = make_runner(cloud, root, store)
    assert r2.cycle()["ok"]
    assert named(r2.events, "download.resume")[0]["have"] == have
    last = cloud.gets()[-1]
    assert last["headers"]["Range"] == "bytes=%d-" % have and last["headers"]["If-Match"]
    assert active_bytes(r2, "cam") == data and staged(r2) == []


@each_store
def test_a_changed_object_restarts_from_byte_zero(cloud, root, store):
    old, new = noise(30000), noise(30000)
    url, sha = cloud.put("cam/m.bin", old)
    cloud.deploy(deploy_def("cam", url, sha1_hex(new)))
    cloud.fault("GetObject", "cut", 10000)
    r = make_runner(cloud, root, store)
    r.sleep = lambda s: cloud.put("cam/m.bin", new)  # replaced while backing off
    assert r.cycle()["ok"]
    first, resumed, fresh = cloud.gets()
    assert resumed["status"] == 412 and "Range" not in fresh["headers"]
    assert fresh["status"] == 200 and active_bytes(r, "cam") == new


@each_store
def test_a_download_below_the_minimum_rate_is_cut_and_resumed(cloud, root, store):
    data = noise(40000)
    url, sha = deployed(cloud, data)
    cloud.fault("GetObject", "slow", (1000, 2.0))  # 500 bytes/s
    r = make_runner(cloud, root, store, min_download_rate=1000)
    assert r.cycle()["ok"]
    (retry,) = named(r.events, "download.retry")
    assert "download too slow" in retry["reason"] and retry["have"] > 0
    assert cloud.gets()[1]["headers"]["Range"] == "bytes=%d-" % retry["have"]
    assert active_bytes(r, "cam") == data


@each_store
def test_every_request_has_a_deadline_and_a_download_moves_it(cloud, root, store):
    data = noise(10000)
    url, sha = deployed(cloud, data)
    opened = []
    real_open = cloud.open

    def open_(method, url, headers, body=b"", timeout=None, deadline=None):
        opened.append(deadline)
        resp = real_open(method, url, headers, body, timeout, deadline)
        opened.append(resp)
        return resp

    cloud.open = open_
    r = make_runner(cloud, root, store, request_timeout=50, min_download_rate=100)
    start = cloud.port.mono
    assert r.cycle()["ok"]  # FakeCloud.transport refuses an API call without one
    head_deadline, resp = opened
    assert head_deadline == start + 50  # (the fake monotonic clock stands still)
    # After the head: the time the body needs at the minimum rate, + the window.
    assert resp.deadlines == [start + 10000 / 100.0 + 30]


@each_store
def test_a_body_without_length_is_bounded_by_free_space(cloud, root, store):
    data = noise(100000)
    url, sha = deployed(cloud, data)
    cloud.fault("GetObject", "chunked")
    cloud.read_step = 10000
    cloud.port.free = 30000
    r = make_runner(cloud, root, store, max_retries=0)
    progress = []
    r.progress = lambda handle, done, total: progress.append(done)
    assert r.cycle()["ok"]
    model = cloud.results()[-1]["DeploymentModels"][0]
    assert "outgrew the free space" in model["StatusReason"], model
    assert max(progress) <= 30000 and staged(r) == []


@each_store
def test_a_crash_at_every_point_converges(cloud, root, store):
    url1, sha1 = cloud.put("cam/1.bin", noise(3000))
    url2, sha2 = cloud.put("cam/2.bin", noise(2500))
    url3, sha3 = cloud.put("gps/1.bin", b"gps")
    cloud.deploy(deploy_def("cam", url1, sha1))
    cloud.deploy(deploy_def("cam", url2, sha2), deploy_def("gps", url3, sha3))
    cloud.deploy({"ModelHandle": "gps", "State": "UNDEPLOY"})
    cloud.read_step = 1024
    points = []
    make_runner(cloud, root + "/ref", store, crash_hook=points.append).cycle()
    assert len(points) > 10
    for k in range(len(points)):
        work = "%s/crash-%d" % (root, k)
        seen = []

        def hook(point, k=k, seen=seen):
            seen.append(point)
            if len(seen) == k + 1:
                raise Crash(point)

        try:
            make_runner(cloud, work, store, crash_hook=hook).cycle()
            raise AssertionError("not killed at point %d" % k)
        except Crash:
            pass
        r = make_runner(cloud, work, store)
        # Every version the saved state names (active, or to roll back to) is on disk.
        saved = r.load_state()
        for h, sha1 in saved_versions(saved):
            assert isdir(r.store.version_dir(h, sha1)), (k, points[k], h, sha1)
        assert r.cycle()["ok"], k
        assert active_bytes(r, "cam") == cloud.objects["/%s/cam/2.bin" % BUCKET], k
        assert r.store.active_path("gps") is None or active_bytes(r, "gps") is None, k
        assert r.state["pending"] == [] and r.state["inflight"] is None, k
        assert sorted(r.state["done"]) == ["dep-1", "dep-2", "dep-3"], k
        assert staged(r) == [], k


def saved_versions(state):
    """(handle, sha1) of every version a state names: active, or kept for a rollback."""
    entries = list(state["active"].items())
    inf = state["inflight"]
    if inf:
        entries += [(h, e) for h, e in inf["before"].items() if e]
        for k in ("prev", "staged"):
            if inf.get(k):
                entries.append((None, inf[k]))
    out = []
    for h, e in entries:
        handle = h
        if handle is None:  # prev/staged: the handle of the current definition
            handle = inf["defs"][min(inf["i"], len(inf["defs"]) - 1)]["handle"]
        out.append((handle, e["sha1"]))
    return out


def test_a_state_larger_than_the_device_can_load_is_a_state_error():
    root = tempdir()
    try:
        cloud = FakeCloud()
        r = make_runner(cloud, root, PointerStore)
        os.mkdir(r.state_dir)
        limit = runner_mod._state_limit()
        with open(r.state_path, "wb") as f:
            chunk = b" " * 65536
            left = limit + 1
            while left > 0:
                f.write(chunk[:min(left, len(chunk))])
                left -= len(chunk)
        try:
            r.start()
            raise AssertionError("loaded")
        except agentstate.StateError as exc:
            assert "more than this device can load" in str(exc)
    finally:
        cleanup(root)


def test_a_pointer_cut_on_fat_and_a_wrong_pointer_are_repaired_on_start():
    root = tempdir()
    try:
        cloud = FakeCloud()
        url, sha = deployed(cloud, b"model")
        r = make_runner(cloud, root, PointerStore)
        assert r.cycle()["ok"]
        base = root + "/models/cam/"
        os.rename(base + "current.json", base + "current.json.tmp")  # cut between the two
        os.mkdir(base + "f" * 40 + ".tmp")  # a download no deployment wants
        r2 = make_runner(cloud, root, PointerStore)
        r2.start()
        assert active_bytes(r2, "cam") == b"model"
        assert "f" * 40 + ".tmp" not in listdir(root + "/models/cam")
        with open(base + "current.json", "w") as f:
            f.write('{"sha1": "%s", "file": "x"}' % ("0" * 40))
        r3 = make_runner(cloud, root, PointerStore)
        r3.start()
        assert r3.store.read_pointer("cam")["sha1"] == sha
    finally:
        cleanup(root)


@each_store
def test_a_date_out_of_range_is_never_learnt(cloud, root, store):
    """Issue 11 item 1: a skew answer dated 31 Dec 9999 must not become the offset (every
    later signature would be unformattable, across restarts)."""
    cloud.offset, cloud.max_skew = 253402300799 - cloud.port.now, 300  # year 9999
    r = make_runner(cloud, root, store, max_retries=0)
    report = r.cycle()
    assert not report["ok"]
    assert len(named(r.events, "clock.refused")) == 2  # the poll and the heartbeat
    assert not named(r.events, "clock.corrected") and r.state["clock_offset"] == 0
    cloud.offset = 0  # the service is sane again: nothing to unlearn
    assert r.cycle()["ok"]


@each_store
def test_a_state_too_large_to_load_again_is_not_saved(cloud, root, store):
    limit = agentstate.MAX_STATE_BYTES
    try:
        r = make_runner(cloud, root, store)
        assert r.cycle()["ok"]
        with open(r.state_path, "rb") as f:
            before = f.read()
        url, sha = deployed(cloud, b"model")
        agentstate.MAX_STATE_BYTES = len(before) + 10  # the deployment makes it grow past
        report = r.cycle()  # goes on: the model is deployed, the result sent
        assert report["ok"] and active_bytes(r, "cam") == b"model"
        assert named(r.events, "state.not_saved")
        with open(r.state_path, "rb") as f:
            assert f.read() == before  # the last state that loads stays
    finally:
        agentstate.MAX_STATE_BYTES = limit


@each_store
def test_numbers_out_of_range_in_the_state_are_repaired_and_logged(cloud, root, store):
    r = make_runner(cloud, root, store)
    assert r.cycle()["ok"]
    state = agentstate.loads(open_bytes(r.state_path))
    state["clock_offset"] = 10 ** 12
    with open(r.state_path, "wb") as f:
        f.write(agentstate.dumps(state))
    r2 = make_runner(cloud, root, store)
    r2.start()
    assert named(r2.events, "state.repaired") == [{"fields": ["clock_offset"]}]
    assert r2.state["clock_offset"] == 0


@each_store
def test_metrics_a_heartbeat_cannot_carry_are_dropped_not_the_heartbeat(cloud, root, store):
    nan = float("nan")
    cloud.port.metrics = lambda model_dir, now: [
        {"Dimension": "d", "MetricName": "Bad", "Value": nan, "Timestamp": now},
        {"Dimension": "d", "MetricName": "Good", "Value": 1.0, "Timestamp": now}]
    r = make_runner(cloud, root, store)
    assert r.cycle()["ok"]
    assert named(r.events, "metrics.dropped") == [{"fields": ["AgentMetrics[0]"]}]
    assert [m["MetricName"] for m in cloud.heartbeats[-1]["AgentMetrics"]] == ["Good"]


@each_store
def test_bytes_written_per_cycle_grow_with_what_changed_not_with_the_steps(cloud, root, store):
    """Issue 11 item 3: a listing of many deployments that need no I/O (here: models
    already active) costs a few saves per cycle, not one per step."""
    url, sha = deployed(cloud, b"model")
    r = make_runner(cloud, root, store)
    assert r.cycle()["ok"]
    for _ in range(20):  # already active: no download, no switch (queued at once)
        cloud.deploy(deploy_def("cam", url, sha))
    writes = []
    real = cloud.port.atomic_write

    def counting(path, data, mode=0o600):
        if not callable(data):
            writes.append(len(data))
            return real(path, data, mode)
        size = [0]

        def fill(write):
            def counted(piece):
                size[0] += len(piece)
                write(piece)

            return data(counted)

        result = real(path, fill, mode)
        writes.append(size[0])
        return result

    cloud.port.atomic_write = counting
    assert r.cycle()["ok"]
    assert len(r.state["done"]) == 21
    # The poll, the end of the work, then one per heartbeat (5 results a cycle).
    assert len(writes) <= 1 + 1 + runner_mod.MAX_HEARTBEATS_PER_CYCLE, writes
    assert sum(writes) <= (2 + runner_mod.MAX_HEARTBEATS_PER_CYCLE) * max(writes)


def open_bytes(path):
    with open(path, "rb") as f:
        return f.read()
