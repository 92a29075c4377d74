"""Pure SHA1 on the real MicroPython builds: the plain code vs the viper path, side by
side in one run (firmware/micropython/build.sh unix qemu first).

    python benchmarks/bench_mp_sha1.py [--kib 256]

Hashes KIB KiB with edgecore.sha1.Sha1(fast=False) and Sha1(fast=True) (best of three,
time.ticks_ms) on the 32-bit unix binary and on the Cortex-M3 under qemu (a 64 KiB
heap: 16 KiB there), checks both against hashlib, prints MB/s and the ratio.
"""

import argparse
import hashlib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "micropython"))

SCRIPT = """
import time
from edgecore.sha1 import Sha1
data = bytes(range(256)) * (4 * %d)
out = []
for fast in (False, True):
    best = 1 << 30
    for _ in range(3):
        t0 = time.ticks_ms()
        d = Sha1(data, fast=fast).hexdigest()
        best = min(best, time.ticks_diff(time.ticks_ms(), t0))
    out.append("%%s:%%d:%%s" %% (fast, best, d))
print("RESULT", " ".join(out))
"""


def parse(text, kib):
    line = [x for x in text.splitlines() if x.startswith("RESULT")][-1]
    want = hashlib.sha1(bytes(range(256)) * (4 * kib)).hexdigest()
    rows = {}
    for item in line.split()[1:]:
        fast, ms, digest = item.split(":")
        assert digest == want, (fast, digest)
        rows[fast] = int(ms)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kib", type=int, default=256)
    args = ap.parse_args()
    import run_real

    unix = subprocess.run([run_real.UNIX_BINARY, "-c", SCRIPT % args.kib], capture_output=True,
                          text=True, env=dict(os.environ, MICROPYPATH=".frozen"), check=True)
    sys.path.insert(0, os.path.join(run_real.SOURCE, "tools"))
    import pyboard

    board = pyboard.Pyboard("exec:" + run_real.QEMU + run_real.QEMU_FIRMWARE)
    try:
        board.enter_raw_repl(soft_reset=False)
        qemu = board.exec_(SCRIPT % 16, timeout=600).decode()
    finally:
        board.close()
    print("%-22s %6s %10s %10s %10s %7s" % ("build", "KiB", "plain_ms", "viper_ms",
                                             "viper_MBps", "ratio"))
    for name, kib, rows in (("unix 32-bit", args.kib, parse(unix.stdout, args.kib)),
                            ("qemu Cortex-M3 (TCG)", 16, parse(qemu, 16))):
        plain, viper = rows["False"], max(rows["True"], 1)
        print("%-22s %6d %10d %10d %10.2f %6.1fx" % (name, kib, plain, viper,
                                                     kib * 1.024 / viper, plain / viper))


if __name__ == "__main__":
    main()
