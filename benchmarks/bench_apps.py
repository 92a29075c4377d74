"""Application serving: capture throughput to the local S3, and the RSS of the agent
process (``edgecore run``, serving the local API) idle and under 100 connected clients.

    python benchmarks/bench_apps.py [--records 2000] [--small 1024] [--large 65536]

Capture: records go through ``CaptureStore.add`` (atomic file + fsync each) and the
``Uploader`` (batches of 10, signed PUTs) to moto's S3 server with signature checking,
on 127.0.0.1. Side by side, interleaved batch by batch, the same batch bodies are PUT
with boto3's ``put_object`` (the reference); edgecore's upload time also includes
finishing each batch (done.log append + fsync, removing its files), which boto3 does
not do. MB/s counts the JSON Lines bytes uploaded.

RSS: the real agent (``edgecore run``, its service loop) against the local cloud with a
model deployed and capture on; VmRSS is read from /proc once its first cycle is done
(the API idle), then with 100 clients connected, each holding a WatchModels long-poll
(a thread each in the agent), beside a bare interpreter's RSS.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def bench_rss(s3, clients=100):
    from edgecore_ports.app import AppClient
    from edgecore_tools.demo import agent_env
    from edgecore_tools.localcloud import LocalCloud

    tmp = tempfile.mkdtemp()
    cloud = LocalCloud.start(os.path.join(tmp, "cloud"), s3=s3)
    cloud.deploy("m-1", "model", "1.0", data=os.urandom(256 * 1024))
    config = cloud.agent_config(os.path.join(tmp, "models"), os.path.join(tmp, "state"),
                                capture_s3_uri=cloud.capture_s3_uri)
    conf = os.path.join(tmp, "agent.json")
    with open(conf, "w") as f:
        json.dump(config, f)
    path = os.path.join(tmp, "state", "api.sock")
    bare = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    agent = subprocess.Popen([sys.executable, "-m", "edgecore_tools.cli", "run", "--config",
                              conf], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             env=agent_env())
    try:
        api = AppClient(path)
        for _ in range(600):
            try:
                if api.list_models()["Models"] and cloud.heartbeats():
                    break
            except OSError:
                api.close()
            time.sleep(0.1)
        time.sleep(1.0)
        base = rss_kib(bare.pid)
        idle = rss_kib(agent.pid)
        version = api.list_models()["Version"]
        socks = []
        for _ in range(clients):
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            s.sendall(b"GET /v1/watch?since=%s&timeout=60 HTTP/1.1\r\nHost: x\r\n\r\n"
                      % version.encode())
            socks.append(s)
        time.sleep(2.0)
        busy = rss_kib(agent.pid)
        answered = AppClient(path).list_models()["Models"] != []
        for s in socks:
            s.close()
    finally:
        bare.stdin.close()
        bare.wait()
        agent.terminate()
        agent.wait(30)
        cloud.stop()
    print("agent process RSS (VmRSS; `edgecore run` serving the local API, capture on)")
    print("  bare interpreter                 : %6.1f MiB" % (base / 1024.0))
    print("  agent, API idle                  : %6.1f MiB (+%.1f over bare)"
          % (idle / 1024.0, (idle - base) / 1024.0))
    print("  agent, %d clients watching      : %6.1f MiB (+%.1f over idle, %.1f KiB/client); "
          "others still served: %s" % (clients, busy / 1024.0, (busy - idle) / 1024.0,
                                       (busy - idle) / float(clients), answered))


def _writer_key(s3):
    iam = s3.client("iam")
    iam.create_user(UserName="bench-writer")
    iam.put_user_policy(UserName="bench-writer", PolicyName="put", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:PutObject",
                                                "Resource": "*"}]}))
    key = iam.create_access_key(UserName="bench-writer")["AccessKey"]
    return key["AccessKeyId"], key["SecretAccessKey"]


def bench_capture(s3, key, records, payload):
    from edgecore.credentials import Credentials
    from edgecore_ports import capture, cpython

    tmp = tempfile.mkdtemp()
    store = capture.CaptureStore(tmp + "/cap", cpython, buffer_bytes=1 << 30)
    class TimedUploader(capture.Uploader):
        put_time = 0.0

        def _put(self, key, body):
            t0 = time.perf_counter()
            try:
                return capture.Uploader._put(self, key, body)
            finally:
                TimedUploader.put_time += time.perf_counter() - t0

    up = TimedUploader(store, "s3://bench-captures/p%d/" % payload, "fleet", "dev", s3.region,
                          cpython.make_transport(), Credentials(key[0], key[1], None),
                          lambda: int(time.time()), endpoint_url=s3.endpoint_url,
                          batch_size=10, push_interval=0)
    blob = os.urandom(payload)
    t0 = time.perf_counter()
    for i in range(records):
        rec = capture.make_record("model", "c-%d" % i, 1700000000 + i,
                                  [{"name": "x", "dtype": "uint8", "shape": [payload],
                                    "data": blob}], [{"name": "y", "json": {"i": i}}], None)
        store.add("model", "c-%d" % i, rec)
    t_add = time.perf_counter() - t0
    store.seal(10, 0, time.time())
    bodies = [store.batch_body(b) for b in sorted(store.batches)]
    nbytes = sum(len(b) for b in bodies)
    client = s3.client("s3", key[0], key[1])
    client.put_object(Bucket="bench-captures", Key="warm-up", Body=b"")
    t_up = t_boto = 0.0
    for i, body in enumerate(bodies):  # interleaved: one batch each way, in turn
        t0 = time.perf_counter()
        assert up.step(max_uploads=1) == 1
        t_up += time.perf_counter() - t0
        t0 = time.perf_counter()
        client.put_object(Bucket="bench-captures", Key="boto3/p%d/%d.jsonl" % (payload, i),
                          Body=body)
        t_boto += time.perf_counter() - t0
    assert store.counts()["bytes"] == 0, "not everything was uploaded"
    mb = nbytes / 1e6
    print("capture, %d records of %d tensor bytes (%d batches, %.1f MB of JSON Lines)"
          % (records, payload, len(bodies), mb))
    print("  add (atomic file + fsync each)  : %8.0f records/s  %6.1f MB/s"
          % (records / t_add, mb / t_add))
    print("  upload, edgecore Uploader       : %8.0f records/s  %6.1f MB/s"
          % (records / t_up, mb / t_up))
    print("    of which the signed PUTs      : %8.0f records/s  %6.1f MB/s"
          % (records / up.put_time, mb / up.put_time))
    print("  upload, boto3 put_object        : %8.0f records/s  %6.1f MB/s"
          % (records / t_boto, mb / t_boto))
    print("  add + upload end to end         : %8.0f records/s  %6.1f MB/s"
          % (records / (t_add + t_up), mb / (t_add + t_up)))
    print("  ratio upload time edgecore/boto3: %.2f with the batch bookkeeping (fsyncs), "
          "%.2f for the PUTs alone" % (t_up / t_boto, up.put_time / t_boto))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--small", type=int, default=1024)
    ap.add_argument("--large", type=int, default=65536)
    ap.add_argument("--clients", type=int, default=100)
    args = ap.parse_args()
    from edgecore_tools.localcloud import MotoS3

    s3 = MotoS3.start(region="us-west-2")
    try:
        s3.ensure_bucket("bench-captures")
        key = _writer_key(s3)
        bench_capture(s3, key, args.records, args.small)
        bench_capture(s3, key, max(100, args.records // 10), args.large)
        bench_rss(s3, args.clients)
    finally:
        s3.stop()


if __name__ == "__main__":
    main()
