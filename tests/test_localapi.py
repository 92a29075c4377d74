"""edgecore_ports.localapi driven by the real client (edgecore_ports.app) over a Unix
socket, with a fake backend: routes, permissions, long-poll, and the defences against
hostile clients (connection cap, deadlines, oversize and malformed requests, random
bytes)."""

import os
import socket
import stat
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecore_ports import appapi, capture, cpython
from edgecore_ports.app import ApiError, AppClient, tensor
from edgecore_ports.localapi import LocalApiServer

SHA = "c" * 40


def _models(sha=SHA):
    return appapi.models_from_state({"active": {"model-a": {
        "name": "model-a", "version": "v1", "sha1": sha, "deployment": "dep-1", "size": 3,
        "path": "/m/model-a", "activated": 1700000000}}, "pending": []})


class Rig:
    def __init__(self, tmp_path, **kw):
        self.inferences = []
        self.models = appapi.ModelSet(_models())
        self.store = capture.CaptureStore(str(tmp_path / "cap"), cpython, buffer_bytes=1 << 20)
        self.api = appapi.AppApi(
            self.models, record_inference=lambda *a: self.inferences.append(a) or True,
            store=self.store, device="cam-1", fleet="fleet-a")
        self.path = str(tmp_path / "api.sock")
        self.events = []
        self.server = LocalApiServer(self.api, self.path, log=self._log, **kw).start()

    def _log(self, level, event, **fields):
        self.events.append(event)

    def client(self, **kw):
        return AppClient(self.path, **kw)

    def raw(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(self.path)
        return s


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.server.stop()


def _exchange(sock, data):
    sock.sendall(data)
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        out += chunk
        if b"\r\n\r\n" in out:
            head, _, body = out.partition(b"\r\n\r\n")
            for line in head.split(b"\r\n"):
                if (line.lower().startswith(b"content-length:")
                        and len(body) >= int(line.split(b":")[1])):
                    return out
    return out


def test_operations_through_the_client(rig):
    c = rig.client()
    listed = c.list_models()
    assert [m["ModelHandle"] for m in listed["Models"]] == ["model-a"]
    assert c.describe_model("model-a")["Sha1"] == SHA
    c.record_inference("model-a", latency_ms=3.5, sample_time=1700000000)
    assert rig.inferences == [("model-a", 3.5, 1700000000)]
    x = tensor("x", b"\x00\x00\x80?", "float32", [1])
    assert c.capture_data("model-a", "c-1", inputs=[x], outputs=[{"name": "y", "json": [1]}],
                          inference_time=1700000000.25)["Status"] == "IN_PROGRESS"
    assert c.get_capture_data_status("c-1")["Status"] == "IN_PROGRESS"
    assert c.get_capture_data_status("c-9")["Status"] == "NOT_FOUND"
    with open(rig.store.dir + "/q/" + rig.store.ids["c-1"], "rb") as f:
        rec = f.read()
    assert rec == capture.make_record(
        "model-a", "c-1", 1700000000.25,
        [{"name": "x", "dtype": "float32", "shape": [1], "data": b"\x00\x00\x80?"}],
        [{"name": "y", "json": [1]}], None,
        model={"name": "model-a", "version": "v1", "sha1": SHA}, device="cam-1", fleet="fleet-a")
    with pytest.raises(ApiError) as err:
        c.describe_model("nope")
    assert (err.value.status, err.value.code, err.value.field) == (404, "ModelNotFound",
                                                                   "ModelHandle")
    with pytest.raises(ApiError) as err:
        c.capture_data("model-a", "c-2", inputs=[{"name": "x", "dtype": "int8", "shape": [3],
                                                  "data": "!!notbase64"}])
    assert err.value.code == "ValidationError"
    c.close()


def test_numpy_like_tensor():
    class Arr:
        dtype = "int16"
        shape = (2, 2)

        def tobytes(self):
            return b"\x01\x00" * 4

    t = tensor("a", Arr())
    assert t == {"name": "a", "dtype": "int16", "shape": [2, 2], "data": b"\x01\x00" * 4}


def test_an_answer_cut_short_is_an_oserror_for_the_client(tmp_path):
    """An agent killed mid-answer: the client raises OSError (as for any lost connection),
    not http.client's IncompleteRead, so an application's "agent down, retry" path
    covers it."""
    path = str(tmp_path / "cut.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def answer_half():
        conn, _ = srv.accept()
        conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 50\r\n\r\n{\"Models\": [")
        conn.close()

    t = threading.Thread(target=answer_half)
    t.start()
    try:
        with pytest.raises(OSError) as info:
            AppClient(path, timeout=5).list_models()
        assert "cut short" in str(info.value)
    finally:
        t.join(5)
        srv.close()


def test_socket_is_0660_and_replaces_only_a_stale_socket(tmp_path):
    r = Rig(tmp_path)
    try:
        st_ = os.stat(r.path)
        assert stat.S_ISSOCK(st_.st_mode) and stat.S_IMODE(st_.st_mode) == 0o660
        assert st_.st_gid == os.getgid()
    finally:
        r.server.stop()
    assert not os.path.exists(r.path)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(r.path)
    stale.close()  # a socket file left by a killed agent
    r2 = Rig(tmp_path)
    assert r2.client().list_models()["Models"]
    r2.server.stop()
    with open(r.path, "w") as f:
        f.write("not a socket")
    with pytest.raises(OSError, match="not a socket"):
        Rig(tmp_path)
    with open(r.path) as f:
        assert f.read() == "not a socket"


def test_watch_returns_on_change_and_on_timeout(rig):
    c = rig.client()
    v = c.list_models()["Version"]
    t0 = time.monotonic()
    same = c.watch_models(since=v, timeout=1)
    assert same["Changed"] is False and time.monotonic() - t0 >= 0.9
    threading.Timer(0.3, lambda: rig.models.update(_models("d" * 40))).start()
    t0 = time.monotonic()
    moved = c.watch_models(since=v, timeout=30)
    assert moved["Changed"] is True and moved["Models"][0]["Sha1"] == "d" * 40
    assert time.monotonic() - t0 < 10
    with pytest.raises(ApiError) as err:
        c.watch_models(timeout=1000)
    assert err.value.code == "ValidationError"


def test_hung_up_watcher_frees_its_connection(rig):
    v = rig.api.list_models()["Version"]
    s = rig.raw()
    s.sendall(b"GET /v1/watch?since=%s&timeout=60 HTTP/1.1\r\nHost: x\r\n\r\n" % v.encode())
    time.sleep(0.3)
    assert rig.server.counts()["connections"] == 1
    s.close()
    deadline = time.monotonic() + 5
    while rig.server.counts()["connections"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert rig.server.counts()["connections"] == 0


def test_connection_cap(tmp_path):
    r = Rig(tmp_path, max_connections=3)
    try:
        held = [r.raw() for _ in range(3)]
        time.sleep(0.2)
        extra = r.raw()
        answer = extra.recv(4096)  # answered at once, before any request
        assert answer.startswith(b"HTTP/1.1 503") and b"TooManyConnections" in answer
        for s in held:
            s.close()
        deadline = time.monotonic() + 5
        while r.server.counts()["connections"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert r.client().list_models()["Models"]
    finally:
        r.server.stop()


def test_slow_client_cut_at_the_deadline(tmp_path):
    r = Rig(tmp_path, request_timeout=1.0)
    try:
        s = r.raw()
        t0 = time.monotonic()
        s.sendall(b"GET /v1/mo")
        got = b""
        for _ in range(30):  # a byte every 0.2 s: each read is in time, the request is not
            try:
                s.sendall(b"d")
            except OSError:
                break
            time.sleep(0.2)
        try:
            got = s.recv(1024)
        except OSError:
            pass
        assert time.monotonic() - t0 < 4
        assert got == b"" or not got.startswith(b"HTTP/1.1 200")
        assert "localapi.deadline" in r.events
        assert r.client().list_models()["Models"]  # others are served meanwhile
    finally:
        r.server.stop()


def test_bad_requests_answered_not_fatal(rig):
    cases = [
        (b"POST /v1/captures HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n", b"413"),
        (b"POST /v1/captures HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n{bad}", b"400"),
        (b"POST /v1/captures HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n[]", b"400"),
        (b"POST /v1/inferences HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
         b"411"),
        (b"GET /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n", b"404"),
        (b"DELETE /v1/models HTTP/1.1\r\nHost: x\r\n\r\n", b"405"),
        (b"GET /v1/watch?timeout=abc HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n", b"414"),
        (b"GET /v1/models HTTP/1.1\r\n" + b"X: y\r\n" * 150 + b"\r\n", b"431"),
    ]
    deep = b"[" * 100000 + b"]" * 100000
    cases.append((b"POST /v1/captures HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                  % len(deep) + deep, b"400"))
    for request, status in cases:
        s = rig.raw()
        answer = _exchange(s, request)
        s.close()
        assert answer[9:12] == status, (request[:60], answer[:200])
    assert rig.client().list_models()["Models"]


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.one_of(
    st.binary(max_size=2000),
    st.builds(lambda m, p, b: m + b" " + p + b" HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % len(b)
              + b, st.sampled_from([b"GET", b"POST", b"PUT", b"\x00"]),
              st.sampled_from([b"/v1/models", b"/v1/captures", b"/v1/inferences", b"/v1/watch",
                               b"/v1/models/%2e%2e", b"/v1/captures/x"]),
              st.binary(max_size=300)),
))
def test_fuzz_random_bytes_never_break_the_server(rig, data):
    s = rig.raw()
    s.settimeout(2)
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
    except OSError:
        pass
    finally:
        s.close()
    c = rig.client(timeout=5)
    assert c.list_models()["Models"][0]["ModelHandle"] == "model-a"
    c.close()
    assert "localapi.failed" not in rig.events
