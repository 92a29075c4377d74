"""Benchmark: streamed SHA1 verification and the pure-Python SHA1.

    python3 benchmarks/bench_checksum.py [--mib 256] [--rounds 5] [--no-micropython]

1. Streamed verification of a MIB-MiB file (created in a temp dir, deleted after,
   read once through the page cache before timing): edgecore's verify_stream (on
   CPython it hashes with hashlib.sha1) vs a plain hashlib.sha1 read loop over the
   same file, interleaved rounds, best of each. Goal: >= 0.9x the loop's throughput.
2. Peak RSS growth of verify_stream over that file, in a fresh child process:
   VmHWM after the pass minus VmHWM before it (the mark reset to the current RSS
   through /proc/self/clear_refs first). Goal: < 2 MiB. ru_maxrss is printed too,
   but after fork+exec Linux keeps the parent's peak in it, so it mostly reads 0.
   The plain read loop is measured the same way for comparison.
3. Pure-Python Sha1 MB/s on CPython, and on the real 32-bit MicroPython unix binary
   (benchmarks/mp_sha1.py run there, edgecore frozen: its Sha1 takes the viper path,
   its verify_stream hashlib's C SHA1; plain vs viper: bench_mp_sha1.py). Recorded, no
   goal.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from edgecore.checksum import DEFAULT_CHUNK_SIZE, verify_stream  # noqa: E402
from edgecore.sha1 import Sha1  # noqa: E402

MIB = 1024 * 1024
LOOP_CHUNK = MIB  # the plain loop's read size: the usual idiom


def hashlib_loop(path, chunk=LOOP_CHUNK):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def edgecore_verify(path, want, chunk=DEFAULT_CHUNK_SIZE):
    with open(path, "rb") as f:
        return verify_stream(f, "SHA1", want, chunk_size=chunk)


def make_file(path, size):
    block = os.urandom(MIB)
    with open(path, "wb") as f:
        for i in range(size // MIB):
            # vary each MiB cheaply so the file is not one repeated block
            f.write(i.to_bytes(8, "big") + block[8:])


def vm_hwm_kib():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def rss_child(mode, path, want, chunk):
    """Runs in a fresh process: print peak-RSS growth (KiB) of one full pass."""
    import resource

    # Everything the pass needs is imported before 'before'. Reset the kernel's
    # peak-RSS mark to the current RSS, so the growth is the pass's own.
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass
    before_ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    before_hwm = vm_hwm_kib()
    if mode == "verify":
        n = edgecore_verify(path, want, chunk)
        assert n == os.path.getsize(path)
    else:
        assert hashlib_loop(path, chunk) == want
    after_ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    after_hwm = vm_hwm_kib()
    print("%d %d %d" % (after_ru - before_ru, after_hwm - before_hwm, after_hwm))


def measure_rss(mode, path, want, chunk):
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--rss-child", mode, path, want, str(chunk)],
        check=True, capture_output=True, text=True,
    ).stdout.split()
    return int(out[0]), int(out[1]), int(out[2])


def best_time(func, *args):  # one timed call; callers take the min
    t0 = time.perf_counter()
    func(*args)
    return time.perf_counter() - t0


def pure_sha1_cpython(mib=2, rounds=3):
    data = os.urandom(mib * MIB)
    assert Sha1(data).hexdigest() == hashlib.sha1(data).hexdigest()
    dt = min(best_time(Sha1(b"").update, data) for _ in range(rounds))
    dt_lib = min(best_time(hashlib.sha1().update, data) for _ in range(rounds))
    return len(data) / 1e6 / dt, len(data) / 1e6 / dt_lib


def pure_sha1_micropython(kib):
    sys.path.insert(0, os.path.join(ROOT, "tests", "micropython"))
    from run_real import UNIX_BINARY

    if not os.path.exists(UNIX_BINARY):
        return None
    script = os.path.join(ROOT, "benchmarks", "mp_sha1.py")
    out = subprocess.run([UNIX_BINARY, script, str(kib)], check=True, capture_output=True,
                         text=True, env=dict(os.environ, MICROPYPATH=".frozen")).stdout
    for line in out.splitlines():
        if line.startswith("micropython-sha1 "):
            return dict(kv.split("=", 1) for kv in line.split()[1:])
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--mp-kib", type=int, default=256)
    ap.add_argument("--no-micropython", action="store_true")
    args = ap.parse_args()
    print("python %s, %s" % (sys.version.split()[0], sys.platform))

    tmp = tempfile.mkdtemp(prefix="edgecore-bench-")
    path = os.path.join(tmp, "artifact.bin")
    try:
        make_file(path, args.mib * MIB)
        want = hashlib_loop(path)  # also the page-cache pass
        size = os.path.getsize(path)
        print("\n== streamed verification of a %d MiB file (best of %d, interleaved) =="
              % (args.mib, args.rounds))
        chunks = sorted({4096, 16384, DEFAULT_CHUNK_SIZE, MIB})
        loop_t = {c: [] for c in chunks}
        ver_t = {c: [] for c in chunks}
        for _ in range(args.rounds):
            for c in chunks:
                loop_t[c].append(best_time(hashlib_loop, path, c))
                ver_t[c].append(best_time(edgecore_verify, path, want, c))
        base = min(loop_t[LOOP_CHUNK])
        print("hashlib.sha1 read loop, read(%d): %.1f MB/s = 1.00x (the goal's baseline)"
              % (LOOP_CHUNK, size / 1e6 / base))
        print("%-9s %-26s %-26s %s" % ("chunk", "verify_stream (readinto)",
                                       "hashlib loop, same chunk", "vs read(1 MiB) loop"))
        for c in chunks:
            t = min(ver_t[c])
            tl = min(loop_t[c])
            tag = "%d%s" % (c, "*" if c == DEFAULT_CHUNK_SIZE else "")
            print("%-9s %7.1f MB/s %-15s %7.1f MB/s %-15s %.2fx%s"
                  % (tag, size / 1e6 / t, "(%.2fx of it)" % (tl / t), size / 1e6 / tl, "",
                     base / t, "  (goal >= 0.9x)" if c == DEFAULT_CHUNK_SIZE else ""))
        print("* = DEFAULT_CHUNK_SIZE on CPython")

        print("\n== peak RSS growth over one pass, fresh child process (goal < 2 MiB) ==")
        runs = (("verify", DEFAULT_CHUNK_SIZE), ("verify", MIB), ("loop", LOOP_CHUNK))
        for mode, chunk in runs:
            ru, hwm, total = measure_rss(mode, path, want, chunk)
            name = "verify_stream chunk %d" % chunk if mode == "verify" else (
                "hashlib read loop %d" % chunk)
            print("%-32s VmHWM +%5d KiB (peak %d KiB)   ru_maxrss +%d KiB"
                  % (name, hwm, total, ru))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print("\n== pure-Python Sha1 (no goal) ==")
    mbps, lib = pure_sha1_cpython()
    print("CPython %s: edgecore.sha1.Sha1 %.2f MB/s; hashlib.sha1 %.0f MB/s (ratio 1/%.0f)"
          % (sys.version.split()[0], mbps, lib, lib / mbps))
    if not args.no_micropython:
        mp = pure_sha1_micropython(args.mp_kib)
        if mp is None:
            print("MicroPython: no unix binary (firmware/micropython/build.sh unix), skipped")
        else:
            print("MicroPython %s (32-bit unix binary): Sha1 (viper) %s MB/s over %s bytes;"
                  " verify_stream(BytesIO, chunk 4096, hashlib) %s MB/s"
                  % (mp["version"], mp["sha1_MBps"], mp["bytes"], mp["verify_MBps"]))


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--rss-child":
        rss_child(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        main()
