"""Data capture against moto's S3 server with signature checking on: real signed PUTs,
and 1,000 captures through network cuts (the fault proxy) with the uploader process
SIGKILLed again and again: every capture arrives exactly as sent, under one key only,
and the buffer's bound holds throughout."""

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time

import pytest

from edgecore.credentials import Credentials
from edgecore_ports import capture, cpython

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from capture_proc import expected_record  # noqa: E402
from faults.proxy import FaultProxy  # noqa: E402

BUCKET = "edgecore-captures"


@pytest.fixture(scope="module")
def writer_key(moto_s3):
    """An IAM user that may put objects (the device's capture permission)."""
    iam = moto_s3.client("iam")
    iam.create_user(UserName="capture-writer")
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": "*"}]}
    iam.put_user_policy(UserName="capture-writer", PolicyName="put",
                        PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="capture-writer")["AccessKey"]
    moto_s3.ensure_bucket(BUCKET)
    return key["AccessKeyId"], key["SecretAccessKey"]


def _objects(moto_s3, prefix):
    s3 = moto_s3.client()
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for obj in page.get("Contents", []):
            out[obj["Key"]] = s3.get_object(Bucket=BUCKET, Key=obj["Key"])["Body"].read()
    return out


def _uploader(store, moto_s3, key, prefix, **kw):
    return capture.Uploader(
        store, "s3://%s/%s/" % (BUCKET, prefix), "fleet-a", "cam-1", "us-west-2",
        cpython.make_transport(), Credentials(key[0], key[1], None), lambda: int(time.time()),
        endpoint_url=kw.pop("endpoint_url", moto_s3.endpoint_url), **kw)


def test_signed_batches_arrive_under_their_keys(tmp_path, moto_s3, writer_key):
    store = capture.CaptureStore(str(tmp_path / "cap"), cpython)
    up = _uploader(store, moto_s3, writer_key, "basic", batch_size=10, push_interval=0)
    for i in range(25):
        store.add("model-a", "cap-%04d" % i, expected_record(i))
    while up.step():
        pass
    assert all(store.status("cap-%04d" % i)[0] == capture.SUCCESS for i in range(25))
    objects = _objects(moto_s3, "basic/")
    assert sorted(len(v.splitlines()) for v in objects.values()) == [5, 10, 10]
    hour = time.strftime("%Y/%m/%d/%H", time.gmtime())
    for k in objects:
        head, _, batch = k.rpartition("/")
        assert head in ("basic/fleet-a/cam-1/model-a/" + hour,
                        "basic/fleet-a/cam-1/model-a/" + time.strftime(
                            "%Y/%m/%d/%H", time.gmtime(time.time() - 60))), k
        assert batch.endswith(".jsonl") and len(batch) == 16 + 6
    lines = b"".join(objects[k] for k in sorted(objects)).splitlines(True)
    assert sorted(lines) == sorted(expected_record(i) for i in range(25))
    assert store.used == 0 and os.listdir(str(tmp_path / "cap/q")) == []


def test_wrong_secret_is_refused_by_s3_then_failure(tmp_path, moto_s3, writer_key):
    store = capture.CaptureStore(str(tmp_path / "cap"), cpython)
    up = _uploader(store, moto_s3, (writer_key[0], "not-the-secret"), "refused", batch_size=1,
                   push_interval=0, max_refusals=2, max_backoff=0.01)
    store.add("model-a", "cap-0001", expected_record(1))
    for _ in range(20):
        up.step()
        if store.status("cap-0001")[0] != capture.IN_PROGRESS:
            break
        time.sleep(0.02)
    status, reason = store.status("cap-0001")
    assert status == capture.FAILURE and "SignatureDoesNotMatch" in reason, reason
    assert _objects(moto_s3, "refused/") == {}


def _dir_bytes(path):
    try:
        return sum(os.path.getsize(os.path.join(path, n)) for n in os.listdir(path)
                   if not n.startswith("."))
    except FileNotFoundError:
        return 0


