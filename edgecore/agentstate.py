"""The agent's persistent state document: creation, JSON (de)serialisation, validation.

The state is a dict of plain JSON values (see ``new_state``); ``edgecore.agent``
mutates it, the runner saves it atomically after every step. ``load`` checks a saved
document thoroughly, because a state that lies about what is active would make the
agent remove or trust the wrong files: any problem raises ``StateError`` naming the
field and the expected form.

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
"""

from edgecore.errors import EdgecoreError
from edgecore.jsonenc import load_bounded

SCHEMA_VERSION = 1
# A state file is small (tens of KiB); anything much larger is not ours.
MAX_STATE_BYTES = 4 * 1024 * 1024
JSON_DEPTH = 32  # the state nests a few levels; a corrupt file must not recurse the parser


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
    }


def dumps(state):
    """The state as UTF-8 JSON bytes."""
    import json

    return json.dumps(state).encode("utf-8")


def loads(data):
    """Parse and validate saved bytes; returns the state or raises StateError."""
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
    return validate(doc)


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _need(cond, field, detail):
    if not cond:
        raise StateError(field, detail)


def _check_entry(field, e):
    from edgecore.agent import sha1_ok

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


def _check_inflight(inf):
    _need(isinstance(inf, dict), "inflight", "expected an object or null")
    for k in ("name", "policy", "phase", "step"):
        _need(isinstance(inf.get(k), str), "inflight." + k, "expected a string")
    _need(inf["phase"] in ("apply", "rollback"), "inflight.phase", "expected apply or rollback")
    _need(_is_num(inf.get("start")), "inflight.start", "expected epoch seconds")
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
            _check_entry("inflight.before[%s]" % h, before[h])
    for k in ("prev", "staged"):
        if inf.get(k) is not None:
            _check_entry("inflight." + k, inf[k])
    rb = inf.get("rb")
    if inf["phase"] == "rollback":
        _need(
            isinstance(rb, dict)
            and isinstance(rb.get("todo"), list)
            and isinstance(rb.get("targets"), dict)
            and _is_int(rb.get("k")),
            "inflight.rb",
            "expected {todo, targets, k, step} during a rollback",
        )
        for h in rb["todo"]:
            _need(h in rb["targets"], "inflight.rb.targets", "missing handle %r" % (h,))


def validate(doc):
    """Check a decoded state document; returns it (missing optional keys filled in)."""
    from edgecore.agent import handle_ok

    _need(isinstance(doc, dict), "document", "expected a JSON object")
    schema = doc.get("schema")
    _need(_is_int(schema), "schema", "expected an integer")
    _need(
        schema == SCHEMA_VERSION,
        "schema",
        "version %r is not supported by this agent (expected %d)" % (schema, SCHEMA_VERSION),
    )
    fresh = new_state()
    for k in fresh:
        if k not in doc:
            doc[k] = fresh[k]
    for k in ("clock_floor", "clock_offset", "heartbeat_failures", "dropped"):
        _need(_is_int(doc[k]), k, "expected an integer")
    _need(doc["clock_floor"] >= 0, "clock_floor", "expected epoch seconds >= 0")
    _need(
        doc["last_heartbeat"] is None or _is_num(doc["last_heartbeat"]),
        "last_heartbeat",
        "expected epoch seconds or null",
    )
    _need(isinstance(doc["gc"], bool), "gc", "expected true or false")
    active = doc["active"]
    _need(isinstance(active, dict), "active", "expected an object")
    for h in active:
        _need(handle_ok(h), "active", "handle %r is not a valid ModelHandle" % (h,))
        _check_entry("active[%s]" % h, active[h])
    if doc["inflight"] is not None:
        _check_inflight(doc["inflight"])
    for k in ("queue", "pending", "done"):
        _need(isinstance(doc[k], list), k, "expected a list")
    for j in range(len(doc["pending"])):
        p = doc["pending"][j]
        _need(
            isinstance(p, dict) and isinstance(p.get("DeploymentName"), str),
            "pending[%d]" % j,
            "expected a DeploymentResult with a DeploymentName",
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
    _need(isinstance(doc["metrics"], dict), "metrics", "expected an object")
    for h in doc["metrics"]:
        m = doc["metrics"][h]
        _need(
            isinstance(m, dict)
            and _is_int(m.get("n"))
            and _is_int(m.get("ln"))
            and _is_num(m.get("sum"))
            and _is_num(m.get("max"))
            and (m.get("li") is None or _is_num(m["li"]))
            and (m.get("ls") is None or _is_num(m["ls"])),
            "metrics[%s]" % h,
            "expected {n, ln, sum, max, li, ls}",
        )
        m.setdefault("li", None)
        m.setdefault("ls", None)
    return doc
