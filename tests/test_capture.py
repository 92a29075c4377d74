# Runs under MicroPython too
"""edgecore_ports.capture without a network: records, the bounded buffer, restarts after
a kill at every step, batches and their keys, and the uploader's retry rules against a
fake transport (the real S3 exchange is in test_capture_s3.py)."""

import json
import os

from edgecore import sigv4
from edgecore.credentials import Credentials
from edgecore.errors import TransportError
from edgecore_ports import capture
from edgecore_ports.capture import CaptureError, CaptureStore, Uploader

_counter = [0]


def tmpdir():
    try:
        import tempfile

        return tempfile.mkdtemp()
    except ImportError:
        _counter[0] += 1
        path = "/tmp/capture-test-%d" % _counter[0]
        from edgecore_ports.archive import remove_tree

        remove_tree(path)
        os.mkdir(path)
        return path


class Port:
    """atomic_write + a settable monotonic clock."""

    def __init__(self):
        self.t = 1000.0
        self.writes = 0

    def monotonic(self):
        return self.t

    def atomic_write(self, path, data, mode=0o600):
        if isinstance(data, str):
            data = data.encode()
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.rename(path + ".tmp", path)
        self.writes += 1


def record(cid, handle="model-a", n=4):
    return capture.make_record(handle, cid, 1700000000.5,
                               [{"name": "x", "dtype": "uint8", "shape": [n], "data": bytes(n)}],
                               [{"name": "y", "json": {"score": 0.5}}], None)


def expect_error(code, fn, *args, **kw):
    try:
        fn(*args, **kw)
    except CaptureError as exc:
        assert exc.code == code, (exc.code, str(exc))
        return exc
    raise AssertionError("no CaptureError " + code)


def test_make_record_shape():
    rec = capture.make_record(
        "model-a", "cap-1", 1700000000.25,
        [{"name": "input:0", "dtype": "float32", "shape": [2], "data": b"\x00\x00\x80?" * 2}],
        [{"name": "out", "csv": "1,2,3"}],
        [{"name": "meta", "json": {"k": [1, 2.5, None, True]}}],
        model={"name": "model-a", "version": "v1", "sha1": "ab" * 20},
        device="cam-1", fleet="fleet-a",
    )
    assert rec.endswith(b"\n") and rec.count(b"\n") == 1
    doc = json.loads(rec)
    assert doc["eventVersion"] == "edgecore-capture-1"
    meta = doc["eventMetadata"]
    assert meta["captureId"] == "cap-1" and meta["modelHandle"] == "model-a"
    assert meta["inferenceTime"] == 1700000000.25 and meta["modelVersion"] == "v1"
    assert meta["deviceName"] == "cam-1" and meta["fleetName"] == "fleet-a"
    t = doc["captureData"]["inputs"][0]
    assert t == {"name": "input:0", "encoding": "BASE64", "dtype": "float32", "shape": [2],
                 "data": "AACAPwAAgD8="}, t
    assert doc["captureData"]["outputs"] == [{"name": "out", "encoding": "CSV", "data": "1,2,3"}]
    assert doc["captureData"]["auxiliary"][0]["data"] == {"k": [1, 2.5, None, True]}


