"""Benchmark: the edgecore agent vs boto3 doing the same work, against the local cloud.

    python3 benchmarks/bench_agent.py [--size-mib 256] [--rounds 3] [--warm-cycles 10]
                                      [--cycles 20] [--interval 1] [--inproc-cycles 100]
                                      [--profile] [--skip 1,2,3] [--no-precompile]

Starts the local cloud (edgecore_tools.localcloud: the Edge Manager endpoint in this
process, moto's S3 server with SigV4 checking in a subprocess) and measures, every
measured side in its OWN child process (so its peak RSS is its own):

1. Download + verify of a SIZE-MiB model from the S3 stand-in (device key, signed).
   - edgecore: ``edgecore_ports.runner.Runner.execute(Action(DOWNLOAD))`` -- the
     runner's real download path: SigV4-signed GET, streamed with ``readinto`` into
     ``.staging`` while ``edgecore.checksum.Verifier`` hashes, fsync, rename into
     ``.versions``.
   - boto3: ``download_fileobj`` into a file (default TransferConfig: ranged GETs of
     8 MiB on 10 threads), fsync, then ``hashlib.sha1`` over the file re-read in
     1 MiB blocks (a hashing wrapper cannot be used: the threads write out of order).
   - boto3-1get: the same with ``multipart_threshold`` above the size (one GET),
     because moto rebuilds the whole object for every ranged GET (see RESULTS).
   Alternating runs (A B C A B C ...), medians. Wall time of the operation (after
   imports and client creation), the child's CPU time (user+sys, all threads) and
   its peak RSS (VmHWM from /proc/self/status). Goals: time <= 1.0x, RSS <= 1/3.
2. Steady-state RSS of the running agent: ``python -m edgecore_tools.cli run --config F``
   (heartbeat_interval INTERVAL, no deployments) vs a boto3 loop (sagemaker-edge client:
   get_deployments + send_heartbeat with the same AgentMetrics source, same interval),
   both running at once; VmRSS of each process after WARM cycles and after WARM+CYCLES.
   Goal <= 1/3.
3. CPU time per idle cycle (poll + heartbeat, nothing to deploy), in ms:
   a) utime+stime of those two processes (/proc/<pid>/stat) over CYCLES cycles / CYCLES;
   b) in-process: ``Runner.cycle()`` / the boto3 pair called INPROC times back to back,
      ``time.process_time()`` per call (finer than the 10 ms tick of a).
   --profile prints cProfile top functions of 1 (edgecore side) and 3b to stderr (the
   figures of such a run include the profiler's overhead).

Rows marked (*) preview a proposed fix, not what ``edgecore run`` does today: the same
Runner with the stdlib-socket HTTP/1.1 client of ``edgecore_ports.micropython``
(keep-alive; ssl and the system CA store loaded up front, as for an https endpoint)
instead of the CPython port's ``requests.Session``. The RSS floor of a bare
``python3 -c`` in the same environment is printed with part 2.

Children run from a snapshot of the tree compiled to .pyc (see snapshot_sources).
Temporary files (model, downloads, state) live in one temp directory removed at the end.
"""

import json
import os
import sys
import time

# The driver's other modules are imported below (driver section), not here: measured
# children run this file too and must not carry imports the agent would not have.

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Children import edgecore from the driver's compiled snapshot of the tree (see
# snapshot_sources); the driver itself uses the tree.
SRC = os.environ.get("BENCH_AGENT_SRC") or ROOT
if SRC not in sys.path:
    sys.path.insert(0, SRC)

MIB = 1024 * 1024
HANDLE = "benchmodel"


# ---------------------------------------------------------------- /proc readers

def proc_status(pid="self"):
    """{'VmRSS': kB, 'VmHWM': kB, ...} of a process."""
    out = {}
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith(("Vm", "Rss")):
                key, _, rest = line.partition(":")
                out[key] = int(rest.split()[0])
    return out


