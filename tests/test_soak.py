"""Soak under faults: a seeded, bounded run of many agent cycles against the local cloud
through two fault proxies (tests/faults/proxy.py). Every cycle is a real agent process,
``edgecore run --once`` (tests/agentproc.py), and the faults are drawn at random:

- network faults on each proxy (latency, throttle, reset, truncate, stall, corrupt, drop
  the response, 500/503/429, skewed clock, expired signature or token);
- SIGKILL of the agent at a random moment of its run (the next cycle is the restart);
- a full disk: ``model_dir`` lives on its own small tmpfs, and a ballast file fills it
  either before the agent starts (the free-space check must refuse the download) or
  once the download has begun (the write fails with ENOSPC). Mounting needs root; when
  it is refused the run says so, and under ``CI`` it fails.

After every cycle it asserts:

- the active models are exactly verified artifacts (each link points to a version whose
  bytes hash to a SHA1 the cloud deployed for that handle; after an unkilled cycle the
  links are exactly the saved state's ``active``);
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
are printed (run with ``-s``). Default: a short CI form (100 cycles); the long run::

    EDGECORE_SOAK_CYCLES=500 python -m pytest -s tests/test_soak.py

(``EDGECORE_SOAK_SEED`` picks another seed.)
"""

import collections
import errno
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
import time

from edgecore import agentstate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentproc import AgentRun  # noqa: E402
from faults.proxy import KINDS, FaultProxy  # noqa: E402

CYCLES = int(os.environ.get("EDGECORE_SOAK_CYCLES", "100"))
SEED = int(os.environ.get("EDGECORE_SOAK_SEED", "20261125"))
FAULT_RATE = 0.25  # per request, on each proxy
KILL_RATE = 0.15  # per cycle
DISK_FULL_RATE = 0.25  # per new deployment: the disk fills before or during its download
DEPLOY_RATE = 0.35  # per cycle: a new deployment is created before it
HANDLES = ("cam", "gps")
PARAMS = {
    "latency": {"delay": 0.05},
    "throttle": {"bps": 4000000},
    "stall": {"stall": 2.0},  # longer than request_timeout below: a timeout, then a retry
}
REQUEST_TIMEOUT = 1.0
DISK_BYTES = 4 * 1024 * 1024  # model_dir's tmpfs: room for a few versions of each handle
RUN_TIMEOUT = 120  # one agent run (a hang is a failure)
CHUNK = 1 << 16
DISK_FULL_REASON = {  # what the agent logs (download.failed) for each kind of full disk
    "before": "not enough free space",  # the free-space check refused the download
    "during": "no space left",  # a write met ENOSPC
}


