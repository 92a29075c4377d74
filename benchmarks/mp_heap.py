"""MicroPython heap and time of the core's request path.

    MICROPYPATH=.frozen:tests .cache/micropython/bin/micropython32 -X heapsize=1m \
        benchmarks/mp_heap.py

(the real 32-bit unix binary, edgecore frozen; tests/ for test_wire's fixtures). Heap =
gc.mem_alloc() after minus before, collected before only: the bytes one call allocates
(total allocation, an upper bound of the live peak, as long as the heap is big enough
that no collection runs during the call). Each figure is taken on a warm call
(modules imported, signing key cached) and, for signing, also on the first call.
"""

import gc
import time

gc.collect()
base = gc.mem_alloc()
from edgecore import sigv4, wire  # noqa: E402

print("heap, import edgecore.sigv4 + edgecore.wire: %d bytes" % (gc.mem_alloc() - base))
from test_wire import DEPLOYMENTS_BODY, FULL_HEARTBEAT  # noqa: E402

URL = "https://edge.sagemaker.us-west-2.amazonaws.com/SendHeartbeat"
KEYS = {"access_key": "AKIDEXAMPLE", "secret_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}


def build_and_sign(ts):
    method, path, headers, body = wire.build_request("SendHeartbeat", FULL_HEARTBEAT)
    return sigv4.sign_request(
        method, URL, headers, body, region="us-west-2", service="sagemaker", timestamp=ts, **KEYS
    )


def measure(label, func, *args):
    gc.collect()
    before = gc.mem_alloc()
    t0 = time.ticks_us()
    func(*args)
    us = time.ticks_diff(time.ticks_us(), t0)
    print("%s: %d bytes, %.2f ms" % (label, gc.mem_alloc() - before, us / 1000))


body_len = len(wire.build_request("SendHeartbeat", FULL_HEARTBEAT)[3])
measure("heap, build + sign one full SendHeartbeat (%d-byte body), first call" % body_len,
        build_and_sign, 1700000000)
measure("heap, build + sign one full SendHeartbeat, warm (signing key cached)",
        build_and_sign, 1700000060)
measure("heap, build a full SendHeartbeat only",
        wire.build_request, "SendHeartbeat", FULL_HEARTBEAT)
measure("heap, parse a GetDeployments response (%d-byte body)" % len(DEPLOYMENTS_BODY),
        wire.parse_response, "GetDeployments", 200, {"x-amzn-requestid": "r"}, DEPLOYMENTS_BODY)