def proc_cpu_seconds(pid):
    """utime + stime of a process (all its threads), seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rpartition(")")[2].split()
    # fields[0] is field 3 (state): utime/stime are fields 14/15
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_seconds():
    t = os.times()
    return t.user + t.system


# ---------------------------------------------------------------- children

def _profiled(args, fn):
    if not args.get("profile"):
        return fn()
    import cProfile
    import pstats

    prof = cProfile.Profile()
    result = prof.runcall(fn)
    sys.stderr.write("---- cProfile: %s ----\n" % args["mode"])
    pstats.Stats(prof, stream=sys.stderr).sort_stats("tottime").print_stats(18)
    return result


def _runner(args, model_dir, state_dir, log=None):
    """A Runner; modes ending in -sock use the stdlib-socket HTTP client of
    edgecore_ports.micropython (keep-alive, ssl + system CA store loaded up front as an
    https device would) instead of the CPython port's requests.Session."""
    from edgecore_ports.runner import Runner, load_config

    config = load_config(dict(args["config"], model_dir=model_dir, state_dir=state_dir))
    http = None
    if args["mode"].endswith("-sock"):
        from edgecore_ports import micropython

        http = micropython.make_transport(keep_alive=True)
        http._context()  # what the first https request would load
    runner = Runner(config, http=http, log=log)
    runner.start()
    return runner


def child_dl_edgecore(args):
    from edgecore import agent

    runner = _runner(args, args["model_dir"], args["state_dir"])
    action = agent.Action(agent.DOWNLOAD, handle=HANDLE, deployment="bench",
                          model={"sha1": args["sha1"], "s3url": args["s3url"]})
    base = proc_status()["VmRSS"]
    cpu0, t0 = self_cpu_seconds(), time.perf_counter()
    outcome = _profiled(args, lambda: runner.execute(action))
    t1, cpu1 = time.perf_counter(), self_cpu_seconds()
    if not outcome.ok:
        raise SystemExit("edgecore download failed: %s" % outcome.reason)
    if outcome.info.get("size") != args["size"]:
        raise SystemExit("edgecore download: size %r != %d" % (outcome.info, args["size"]))
    return {"seconds": t1 - t0, "cpu": cpu1 - cpu0, "base_kb": base,
            "hwm_kb": proc_status()["VmHWM"]}


def child_loop_edgecore_sock(args):
    """Runner.run_forever (what `edgecore run` calls) with the -sock transport; one
    stdout line per heartbeat."""

    def log(level, event, **fields):
        if event == "heartbeat.sent":
            sys.stdout.write(json.dumps({"event": event}) + "\n")
            sys.stdout.flush()

    runner = _runner(args, args["model_dir"], args["state_dir"], log=log)
    runner.run_forever()


def _s3_client(args):
    import boto3
    from botocore.config import Config

    c = args["config"]
    return boto3.client(
        "s3", endpoint_url=c["s3_endpoint_url"], region_name=c["region"],
        aws_access_key_id=c["credentials"]["access_key_id"],
        aws_secret_access_key=c["credentials"]["secret_access_key"],
        config=Config(s3={"addressing_style": "path"}))


def child_dl_boto3(args):
    import hashlib

    from boto3.s3.transfer import TransferConfig

    s3 = _s3_client(args)
    bucket, _, key = args["s3url"][len("s3://"):].partition("/")
    config = TransferConfig()  # boto3's defaults: 8 MiB parts, 10 threads
    if args["mode"] == "dl-boto3-1get":
        config = TransferConfig(multipart_threshold=args["size"] + 1)
    path = os.path.join(args["model_dir"], "model.bin")
    os.makedirs(args["model_dir"], exist_ok=True)
    base = proc_status()["VmRSS"]
    cpu0, t0 = self_cpu_seconds(), time.perf_counter()
    with open(path, "wb") as f:
        s3.download_fileobj(bucket, key, f, Config=config)
        f.flush()
        os.fsync(f.fileno())  # the agent fsyncs too (crash safety): same work
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            h.update(block)
    t1, cpu1 = time.perf_counter(), self_cpu_seconds()
    if h.hexdigest() != args["sha1"] or os.path.getsize(path) != args["size"]:
        raise SystemExit("boto3 download: checksum or size mismatch")
    return {"seconds": t1 - t0, "cpu": cpu1 - cpu0, "base_kb": base,
            "hwm_kb": proc_status()["VmHWM"]}


