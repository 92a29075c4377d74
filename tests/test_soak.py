"""Soak under faults: a seeded, bounded run of many agent cycles against the local cloud
through two fault proxies (tests/faults/proxy.py), with random network faults, simulated
kills (the runner's ``crash_hook`` raises at a random point; a fresh Runner then starts
from the same directories, as after a SIGKILL) and disk-full (the port reports no free
space). After every cycle it asserts:

- the active models are exactly verified artifacts (each link points to a version whose
  bytes hash to a SHA1 the cloud deployed for that handle; after a clean cycle the links
  are exactly the saved state's ``active``);
- the state file parses (``agentstate.loads``);
- every deployment got exactly one result (no name twice in ``done``; every copy the
  cloud received of one deployment's result says the same);
- every result the agent considers delivered reached the cloud, none was dropped.

A deployment is owed a result once the agent has durably started it (it appeared in the
saved state's ``inflight`` or ``done``). The local cloud lists one deployment per handle
(a newer one supersedes an older one), and the agent starts only what is listed, so a
deployment superseded before the agent saved it as started gets no result: counted as
"superseded unstarted", not as lost.

At the end the faults are switched off, the backlog drains, and nothing is lost. Figures
are printed (run with ``-s``). Default: a short CI form; the long run::

    EDGECORE_SOAK_CYCLES=500 python -m pytest -s tests/test_soak.py

(``EDGECORE_SOAK_SEED`` picks another seed.)
"""

import collections
import hashlib
import os
import random
import sys
import time

from edgecore import agentstate
from edgecore_ports.runner import Runner, load_config

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faults.proxy import KINDS, FaultProxy  # noqa: E402

CYCLES = int(os.environ.get("EDGECORE_SOAK_CYCLES", "100"))
SEED = int(os.environ.get("EDGECORE_SOAK_SEED", "20261125"))
FAULT_RATE = 0.25  # per request, on each proxy
KILL_RATE = 0.15  # per cycle
DISK_FULL_RATE = 0.04  # per cycle
DEPLOY_RATE = 0.35  # per cycle: a new deployment is created before it
HANDLES = ("cam", "gps")
PARAMS = {
    "latency": {"delay": 0.05},
    "throttle": {"bps": 4000000},
    "stall": {"stall": 0.8},  # longer than the read timeout below: a timeout, then resume
}


class Killed(Exception):
    """Raised from the crash hook: the process 'dies' here."""


class FaultyPort:
    """The real port, except that free_space can be made to report a full disk."""

    def __init__(self, port):
        self._port = port
        self.disk_full = False

    def __getattr__(self, name):
        return getattr(self._port, name)

    def free_space(self, path):
        return 0 if self.disk_full else self._port.free_space(path)


def sha1_file(path):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def check_disk(model_dir, saved, deployed, clean):
    """Active models are exactly verified artifacts."""
    links = {}
    for name in os.listdir(model_dir):
        path = os.path.join(model_dir, name)
        if name.startswith(".") or not os.path.islink(path):
            continue
        target = os.readlink(path)
        assert target.startswith(".versions/" + name + "-"), (name, target)
        sha1 = target.rsplit("-", 1)[1]
        files = [f for f in os.listdir(path) if f != "edgecore.json"]
        assert len(files) == 1, (name, files)
        assert sha1_file(os.path.join(path, files[0])) == sha1, name
        assert sha1 in deployed[name], (name, sha1)
        links[name] = sha1
    if clean:
        assert links == dict((h, e["sha1"]) for h, e in saved["active"].items())


def check_results(saved, cloud_results, created, owed):
    """Exactly one result per deployment; the delivered ones reached the cloud."""
    if saved["inflight"]:
        owed.add(saved["inflight"]["name"])
    owed.update(saved["done"])
    assert len(saved["done"]) == len(set(saved["done"])), saved["done"]
    assert saved["dropped"] == 0
    by_name = collections.defaultdict(list)
    for r in cloud_results:
        by_name[r["deployment"]].append(r["body"])
    for name, bodies in by_name.items():
        assert name in created, name
        first = bodies[0]
        for b in bodies[1:]:
            assert b["DeploymentStatus"] == first["DeploymentStatus"], (name, bodies)
            assert b["DeploymentModels"] == first["DeploymentModels"], (name, bodies)
    pending = set(p["DeploymentName"] for p in saved["pending"])
    for name in saved["done"]:
        assert name in pending or name in by_name, "result of %s lost" % name
    return by_name


