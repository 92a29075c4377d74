"""Issue 13's "Done means", end to end: the real agent process (``edgecore run``, its
service loop) against the local cloud (the fleet server embedded, moto S3 checking
signatures), an application on its Unix socket (``edgecore_ports.app.AppClient``).

- a .tar.gz model package deployed and active as a directory; an application watching
  the socket sees the switch and reads the new model; the socket's and the state
  directory's modes; SIGTERM removes the socket;
- hostile packages (path traversal, absolute path, symlink out, device file, zip bomb)
  each FAIL with the previous model kept and nothing written outside its version;
- 1,000 captures through the socket, the network to S3 cut and the agent SIGKILLed in
  between: every capture confirmed to the application arrives in S3 exactly as sent
  (duplicates only as the same key), and the buffer's bound holds;
- random bytes fed to the socket never crash the agent.
"""

import io
import json
import os
import random
import socket
import stat
import sys
import tarfile
import threading
import time
import zipfile

import pytest

from edgecore_ports import capture
from edgecore_ports.app import ApiError, AppClient

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentproc import AgentRun  # noqa: E402
from faults.proxy import FaultProxy  # noqa: E402

HANDLE = "detector"


def package(files, fmt="w:gz"):
    """A tar archive (``fmt``) of {name: bytes} under model/."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=fmt) as tf:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo("model/" + name)
            info.size = len(data)
            info.mtime = 1700000000
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def hostile_tar(kind):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo({"traversal": "model/../../../escaped.txt",
                                "absolute": "/tmp/edgecore-e2e-absolute.txt",
                                "symlink": "model/weights",
                                "device": "model/dev-null"}[kind])
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "../../../../../etc/passwd"
            tf.addfile(info)
        elif kind == "device":
            info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            tf.addfile(info)
        else:
            info.size = 2
            tf.addfile(info, io.BytesIO(b"x\n"))
    return buf.getvalue()


def zip_bomb():
    """64 MiB of zeros in a ~64 KiB zip (over the unpack_max_bytes the test sets)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z, \
            z.open("model/zeros.bin", "w") as f:
        block = b"\x00" * (1 << 20)
        for _ in range(64):
            f.write(block)
    return buf.getvalue()


def write_config(path, config):
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    return str(path)


def device_config(cloud, tmp_path, **extra):
    extra.setdefault("heartbeat_interval", 1)
    config = cloud.agent_config(tmp_path / "device" / "models", tmp_path / "device" / "state",
                                **extra)
    (tmp_path / "device").mkdir(exist_ok=True)
    return write_config(tmp_path / "device" / "agent.json", config), config


def socket_of(config):
    return config.get("api_socket") or config["state_dir"] + "/api.sock"


