# Not under emulated ARM: drives the real MicroPython binary (an x86 build, tested natively)
"""The board agent's full cycle on the real 32-bit MicroPython unix binary (edgecore
frozen in) at a 64 KiB heap, over real sockets and real TLS, against the local cloud.

``edgecore_ports.mp_agent.Agent(config).cycle()`` runs in a long-lived device process
(``tests/micropython/agent_loop.py``) that cycles on command; between cycles the test
changes what the cloud wants. The Edge Manager stand-in and moto S3 (both check every
SigV4 signature) sit behind TLS fronts with a certificate from a CA this test makes;
mbedtls on the device verifies them against that CA given as PEM, or as DER. The
flash (model_dir, state_dir) is a host directory kept across device processes, so a
second process is a reboot.

The binary comes from ``firmware/micropython/build.sh unix``; without it this module is
skipped, unless ``CI`` is set (then it fails). The emulated-ARM legs skip this file.
"""

import hashlib
import json
import os
import subprocess

import pytest
from mpdevice import BINARY, CACHE, ROOT, Device, TlsFront, make_pki, require_binary

require_binary()

# The cross-compiler of the binary's own source tree (firmware/micropython/build.sh).
MPY_CROSS = os.path.join(CACHE, "src", "micropython-1.27.0", "mpy-cross", "build", "mpy-cross")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def fronts(local_cloud, pki):
    """TLS fronts of the edge endpoint and of S3: {"edge": TlsFront, "s3": TlsFront}."""
    made = {"edge": TlsFront(local_cloud.endpoint_url, pki),
            "s3": TlsFront(local_cloud.s3_endpoint_url, pki)}
    yield made
    for front in made.values():
        front.close()


def device_config(cloud, fronts, pki, tmp_path, ca="pem", **extra):
    flash = tmp_path / "flash"
    return cloud.agent_config(str(flash / "models"), str(flash / "state"),
                              endpoint_url=fronts["edge"].url, s3_endpoint_url=fronts["s3"].url,
                              ca_bundle=pki.ca_path if ca == "pem" else pki.ca_der, **extra)


def results_by_name(cloud):
    return dict((r["deployment"], r["body"]) for r in cloud.results())


def pointer(tmp_path, handle="cam"):
    path = tmp_path / "flash" / "models" / handle / "current.json"
    return json.loads(path.read_text()) if path.exists() else None


def active_bytes(tmp_path, handle="cam"):
    ptr = pointer(tmp_path, handle)
    assert ptr is not None, "no active version of %s" % handle
    return (tmp_path / "flash" / "models" / handle / ptr["sha1"] / ptr["file"]).read_bytes()


def status_of(cloud, deployment):
    return results_by_name(cloud)[deployment["DeploymentName"]]


# A board's 64 KiB heap, the CA as PEM and as DER; the default heap (1 MiB) as well.
@pytest.mark.parametrize("ca, heap", [
    pytest.param("pem", "64k", id="pem-64k"),
    pytest.param("der", "64k", id="der-64k"),
    pytest.param("pem", None, id="pem-default-heap"),
])
def test_deploy_update_corrupt_undeploy_over_tls(local_cloud, fronts, pki, tmp_path, ca, heap):
    cloud = local_cloud
    config = device_config(cloud, fronts, pki, tmp_path, ca)
    v1, v2 = os.urandom(64 * 1024), os.urandom(300 * 1024)
    with Device(config, tmp_path, heap=heap) as device:
        assert not device.source.startswith("/"), "edgecore_ports not frozen: " + device.source
        d1 = cloud.deploy("cam", "detector", "1.0", data=v1)
        report = device.cycle()
        assert report["ok"], report
        assert active_bytes(tmp_path) == v1 and pointer(tmp_path)["version"] == "1.0"
        assert status_of(cloud, d1)["DeploymentStatus"] == "SUCCESS"
        hb = cloud.heartbeats()[-1]
        assert hb["access_key_id"] == cloud.access_key
        assert hb["body"]["Models"] == [{"ModelName": "detector", "ModelVersion": "1.0"}]
        names = set(m["MetricName"] for m in hb["body"]["AgentMetrics"])
        assert "HeapFreeBytes" in names and "DiskFreeBytes" in names
        # An update, in the same process: the new version only, the old one cleaned up.
        d2 = cloud.deploy("cam", "detector", "2.0", data=v2)
        assert device.cycle()["ok"]
        assert active_bytes(tmp_path) == v2 and pointer(tmp_path)["version"] == "2.0"
        assert status_of(cloud, d2)["DeploymentStatus"] == "SUCCESS"
        assert sorted(os.listdir(str(tmp_path / "flash" / "models" / "cam"))) == \
            sorted(["current.json", hashlib.sha1(v2).hexdigest()])
    # A reboot (a new process on the same flash): a version whose S3 object does not
    # match its checksum fails, and 2.0 stays active.
    with Device(config, tmp_path, heap=heap) as device:
        d3 = cloud.deploy("cam", "detector", "3.0", data=os.urandom(20000))
        cloud.put_object(d3["Definitions"][0]["S3Url"], b"not the model")
        assert device.cycle()["ok"]
        result = status_of(cloud, d3)
        assert result["DeploymentStatus"] == "FAIL", result
        assert "SHA1" in result["DeploymentModels"][0]["StatusReason"], result
        assert active_bytes(tmp_path) == v2 and pointer(tmp_path)["version"] == "2.0"
        assert cloud.heartbeats()[-1]["body"]["Models"] == [
            {"ModelName": "detector", "ModelVersion": "2.0"}]
        d4 = cloud.deploy("cam", "detector", "2.0", undeploy=True)
        assert device.cycle()["ok"]
        assert status_of(cloud, d4)["DeploymentStatus"] == "SUCCESS"
        assert pointer(tmp_path) is None
    state = json.loads((tmp_path / "flash" / "state" / "state.json").read_text())
    assert state["pending"] == [] and state["active"] == {}
    # Every request went through the TLS fronts.
    assert fronts["edge"].connections >= 8 and fronts["s3"].connections >= 3