class _Child:
    def __init__(self, cfg, env, kill_after):
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(os.path.dirname(__file__), "capture_proc.py"),
             json.dumps(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.lines = []
        self.done = threading.Event()
        self.progress = threading.Event()  # kill_after captures confirmed (or all done)
        self.started = threading.Event()  # its first line: past the interpreter's start
        self.kill_after = kill_after
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            text = line.decode().strip()
            self.lines.append(text)
            self.started.set()
            if text.startswith("ok ") and len(self.lines) >= self.kill_after:
                self.progress.set()
            if text == "all-done":
                self.done.set()
                self.progress.set()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.thread.join(10)


def test_1000_captures_survive_cuts_and_sigkills(tmp_path, moto_s3, writer_key, agent_env):
    count = 1000
    one = len(expected_record(999))
    buffer_bytes = 60 * one
    rng = random.Random(int(os.environ.get("EDGECORE_CAPTURE_SEED", "1125")))
    proxy = FaultProxy(moto_s3.endpoint_url, flavor="s3", seed=7,
                       kinds=("reset", "drop_response", "http503", "truncate"))
    proxy.start()
    cfg = {"dir": str(tmp_path / "cap"), "buffer_bytes": buffer_bytes,
           "s3_uri": "s3://%s/soak/" % BUCKET, "access_key": writer_key[0],
           "secret_key": writer_key[1], "endpoint_url": proxy.url, "batch_size": 10,
           "push_interval": 0.2, "max_backoff": 0.3, "count": count}
    kills = cuts = 0
    peak = 0
    try:
        for rnd in range(40):
            cut = rnd % 3 == 1
            proxy.rate = 1.0 if cut else 0.0
            cuts += cut
            kill_after = rng.randint(40, 140) if rnd < 6 else 10**9
            child = _Child(cfg, agent_env, kill_after)
            # Rounds are timed from the child's "ready", not from its spawn: an emulated
            # CPU takes seconds to start an interpreter, and a kill before that tests
            # nothing.
            assert child.started.wait(120), child.proc.stderr.read()[-2000:]
            if rnd < 6:
                # The first rounds are cut by progress, not by the clock: a kill lands
                # mid-run however fast this machine is (a quiet one once finished all
                # 1,000 before the fifth kill). A cut network can stall the buffer: then
                # the clock ends the round.
                child.progress.wait(rng.uniform(1.5, 3.0))
                finished = child.done.is_set()
            else:
                finished = child.done.wait(rng.uniform(0.6, 1.8))
            if finished and not cut:
                child.proc.wait(30)
                break
            child.kill()
            kills += 1
            on_disk = _dir_bytes(cfg["dir"] + "/q")
            assert on_disk <= buffer_bytes, (on_disk, buffer_bytes)
            peak = max([peak, on_disk] + [int(x.split()[2]) for x in child.lines
                                          if x.startswith("ok ")])
            assert child.proc.returncode == -signal.SIGKILL, child.proc.stderr.read()[-2000:]
        else:
            proxy.rate = 0.0
            child = _Child(cfg, agent_env, kill_after=10**9)
            assert child.done.wait(180), child.proc.stderr.read()[-2000:]
            child.proc.wait(30)
    finally:
        proxy.stop()
    assert child.proc.returncode == 0, child.proc.stderr.read()[-2000:]
    assert kills >= 5 and cuts >= 2, (kills, cuts)
    assert peak <= buffer_bytes
    objects = _objects(moto_s3, "soak/")
    where = {}
    for key, body in objects.items():
        for line in body.splitlines(True):
            cid = json.loads(line)["eventMetadata"]["captureId"]
            assert line == expected_record(int(cid[4:])), cid  # exactly as sent
            where.setdefault(cid, set()).add(key)
    assert sorted(where) == ["cap-%04d" % i for i in range(count)]
    assert all(len(keys) == 1 for keys in where.values())  # duplicates only as the same key
    faults = dict(proxy.counts)
    print("\ncapture soak: %d kills, %d cut phases, %d objects, peak buffer %d of %d bytes, "
          "faults %s" % (kills, cuts, len(objects), peak, buffer_bytes, faults))
    assert sum(faults.values()) > 0