class SmallDisk:
    """A tmpfs of DISK_BYTES holding ``models/`` (the agent's model_dir) and, when a
    full disk is wanted, a ballast file next to it."""

    def __init__(self, root):
        self.root = str(root)
        self.model_dir = os.path.join(self.root, "models")
        self.ballast = os.path.join(self.root, "ballast")
        self.mounted = False
        self.error = None

    def mount(self):
        os.makedirs(self.root, exist_ok=True)
        argv = ["mount", "-t", "tmpfs", "-o", "size=%d,mode=0700" % DISK_BYTES, "tmpfs"]
        try:
            proc = subprocess.run(argv + [self.root], capture_output=True, text=True, timeout=30)
            self.mounted = proc.returncode == 0
            self.error = None if self.mounted else (proc.stderr.strip() or "mount failed")
        except OSError as exc:  # no mount command
            self.error = str(exc)
        os.makedirs(self.model_dir, exist_ok=True)

    def free(self):
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def fill(self, leave=0):
        """Grow the ballast until at most ``leave`` bytes are free (ENOSPC ends it)."""
        with open(self.ballast, "ab", buffering=0) as f:
            try:
                for _ in range(DISK_BYTES // CHUNK + 1):
                    room = self.free() - leave
                    if room <= 0:
                        break
                    f.write(b"\0" * min(room, CHUNK))
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise

    def staged_sizes(self):
        """{path: size} of the staged artifacts (sidecars left out)."""
        staging = os.path.join(self.model_dir, ".staging")
        out = {}
        try:
            for d in os.listdir(staging):
                for name in os.listdir(os.path.join(staging, d)):
                    if not name.startswith("."):
                        path = os.path.join(staging, d, name)
                        out[path] = os.path.getsize(path)
        except OSError:  # a directory came or went meanwhile
            pass
        return out

    def fill_once_downloading(self, run, stop):
        """A thread: fill the disk as soon as this run writes to a staged artifact (a
        partial left by a killed run does not count until it grows)."""
        before = self.staged_sizes()

        def watch():
            deadline = time.monotonic() + RUN_TIMEOUT
            while not stop.is_set() and run.proc.poll() is None and time.monotonic() < deadline:
                if any(n > before.get(p, 0) for p, n in self.staged_sizes().items()):
                    self.fill(0)
                    return
                time.sleep(0.002)

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        return t

    def empty(self):
        if os.path.exists(self.ballast):
            os.remove(self.ballast)

    def close(self):
        if self.mounted:
            proc = subprocess.run(["umount", "-l", self.root], capture_output=True, timeout=30)
            if proc.returncode != 0:
                print("soak: umount %s failed: %s" % (self.root, proc.stderr))


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


def read_state(state_dir):
    """The saved state (validated by the agent's own loader), or None before any."""
    path = os.path.join(state_dir, "state.json")
    if not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return agentstate.loads(f.read())


class Timing:
    """When a run's work starts (first log line) and ends, averaged over unkilled runs:
    kills are drawn uniformly in between."""

    def __init__(self):
        self.first = self.total = None  # known after the first unkilled run

    def update(self, run):
        if not run.events:
            return
        first, total = run.events[0][0], run.events[-1][0]
        if self.first is None:
            self.first, self.total = first, total
        else:
            self.first = 0.8 * self.first + 0.2 * first
            self.total = 0.8 * self.total + 0.2 * total

    def draw(self, rng):
        """Seconds after the start to kill at (None before any run was timed)."""
        if self.first is None:
            return None
        return rng.uniform(self.first, max(self.first, self.total))


def test_soak_under_faults(local_cloud, tmp_path):
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
    )
    s3 = FaultProxy(
        cloud.s3_endpoint_url,
        "s3",
        seed=rng.random(),
        rate=FAULT_RATE,
        kinds=KINDS,
        params=PARAMS,
    )
    disk = SmallDisk(tmp_path / "disk")
    t0 = time.monotonic()
    try:
        edge.start()
        s3.start()
        disk.mount()
        if not disk.mounted:
            print("\nsoak: NO disk-full faults: cannot mount a tmpfs (%s)" % disk.error)
            assert not os.environ.get("CI"), "CI must exercise disk-full: " + disk.error
        state_dir = str(tmp_path / "state")
        config_path = str(tmp_path / "agent.json")
        config = cloud.agent_config(
            disk.model_dir,
            state_dir,
            endpoint_url=edge.url,
            s3_endpoint_url=s3.url,
            max_retries=4,
            retry_time_budget=60,
            free_space_reserve_bytes=0,
            request_timeout=REQUEST_TIMEOUT,
        )
        with open(config_path, "w") as f:
            json.dump(config, f)
        events = []  # (cycle, event name, record) of every run
        figures = collections.Counter()
        timing = Timing()
        deployed = collections.defaultdict(set)
        created = set()
        owed = set()
        version = 0

        def run_agent(cycle, kill_at=None, disk_full=None):
            run = AgentRun(config_path, timeout=RUN_TIMEOUT)
            stop = threading.Event()
            filler = None
            if disk_full == "during":
                filler = disk.fill_once_downloading(run, stop)
            timer = threading.Timer(kill_at, run.kill) if kill_at is not None else None
            if timer is not None:
                timer.start()
            rc = run.finish()
            stop.set()
            if timer is not None:
                timer.cancel()
            if filler is not None:
                filler.join(10)
            disk.empty()
            events.extend((cycle, name, rec) for _, name, rec in run.events)
            return run, rc

        for cycle in range(CYCLES):
            disk_full = None
            if rng.random() < DEPLOY_RATE:
                version += 1
                handle = rng.choice(HANDLES)
                data = os.urandom(rng.randint(10000, 400000))
                d = cloud.deploy(handle, "model-" + handle, "%d.0" % version, data=data)
                created.add(d["DeploymentName"])
                events.append((cycle, "CREATED", {"name": d["DeploymentName"]}))
                deployed[handle].add(hashlib.sha1(data).hexdigest())
                full, mode = rng.random() < DISK_FULL_RATE, rng.choice(("before", "during"))
                if full and disk.mounted:
                    disk_full = mode
            if disk_full == "before":
                disk.fill(leave=rng.randint(0, 9000))  # less than the smallest artifact
            elif disk_full == "during":
                # The download pauses after its first bytes: the filler fills the disk
                # meanwhile, and the next write meets ENOSPC.
                s3.add_fault("stall", op="GetObject", after=4096, stall=0.5)
            kill_at = timing.draw(rng) if rng.random() < KILL_RATE else None
            figures["disk_full_" + disk_full if disk_full else "disk_ok"] += 1
            run, rc = run_agent(cycle, kill_at, disk_full)
            s3.clear()  # a planned stall no download of this run took
            killed = run.killed_at is not None
            if disk_full:  # did the full disk reach the agent, and how?
                reasons = [r.get("reason", "") for _, n, r in run.events if n == "download.failed"]
                hit = DISK_FULL_REASON[disk_full]
                figures["disk_full_%s_hit" % disk_full] += any(hit in r for r in reasons)
            if killed:
                figures["kill"] += 1
            else:
                timing.update(run)
                figures["cycles_ok" if rc == 0 else "cycles_failed"] += 1
            saved = read_state(state_dir)
            if saved is None:
                assert killed, "an unkilled run saved no state: %s" % run.log_tail()
                continue
            check_disk(disk.model_dir, saved, deployed, clean=not killed)
            by_name = check_results(saved, cloud.results(), created, owed)
            for name in by_name:  # the cloud stops listing a deployment once reported
                cloud.cancel_deployment(name)
        # Drain: faults off, a few clean runs, then nothing may be missing.
        edge.rate = s3.rate = 0
        edge.clear()
        s3.clear()
        for _ in range(5):
            run_agent(CYCLES)
            saved = read_state(state_dir)
            if not saved["pending"] and not saved["queue"]:
                break
        check_disk(disk.model_dir, saved, deployed, clean=True)
        by_name = check_results(saved, cloud.results(), created, owed)
        lost = sorted(owed - set(by_name))
        unstarted = created - owed - set(by_name)
        assert not saved["inflight"] and not saved["queue"] and not saved["pending"]
    finally:
        elapsed = time.monotonic() - t0
        edge.stop()
        s3.stop()
        disk.close()
    report(figures, events, edge, s3, created, by_name, unstarted, lost, elapsed, disk)
    if lost:
        for name in lost:
            print("LOST", name, name in saved["done"], saved["inflight"], saved["queue"])
            for cycle, e, f in [x for x in events if name in repr(x[2])][:60]:
                print("   ", cycle, e, repr(f)[:300])
    assert lost == [], lost
    # Each kind of fault happened (a seed or a change that stops one would go unnoticed).
    # Short runs (20 cycles under emulation) may draw too few to see all of them.
    assert figures["kill"] > 0 or CYCLES < 100
    if disk.mounted and CYCLES >= 100:
        assert figures["disk_full_before_hit"] > 0 and figures["disk_full_during_hit"] > 0