def test_a_listing_beyond_a_boards_bound_is_a_named_poll_error(local_cloud, fronts, pki,
                                                              tmp_path):
    """At 64 KiB an API answer may be 1/20 of the heap (3,200 bytes, edgecore.client):
    eight one-model deployments listed at once (2.9 KB) are applied, one per cycle; ten
    (3.9 KB) are refused before the body is read, naming the bound (never a MemoryError),
    and the heartbeat still goes out."""
    cloud = local_cloud
    config = device_config(cloud, fronts, pki, tmp_path)
    for i in range(8):
        cloud.deploy("m%d" % i, "detector", "1.0", data=os.urandom(2000))
    with Device(config, tmp_path) as device:
        report = device.cycle()
        assert report["ok"] and [r["DeploymentStatus"] for r in report["results"]] == \
            ["SUCCESS"], report
        for i in range(8, 11):
            cloud.deploy("m%d" % i, "detector", "1.0", data=os.urandom(2000))
        beats = len(cloud.heartbeats())
        report = device.cycle()
        assert not report["ok"] and len(report["errors"]) == 1, report
        assert report["errors"][0].startswith("GetDeployments: ") and \
            "exceeds the 3200 byte bound" in report["errors"][0], report
        assert len(cloud.heartbeats()) == beats + 1
    assert len(device.events("api.retry")) == 3  # max_retries on a board (a TransportError)


def test_cut_download_resumes_with_range_on_the_device(local_cloud, fronts, pki, tmp_path):
    """A download cut mid-body (the fault proxy between the S3 front and moto) resumes in
    the same cycle with Range + If-Match: the unix port's files (os.stat, "ab" on the
    partial), its sockets and TLS."""
    from faults.proxy import FaultProxy

    data = os.urandom(200000)
    dep = local_cloud.deploy("cam", "detector", "1.0", data=data)
    with FaultProxy(local_cloud.s3_endpoint_url, "s3") as proxy:
        proxy.add_fault("truncate", op="GetObject", after=70000)
        s3 = TlsFront(proxy.url, pki)
        config = device_config(local_cloud, dict(fronts, s3=s3), pki, tmp_path)
        try:
            with Device(config, tmp_path, heap=None) as device:
                assert device.cycle()["ok"]
        finally:
            s3.close()
        (retry,) = device.events("download.retry")
        assert 0 < retry["have"] <= 70000
        cut, resumed = proxy.requests("GetObject")
    assert cut["fault"] == "truncate" and "range" not in cut["headers"]
    assert resumed["headers"]["range"] == "bytes=%d-" % retry["have"]
    assert resumed["headers"]["if-match"].strip('"')
    assert resumed["status"] == 206 and resumed["body_len"] == len(data) - retry["have"]
    assert active_bytes(tmp_path) == data
    assert status_of(local_cloud, dep)["DeploymentStatus"] == "SUCCESS"


