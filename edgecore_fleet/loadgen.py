"""A load generator: simulated devices polling and heartbeating with real SigV4.

Each worker process owns a slice of the devices and runs ``connections`` threads, each
with one keep-alive HTTP connection (spread over the server URLs); every request is
signed by edgecore's signer with the device's own key. A device's cycle is
GetDeployments then SendHeartbeat; each heartbeat carries a sequence number
(AgentMetrics ``load/sequence``) so the caller can check that every acknowledged
heartbeat was recorded, and in the first cycle optionally a DeploymentResult. A request
that fails (connection cut, 5xx) is retried on the next URL after a short pause,
re-signed, until acknowledged or ``deadline``: the agent's at-least-once behaviour.
``rate`` (requests/s over all workers) paces an open loop; None runs closed-loop.
Used by ``benchmarks/bench_fleet.py`` and ``tests/test_fleet_race.py``.
"""

import http.client
import json
import multiprocessing
import time
from urllib.parse import urlsplit

from edgecore import sigv4

REGION = "us-west-2"


class _Conn:
    def __init__(self, urls, index):
        self.urls = urls
        self.index = index % len(urls)
        self.conn = None

    def url(self):
        return self.urls[self.index]

    def request(self, path, headers, body, timeout):
        if self.conn is None:
            u = urlsplit(self.url())
            self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
        self.conn.request("POST", path, body=body, headers=headers)
        resp = self.conn.getresponse()
        data = resp.read()
        if resp.getheader("Connection", "").lower() == "close":
            self.close()
        return resp.status, data

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def fail_over(self):
        self.close()
        self.index = (self.index + 1) % len(self.urls)


def _signed(url, operation, body, key):
    data = json.dumps(body).encode()
    headers = sigv4.sign_request("POST", url + "/" + operation,
                                 {"Content-Type": "application/json"}, data,
                                 access_key=key[0], secret_key=key[1], region=REGION,
                                 service="sagemaker", timestamp=int(time.time()))
    return headers, data


def _drive(urls, devices, fleet, cycles, index, rate, end, result_for, timeout, deadline):
    """One connection's closed (rate None) or paced loop over its devices."""
    conn = _Conn(urls, index)
    latencies, acked, errors, retries = [], [], {}, 0
    start = time.monotonic()
    interval = 1.0 / rate if rate else 0.0
    n = 0
    try:
        for cycle in range(cycles):
            for name, key in devices:
                if end is not None and time.monotonic() >= end:
                    return latencies, acked, errors, retries
                hb = {"AgentVersion": "load-1.0", "DeviceName": name,
                      "DeviceFleetName": fleet,
                      "AgentMetrics": [{"Dimension": "load", "MetricName": "sequence",
                                        "Value": cycle}]}
                if result_for is not None and cycle == 0:
                    hb["DeploymentResult"] = {"DeploymentName": result_for,
                                              "DeploymentStatus": "SUCCESS"}
                for operation, body in (("GetDeployments", {"DeviceName": name,
                                                            "DeviceFleetName": fleet}),
                                        ("SendHeartbeat", hb)):
                    if interval:
                        wait = start + n * interval - time.monotonic()
                        if wait > 0:
                            time.sleep(wait)
                    n += 1
                    give_up = time.monotonic() + deadline
                    while True:
                        headers, data = _signed(conn.url(), operation, body, key)
                        t0 = time.monotonic()
                        try:
                            status = conn.request("/" + operation, headers, data, timeout)[0]
                        except (OSError, http.client.HTTPException):
                            status = None
                        if status == 200:
                            latencies.append(time.monotonic() - t0)
                            if operation == "SendHeartbeat":
                                acked.append((name, cycle))
                            break
                        errors[str(status)] = errors.get(str(status), 0) + 1
                        if time.monotonic() > give_up:
                            break
                        retries += 1
                        conn.fail_over()
                        time.sleep(0.05)
    finally:
        conn.close()
    return latencies, acked, errors, retries


def _worker(args):
    """A process: `connections` threads, each with its own keep-alive connection."""
    import threading

    (urls, devices, fleet, cycles, connections, rate, duration, result_for, timeout,
     deadline, index) = args
    start = time.monotonic()
    end = start + duration if duration else None
    per_rate = None if rate is None else rate / connections
    parts = [None] * connections

    def target(i):
        parts[i] = _drive(urls, devices[i::connections], fleet, cycles,
                          index * connections + i, per_rate, end, result_for, timeout,
                          deadline)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(connections)
               if devices[i::connections]]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    parts = [p for p in parts if p is not None]
    errors = {}
    for p in parts:
        for k, v in p[2].items():
            errors[k] = errors.get(k, 0) + v
    return ([x for p in parts for x in p[0]], [x for p in parts for x in p[1]], errors,
            sum(p[3] for p in parts), time.monotonic() - start)


def run(urls, devices, fleet, workers=2, cycles=1, connections=4, rate=None, duration=None,
        result_for=None, timeout=30, deadline=60):
    """Drive `devices` ([(name, (access_key, secret_key))]) against `urls`; returns
    {"requests", "seconds", "rps", "p50_ms", "p99_ms", "errors", "retries", "acked"}
    (acked: [(device, sequence)] of every acknowledged heartbeat)."""
    slices = [devices[i::workers] for i in range(workers)]
    per_rate = None if rate is None else float(rate) / workers
    jobs = [(list(urls), s, fleet, cycles, connections, per_rate, duration, result_for,
             timeout, deadline, i) for i, s in enumerate(slices) if s]
    started = time.monotonic()
    with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
        parts = pool.map(_worker, jobs)
    seconds = time.monotonic() - started
    latencies = sorted(x for p in parts for x in p[0])
    errors = {}
    for p in parts:
        for k, v in p[2].items():
            errors[k] = errors.get(k, 0) + v

    def pct(q):
        return round(1000 * latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2) \
            if latencies else None

    busy = max(p[4] for p in parts)
    return {"requests": len(latencies), "seconds": round(busy, 2),
            "rps": round(len(latencies) / busy, 1) if busy else 0.0, "p50_ms": pct(0.50),
            "p99_ms": pct(0.99), "errors": errors, "retries": sum(p[3] for p in parts),
            "acked": [a for p in parts for a in p[1]], "wall_seconds": round(seconds, 2)}