def test_make_record_validation():
    ok = [{"name": "x", "json": 1}]
    bad = [
        (("bad handle!", "c", 1, ok, None, None), "ModelHandle"),
        (("m", "", 1, ok, None, None), "CaptureId"),
        (("m", "-x", 1, ok, None, None), "CaptureId"),
        (("m", "a/b", 1, ok, None, None), "CaptureId"),
        (("m", "c", float("nan"), ok, None, None), "InferenceTime"),
        (("m", "c", -1, ok, None, None), "InferenceTime"),
        (("m", "c", True, ok, None, None), "InferenceTime"),
        (("m", "c", 1, [], None, None), "Inputs"),
        (("m", "c", 1, "x", None, None), "Inputs"),
        (("m", "c", 1, [{"name": "x", "json": float("inf")}], None, None), "Inputs[0].json"),
        (("m", "c", 1, [{"name": "x", "json": {1: 2}}], None, None), "Inputs[0].json"),
        (("m", "c", 1, [{"name": "x y", "json": 1}], None, None), "Inputs[0].name"),
        (("m", "c", 1, [{"name": "x", "json": 1, "csv": "1"}], None, None), "Inputs[0]"),
        (("m", "c", 1, [{"name": "x", "data": b"12", "dtype": "float32", "shape": [1]}], None,
          None), "Inputs[0].data"),
        (("m", "c", 1, [{"name": "x", "data": b"", "dtype": "complex", "shape": []}], None,
          None), "Inputs[0].dtype"),
        (("m", "c", 1, [{"name": "x", "data": b"", "dtype": "int8", "shape": [-1]}], None,
          None), "Inputs[0].shape"),
        (("m", "c", 1, [{"name": "x", "data": "text", "dtype": "int8", "shape": [4]}], None,
          None), "Inputs[0].data"),
        (("m", "c", 1, ok, [{"name": "y", "csv": 3}], None), "Outputs[0].csv"),
        (("m", "c", 1, ok, None, [ok[0]] * 65), "Auxiliary"),
    ]
    deep = 1
    for _ in range(40):
        deep = [deep]
    bad.append((("m", "c", 1, [{"name": "x", "json": deep}], None, None), "Inputs[0].json"))
    for args, field in bad:
        exc = expect_error("ValidationError", capture.make_record, *args)
        assert exc.field == field, (field, exc.field, str(exc))
        assert field in str(exc)


def test_add_status_and_buffer_bound():
    port = Port()
    d = tmpdir()
    one = record("c-0")
    store = CaptureStore(d, port, buffer_bytes=3 * len(one))
    for i in range(3):
        store.add("model-a", "c-%d" % i, record("c-%d" % i))
    assert store.status("c-1") == (capture.IN_PROGRESS, None)
    assert store.status("nope") == (capture.NOT_FOUND, None)
    exc = expect_error("BufferFull", store.add, "model-a", "c-3", record("c-3"))
    assert "buffer full" in str(exc)
    assert store.status("c-3")[0] == capture.NOT_FOUND  # refused, not dropped silently
    expect_error("CaptureIdInUse", store.add, "model-a", "c-1", record("c-1"))
    expect_error("RecordTooLarge", store.add, "model-a", "big", b"x" * (3 * len(one) + 1))
    on_disk = sum(os.stat(d + "/q/" + n)[6] for n in os.listdir(d + "/q"))
    assert on_disk == store.used == 3 * len(one)


def test_seal_batches_by_model_size_and_age():
    port = Port()
    store = CaptureStore(tmpdir(), port)
    for i in range(5):
        store.add("model-a", "a-%d" % i, record("a-%d" % i))
    store.add("model-b", "b-0", record("b-0", "model-b"))
    sealed = store.seal(2, 4, 1700003600)
    assert len(sealed) == 2, sealed  # two full batches of model-a; the rest waits
    assert all(b.startswith("2023111423_model-a_") for b in sealed), sealed
    port.t += 4
    sealed = store.seal(2, 4, 1700003600)
    assert sorted(b.split("_")[1] for b in sealed) == ["model-a", "model-b"]
    assert store.pending == {}
    bodies = [store.batch_body(b) for b in sorted(store.batches)]
    assert sum(b.count(b"\n") for b in bodies) == 6
    # max_batch_bytes bounds a batch (but never to less than one record)
    store2 = CaptureStore(tmpdir(), port)
    for i in range(3):
        store2.add("model-a", "x-%d" % i, record("x-%d" % i))
    assert len(store2.seal(10, 0, 1700003600, max_batch_bytes=1)) == 3


def _restart(d, port):
    return CaptureStore(d, port)