def _edge_client(args):
    import boto3
    from botocore.config import Config

    c = args["config"]
    return boto3.client(
        "sagemaker-edge", endpoint_url=c["endpoint_url"], region_name=c["region"],
        aws_access_key_id=c["credentials"]["access_key_id"],
        aws_secret_access_key=c["credentials"]["secret_access_key"],
        config=Config(retries={"mode": "standard"}))


def _boto3_cycle(client, args, metrics):
    c = args["config"]
    client.get_deployments(DeviceName=c["device_name"], DeviceFleetName=c["fleet_name"])
    params = {"AgentVersion": args["agent_version"], "DeviceName": c["device_name"],
              "DeviceFleetName": c["fleet_name"]}
    m = metrics(args["model_dir"], int(time.time()))
    if m:
        params["AgentMetrics"] = m
    client.send_heartbeat(**params)


def child_loop_boto3(args):
    """The boto3 agent loop: poll + heartbeat every interval; one stdout line per cycle."""
    from edgecore_ports.linux import metrics  # the agent's AgentMetrics source

    os.makedirs(args["model_dir"], exist_ok=True)
    client = _edge_client(args)
    n = 0
    while True:
        started = time.monotonic()
        _boto3_cycle(client, args, metrics)
        n += 1
        sys.stdout.write(json.dumps({"event": "heartbeat.sent", "n": n}) + "\n")
        sys.stdout.flush()
        wait = args["interval"] - (time.monotonic() - started)
        if wait > 0:
            time.sleep(wait)


def _inproc(args, one_cycle):
    for _ in range(5):  # warm: connections, lazy imports, first state save
        one_cycle()
    n = args["cycles"]
    cpu0, t0 = time.process_time(), time.perf_counter()

    def run():
        for _ in range(n):
            one_cycle()

    _profiled(args, run)
    cpu1, t1 = time.process_time(), time.perf_counter()
    return {"cpu_ms": 1000.0 * (cpu1 - cpu0) / n, "wall_ms": 1000.0 * (t1 - t0) / n,
            "rss_kb": proc_status()["VmRSS"]}


def child_inproc_edgecore(args):
    runner = _runner(args, args["model_dir"], args["state_dir"])

    def one_cycle():
        report = runner.cycle()
        if not report["ok"]:
            raise SystemExit("edgecore cycle failed: %s" % report["errors"])

    return _inproc(args, one_cycle)


def child_inproc_boto3(args):
    from edgecore_ports.linux import metrics  # the agent's AgentMetrics source

    os.makedirs(args["model_dir"], exist_ok=True)
    client = _edge_client(args)
    return _inproc(args, lambda: _boto3_cycle(client, args, metrics))


CHILDREN = {
    "dl-edgecore": child_dl_edgecore,
    "dl-edgecore-sock": child_dl_edgecore,
    "loop-edgecore-sock": child_loop_edgecore_sock,
    "inproc-edgecore-sock": child_inproc_edgecore,
    "dl-boto3": child_dl_boto3,
    "dl-boto3-1get": child_dl_boto3,
    "loop-boto3": child_loop_boto3,
    "inproc-edgecore": child_inproc_edgecore,
    "inproc-boto3": child_inproc_boto3,
}


def child_main():
    args = json.loads(os.environ["BENCH_AGENT_ARGS"])
    result = CHILDREN[args["mode"]](args)
    import edgecore

    if not edgecore.__file__.startswith(SRC):
        raise SystemExit("child imported %s, not the snapshot %s" % (edgecore.__file__, SRC))
    sys.stdout.write(json.dumps(result) + "\n")


