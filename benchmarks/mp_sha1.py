"""SHA1 throughput under MicroPython (run by bench_checksum.py on the unix binary).

    MICROPYPATH=.frozen .cache/micropython/bin/micropython32 benchmarks/mp_sha1.py [KIB]

Hashes KIB KiB with edgecore.sha1.Sha1 (the viper path where the emitter exists) and with
verify_stream over io.BytesIO (hashlib's SHA1 where the port has one), timed with
time.ticks_ms() (best of three), and prints one "micropython-sha1 ..." line that
bench_checksum.py parses.
"""

import gc
import io
import sys
import time

from edgecore.checksum import verify_stream
from edgecore.sha1 import Sha1

kib = int(sys.argv[1]) if len(sys.argv) > 1 else 256
data = bytes(range(256)) * (4 * kib)
want = Sha1(data).hexdigest()
ms_sha1 = ms_verify = 1 << 29
n = 0
for _ in range(3):
    gc.collect()
    t0 = time.ticks_ms()
    Sha1(data).digest()
    ms_sha1 = min(ms_sha1, time.ticks_diff(time.ticks_ms(), t0))
    gc.collect()
    t0 = time.ticks_ms()
    n = verify_stream(io.BytesIO(data), "SHA1", want, chunk_size=4096)
    ms_verify = min(ms_verify, time.ticks_diff(time.ticks_ms(), t0))
assert n == len(data)
print(
    "micropython-sha1 version=%s bytes=%d sha1_ms=%d sha1_MBps=%.3f verify_ms=%d verify_MBps=%.3f"
    % (
        sys.version.split(";")[-1].strip().split()[1],
        len(data),
        ms_sha1,
        len(data) / 1e3 / max(ms_sha1, 1),
        ms_verify,
        len(data) / 1e3 / max(ms_verify, 1),
    )
)
