"""Load on the fleet server: signed device traffic against ``edgecore-fleet serve`` on
PostgreSQL, measured side by side in one run.

A throw-away PostgreSQL (Debian's package, tests/fleet_pg.py) holds --devices registered
devices with their keys and a started rollout stage that selects every device. Real
``edgecore-fleet serve`` processes (gunicorn, gthread) serve it; the load generator
(edgecore_fleet.loadgen: worker processes, keep-alive connections, every request signed
with edgecore's SigV4) plays the devices: GetDeployments then SendHeartbeat, half the
requests each. Runs, in order:

1. closed loop with 1, then 2 server worker processes: the most requests/s, p50, p99;
2. open loop at --rate requests/s for --duration s with 2 workers: achieved rate, p99;
3. the same while one server worker is SIGKILLed half-way: retries, lost heartbeats
   (acknowledged but not in the database: must be 0), duplicates;
4. closed loop with 2 workers as the devices table grows (--scale): the cost per device.

The machine is shared (2 cores: load generator, server and PostgreSQL compete, and so do
other users): the load average is printed with every figure; re-measure on a quiet host.
So that the figures mean something on a busy machine too, every run also reports the CPU
each side spent per request (server processes, PostgreSQL, load generator; from
/proc/<pid>/stat and getrusage), and from it the rate two cores given to the server and
PostgreSQL alone would sustain (2000 / (server + database ms per request)).

    python benchmarks/bench_fleet.py [--devices 60000] [--rate 1000] [--duration 20]
                                     [--scale 1000,10000,60000] [--quick]
"""

import argparse
import json
import os
import resource
import signal
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import fleet_pg  # noqa: E402
from fleet_proc import FleetServer, child_pids  # noqa: E402
from sqlalchemy import insert, select  # noqa: E402

from edgecore_fleet import control, loadgen, rollout  # noqa: E402
from edgecore_fleet import schema as t  # noqa: E402
from edgecore_fleet.store import Store, loads  # noqa: E402

FLEET = "bench-fleet"


def load_average():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def add_devices(store, start, stop):
    """Register devices start..stop-1 with their keys (bulk inserts)."""
    now = time.time()
    for lo in range(start, stop, 5000):
        hi = min(stop, lo + 5000)
        with store.tx() as conn:
            conn.execute(insert(t.devices), [
                {"name": "dev-%06d" % i, "fleet": FLEET, "registration": "REGISTERED",
                 "created": now} for i in range(lo, hi)])
            conn.execute(insert(t.access_keys), [
                {"akid": "AKIDBENCH%06d" % i, "secret": "secret-%06d" % i,
                 "device": "dev-%06d" % i, "role": "device", "created": now}
                for i in range(lo, hi)])


def device_list(n):
    return [("dev-%06d" % i, ("AKIDBENCH%06d" % i, "secret-%06d" % i)) for i in range(n)]


def setup(url, n):
    store = Store.open(url).migrate()
    with store.tx() as conn:
        store.ensure_fleet(conn, FLEET)
    add_devices(store, 0, n)
    control.register_model(store, "bench-model", "model-a", "1.0", "s3://b/m.bin", "a" * 40)
    with store.tx() as conn:
        conn.execute(t.plans.insert().values(
            name="bench-plan", fleet=FLEET, created=time.time(), modified=time.time(),
            model_configs='[{"EdgePackagingJobName": "bench-model", "ModelHandle": "m"}]'))
        rollout.add_stages(conn, "bench-plan", [{"StageName": "all", "DeviceSelectionConfig": {
            "DeviceSubsetType": "PERCENTAGE", "Percentage": 100}}], 0)
    rollout.start(store, "bench-plan", "all")
    return store


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids):
    """utime + stime of live processes (seconds)."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICK


class CpuMeter:
    """CPU spent by the server, PostgreSQL and this process's children during a run."""

    def __init__(self, server, pg):
        with open(os.path.join(pg.directory, "data", "postmaster.pid")) as f:
            self.postmaster = int(f.readline())
        self.server = server

    def _sample(self):
        return (cpu_seconds([self.server.proc.pid] + self.server.workers()),
                cpu_seconds([self.postmaster] + child_pids(self.postmaster)),
                resource.getrusage(resource.RUSAGE_CHILDREN))

    def start(self):
        self.before = self._sample()

    def per_request_ms(self, requests):
        server, db, children = self._sample()
        gen = (children.ru_utime + children.ru_stime - self.before[2].ru_utime
               - self.before[2].ru_stime)
        ms = [round(1000.0 * x / max(requests, 1), 3) for x in (
            server - self.before[0], db - self.before[1], gen)]
        out = {"cpu_ms_per_request": {"server": ms[0], "database": ms[1], "loadgen": ms[2]}}
        if ms[0] + ms[1] > 0:
            out["rps_on_2_dedicated_cores"] = round(2000.0 / (ms[0] + ms[1]))
        return out