def test_soak_under_faults(local_cloud, tmp_path):
    from edgecore_ports import cpython, load_port

    rng = random.Random(SEED)
    cloud = local_cloud
    edge_kinds = [k for k in KINDS if k != "corrupt"]  # JSON corruption: see RELIABILITY
    edge = FaultProxy(
        cloud.endpoint_url,
        "edge",
        seed=rng.random(),
        rate=FAULT_RATE,
        kinds=edge_kinds,
        params=PARAMS,
    ).start()
    s3 = FaultProxy(
        cloud.s3_endpoint_url,
        "s3",
        seed=rng.random(),
        rate=FAULT_RATE,
        kinds=KINDS,
        params=PARAMS,
    ).start()
    config = load_config(
        cloud.agent_config(
            tmp_path / "models",
            tmp_path / "state",
            endpoint_url=edge.url,
            s3_endpoint_url=s3.url,
            max_retries=4,
            retry_time_budget=60,
            free_space_reserve_bytes=0,
        ),
        environ={},
    )
    port = FaultyPort(load_port("linux"))
    events = []
    figures = collections.Counter()
    kill = {"at": None, "points": 0}

    def crash_hook(point):
        kill["points"] += 1
        if kill["at"] is not None and kill["points"] >= kill["at"]:
            kill["at"] = None
            events.append(("KILL", {"point": point}))
            raise Killed(point)

    def new_runner():
        return Runner(
            config,
            port=port,
            environ={},
            http=cpython.make_transport(timeout=(2, 0.5)),
            log=lambda level, event, **f: events.append((event, f)),
            sleep=lambda s: None,
            rand=rng.random,
            crash_hook=crash_hook,
        )

    deployed = collections.defaultdict(set)
    created = set()
    owed = set()
    version = 0
    runner = new_runner()
    t0 = time.monotonic()
    try:
        for _ in range(CYCLES):
            if rng.random() < DEPLOY_RATE:
                version += 1
                handle = rng.choice(HANDLES)
                data = os.urandom(rng.randint(10000, 400000))
                d = cloud.deploy(handle, "model-" + handle, "%d.0" % version, data=data)
                created.add(d["DeploymentName"])
                events.append(("CREATED", {"name": d["DeploymentName"]}))
                deployed[handle].add(hashlib.sha1(data).hexdigest())
            kill["points"] = 0
            kill["at"] = rng.randint(1, 12) if rng.random() < KILL_RATE else None
            port.disk_full = rng.random() < DISK_FULL_RATE
            events.append(("CYCLE", {"disk_full": port.disk_full}))
            figures["disk_full"] += port.disk_full
            killed = False
            try:
                report = runner.cycle()
            except Killed:
                killed = True
                figures["kill"] += 1
                runner.http.close()
                runner = new_runner()  # a restart: start() + recover() on the next cycle
            else:
                figures["cycles_ok" if report["ok"] else "cycles_failed"] += 1
            port.disk_full = False
            with open(os.path.join(str(tmp_path / "state"), "state.json"), "rb") as f:
                saved = agentstate.loads(f.read())
            check_disk(str(tmp_path / "models"), saved, deployed, clean=not killed)
            by_name = check_results(saved, cloud.results(), created, owed)
            for name in by_name:  # the cloud stops listing a deployment once reported
                cloud.cancel_deployment(name)
        # Drain: faults off, a few clean cycles, then nothing may be missing.
        edge.rate = s3.rate = 0
        edge.clear()
        s3.clear()
        for _ in range(5):
            runner.cycle()
            if not runner.state["pending"] and not runner.state["queue"]:
                break
        with open(os.path.join(str(tmp_path / "state"), "state.json"), "rb") as f:
            saved = agentstate.loads(f.read())
        check_disk(str(tmp_path / "models"), saved, deployed, clean=True)
        by_name = check_results(saved, cloud.results(), created, owed)
        lost = sorted(owed - set(by_name))
        unstarted = created - owed - set(by_name)
        assert not saved["inflight"] and not saved["queue"] and not saved["pending"]
    finally:
        elapsed = time.monotonic() - t0
        edge.stop()
        s3.stop()
    names = collections.Counter(e for e, _ in events)
    gets = s3.requests("GetObject")
    sent = sum(e["body_sent"] for e in gets)
    verified = sum(f["size"] for e, f in events if e == "download.verified")
    statuses = collections.Counter(b[0]["DeploymentStatus"] for b in by_name.values())
    faults = collections.Counter(edge.counts) + collections.Counter(s3.counts)
    faults["kill"] = figures["kill"]
    faults["disk_full"] = figures["disk_full"]
    print(
        "\nsoak: seed=%d cycles=%d (ok %d, failed %d, killed %d) in %.1fs; requests edge=%d s3=%d"
        % (
            SEED,
            CYCLES,
            figures["cycles_ok"],
            figures["cycles_failed"],
            figures["kill"],
            elapsed,
            len(edge.log),
            len(gets),
        )
    )
    print(
        "soak: faults by kind: %s (total %d)" % (dict(sorted(faults.items())), sum(faults.values()))
    )
    print(
        "soak: recoveries: api retries %d, download retries %d (resumed with Range %d), "
        "clock corrections %d, restarts %d"
        % (
            names["api.retry"],
            names["download.retry"],
            sum(1 for e in gets if "range" in e["headers"]),
            names["clock.corrected"],
            figures["kill"],
        )
    )
    print(
        "soak: deployments %d -> results %s, superseded unstarted %d; bytes sent by S3 %d, "
        "verified %d, re-downloaded/wasted %d; lost %d"
        % (
            len(created),
            dict(statuses),
            len(unstarted),
            sent,
            verified,
            sent - verified,
            len(lost),
        )
    )
    if lost:
        for name in lost:
            print("LOST", name, name in saved["done"], saved["inflight"], saved["queue"])
            first = [i for i, (e, f) in enumerate(events) if name in repr(f)][0]
            for e, f in events[first : first + 60]:
                print("   ", e, repr(f)[:300])
    assert lost == [], lost
