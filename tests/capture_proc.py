"""A capture producer + uploader process for tests/test_capture_s3.py (CPython).

    python tests/capture_proc.py CONFIG_JSON

Adds captures ``cap-0000`` .. ``cap-<N-1>`` (content: ``expected_record(i)``) to a
CaptureStore while its Uploader thread uploads them, printing ``ok <i>`` once a capture
is confirmed (or was confirmed by an earlier run: CaptureIdInUse), waiting and retrying
while the buffer is full, then ``all-done`` once every capture is SUCCESS. The test
SIGKILLs it at random moments and starts it again on the same directory.
"""

import hashlib
import json
import sys
import time

from edgecore.credentials import Credentials
from edgecore_ports import capture, cpython

HANDLE = "model-a"


def tensor(i):
    seed = hashlib.sha256(b"capture %d" % i).digest()
    return seed * (8 + i % 24)  # 256..1 KiB of float32s: 64..256 values


def expected_record(i):
    data = tensor(i)
    return capture.make_record(
        HANDLE, "cap-%04d" % i, 1700000000 + i / 8.0,
        [{"name": "image", "dtype": "float32", "shape": [len(data) // 4], "data": data}],
        [{"name": "scores", "json": {"class": i % 10, "p": (i % 97) / 97.0}}],
        [{"name": "note", "csv": "%d,%d" % (i, i * i)}],
        model={"name": HANDLE, "version": "v1", "sha1": "0" * 40}, device="cam-1",
        fleet="fleet-a",
    )


def main(cfg):
    store = capture.CaptureStore(cfg["dir"], cpython, buffer_bytes=cfg["buffer_bytes"])
    uploader = capture.Uploader(
        store, cfg["s3_uri"], "fleet-a", "cam-1", "us-west-2",
        cpython.make_transport(timeout=(2, 5)),
        Credentials(cfg["access_key"], cfg["secret_key"], None),
        lambda: int(time.time()), endpoint_url=cfg["endpoint_url"], batch_size=cfg["batch_size"],
        push_interval=cfg["push_interval"], max_backoff=cfg["max_backoff"],
    )
    uploader.start()
    print("ready", flush=True)  # the test times its rounds from here
    peak = 0
    for i in range(cfg["count"]):
        rec = expected_record(i)
        while True:
            try:
                store.add(HANDLE, "cap-%04d" % i, rec)
            except capture.CaptureError as exc:
                if exc.code == "BufferFull":
                    time.sleep(0.02)
                    continue
                if exc.code != "CaptureIdInUse":
                    raise
            uploader.wake()
            break
        peak = max(peak, store.counts()["bytes"])
        print("ok %d %d" % (i, peak), flush=True)
    while any(store.status("cap-%04d" % i)[0] != capture.SUCCESS for i in range(cfg["count"])):
        time.sleep(0.05)
    print("all-done", flush=True)
    uploader.stop()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