def figures(result):
    return dict((k, result[k]) for k in ("requests", "seconds", "rps", "p50_ms", "p99_ms",
                                         "errors", "retries"))


def report(name, out, **extra):
    line = dict({"run": name, "load_average": load_average()}, **out)
    line.update(extra)
    print(json.dumps(line, sort_keys=True), flush=True)
    return line


def closed(url, devices, seconds, procs=2, connections=16):
    return loadgen.run([url], devices, FLEET, workers=procs, cycles=1000,
                       connections=connections, duration=seconds, timeout=30, deadline=30)


def lost_heartbeats(store, acked, since_id):
    with store.read() as conn:
        rows = conn.execute(select(t.heartbeats.c.device, t.heartbeats.c.body)
                            .where(t.heartbeats.c.id > since_id)).all()
    seen = {}
    for device, body in rows:
        key = (device, int(loads(body)["AgentMetrics"][0]["Value"]))
        seen[key] = seen.get(key, 0) + 1
    lost = [a for a in set(acked) if a not in seen]
    return len(lost), sum(v - 1 for v in seen.values() if v > 1)


def last_heartbeat_id(store):
    from sqlalchemy import func

    with store.read() as conn:
        return conn.execute(select(func.max(t.heartbeats.c.id))).scalar() or 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=60000)
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--scale", default="1000,10000,60000")
    ap.add_argument("--quick", action="store_true", help="small and short (a smoke run)")
    args = ap.parse_args(argv)
    if args.quick:
        args.devices, args.duration, args.scale, args.rate = 2000, 5, "500,2000", 300
    scale = [int(x) for x in args.scale.split(",")]
    pg = fleet_pg.PostgresServer.start()
    results = {}
    try:
        url = pg.new_database()
        first = min(scale)
        t0 = time.monotonic()
        store = setup(url, first)
        print(json.dumps({"setup": "%d devices" % first, "seconds": round(
            time.monotonic() - t0, 1), "cpus": os.cpu_count()}), flush=True)
        # 4. the devices table grows; measured with 2 workers.
        for n in scale:
            if n > first:
                add_devices(store, first, n)
                first = n
            server = FleetServer(url, workers=2, threads=8, log_level="warning")
            try:
                meter = CpuMeter(server, pg)
                meter.start()
                out = closed(server.url, device_list(n), args.duration / 2)
                results["scale-%d" % n] = report("scale", figures(out), devices=n,
                                                 **meter.per_request_ms(out["requests"]))
            finally:
                server.stop()
        if args.devices > first:
            add_devices(store, first, args.devices)
        devices = device_list(args.devices)
        # 1. closed loop, 1 then 2 workers.
        for w in (1, 2):
            server = FleetServer(url, workers=w, threads=8, log_level="warning")
            try:
                meter = CpuMeter(server, pg)
                meter.start()
                out = closed(server.url, devices, args.duration)
                results["closed-%d" % w] = report("closed", figures(out), server_workers=w,
                                                  **meter.per_request_ms(out["requests"]))
            finally:
                server.stop()
        # 2. and 3. open loop at the target rate; then with a worker killed half-way.
        for kill in (False, True):
            server = FleetServer(url, workers=2, threads=8, log_level="warning")
            try:
                since = last_heartbeat_id(store)
                meter = CpuMeter(server, pg)
                meter.start()
                if kill:
                    victim = server.workers()[0]
                    timer = threading.Timer(args.duration / 2, os.kill,
                                            (victim, signal.SIGKILL))
                    timer.start()
                out = loadgen.run([server.url], devices, FLEET, workers=2, cycles=1000,
                                  connections=16, rate=args.rate, duration=args.duration,
                                  timeout=30, deadline=30)
                lost, dups = lost_heartbeats(store, out["acked"], since)
                results["open-kill" if kill else "open"] = report(
                    "open-kill" if kill else "open", figures(out), target_rps=args.rate,
                    lost_heartbeats=lost, duplicate_heartbeats=dups,
                    acked_heartbeats=len(out["acked"]), **meter.per_request_ms(out["requests"]))
            finally:
                server.stop()
        c1, c2 = results["closed-1"]["rps"], results["closed-2"]["rps"]
        smallest, largest = results["scale-%d" % scale[0]], results["scale-%d" % scale[-1]]
        print(json.dumps({
            "ratio_rps_2_workers_over_1": round(c2 / c1, 2) if c1 else None,
            "open_loop_rps": results["open"]["rps"], "open_loop_p99_ms":
                results["open"]["p99_ms"],
            "ratio_rps_%d_over_%d_devices" % (scale[-1], scale[0]):
                round(largest["rps"] / smallest["rps"], 2) if smallest["rps"] else None,
            "lost_heartbeats": results["open"]["lost_heartbeats"]
                + results["open-kill"]["lost_heartbeats"]}, sort_keys=True), flush=True)
        store.close()
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