_child_env = dict(os.environ)


def snapshot_sources(work, precompile):
    """Copy edgecore, ports (as edgecore_ports) and edgecore_tools into work/src and
    compile them to .pyc there; children import from it (set in _child_env).

    Why: this environment sets PYTHONDONTWRITEBYTECODE and the tree's __pycache__ is
    stale while other helpers edit it, so every start would recompile from source
    (slower start; up to MiBs of compiler arenas left in RSS) while boto3/botocore come with
    their .pyc from pip. An installed agent has its .pyc too. The snapshot also keeps
    one run on one version of the code. precompile=False measures the as-is case."""
    import compileall

    dst = os.path.join(work, "src")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name, target in (("edgecore", "edgecore"), ("ports", "edgecore_ports"),
                         ("edgecore_tools", "edgecore_tools")):
        shutil.copytree(os.path.join(ROOT, name), os.path.join(dst, target), ignore=ignore)
    # The children's entry point too (python -c "import bench_agent..."): a script run
    # as __main__ is always compiled from source, which would weigh on its RSS.
    shutil.copy(os.path.abspath(__file__), os.path.join(dst, "bench_agent.py"))
    if precompile:
        compileall.compile_dir(dst, quiet=1)
    _child_env["BENCH_AGENT_SRC"] = dst
    _child_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (dst, os.environ.get("PYTHONPATH")) if p)
    return dst


CHILD_ARGV = [sys.executable, "-c", "import bench_agent; bench_agent.child_main()"]


def run_bare():
    """VmRSS of `python3 -c` reading its own status: the interpreter's floor here."""
    code = ("for l in open('/proc/self/status'):\n"
            "    if l.startswith('VmRSS'): print(l.split()[1])")
    out = subprocess.run([sys.executable, "-c", code], env=_child_env, stdout=subprocess.PIPE,
                         cwd=_child_env["BENCH_AGENT_SRC"], check=True).stdout
    return int(out.decode().strip())


def run_child(mode, **args):
    """Run one measurement child; returns its JSON result."""
    args["mode"] = mode
    env = dict(_child_env, BENCH_AGENT_ARGS=json.dumps(args))
    proc = subprocess.run(CHILD_ARGV, env=env,
                          stdout=subprocess.PIPE, timeout=600, cwd=_child_env["BENCH_AGENT_SRC"])
    if proc.returncode != 0:
        raise SystemExit("child %s failed (exit %d)" % (mode, proc.returncode))
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


# ---------------------------------------------------------------- driver

def _driver_imports():
    global argparse, hashlib, shutil, statistics, subprocess, tempfile, threading
    import argparse
    import hashlib
    import shutil
    import statistics
    import subprocess
    import tempfile
    import threading


def make_model(path, size):
    """A SIZE-byte file of pseudo-random MiB blocks; returns its sha1 hex."""
    h = hashlib.sha1()
    block = os.urandom(MIB)
    with open(path, "wb") as f:
        for i in range(0, size, MIB):
            data = (i.to_bytes(8, "big") + block[8:])[:size - i]
            f.write(data)
            h.update(data)
    return h.hexdigest()


def median(xs):
    return statistics.median(xs)


DL_MODES = (
    ("dl-edgecore", "edgecore Runner download"),
    ("dl-boto3", "boto3 download_fileobj (default) + sha1"),
    ("dl-boto3-1get", "boto3 download_fileobj (1 GET) + sha1"),
    ("dl-edgecore-sock", "edgecore Runner, stdlib-socket http (*)"),
)