def report(figures, events, edge, s3, created, by_name, unstarted, lost, elapsed, disk):
    names = collections.Counter(e for _, e, _ in events)
    gets = s3.requests("GetObject")
    sent = sum(e["body_sent"] for e in gets)
    verified = sum(f["size"] for _, e, f in events if e == "download.verified")
    statuses = collections.Counter(b[0]["DeploymentStatus"] for b in by_name.values())
    faults = collections.Counter(edge.counts) + collections.Counter(s3.counts)
    for kind in ("kill", "disk_full_before", "disk_full_during"):
        faults[kind] = figures[kind]
    print(
        "\nsoak: seed=%d cycles=%d agent processes (ok %d, failed %d, killed %d) in %.1fs; "
        "requests edge=%d s3=%d; model_dir on %s"
        % (
            SEED,
            CYCLES,
            figures["cycles_ok"],
            figures["cycles_failed"],
            figures["kill"],
            elapsed,
            len(edge.log),
            len(gets),
            "a %d KiB tmpfs" % (DISK_BYTES // 1024) if disk.mounted else "the test's tmp dir",
        )
    )
    print(
        "soak: faults by kind: %s (total %d)" % (dict(sorted(faults.items())), sum(faults.values()))
    )
    print(
        "soak: recoveries: api retries %d, download retries %d (resumed with Range %d, "
        "staged bytes adopted after a restart %d), clock corrections %d, restarts %d"
        % (
            names["api.retry"],
            names["download.retry"],
            sum(1 for e in gets if "range" in e["headers"]),
            names["download.resume"],
            names["clock.corrected"],
            figures["kill"],
        )
    )
    print(
        "soak: full disk: %d before a run (%d refused by the free-space check in that run), "
        "%d during a download (%d met ENOSPC in that run); runs that crashed %d"
        % (
            figures["disk_full_before"],
            figures["disk_full_before_hit"],
            figures["disk_full_during"],
            figures["disk_full_during_hit"],
            names["cycle.crashed"],
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
