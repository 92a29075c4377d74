# The board side of tests/test_mp_cycle.py and benchmarks/bench_mp_heap.py: the agent on
# the MicroPython unix binary, cycling on command (kept small: this file is compiled into
# the device's heap, as a board's main.py would be).
#
#   micropython32 -X heapsize=64k agent_loop.py CONFIG [probe]
#
# Prints "FROM <where edgecore_ports was imported from>", then builds
# edgecore_ports.mp_agent.Agent(config) and reads commands from stdin, one a line:
# "cycle" runs Agent.cycle() and prints "REPORT <json>"; "api [OP, ARGS]" calls the
# applications' API in-process (agent.api.OP(*ARGS)) and prints "API [true, result]" or
# "API [false, error]"; "quit" (or EOF) ends. The
# agent's log lines come out as "LOG <json>". With "probe", the live heap (gc.collect(),
# then gc.mem_alloc()) is sampled after every request, download chunk and log line, and
# each cycle ends with "HEAP <json>": that cycle's peak and samples, and the heap with
# the agent built and idle. A MemoryError prints the heap's map first
# (micropython.mem_info(1)).
import gc
import json
import sys

import edgecore_ports
from edgecore_ports import mp_agent

print("FROM", edgecore_ports.__file__)
probe = sys.argv[2:] == ["probe"]
heap = {"peak": 0, "samples": 0}


def sample(*_):
    if probe:
        gc.collect()
        heap["peak"] = max(heap["peak"], gc.mem_alloc())
        heap["samples"] += 1


def log(level, event, **fields):
    print("LOG", json.dumps([level, event, fields]))
    sample()


def sampled(call):
    def wrapper(*args, **kwargs):
        try:
            return call(*args, **kwargs)
        finally:
            sample()

    return wrapper


with open(sys.argv[1]) as f:
    config = json.loads(f.read())
agent = mp_agent.Agent(config, log=log, progress=sample, sleep=lambda s: None)
agent.http.transport = sampled(agent.http.transport)
agent.http.open = sampled(agent.http.open)
config = f = None
gc.collect()
heap["idle"] = gc.mem_alloc()
while True:
    line = sys.stdin.readline().strip()
    if line.startswith("api "):
        op, args = json.loads(line[4:])
        try:
            print("API", json.dumps([True, getattr(agent.api, op)(*args)]))
        except Exception as exc:  # ApiError: the application's answer
            print("API", json.dumps([False, str(exc)]))
        continue
    if line != "cycle":
        break
    heap["peak"] = heap["samples"] = 0
    try:
        report = agent.cycle()
    except MemoryError:
        import micropython

        micropython.mem_info(1)  # where the heap is full or fragmented
        raise
    print("REPORT", json.dumps(report))
    if probe:
        print("HEAP", json.dumps(heap))