def test_mpy_build_runs_the_cycle_on_the_device(local_cloud, fronts, pki, tmp_path):
    """build-mpy.sh's .mpy files, compiled by the mpy-cross of the binary's own source
    tree, load on the binary (ahead of the frozen copy) and run a cycle."""
    dist = tmp_path / "dist"
    out = subprocess.run([os.path.join(ROOT, "firmware", "micropython", "build-mpy.sh"), str(dist)],
                         capture_output=True, text=True, env=dict(os.environ, MPY_CROSS=MPY_CROSS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "KB of .mpy" in out.stdout
    package = json.loads((dist / "package.json").read_text())
    for target, url in package["urls"]:
        assert (dist / url).is_file() and url.endswith(target)
    data = os.urandom(8192)
    dep = local_cloud.deploy("kws", "keyword", "3", data=data)
    config = device_config(local_cloud, fronts, pki, tmp_path)
    lib = str(dist / "lib")
    with Device(config, tmp_path, heap=None, path=lib + ":.frozen") as device:
        assert device.source.startswith(lib + "/"), device.source
        assert device.cycle()["ok"]
    assert active_bytes(tmp_path, "kws") == data
    assert status_of(local_cloud, dep)["DeploymentStatus"] == "SUCCESS"


def test_a_state_too_large_for_the_heap_is_a_state_error_on_the_real_binary(tmp_path):
    """A state file a 64 KiB board cannot parse gives StateError naming the limit, never
    MemoryError (the 4 MiB limit of CPython is far above a board's heap)."""
    from edgecore import agentstate

    state = agentstate.new_state(1700000000)
    state["done"] = ["deployment-%05d" % i for i in range(2000)]  # ~40 KB of JSON
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.json").write_bytes(agentstate.dumps(state))
    config = {"device_name": "d", "fleet_name": "f", "region": "us-west-2",
              "model_dir": str(tmp_path / "models"), "state_dir": str(tmp_path / "state"),
              "credentials": {"access_key_id": "AKID", "secret_access_key": "S"}}
    # The config goes in a file: the unix port aborts on an argv entry over 255 bytes.
    (tmp_path / "agent.json").write_text(json.dumps(config))
    script = ("import sys\nfrom edgecore_ports.mp_agent import Agent, read_config_file\n"
              "from edgecore.agentstate import StateError\n"
              "a = Agent(read_config_file(sys.argv[1]))\n"
              "try:\n    a.start()\n    print('LOADED')\n"
              "except StateError as exc:\n    print('STATE ERROR', exc)\n")
    env = dict(os.environ, MICROPYPATH=".frozen")
    proc = subprocess.run([BINARY, "-X", "heapsize=64k", "-c", script,
                           str(tmp_path / "agent.json")],
                          capture_output=True, text=True, timeout=60, env=env, cwd="/")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("STATE ERROR load agent state: invalid document: "), \
        proc.stdout
    assert "more than this device can load" in proc.stdout


def test_idle_cycles_on_the_device_leave_the_state_file_alone(local_cloud, fronts, pki,
                                                              tmp_path):
    """Runner.save skips a state that did not change (flash wear): the board's settle
    (mp_agent.compact, after every cycle) builds new dicts, whose order differs on
    MicroPython, and must not make every idle cycle rewrite state.json. Run with this
    tree's code (build-mpy.sh's .mpy files, ahead of the frozen copy)."""
    dist = tmp_path / "dist"
    out = subprocess.run([os.path.join(ROOT, "firmware", "micropython", "build-mpy.sh"), str(dist)],
                         capture_output=True, text=True, env=dict(os.environ, MPY_CROSS=MPY_CROSS))
    assert out.returncode == 0, out.stdout + out.stderr
    local_cloud.deploy("cam", "detector", "1.0", data=os.urandom(4096))
    config = device_config(local_cloud, fronts, pki, tmp_path)
    state = tmp_path / "flash" / "state" / "state.json"
    lib = str(dist / "lib")
    # The default heap: .mpy files loaded from the flash take more than frozen code.
    with Device(config, tmp_path, heap=None, path=lib + ":.frozen") as device:
        assert device.source.startswith(lib + "/"), device.source
        assert device.cycle()["ok"]
        same_second = 0
        for _ in range(10):
            before = (os.stat(str(state)).st_ino, state.read_bytes())
            assert device.cycle()["ok"]
            after = (os.stat(str(state)).st_ino, state.read_bytes())
            # A heartbeat changes the state only when its second (last_heartbeat) does.
            if json.loads(after[1])["last_heartbeat"] == json.loads(before[1])["last_heartbeat"]:
                assert after == before, "an idle cycle rewrote the unchanged state"
                same_second += 1
                if same_second == 3:
                    break
        assert same_second, "no two cycles within one second: nothing was checked"