def bench_download(cloud, base_config, work, size_mib, rounds, profile):
    size = size_mib * MIB
    model = os.path.join(work, "model.bin")
    sha1 = make_model(model, size)
    key = "models/%s/%s/model.bin" % (HANDLE, sha1)
    with open(model, "rb") as f:
        cloud.s3.client().put_object(Bucket=cloud.bucket, Key=key, Body=f)
    os.unlink(model)
    s3url = "s3://%s/%s" % (cloud.bucket, key)
    modes = [m for m, _ in DL_MODES]
    runs = {m: [] for m in modes}
    for r in range(rounds):
        for mode in modes:
            d = os.path.join(work, "dl-%s-%d" % (mode, r))
            res = run_child(mode, config=base_config, model_dir=os.path.join(d, "models"),
                            state_dir=os.path.join(d, "state"), s3url=s3url, sha1=sha1,
                            size=size, profile=profile and mode == "dl-edgecore" and r == 0)
            shutil.rmtree(d)
            runs[mode].append(res)
            print("  round %d %-17s %6.2f s  cpu %5.2f s  peak RSS %6.1f MiB (before %5.1f)"
                  % (r + 1, mode, res["seconds"], res["cpu"], res["hwm_kb"] / 1024.0,
                     res["base_kb"] / 1024.0), flush=True)
    cloud.s3.client().delete_object(Bucket=cloud.bucket, Key=key)
    med = {m: {k: median([x[k] for x in runs[m]]) for k in ("seconds", "cpu", "hwm_kb",
                                                            "base_kb")} for m in modes}
    print()
    print("1. download + verify %d MiB (medians of %d alternating runs; time and cpu of the"
          % (size_mib, rounds))
    print("   operation, after imports; peak RSS = VmHWM of the child)")
    print("   %-40s %7s %7s %13s %7s" % ("", "time s", "cpu s", "peak RSS MiB", "MiB/s"))
    for m, label in DL_MODES:
        x = med[m]
        print("   %-40s %7.2f %7.2f %13.1f %7.1f" % (label, x["seconds"], x["cpu"],
                                                    x["hwm_kb"] / 1024.0,
                                                    size_mib / x["seconds"]))
    for e_mode in ("dl-edgecore", "dl-edgecore-sock"):
        e = med[e_mode]
        for m in ("dl-boto3", "dl-boto3-1get"):
            b = med[m]
            print("   %-16s / %-10s time %.2fx (goal <= 1.0)  cpu %.2fx  peak RSS %.2fx "
                  "(goal <= 0.33)" % (e_mode[3:], m[3:], e["seconds"] / b["seconds"],
                                      e["cpu"] / b["cpu"], e["hwm_kb"] / b["hwm_kb"]))
    print("   (*) proposed-fix preview, not what `edgecore run` uses today (see RESULTS)")
    return med


class Watched:
    """A long-running child whose stdout/stderr lines announce finished cycles."""

    def __init__(self, name, argv, env, stream, marks):
        self.name = name
        self.marks = sorted(marks)
        self.samples = {}
        self.count = 0
        self.done = threading.Event()
        # cwd: `python -m` puts it first on sys.path; the snapshot must win.
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     cwd=env["BENCH_AGENT_SRC"])
        self.tail = []
        pipe = self.proc.stderr if stream == "stderr" else self.proc.stdout
        other = self.proc.stdout if stream == "stderr" else self.proc.stderr
        threading.Thread(target=self._read, args=(pipe,), daemon=True).start()
        threading.Thread(target=self._drain, args=(other,), daemon=True).start()

    def _sample(self):
        st = proc_status(self.proc.pid)
        return {"cpu": proc_cpu_seconds(self.proc.pid), "rss_kb": st["VmRSS"],
                "hwm_kb": st["VmHWM"], "anon_kb": st["RssAnon"], "file_kb": st["RssFile"],
                "t": time.monotonic()}

    def _read(self, pipe):
        for line in pipe:
            self.tail = (self.tail + [line])[-20:]
            if b'"heartbeat.sent"' not in line:
                continue
            self.count += 1
            if self.count in self.marks:
                self.samples[self.count] = self._sample()
                if self.count == self.marks[-1]:
                    self.done.set()
        self.done.set()

    def _drain(self, pipe):
        for line in pipe:
            self.tail = (self.tail + [line])[-20:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _write_config(path, config):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)


