"""Benchmark: the MicroPython agent's full cycle in the MicroPython WebAssembly port.

    python3 benchmarks/bench_micropython.py [--size-kib 1024] [--rounds 2] [--no-probe]

Starts the local cloud (Edge Manager stand-in + moto S3, signatures checked), deploys
one SIZE-KiB model, and runs tests/micropython/agent_cycle.mjs --probe (poll ->
download -> verify -> activate -> heartbeat, sockets bridged to Node) ROUNDS times
from the .py sources and ROUNDS times from the .mpy build (firmware/micropython/
build-mpy.sh), each on a fresh flash. Prints per run: cycle seconds, steps, and the
heap: baseline (fresh interpreter), after_import (code loaded: bytecode lives in the
heap here; frozen into firmware it would be in flash), peak (live heap, sampled after
every step of the cycle with garbage collected) and peak - after_import (the cycle's
working set). The wasm port has no hashlib.sha1: the pure-Python SHA1 dominates the time.
"""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
MPDIR = os.path.join(ROOT, "tests", "micropython")


def run(config_path, flash, mpy=None, probe=True):
    cmd = ["node", os.path.join(MPDIR, "agent_cycle.mjs"), "--config", config_path,
           "--flash", flash] + (["--probe"] if probe else [])
    if mpy:
        cmd += ["--mpy", mpy]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=MPDIR, timeout=900)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise SystemExit("agent_cycle failed:\n%s\n%s" % (proc.stdout[-2000:], proc.stderr[-3000:]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-kib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--no-probe", action="store_true",
                    help="no heap sampling (the time of the cycle alone; heap columns then "
                         "show after_import only)")
    args = ap.parse_args()
    from edgecore_tools.localcloud import LocalCloud, MotoS3

    work = tempfile.mkdtemp(prefix="bench-mp-")
    dist = os.path.join(work, "dist")
    out = subprocess.run([os.path.join(ROOT, "firmware", "micropython", "build-mpy.sh"), dist],
                         capture_output=True, text=True, check=True).stdout
    print(out.strip().splitlines()[-1])
    s3 = MotoS3.start(region="us-west-2")
    try:
        print("%-6s %8s %6s %10s %12s %10s %12s %8s" % (
            "code", "cycle_s", "steps", "baseline", "after_import", "peak", "working_set",
            "KiB/s"))
        n = 0
        for _ in range(args.rounds):
            for mpy in (None, dist):
                n += 1
                # A fresh cloud (device, bucket) per run: the device sees one deployment.
                with LocalCloud.start(os.path.join(work, "cloud-%d" % n), s3=s3) as cloud:
                    config_path = os.path.join(work, "agent-%d.json" % n)
                    with open(config_path, "w") as f:
                        json.dump(cloud.agent_config("/unused", "/unused"), f)
                    data = os.urandom(args.size_kib * 1024)
                    cloud.deploy("model", "model", "1.0", data=data)
                    r = run(config_path, os.path.join(work, "flash-%d" % n), mpy,
                            not args.no_probe)
                assert r["reports"][-1]["ok"], r
                assert r["active"]["model"]["sha1"] == hashlib.sha1(data).hexdigest()
                h = r["heap"]
                print("%-6s %8.2f %6d %10d %12d %10d %12d %8.1f" % (
                    ".mpy" if mpy else ".py", r["seconds"], r["steps"], h["baseline"],
                    h["after_import"], h["peak"], h["cycle_beyond_import"],
                    args.size_kib / r["seconds"]))
    finally:
        s3.stop()

if __name__ == "__main__":
    main()