def test_restart_after_a_kill_at_every_step():
    port = Port()
    d = tmpdir()
    store = CaptureStore(d, port)
    for i in range(4):
        store.add("model-a", "k-%d" % i, record("k-%d" % i))
    # A temp file of an add cut short: never confirmed, removed at start.
    with open(d + "/q/0000000099_model-a_ghost.json.tmp", "wb") as f:
        f.write(b"partial")
    store = _restart(d, port)
    assert "0000000099_model-a_ghost.json.tmp" not in os.listdir(d + "/q")
    assert store.status("k-3")[0] == capture.IN_PROGRESS
    assert store.status("ghost")[0] == "NOT_FOUND"
    sealed = store.seal(3, 1000, 1700000000)
    assert len(sealed) == 1
    bname = sealed[0]
    body = store.batch_body(bname)
    assert body.count(b"\n") == 3
    # Killed after sealing: the same batch (same key, same bytes) comes back.
    store = _restart(d, port)
    assert bname in store.batches and store.batch_body(bname) == body
    assert len(store.pending) == 1
    # Killed after done.log, before the manifest went: uploaded again to the same key.
    store._append_done(["S k-0\n", "S k-1\n", "S k-2\n"])
    store = _restart(d, port)
    assert bname in store.batches and store.batch_body(bname) == body
    # Killed after the manifest went, before the records did: records dropped at start.
    os.remove(d + "/b/" + bname)
    store = _restart(d, port)
    assert store.batches == {} and len(store.pending) == 1
    assert store.status("k-0") == (capture.SUCCESS, None)
    assert sorted(os.listdir(d + "/q")) == sorted(store.pending)
    assert store.used == sum(os.stat(d + "/q/" + n)[6] for n in os.listdir(d + "/q"))
    # The sequence continues after the highest one on disk.
    store.add("model-a", "k-9", record("k-9"))
    assert max(os.listdir(d + "/q")).startswith("0000000004_")


def test_finish_and_done_log_bounded():
    port = Port()
    d = tmpdir()
    store = CaptureStore(d, port)
    store.add("model-a", "f-0", record("f-0"))
    bname = store.seal(1, 0, 1700000000)[0]
    store.finish(bname, capture.FAILURE, "PUT s3://b/k: HTTP 403 AccessDenied")
    assert store.status("f-0") == (capture.FAILURE, "PUT s3://b/k: HTTP 403 AccessDenied")
    assert os.listdir(d + "/q") == [] and os.listdir(d + "/b") == [] and store.used == 0
    store = _restart(d, port)
    assert store.status("f-0")[0] == capture.FAILURE
    expect_error("CaptureIdInUse", store.add, "model-a", "f-0", record("f-0"))
    old = capture.MAX_DONE
    capture.MAX_DONE = 5
    try:
        for i in range(30):
            store._remember("id-%d" % i, capture.SUCCESS, None)
            store._append_done(["S id-%d\n" % i])
        assert store.done_lines <= 2 * 5 + 1
        with open(d + "/done.log", "rb") as f:
            assert f.read().count(b"\n") == store.done_lines
        assert len(store.done) <= 6 and store.status("id-29")[0] == capture.SUCCESS
        assert store.status("id-0")[0] == capture.NOT_FOUND
    finally:
        capture.MAX_DONE = old


class Resp:
    def __init__(self, status, body=b"", headers=None):
        self.status = status
        self.headers = headers or {}
        self._body = body

    def read(self, n=-1):
        out, self._body = self._body, b""
        return out

    def close(self):
        pass


class Http:
    """Answers PUTs from a script: each item a Resp or an exception to raise."""

    def __init__(self, script):
        self.script = list(script)
        self.sent = []

    def open(self, method, url, headers, body=b"", deadline=None):
        assert deadline is not None  # every PUT is bounded
        self.sent.append((method, url, headers, body))
        item = self.script.pop(0) if self.script else Resp(200)
        if isinstance(item, Exception):
            raise item
        return item


def _error(code, status):
    return Resp(status, ("<Error><Code>%s</Code><Message>m</Message></Error>" % code).encode())


class Creds:
    def __init__(self):
        self.invalidated = 0

    def get(self, now):
        return Credentials("AKIDEXAMPLE", "secret-%d" % self.invalidated, None)

    def invalidate(self):
        self.invalidated += 1


def _uploader(store, http, **kw):
    kw.setdefault("rand", lambda: 0.0)
    return Uploader(store, "s3://cap-bucket/captures/", "fleet-a", "cam-1", "us-west-2", http,
                    kw.pop("credentials", Credentials("AKIDEXAMPLE", "secret", None)),
                    lambda: 1700000000, endpoint_url="http://127.0.0.1:9000", batch_size=2,
                    push_interval=4, max_backoff=60, **kw)