def bench_loops(base_config, b_config, s_config, work, warm, cycles, interval):
    marks = (warm, warm + cycles)
    d_agent = os.path.join(work, "agent")
    os.makedirs(d_agent)
    config = dict(base_config, model_dir=os.path.join(d_agent, "models"),
                  state_dir=os.path.join(d_agent, "state"), heartbeat_interval=interval)
    path = os.path.join(d_agent, "agent.json")
    _write_config(path, config)
    env = dict(_child_env)
    me = CHILD_ARGV
    b_env = dict(env, BENCH_AGENT_ARGS=json.dumps({
        "mode": "loop-boto3", "config": b_config, "interval": interval,
        "agent_version": AGENT_VERSION,
        "model_dir": os.path.join(work, "boto3-loop")}))
    d_sock = os.path.join(work, "sock-loop")
    s_env = dict(env, BENCH_AGENT_ARGS=json.dumps({
        "mode": "loop-edgecore-sock", "config": dict(s_config, heartbeat_interval=interval),
        "model_dir": os.path.join(d_sock, "models"),
        "state_dir": os.path.join(d_sock, "state")}))
    # All three run at the same time (mostly asleep), each as its own device.
    watched = [
        Watched("edgecore agent (cli run)", [sys.executable, "-m", "edgecore_tools.cli",
                                             "run", "--config", path, "--no-progress"],
                env, "stderr", marks),
        Watched("boto3 loop", me, b_env, "stdout", marks),
        Watched("edgecore, socket http (*)", me, s_env, "stdout", marks),
    ]
    try:
        deadline = time.monotonic() + (warm + cycles) * interval * 3 + 60
        for w in watched:
            w.done.wait(max(1, deadline - time.monotonic()))
    finally:
        for w in watched:
            w.stop()
    out = {}
    for w in watched:
        if len(w.samples) != 2:
            sys.stderr.write(b"".join(w.tail).decode("utf-8", "replace"))
            raise SystemExit("%s: only %d cycles seen" % (w.name, w.count))
        a, b = w.samples[marks[0]], w.samples[marks[1]]
        out[w.name] = {"rss_warm_kb": a["rss_kb"], "rss_kb": b["rss_kb"],
                       "hwm_kb": b["hwm_kb"], "anon_kb": b["anon_kb"], "file_kb": b["file_kb"],
                       "cpu_ms": 1000.0 * (b["cpu"] - a["cpu"]) / cycles,
                       "period": (b["t"] - a["t"]) / cycles}
    bare = run_bare()
    o = out["boto3 loop"]
    print()
    print("2. steady-state RSS, heartbeat_interval %gs, no deployments (VmRSS after %d and "
          "%d cycles)" % (interval, warm, warm + cycles))
    for name, x in out.items():
        print("   %-28s %6.1f MiB -> %6.1f MiB  (anon %5.1f + file %5.1f; VmHWM %5.1f; "
              "%.2f s/cycle)" % (name, x["rss_warm_kb"] / 1024.0, x["rss_kb"] / 1024.0,
                                 x["anon_kb"] / 1024.0, x["file_kb"] / 1024.0,
                                 x["hwm_kb"] / 1024.0, x["period"]))
    print("   %-28s %6.1f MiB  (python3 -c, same environment: the floor)" % (
        "bare interpreter", bare / 1024.0))
    for name in ("edgecore agent (cli run)", "edgecore, socket http (*)"):
        e = out[name]
        print("   %-26s / boto3: RSS %.2fx (goal <= 0.33); above the bare interpreter "
              "%.2fx" % (name, e["rss_kb"] / o["rss_kb"],
                         (e["rss_kb"] - bare) / float(o["rss_kb"] - bare)))
    print()
    print("3a. CPU per idle cycle from /proc/<pid>/stat over %d cycles (10 ms ticks)" % cycles)
    for name, x in out.items():
        print("   %-28s %6.2f ms" % (name, x["cpu_ms"]))
    if o["cpu_ms"]:
        print("   edgecore agent / boto3: %.2fx" % (
            out["edgecore agent (cli run)"]["cpu_ms"] / o["cpu_ms"]))
    return out


