"""The agent's persistent state document: creation, JSON (de)serialisation, validation.

The state is a dict of plain JSON values (see ``new_state``); ``edgecore.agent``
mutates it, the runner saves it atomically after every step. ``load`` checks a saved
document thoroughly, because a state that lies about what is active would make the
agent remove or trust the wrong files: a problem of form raises ``StateError`` naming
the field and the expected form. A number out of range is repaired instead, never
fatal: a clock offset or floor is reset to 0, a bookkeeping count to 0, a time that is
only reported to null (or, for a deployment's start, to the floor), a metrics record
or a pending result that a heartbeat could not carry is removed (the result counted
in ``dropped``); ``validate(doc, fixed)`` appends the name of each repaired field to
the list ``fixed`` so the runner can log them. ``dumps`` refuses (``StateError``) a
state that ``loads`` would refuse for its size, so what is saved always loads.

Schema (version 1)::

    schema        1
    clock_floor   int   epoch seconds of the last save; never sign below it
    clock_offset  int   seconds added to the device clock (learned from a server Date)
    active        {handle: entry}   entry: name, version, sha1, s3url, deployment,
                                    path, size, activated
    inflight      null | the deployment being applied (edgecore.agent)
    queue         [deployments listed by the cloud, not started yet]
    pending       [DeploymentResult dicts not yet acknowledged by a heartbeat]
    done          [names of deployments already applied]
    metrics       {handle: {n, ln, sum, max, li, ls}}
    gc            bool  a CLEANUP is due
    last_result, last_heartbeat, heartbeat_failures, dropped
    pending_bytes int  JSON bytes of pending (kept by edgecore.agent; recomputed on load)
"""

from edgecore.errors import EdgecoreError
from edgecore.jsonenc import load_bounded

SCHEMA_VERSION = 1
MAX_COUNT = 2**31 - 1  # heartbeat_failures, dropped, metrics counts
JSON_DEPTH = 32  # the state nests a few levels; a corrupt file must not recurse the parser