def wait_for(predicate, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def client_when_up(config, timeout=30):
    """A client once the agent answers (a socket file left by a killed agent refuses
    connections until the next one has replaced it)."""
    api = AppClient(socket_of(config), timeout=10)

    def answers():
        try:
            return api.list_models() is not None
        except OSError:
            api.close()
            return False

    wait_for(answers, timeout, "the agent's socket")
    return api


def tree(root):
    """Every path under ``root`` (not following links)."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        out += [os.path.join(dirpath, n) for n in dirnames + filenames]
    return sorted(out)


def test_a_package_is_served_and_an_application_sees_the_switch(local_cloud, tmp_path):
    v1 = package({"weights.bin": b"\x01" * 5000, "config.json": b'{"version": 1}'})
    v2 = package({"weights.bin": b"\x02" * 7000, "config.json": b'{"version": 2}'})
    local_cloud.deploy(HANDLE, "detector", "1.0", data=v1)
    path, config = device_config(local_cloud, tmp_path)
    agent = AgentRun(path, timeout=120, once=False)
    try:
        api = client_when_up(config)
        answer = api.watch_models(since=None, timeout=0)
        while not answer["Models"]:
            answer = api.watch_models(since=answer["Version"], timeout=30)
        (m,) = answer["Models"]
        assert m["ModelHandle"] == HANDLE and m["Path"] == config["model_dir"] + "/" + HANDLE
        assert os.path.isdir(m["Path"])
        with open(m["Path"] + "/model/config.json", "rb") as f:
            assert f.read() == b'{"version": 1}'
        version = os.readlink(m["Path"]).split("/")
        assert version[0] == ".versions" and version[2] == "content", version
        # Modes: the agent's group reaches the socket, nothing else in state_dir.
        st = os.stat(socket_of(config))
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == os.getegid()
        assert stat.S_IMODE(os.stat(config["state_dir"]).st_mode) == 0o710
        assert stat.S_IMODE(os.stat(config["state_dir"] + "/state.json").st_mode) == 0o600

        seen = {}

        def watch():
            other = AppClient(socket_of(config), timeout=10)
            got = other.watch_models(since=answer["Version"], timeout=90)
            seen["answer"] = got
            with open(got["Models"][0]["Path"] + "/model/config.json", "rb") as f:
                seen["config"] = f.read()

        watcher = threading.Thread(target=watch)
        watcher.start()
        time.sleep(0.5)  # the watcher is waiting on the socket
        local_cloud.deploy(HANDLE, "detector", "2.0", data=v2)
        watcher.join(120)
        assert seen["answer"]["Changed"] is True, seen
        assert seen["config"] == b'{"version": 2}'
        assert api.describe_model(HANDLE)["ModelVersion"] == "2.0"
    finally:
        agent.terminate()
        rc = agent.finish()
    assert rc == 0, agent.log_tail()
    assert not os.path.exists(socket_of(config))  # removed on the way out
    names = [name for _, name, _ in agent.events]
    assert "package.unpacked" in names and "localapi.listening" in names, names


@pytest.mark.parametrize("kind", ["traversal", "absolute", "symlink", "device", "zip bomb"])
def test_hostile_packages_fail_and_the_previous_model_stays(local_cloud, tmp_path, run_cli,
                                                            kind):
    good = package({"config.json": b'{"good": true}'})
    local_cloud.deploy(HANDLE, "detector", "1.0", data=good)
    path, config = device_config(local_cloud, tmp_path, unpack_max_bytes=8 << 20)
    out = run_cli(["run", "--config", path, "--once"])
    assert out.returncode == 0, out.stderr[-2000:]
    active = config["model_dir"] + "/" + HANDLE
    before = tree(tmp_path)
    bad = zip_bomb() if kind == "zip bomb" else hostile_tar(kind)
    local_cloud.deploy(HANDLE, "detector", "2.0", data=bad)
    out = run_cli(["run", "--config", path, "--once"])
    assert out.returncode == 0, out.stderr[-2000:]
    result = local_cloud.results()[-1]["body"]
    model = result["DeploymentModels"][0]
    assert result["DeploymentStatus"] == "FAIL" and model["Status"] == "FAIL", result
    assert "model package refused" in model["StatusReason"], model
    with open(active + "/model/config.json", "rb") as f:
        assert f.read() == b'{"good": true}'
    # Nothing new anywhere (the agent's state files aside), nothing outside either.
    after = [p for p in tree(tmp_path) if "/device/state/" not in p and "/cloud-" not in p]
    assert after == [p for p in before if "/device/state/" not in p and "/cloud-" not in p]
    assert not os.path.exists("/tmp/edgecore-e2e-absolute.txt")
    assert not os.path.exists(str(tmp_path / "escaped.txt"))


def _capture_args(i):
    data = bytes((i * 7 + k) % 251 for k in range(64 + i % 200))
    return dict(inputs=[{"name": "image", "dtype": "uint8", "shape": [len(data)],
                         "data": data}],
                outputs=[{"name": "scores", "json": {"class": i % 10, "p": (i % 97) / 97.0}}],
                auxiliary=[{"name": "note", "csv": "%d,%d" % (i, i * i)}],
                inference_time=1700000000 + i / 8.0)


class _App(threading.Thread):
    """The application: captures cap-0000.. through the socket, each retried until the
    agent confirmed it (IN_PROGRESS), or said an earlier try had (CaptureIdInUse); a
    refused connection (the agent is down) or a full buffer is waited out."""

    def __init__(self, socket_path, count):
        super().__init__(daemon=True)
        self.path = socket_path
        self.count = count
        self.confirmed = 0
        self.full = 0
        self.stop = False
        self.error = None

    def run(self):
        try:
            self._capture_all()
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc

    def _capture_all(self):
        api = AppClient(self.path, timeout=10)
        for i in range(self.count):
            while not self.stop:
                try:
                    api.capture_data(HANDLE, "cap-%04d" % i, **_capture_args(i))
                except ApiError as exc:
                    if exc.code == "CaptureIdInUse":
                        break
                    if exc.code != "BufferFull":
                        raise
                    self.full += 1
                    time.sleep(0.02)
                    continue
                except OSError:
                    api.close()
                    time.sleep(0.05)
                    continue
                break
            self.confirmed = i + 1


def _queued_bytes(state_dir):
    q = os.path.join(state_dir, "captures", "q")
    try:
        return sum(os.path.getsize(os.path.join(q, n)) for n in os.listdir(q)
                   if not n.startswith("."))
    except FileNotFoundError:
        return 0


def test_1000_captures_through_the_socket_survive_cuts_and_sigkills(local_cloud, tmp_path):
    count = 1000
    local_cloud.deploy(HANDLE, "detector", "1.0", data=package({"config.json": b"{}"}))
    proxy = FaultProxy(local_cloud.s3_endpoint_url, flavor="s3", seed=11,
                       kinds=("reset", "drop_response", "http503", "truncate"))
    proxy.start()
    one = len(capture.make_record(HANDLE, "cap-0999", 1e9, **{
        k: v for k, v in _capture_args(999).items() if k != "inference_time"}))
    buffer_bytes = 80 * (one + 400)
    path, config = device_config(local_cloud, tmp_path, s3_endpoint_url=proxy.url,
                                 capture_s3_uri=local_cloud.capture_s3_uri,
                                 capture_buffer_bytes=buffer_bytes, capture_batch_size=10,
                                 capture_push_interval=0.2, timeout=[2, 10], request_timeout=20)
    rng = random.Random(int(os.environ.get("EDGECORE_CAPTURE_SEED", "1313")))
    app = _App(socket_of(config), count)
    kills = cuts = 0
    peak = 0
    try:
        agent = AgentRun(path, timeout=120, once=False)
        client_when_up(config)
        wait_for(lambda: any(n == "model.activated" for _, n, _ in agent.events), 60,
                 "the model's activation")
        app.start()
        # Kill rounds: each starts once the agent answers, so a loaded machine (a slow
        # start) still gets serving time in every round; every third round cuts the
        # network to S3. Then a last run, the network whole, until every capture is in.
        for rnd in range(8):
            cut = rnd % 3 == 1
            proxy.rate = 1.0 if cut else 0.0
            cuts += cut
            time.sleep(rng.uniform(0.8, 2.5))
            peak = max(peak, _queued_bytes(config["state_dir"]))
            agent.kill()
            agent.finish()
            kills += 1
            assert _queued_bytes(config["state_dir"]) <= buffer_bytes
            if not app.is_alive() and kills >= 5 and cuts >= 2:
                break
            agent = AgentRun(path, timeout=120, once=False)
            client_when_up(config, timeout=120)
        proxy.rate = 0.0
        agent = AgentRun(path, timeout=600, once=False)
        api = client_when_up(config, timeout=120)
        app.join(300)
        assert not app.is_alive(), "the application confirmed only %d captures" % app.confirmed

        def all_uploaded():
            for i in range(count):
                status = api.get_capture_data_status("cap-%04d" % i)["Status"]
                assert status != "FAILURE", (i, status)
                if status != "SUCCESS":
                    return False
            return True

        try:
            wait_for(all_uploaded, 300, "every capture in S3")
        except AssertionError:
            statuses = [api.get_capture_data_status("cap-%04d" % i)["Status"]
                        for i in range(count)]
            raise AssertionError("not all uploaded: %s; agent log:\n%s" % (
                dict((s, statuses.count(s)) for s in set(statuses)),
                agent.log_tail(30))) from None
        agent.terminate()
        assert agent.finish() == 0, agent.log_tail()
    finally:
        app.stop = True
        proxy.stop()
        if agent.proc.poll() is None:
            agent.kill()
            agent.finish()
    assert app.error is None, app.error
    assert app.confirmed == count and kills >= 5 and cuts >= 2, (app.confirmed, kills, cuts)
    assert peak <= buffer_bytes
    # Exactly as sent: the record the agent builds from what the application sent.
    model = {"name": "detector", "version": "1.0", "sha1": None}
    where = {}
    for obj in local_cloud.captures():
        body = local_cloud.s3.client().get_object(Bucket=local_cloud.bucket,
                                                  Key=obj["key"])["Body"].read()
        for line in body.splitlines(True):
            meta = json.loads(line)["eventMetadata"]
            i = int(meta["captureId"][4:])
            model["sha1"] = meta["modelSha1"]
            want = capture.make_record(HANDLE, meta["captureId"], **dict(
                _capture_args(i), model=model, device=config["device_name"],
                fleet=config["fleet_name"]))
            assert line == want, meta["captureId"]
            where.setdefault(meta["captureId"], set()).add(obj["key"])
    assert sorted(where) == ["cap-%04d" % i for i in range(count)]
    assert all(len(keys) == 1 for keys in where.values())  # duplicates only as one key
    print("\nsocket capture soak: %d kills, %d cut phases, %d objects, peak buffer %d of %d, "
          "buffer-full answers %d, faults %s" % (kills, cuts, len(local_cloud.captures()),
                                                 peak, buffer_bytes, app.full,
                                                 dict(proxy.counts)))


def _fuzz_payloads(rng, n):
    """Random bytes, and random mutations of well-formed requests."""
    seeds = [b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n",
             b"GET /v1/watch?since=abc&timeout=0.1 HTTP/1.1\r\n\r\n",
             b"POST /v1/captures HTTP/1.1\r\nContent-Length: 40\r\n\r\n"
             b'{"ModelHandle": "detector", "Ca',
             b"POST /v1/inferences HTTP/1.1\r\nContent-Length: 29\r\n\r\n"
             b'{"ModelHandle": [[[[[[[1]]]]]',
             b"POST /v1/captures HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nffffffff\r\n"]
    for _ in range(n):
        roll = rng.random()
        if roll < 0.4:
            yield bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 3000)))
        else:
            data = bytearray(rng.choice(seeds))
            for _ in range(rng.randint(1, 12)):
                pos = rng.randrange(len(data))
                op = rng.random()
                if op < 0.5:
                    data[pos] = rng.getrandbits(8)
                elif op < 0.8:
                    data[pos:pos] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
                else:
                    del data[pos:pos + rng.randint(1, 16)]
            yield bytes(data)


def test_random_bytes_on_the_socket_never_crash_the_agent(local_cloud, tmp_path):
    local_cloud.deploy(HANDLE, "detector", "1.0", data=package({"config.json": b"{}"}))
    path, config = device_config(local_cloud, tmp_path, api_max_connections=16)
    agent = AgentRun(path, timeout=120, once=False)
    rng = random.Random(int(os.environ.get("EDGECORE_FUZZ_SEED", "1313")))
    sent = 0
    try:
        api = client_when_up(config)
        for payload in _fuzz_payloads(rng, int(os.environ.get("EDGECORE_SOCKET_FUZZ", "400"))):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(5)
            try:
                s.connect(socket_of(config))
                s.sendall(payload)
                if rng.random() < 0.5:
                    s.shutdown(socket.SHUT_WR)
                    while s.recv(65536):
                        pass
            except OSError:
                pass  # the agent may close a connection it refuses mid-send
            finally:
                s.close()
            sent += 1
            assert agent.proc.poll() is None, agent.log_tail()
        # Still serving, still cycling.
        assert isinstance(api.list_models()["Models"], list)
        beats = len(local_cloud.heartbeats())
        wait_for(lambda: len(local_cloud.heartbeats()) > beats, 30, "another heartbeat")
    finally:
        agent.terminate()
        rc = agent.finish()
    assert rc == 0, agent.log_tail()
    names = [name for _, name, _ in agent.events]
    assert "cycle.crashed" not in names and "localapi.failed" not in names, agent.log_tail(20)
    assert sent >= 100
