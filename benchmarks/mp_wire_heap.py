"""MicroPython heap and time for wire.build_request / wire.parse_response.

    node tests/micropython/run.mjs tests/test_wire.py benchmarks/mp_wire_heap.py

(run.mjs runs test_* functions; tests/test_wire.py is listed first so its FULL_HEARTBEAT
and DEPLOYMENTS_BODY can be imported.) Heap = gc.mem_alloc() after minus before, with no
collection in between: total bytes allocated by one call.
"""

import gc
import time

from test_wire import DEPLOYMENTS_BODY, FULL_HEARTBEAT

from edgecore import wire


def test_wire_heap_and_time():
    wire.build_request("SendHeartbeat", FULL_HEARTBEAT)
    gc.collect()
    before = gc.mem_alloc()
    body = wire.build_request("SendHeartbeat", FULL_HEARTBEAT)[3]
    used = gc.mem_alloc() - before
    print("heap, build full SendHeartbeat (%d-byte body): %d bytes" % (len(body), used))
    headers = {"x-amzn-requestid": "r"}
    gc.collect()
    before = gc.mem_alloc()
    wire.parse_response("GetDeployments", 200, headers, DEPLOYMENTS_BODY)
    used = gc.mem_alloc() - before
    print("heap, parse GetDeployments (%d-byte body): %d bytes" % (len(DEPLOYMENTS_BODY), used))
    n = 200
    start = time.ticks_ms()
    for _ in range(n):
        wire.build_request("SendHeartbeat", FULL_HEARTBEAT)
    print("time, build full SendHeartbeat: %.3f ms" % (time.ticks_diff(time.ticks_ms(), start) / n))
    start = time.ticks_ms()
    for _ in range(n):
        wire.parse_response("GetDeployments", 200, headers, DEPLOYMENTS_BODY)
    print("time, parse GetDeployments: %.3f ms" % (time.ticks_diff(time.ticks_ms(), start) / n))
