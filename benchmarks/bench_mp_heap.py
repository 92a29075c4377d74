"""Benchmark: the board agent's heap and time on the real 32-bit MicroPython unix binary
(edgecore frozen in, ``firmware/micropython/build.sh unix``), over TLS, against the
local cloud (Edge Manager stand-in + moto S3, every signature checked).

    python benchmarks/bench_mp_heap.py [--rounds 3] [--heap 64]

The scenario is tests/test_mp_cycle.py's: four cycles of one agent process (deploy a
64 KiB model, update it to 300 KiB, a corrupted artifact that FAILs, an undeploy), the
CA given as DER. Printed:

1. ``probe``: the run at ``--heap`` KiB (or at the smallest heap found in 2, when the
   scenario does not complete at ``--heap``) with the heap probe of
   tests/micropython/agent_loop.py: the live heap with the agent built and idle, and each
   cycle's live peak (``gc.collect()`` then ``gc.mem_alloc()`` after every request,
   download chunk and log line: a lower bound of the true peak, which can fall inside a
   step);
2. ``smallest heap``: the smallest heap (KiB, by bisection between 16 and 512) at which
   the whole scenario completes without the probe, ``--rounds`` times in a row: the
   working set with its fragmentation;
3. each cycle's time at that heap.

mbedtls's buffers (16 KiB in, 4 KiB out per connection) are NOT in these figures: the unix
port allocates them with malloc. Bare-metal ports (rp2, stm32) take them from the same
GC heap (``MICROPY_MBEDTLS_CONFIG_BARE_METAL``); ESP32 from the IDF heap.
"""

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

from mpdevice import BINARY, Device, TlsFront, make_pki  # noqa: E402


def steps():
    """The scenario: one cloud change before each cycle."""

    def corrupt(cloud):
        dep = cloud.deploy("cam", "detector", "3.0", data=os.urandom(20000))
        cloud.put_object(dep["Definitions"][0]["S3Url"], b"not the model")

    return [lambda c: c.deploy("cam", "detector", "1.0", data=os.urandom(64 * 1024)),
            lambda c: c.deploy("cam", "detector", "2.0", data=os.urandom(300 * 1024)),
            corrupt,
            lambda c: c.deploy("cam", "detector", "2.0", undeploy=True)]


class Bench:
    def __init__(self, s3, work):
        self.s3 = s3
        self.work = work
        self.pki = make_pki(os.path.join(work, "pki"))
        self.runs = 0

    def scenario(self, heap_kib, probe=False):
        """[(report ok, seconds, heap dict or None)] per cycle, or None when the device
        died (a MemoryError)."""
        from edgecore_tools.localcloud import LocalCloud

        self.runs += 1
        run = os.path.join(self.work, "run-%d" % self.runs)
        os.makedirs(run)
        with LocalCloud.start(os.path.join(run, "cloud"), s3=self.s3) as cloud:
            edge = TlsFront(cloud.endpoint_url, self.pki)
            s3 = TlsFront(cloud.s3_endpoint_url, self.pki)
            config = cloud.agent_config(os.path.join(run, "flash", "models"),
                                        os.path.join(run, "flash", "state"),
                                        endpoint_url=edge.url, s3_endpoint_url=s3.url,
                                        ca_bundle=self.pki.ca_der)
            device = Device(config, run, heap="%dk" % heap_kib, probe=probe)
            out = []
            try:
                for step in steps():
                    step(cloud)
                    t0 = time.monotonic()
                    report = device.cycle()
                    out.append((report["ok"], time.monotonic() - t0,
                                device.heap() if probe else None))
            except AssertionError:  # the device ended: see its transcript
                self.last_failure = device.transcript(30)
                return None
            finally:
                device.close()
                edge.close()
                s3.close()
        return out

    def completes(self, heap_kib, rounds):
        return all(self.scenario(heap_kib) is not None for _ in range(rounds))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3, help="runs that must all complete")
    ap.add_argument("--heap", type=int, default=64, help="KiB, the heap to probe at")
    args = ap.parse_args()
    if not os.path.exists(BINARY):
        raise SystemExit("no MicroPython binary at %s: firmware/micropython/build.sh unix" % BINARY)
    from edgecore_tools.localcloud import MotoS3

    work = tempfile.mkdtemp(prefix="bench-mp-heap-")
    s3 = MotoS3.start(region="us-west-2")
    try:
        bench = Bench(s3, work)
        low, high = 16, 512
        if not bench.completes(high, 1):
            raise SystemExit("the scenario fails even at %d KiB:\n%s" % (high, bench.last_failure))
        while high - low > 1:
            mid = (low + high) // 2
            if bench.completes(mid, args.rounds):
                high = mid
            else:
                low = mid
        at = args.heap if bench.completes(args.heap, args.rounds) else high
        if at != args.heap:
            print("the scenario does not complete at %d KiB; last failure:\n%s"
                  % (args.heap, bench.last_failure))
        probed = bench.scenario(at, probe=True)
        print("binary: %s" % BINARY)
        print("smallest heap where %d runs of the 4-cycle scenario complete: %d KiB"
              % (args.rounds, high))
        print("probe at %d KiB: agent built and idle %d bytes" % (at, probed[0][2]["idle"]))
        print("%-28s %4s %12s %9s %9s" % ("cycle", "ok", "live peak", "samples", "seconds"))
        timed = bench.scenario(at)
        names = ("deploy 64 KiB", "update to 300 KiB", "corrupted artifact (FAIL)", "undeploy")
        peak = 0
        for name, (ok, _, heap), (_, seconds, _) in zip(names, probed, timed):
            print("%-28s %4s %12d %9d %9.2f" % (name, ok, heap["peak"], heap["samples"],
                                                  seconds))
            peak = max(peak, heap["peak"])
        print("live peak of the scenario: %d bytes (%.1f KiB) of a %d KiB heap"
              % (peak, peak / 1024.0, at))
    finally:
        s3.stop()


if __name__ == "__main__":
    main()