INPROC_MODES = (
    ("inproc-edgecore", "edgecore Runner.cycle()"),
    ("inproc-boto3", "boto3 poll + heartbeat"),
    ("inproc-edgecore-sock", "edgecore, socket http (*)"),
)


def bench_inproc(configs, work, n, profile):
    res = {}
    for mode, _ in INPROC_MODES:
        d = os.path.join(work, mode)
        res[mode] = run_child(mode, config=configs[mode], model_dir=os.path.join(d, "models"),
                              state_dir=os.path.join(d, "state"), cycles=n,
                              agent_version=AGENT_VERSION,
                              profile=profile and mode != "inproc-edgecore-sock")
    print()
    print("3b. CPU per idle cycle in-process, %d back-to-back cycles (time.process_time)" % n)
    for mode, label in INPROC_MODES:
        print("   %-28s %6.2f ms cpu  %6.2f ms wall" % (label, res[mode]["cpu_ms"],
                                                     res[mode]["wall_ms"]))
    print("   edgecore / boto3: %.2fx cpu" % (res["inproc-edgecore"]["cpu_ms"]
                                              / res["inproc-boto3"]["cpu_ms"]))
    print("   (wall: mostly waiting for the local endpoint, the same for both; the (*) row")
    print("    also waits ~40 ms per request on Nagle + delayed ACK, see RESULTS-agent.md)")
    return res


def main():
    _driver_imports()
    global AGENT_VERSION
    from edgecore_ports.runner import AGENT_VERSION
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warm-cycles", type=int, default=10)
    p.add_argument("--cycles", type=int, default=20)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--inproc-cycles", type=int, default=100)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--skip", default="", help="comma list of parts to skip: 1,2,3")
    p.add_argument("--no-precompile", action="store_true",
                   help="children compile edgecore from source at start (no .pyc)")
    args = p.parse_args()
    skip = set(args.skip.split(",")) - {""}

    import boto3
    import botocore

    from edgecore_tools.localcloud import LocalCloud

    print("bench_agent: Python %s, boto3 %s, botocore %s, %d CPUs" % (
        sys.version.split()[0], boto3.__version__, botocore.__version__, os.cpu_count()))
    work = tempfile.mkdtemp(prefix="bench-agent-")
    t_start = time.monotonic()
    cloud = None
    try:
        snapshot_sources(work, not args.no_precompile)
        cloud = LocalCloud.start(os.path.join(work, "cloud"))
        base_config = cloud.agent_config(os.path.join(work, "unused-models"),
                                         os.path.join(work, "unused-state"))
        if "1" not in skip:
            bench_download(cloud, base_config, work, args.size_mib, args.rounds, args.profile)
        # The loops are devices of one fleet (own keys), so those of part 2 can run at
        # the same time without sharing device state.
        configs = {}
        for dev in ("bench-boto3", "bench-sock"):
            cloud.add_device(dev)
            configs[dev] = dict(base_config, device_name=dev, credentials=(
                cloud.credentials_config(cloud.create_key(device=dev, s3=False))))
        if "2" not in skip:
            bench_loops(base_config, configs["bench-boto3"], configs["bench-sock"], work,
                        args.warm_cycles, args.cycles, args.interval)
        if "3" not in skip:
            bench_inproc({"inproc-edgecore": base_config,
                          "inproc-boto3": configs["bench-boto3"],
                          "inproc-edgecore-sock": configs["bench-sock"]},
                         work, args.inproc_cycles, args.profile)
    finally:
        if cloud is not None:
            cloud.stop()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("total %.0f s" % (time.monotonic() - t_start))


if __name__ == "__main__":
    main()
