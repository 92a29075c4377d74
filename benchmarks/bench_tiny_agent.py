"""Benchmark: the tiny Linux agent (the MicroPython unix binary) beside the CPython agent.

    python3 benchmarks/bench_tiny_agent.py [--cycles 30] [--interval 1] [--heap 256k]
                                           [--model-kib 1024]

Issue 10 item 5: the same agent on the MicroPython unix binary, for 64 MB-class Linux
devices (cameras, routers) where a CPython agent's ~30 MiB does not fit. Goal: steady
RSS <= 4 MiB. One run, both measured side by side against the same local cloud
(``edgecore_tools.localcloud``: the Edge Manager endpoint here, moto's S3 server in a
subprocess; every signature checked), each as its own device:

- CPython: ``python -m edgecore_tools.cli run --config A`` (what ``edgecore run`` runs);
- MicroPython: ``.cache/micropython/bin/micropython32 -X heapsize=HEAP`` (the 32-bit unix
  build of ``firmware/micropython/build.sh unix``, edgecore frozen in) running
  ``edgecore_ports.mp_agent.Agent(read_config_file(B)).run()``.

Each first deploys a MODEL-KiB model (download, verify, activate), then cycles every
INTERVAL seconds (poll + heartbeat). VmRSS / VmHWM / RssAnon / RssFile of each process
from /proc after 5 cycles and after CYCLES cycles (steady), and the bare interpreters'
RSS for scale. The endpoints are plain HTTP (the local cloud's): TLS on the unix port
allocates mbedtls's ~16 + 4 KiB buffers per connection with malloc, outside the
MicroPython heap, while a connection is open.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BINARY = os.path.join(ROOT, ".cache", "micropython", "bin", "micropython32")
MP_AGENT = ("import sys\nfrom edgecore_ports.mp_agent import Agent, read_config_file\n"
            "Agent(read_config_file(sys.argv[1])).run()\n")


def status(pid):
    """VmRSS, VmHWM, RssAnon, RssFile of a process in KiB."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0])
    return out


def heartbeats(cloud, device):
    return len(cloud.heartbeats(device))


def wait_for(cloud, device, n, timeout):
    deadline = time.monotonic() + timeout
    while heartbeats(cloud, device) < n:
        if time.monotonic() > deadline:
            raise SystemExit("%s: fewer than %d heartbeats in %d s" % (device, n, timeout))
        time.sleep(0.1)


def bare_rss(cmd):
    """RSS (KiB) of an interpreter that only sleeps: the floor."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        return status(proc.pid)["VmRSS"]
    finally:
        proc.kill()
        proc.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cycles", type=int, default=30)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--heap", default="256k", help="the MicroPython heap (-X heapsize)")
    parser.add_argument("--model-kib", type=int, default=1024)
    args = parser.parse_args()
    if not os.path.exists(BINARY):
        raise SystemExit("no %s: run firmware/micropython/build.sh unix" % BINARY)
    sys.path.insert(0, ROOT)
    from edgecore_tools.demo import agent_env
    from edgecore_tools.localcloud import LocalCloud, MotoS3

    work = tempfile.mkdtemp(prefix="bench-tiny-")
    s3 = MotoS3.start(region="us-west-2")
    cloud = LocalCloud.start(os.path.join(work, "cloud"), s3=s3)
    procs = {}
    try:
        devices = {"cpython": cloud.device_name, "micropython": "tiny-device"}
        cloud.add_device(devices["micropython"])
        keys = {"cpython": None, "micropython": cloud.create_key(device=devices["micropython"])}
        model = os.urandom(args.model_kib * 1024)
        for side, device in devices.items():
            config = cloud.agent_config(os.path.join(work, side, "models"),
                                        os.path.join(work, side, "state"),
                                        heartbeat_interval=args.interval,
                                        credentials=cloud.credentials_config(keys[side]))
            config["device_name"] = device
            path = os.path.join(work, side + ".json")
            with open(path, "w") as f:
                json.dump(config, f)
            cloud.deploy("cam", "detector", "1.0", data=model, device=device)
            if side == "cpython":
                cmd = [sys.executable, "-m", "edgecore_tools.cli", "run", "--config", path]
                env = agent_env()
            else:
                cmd = [BINARY, "-X", "heapsize=" + args.heap, "-c", MP_AGENT, path]
                env = dict(os.environ, MICROPYPATH=".frozen")
            procs[side] = subprocess.Popen(cmd, env=env, cwd=work, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
        rows = {}
        for n in (5, args.cycles):
            for side, device in devices.items():
                wait_for(cloud, device, n, timeout=60 + 3 * n * args.interval)
                if procs[side].poll() is not None:
                    raise SystemExit("%s agent exited with %d" % (side, procs[side].returncode))
                rows.setdefault(side, []).append(status(procs[side].pid))
        for side, device in devices.items():
            statuses = [r["body"]["DeploymentStatus"] for r in cloud.results(device)]
            if statuses != ["SUCCESS"]:
                raise SystemExit("%s: the model was not deployed: %r" % (side, statuses))
        floors = {"cpython": bare_rss([sys.executable, "-c", "import time; time.sleep(9)"]),
                  "micropython": bare_rss([BINARY, "-X", "heapsize=" + args.heap, "-c",
                                           "import time; time.sleep(9)"])}
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
        cloud.stop()
        s3.stop()
        shutil.rmtree(work, ignore_errors=True)
    print("tiny Linux agent: steady RSS, %d cycles of %.1f s after deploying a %d KiB model"
          % (args.cycles, args.interval, args.model_kib))
    print("  %-36s %9s %9s %9s %9s %9s" % ("", "RSS@5", "RSS@%d" % args.cycles, "VmHWM",
                                           "anon", "file"))
    labels = {"cpython": "CPython agent (edgecore run)",
              "micropython": "MicroPython unix agent (heap %s)" % args.heap}
    for side in ("cpython", "micropython"):
        early, late = rows[side]
        print("  %-36s %6.2f MiB %6.2f MiB %6.2f MiB %6.2f MiB %6.2f MiB" % (
            labels[side], early["VmRSS"] / 1024.0, late["VmRSS"] / 1024.0,
            late["VmHWM"] / 1024.0, late["RssAnon"] / 1024.0, late["RssFile"] / 1024.0))
    for side in ("cpython", "micropython"):
        print("  bare %-31s %6.2f MiB" % (side, floors[side] / 1024.0))
    mp, cp = rows["micropython"][1]["VmRSS"], rows["cpython"][1]["VmRSS"]
    print("  MicroPython / CPython steady RSS: %.3fx; MicroPython %.2f MiB (goal <= 4 MiB: %s)"
          % (mp / float(cp), mp / 1024.0, "met" if mp <= 4096 else "MISSED"))


if __name__ == "__main__":
    main()