def _max_state_bytes():
    """4 MiB (a state file is tens of KiB; anything much larger is not ours), or on
    MicroPython 1/8 of the heap: the file must be read, parsed and written again in what
    the heap has left (a 64 KiB board: 8 KB). The agent's own bounds derive from it."""
    import gc

    if not hasattr(gc, "mem_free"):
        return 4 * 1024 * 1024
    return min(4 * 1024 * 1024, (gc.mem_free() + gc.mem_alloc()) // 8)


MAX_STATE_BYTES = _max_state_bytes()


class StateError(EdgecoreError):
    """A saved agent state is unreadable or does not have the expected form."""

    def __init__(self, field, detail):
        self.field = field
        super().__init__("load agent state: invalid %s: %s" % (field, detail))


def new_state(now=0):
    """A fresh state: nothing active, nothing pending; the clock floor at ``now``."""
    return {
        "schema": SCHEMA_VERSION,
        "clock_floor": int(now),
        "clock_offset": 0,
        "active": {},
        "inflight": None,
        "queue": [],
        "pending": [],
        "done": [],
        "metrics": {},
        "gc": False,
        "last_result": None,
        "last_heartbeat": None,
        "heartbeat_failures": 0,
        "dropped": 0,
        "pending_bytes": 0,
    }


try:  # MicroPython's json.dump writes only to a stream: a Python one must be an IOBase
    from io import IOBase as _StreamBase
except ImportError:
    _StreamBase = None

SINK_BUFFER = 256  # bytes: json.dump's pieces are tokens of a few bytes each


class _Sink(_StreamBase or object):
    """Counts and hashes the pieces of a state's JSON and forwards them to ``out(bytes)``
    in blocks of up to SINK_BUFFER bytes (one buffer, reused)."""

    def __init__(self, out):
        import hashlib

        self.out = out
        self.size = 0
        self.hash = hashlib.sha256()
        self.buf = bytearray(SINK_BUFFER) if out is not None else None
        self.used = 0

    def write(self, piece):
        if isinstance(piece, str):
            piece = piece.encode("utf-8")
        n = len(piece)
        self.size += n
        if self.size > MAX_STATE_BYTES:
            raise StateError(
                "document", "%d+ bytes, larger than %d: not saved" % (self.size, MAX_STATE_BYTES)
            )
        self.hash.update(piece)
        if self.out is not None:
            if self.used + n > SINK_BUFFER:
                self.drain()
            if n > SINK_BUFFER:
                self.out(piece if isinstance(piece, bytes) else bytes(piece))
            else:
                self.buf[self.used : self.used + n] = piece
                self.used += n
        return n

    def drain(self):
        if self.used:
            self.out(bytes(self.buf[: self.used]))
            self.used = 0


def dump(state, write=None):
    """Serialize the state as UTF-8 JSON through ``write(bytes)`` (None: only measure);
    returns the SHA-256 digest of those bytes. StateError when they would exceed
    MAX_STATE_BYTES (the caller keeps the previous file: writing it would make the agent
    unable to start). On MicroPython the JSON comes in pieces of at most SINK_BUFFER
    bytes (``json.dump``): a board's fragmented heap may have no free block the size of
    the whole state."""
    import gc
    import json

    sink = _Sink(write)
    if hasattr(gc, "mem_free") and _StreamBase is not None:
        json.dump(state, sink)
    else:
        sink.write(json.dumps(state))
    sink.drain()
    return sink.hash.digest()


def dumps(state):
    """The state as UTF-8 JSON bytes (``dump`` collected); StateError as ``dump``."""
    parts = []
    dump(state, parts.append)
    return b"".join(parts)


def loads(data, fixed=None):
    """Parse and validate saved bytes; returns the state or raises StateError.
    ``fixed``: see ``validate``."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    if len(data) > MAX_STATE_BYTES:
        raise StateError("document", "larger than %d bytes" % MAX_STATE_BYTES)
    try:
        # Bounded in size and nesting: a corrupt file must give StateError, not a
        # RecursionError from the parser.
        doc = load_bounded(bytes(data), MAX_STATE_BYTES, JSON_DEPTH)
    except ValueError as exc:
        raise StateError("document", "expected UTF-8 JSON (%s)" % (exc,)) from None
    return validate(doc, fixed)


def pending_bytes(results):
    """JSON bytes of a list of DeploymentResults (``state["pending_bytes"]`` caches it)."""
    import json

    return sum(len(json.dumps(r)) for r in results)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _need(cond, field, detail):
    if not cond:
        raise StateError(field, detail)


def _count_ok(v):
    return _is_int(v) and 0 <= v <= MAX_COUNT


def _repair(doc, key, ok, value, fixed, field=None):
    """Reset ``doc[key]`` to ``value`` unless ``ok``; note ``field`` (default: the key)
    in ``fixed``."""
    if not ok:
        doc[key] = value
        if fixed is not None:
            fixed.append(field or key)


def _check_entry(field, e, fixed):
    from edgecore.agent import sha1_ok, time_ok

    _need(isinstance(e, dict), field, "expected an object")
    for k in ("name", "version", "sha1"):
        _need(
            isinstance(e.get(k), str) and e.get(k), field + "." + k, "expected a non-empty string"
        )
    _need(sha1_ok(e["sha1"]), field + ".sha1", "expected 40 lower-case hex digits")
    for k in ("path", "s3url", "deployment"):
        v = e.get(k)
        _need(v is None or isinstance(v, str), field + "." + k, "expected a string or null")
    for k in ("size", "activated"):
        v = e.get(k)
        _need(v is None or _is_int(v), field + "." + k, "expected an integer or null")
    # Only reported (status, logs): an impossible value becomes null.
    size, activated = e.get("size"), e.get("activated")
    _repair(e, "size", size is None or size >= 0, None, fixed, field + ".size")
    _repair(
        e, "activated", activated is None or time_ok(activated), None, fixed, field + ".activated"
    )


_DEF_KEYS = ("handle", "desired", "s3url", "sha1", "error")
_RESULT_KEYS = ("status", "reason", "rb", "name", "version")


def _check_defs(field, defs):
    for j in range(len(defs)):
        d = defs[j]
        _need(
            isinstance(d, dict) and all(k in d for k in _DEF_KEYS) and isinstance(d["handle"], str),
            "%s[%d]" % (field, j),
            "expected {%s} with a string handle" % ", ".join(_DEF_KEYS),
        )
        for k in ("s3url", "sha1", "error"):
            _need(
                d[k] is None or isinstance(d[k], str),
                "%s[%d].%s" % (field, j, k),
                "expected a string or null",
            )


def _key(h):
    """A handle as it appears in a field name: itself when valid, else quoted and clipped."""
    from edgecore.agent import handle_ok, show

    return h if handle_ok(h) else show(h)


def _check_inflight(inf, floor, fixed):
    from edgecore.agent import show, time_ok

    _need(isinstance(inf, dict), "inflight", "expected an object or null")
    for k in ("name", "policy", "phase", "step"):
        _need(isinstance(inf.get(k), str), "inflight." + k, "expected a string")
    _need(inf["phase"] in ("apply", "rollback"), "inflight.phase", "expected apply or rollback")
    _need(_is_num(inf.get("start")), "inflight.start", "expected epoch seconds")
    # Reported as DeploymentStartTime: the last save is the best time known.
    _repair(inf, "start", time_ok(inf["start"]), floor, fixed, "inflight.start")
    _need(_is_int(inf.get("i")) and inf["i"] >= 0, "inflight.i", "expected an integer >= 0")
    defs = inf.get("defs")
    results = inf.get("results")
    _need(isinstance(defs, list), "inflight.defs", "expected a list")
    _need(
        isinstance(results, list) and len(results) == len(defs),
        "inflight.results",
        "expected a list as long as inflight.defs",
    )
    _check_defs("inflight.defs", defs)
    for j in range(len(defs)):
        r = results[j]
        _need(
            isinstance(r, dict) and all(k in r for k in _RESULT_KEYS),
            "inflight.results[%d]" % j,
            "expected {%s}" % ", ".join(_RESULT_KEYS),
        )
    before = inf.get("before")
    _need(isinstance(before, dict), "inflight.before", "expected an object")
    for h in before:
        if before[h] is not None:
            _check_entry("inflight.before[%s]" % _key(h), before[h], fixed)
    for k in ("prev", "staged"):
        if inf.get(k) is not None:
            _check_entry("inflight." + k, inf[k], fixed)
    rb = inf.get("rb")
    if inf["phase"] == "rollback":
        _need(
            isinstance(rb, dict)
            and isinstance(rb.get("todo"), list)
            and isinstance(rb.get("targets"), dict)
            and _is_int(rb.get("k"))
            and rb["k"] >= 0,
            "inflight.rb",
            "expected {todo, targets, k >= 0, step} during a rollback",
        )
        for h in rb["todo"]:
            _need(h in rb["targets"], "inflight.rb.targets", "missing handle %s" % (show(h),))


def _result_ok(p):
    """A pending DeploymentResult a heartbeat can carry (its times in range)."""
    from edgecore.agent import time_ok

    times = ("DeploymentStartTime", "DeploymentEndTime")
    return all(p.get(k) is None or time_ok(p[k]) for k in times)


def _check_metrics(doc, fixed):
    from edgecore.agent import metrics_ok

    _need(isinstance(doc["metrics"], dict), "metrics", "expected an object")
    for h in list(doc["metrics"]):
        m = doc["metrics"][h]
        if isinstance(m, dict):
            m.setdefault("li", None)
            m.setdefault("ls", None)
        if not metrics_ok(m):  # never sent: dropped, as heartbeat_params would
            del doc["metrics"][h]
            if fixed is not None:
                fixed.append("metrics[%s]" % _key(h))


def validate(doc, fixed=None):
    """Check a decoded state document; returns it (missing optional keys filled in,
    numbers out of range repaired; the repaired fields are appended to ``fixed``)."""
    from edgecore.agent import MAX_TIME, handle_ok, show, time_ok

    _need(isinstance(doc, dict), "document", "expected a JSON object")
    schema = doc.get("schema")
    _need(_is_int(schema), "schema", "expected an integer")
    _need(
        schema == SCHEMA_VERSION,
        "schema",
        "version %s is not supported by this agent (expected %d)" % (show(schema), SCHEMA_VERSION),
    )
    fresh = new_state()
    for k in fresh:
        if k not in doc:
            doc[k] = fresh[k]
    # Clock: a bad offset or floor is forgotten (the next skew answer teaches it again);
    # one past MAX_TIME would make every signature unformattable.
    floor, offset = doc["clock_floor"], doc["clock_offset"]
    _repair(doc, "clock_floor", _is_int(floor) and time_ok(floor), 0, fixed)
    _repair(doc, "clock_offset", _is_int(offset) and -MAX_TIME <= offset <= MAX_TIME, 0, fixed)
    for k in ("heartbeat_failures", "dropped"):
        _repair(doc, k, _count_ok(doc[k]), 0, fixed)
    last = doc["last_heartbeat"]
    _repair(doc, "last_heartbeat", last is None or time_ok(last), None, fixed)
    _need(isinstance(doc["gc"], bool), "gc", "expected true or false")
    active = doc["active"]
    _need(isinstance(active, dict), "active", "expected an object")
    for h in active:
        _need(handle_ok(h), "active", "handle %s is not a valid ModelHandle" % (show(h),))
        _check_entry("active[%s]" % h, active[h], fixed)
    if doc["inflight"] is not None:
        _check_inflight(doc["inflight"], doc["clock_floor"], fixed)
    for k in ("queue", "pending", "done"):
        _need(isinstance(doc[k], list), k, "expected a list")
    for j in range(len(doc["pending"])):
        p = doc["pending"][j]
        _need(
            isinstance(p, dict) and isinstance(p.get("DeploymentName"), str),
            "pending[%d]" % j,
            "expected a DeploymentResult with a DeploymentName",
        )
    keep = [p for p in doc["pending"] if _result_ok(p)]
    if len(keep) < len(doc["pending"]):  # SendHeartbeat would refuse them for ever
        doc["dropped"] = min(MAX_COUNT, doc["dropped"] + len(doc["pending"]) - len(keep))
        doc["pending"] = keep
        if fixed is not None:
            fixed.append("pending")
    doc["pending_bytes"] = pending_bytes(keep)  # a cache: recomputed, never trusted
    res = doc["last_result"]
    # Shown by `edgecore status` only.
    _repair(
        doc,
        "last_result",
        res is None
        or (
            isinstance(res, dict)
            and isinstance(res.get("DeploymentName"), str)
            and isinstance(res.get("DeploymentModels"), list)
            and all(isinstance(m, dict) for m in res["DeploymentModels"])
            and _result_ok(res)
        ),
        None,
        fixed,
    )
    for j in range(len(doc["queue"])):
        q = doc["queue"][j]
        _need(
            isinstance(q, dict)
            and isinstance(q.get("name"), str)
            and isinstance(q.get("policy"), str)
            and isinstance(q.get("defs"), list),
            "queue[%d]" % j,
            "expected {name, policy, defs}",
        )
        _check_defs("queue[%d].defs" % j, q["defs"])
    for name in doc["done"]:
        _need(isinstance(name, str), "done", "expected a list of strings")
    _check_metrics(doc, fixed)
    return doc