def test_upload_signed_put_and_key():
    port = Port()
    store = CaptureStore(tmpdir(), port)
    http = Http([])
    up = _uploader(store, http)
    store.add("model-a", "u-0", record("u-0"))
    assert up.step() == 0 and http.sent == []  # one record, not old enough
    store.add("model-a", "u-1", record("u-1"))
    assert up.step() == 1
    method, url, headers, body = http.sent[0]
    assert method == "PUT"
    prefix = "http://127.0.0.1:9000/cap-bucket/captures/fleet-a/cam-1/model-a/2023/11/14/22/"
    assert url.startswith(prefix) and url.endswith(".jsonl"), url
    assert len(url[len(prefix):-6]) == 16  # the batch id
    assert body == record("u-0") + record("u-1")
    assert headers["X-Amz-Content-Sha256"] == sigv4.payload_sha256(body)
    want = sigv4.sign_request("PUT", url, {"Content-Type": "application/x-ndjson"}, body,
                              access_key="AKIDEXAMPLE", secret_key="secret",
                              region="us-west-2", service="s3", timestamp=1700000000)
    assert headers == want
    assert store.status("u-0") == (capture.SUCCESS, None)
    assert store.used == 0


def test_upload_retries_transient_errors_with_backoff_same_key():
    port = Port()
    store = CaptureStore(tmpdir(), port)
    http = Http([TransportError("connection refused"), _error("SlowDown", 503), Resp(500),
                 Resp(429), Resp(408)])
    up = _uploader(store, http)
    for i in range(2):
        store.add("model-a", "r-%d" % i, record("r-%d" % i))
    waits = []
    for _ in range(5):
        assert up.step() == 0
        waits.append(up.next_due())
        port.t += waits[-1]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0], waits  # rand() == 0: half of 2**n
    assert up.step() == 1
    assert len(set(s[1] for s in http.sent)) == 1  # every attempt: the same key
    assert len(set(s[3] for s in http.sent)) == 1  # and the same bytes
    assert store.status("r-1")[0] == capture.SUCCESS


def test_upload_refusals_end_in_failure():
    port = Port()
    store = CaptureStore(tmpdir(), port)
    http = Http([_error("AccessDenied", 403) for _ in range(3)])
    up = _uploader(store, http, max_refusals=3)
    for i in range(2):
        store.add("model-a", "d-%d" % i, record("d-%d" % i))
    for _ in range(3):
        up.step()
        port.t += 100
    status, reason = store.status("d-0")
    assert status == capture.FAILURE and "HTTP 403 AccessDenied" in reason, reason
    assert store.used == 0 and store.batches == {}


def test_upload_fixes_clock_and_credentials_once():
    port = Port()
    store = CaptureStore(tmpdir(), port)
    fixes = []
    creds = Creds()
    http = Http([_error("RequestTimeTooSkewed", 403), _error("ExpiredToken", 400), Resp(200)])
    up = _uploader(store, http, credentials=creds,
                   on_skew=lambda date: fixes.append(date) or True)
    for i in range(2):
        store.add("model-a", "s-%d" % i, record("s-%d" % i))
    # Each fixed once and retried at once, within one attempt.
    assert up.step() == 1
    assert len(fixes) == 1 and creds.invalidated == 1 and len(http.sent) == 3
    assert store.status("s-0")[0] == capture.SUCCESS
    # A second skew answer in the same attempt is not "fixed" again: it waits.
    store.add("model-a", "s-2", record("s-2"))
    port.t += 10
    http.script = [_error("RequestTimeTooSkewed", 403), _error("RequestTimeTooSkewed", 403)]
    assert up.step() == 0 and len(fixes) == 2 and up.next_due() > 0


def test_parse_s3_uri():
    assert capture.parse_s3_uri("s3://bucket/a/b/") == ("bucket", "a/b")
    assert capture.parse_s3_uri("s3://bucket") == ("bucket", "")
    assert capture.parse_s3_uri("s3://bucket/") == ("bucket", "")
    for bad in ("http://x/y", "s3:///p", "s3://b/a/../c", "s3://b a/p", None):
        try:
            capture.parse_s3_uri(bad)
        except ValueError as exc:
            assert "capture_s3_uri" in str(exc) or "S3Url" in str(exc)
        else:
            raise AssertionError("accepted %r" % (bad,))
