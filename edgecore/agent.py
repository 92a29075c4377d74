"""Deployment reconciliation and heartbeat assembly: a pure state machine over plain data.

No I/O happens here. The runner (``edgecore_ports.runner``) drives it::

    agent.plan(state, get_deployments_result, now)        # queue new deployments
    while True:
        action = agent.next_action(state, now)            # Action or None
        if action is None: break
        outcome = execute(action)                         # the runner's I/O
        agent.apply(state, action, outcome, now)          # advance; then persist state
    params, sent = agent.heartbeat_params(state, version, device, fleet, metrics, now)
    agent.heartbeat_done(state, sent, ok, now)

``state`` is the persistent document of ``edgecore.agentstate`` (a dict of JSON-able
values), mutated in place. Every action is idempotent, and the state names the *next*
action, so after a crash the runner re-executes that action and carries on.

Per deployment, in order, per definition:
- DEPLOY: already active with the same SHA1 -> SUCCESS, nothing done. Otherwise
  DOWNLOAD (staged + verified by the runner; a failure never touches the active model),
  ACTIVATE (atomic switch), RELOAD (the application's hook).
- UNDEPLOY: not active -> SUCCESS. Otherwise DEACTIVATE, RELOAD (model None).
- A failure under ROLLBACK_ON_FAILURE stops the deployment and restores every model of
  it to what was active when it began; under DO_NOTHING only the failing model is put
  back to what it was and the other definitions go on.
- Old versions stay on disk until the deployment ends (so rollback can switch back);
  then one CLEANUP action removes every version not active.
Each deployment gets exactly one ``DeploymentResult``, queued in ``state["pending"]``
until a heartbeat carrying it succeeds.

ModelName / ModelVersion: GetDeployments does not carry them. The name is the
ModelHandle (padded with "-model" up to ModelName's 4-character minimum), the version
the first 12 hex digits of the SHA1, unless the download reports ``name`` / ``version``
(the runner reads them from the S3 object's ``x-amz-meta-model-name`` /
``x-amz-meta-model-version`` metadata) and they match the service model's patterns.
"""

from edgecore.agentstate import MAX_STATE_BYTES as _STATE_BYTES
from edgecore.wire import utf8_buffer

DEPLOY = "DEPLOY"
UNDEPLOY = "UNDEPLOY"
SUCCESS = "SUCCESS"
FAIL = "FAIL"
ROLLBACK_ON_FAILURE = "ROLLBACK_ON_FAILURE"
DO_NOTHING = "DO_NOTHING"

DOWNLOAD = "download"
ACTIVATE = "activate"
DEACTIVATE = "deactivate"
RELOAD = "reload"
CLEANUP = "cleanup"

# Bounds on what the cloud can make the state hold (issue 11: a hostile listing must
# neither lose results nor grow the state past what agentstate.loads accepts).
# Results wait for a heartbeat: no new deployment starts while MAX_PENDING_RESULTS are
# waiting or they take MAX_PENDING_BYTES of JSON (never dropped while heartbeats work;
# state["dropped"] counts what the safety net in _finish would still drop).
# The byte budgets are shares of agentstate.MAX_STATE_BYTES (4 MiB on CPython, 1/8 of
# the heap on MicroPython), so a state that holds them all still saves and loads.
MAX_PENDING_RESULTS = 100
MAX_PENDING_BYTES = _STATE_BYTES // 4
# Names of done deployments the cloud no longer lists, kept in case it lists them again;
# every done name the latest listing still carries is kept, however many.
MAX_DONE = min(256, _STATE_BYTES // 256)
# Deployments queued from one listing, in JSON bytes (the first one always fits); the
# rest are queued by a later poll, as the queue drains.
MAX_QUEUE_BYTES = min(64 * 1024, _STATE_BYTES // 16)
# Definitions applied per deployment; a longer one fails whole, with this reason.
MAX_DEFS = 64
MAX_REASON = 256  # characters of one StatusReason / message (ASCII-escaped)
SHOW_CHARS = 64  # characters of a cloud value quoted inside a message
VERSION_DIGITS = 12

# Time bounds (epoch seconds). A server Date outside them is not learnt: one hostile
# "Date: 31 Dec 9999" would push every later signature past what AWS's date format
# holds, before anything could be sent to learn better. Signing time stays within.
MIN_TIME = 946684800  # 2000-01-01T00:00:00Z
MAX_TIME = 7258118400  # 2200-01-01T00:00:00Z
# An inference that took longer than a day is a bug, not a measurement.
MAX_LATENCY_MS = 86400000

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_HEX = "0123456789abcdef"


class Action:
    """One thing for the runner to do. Value object: compares by its fields.

    ``kind``: DOWNLOAD (model: the wanted entry, with ``sha1``, ``s3url``), ACTIVATE
    (model: entry to make active under model_dir/<handle>), DEACTIVATE, RELOAD (model:
    the now-active entry, or None when the handle was unloaded), CLEANUP (keep: list of
    [handle, sha1] whose versions must stay on disk).
    """

    def __init__(self, kind, handle=None, model=None, keep=None, deployment=None):
        self.kind = kind
        self.handle = handle
        self.model = model
        self.keep = keep
        self.deployment = deployment

    def __eq__(self, other):
        return (
            isinstance(other, Action)
            and self.kind == other.kind
            and self.handle == other.handle
            and self.model == other.model
            and self.keep == other.keep
            and self.deployment == other.deployment
        )

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "Action(%s, %r, deployment=%r)" % (self.kind, self.handle, self.deployment)


class Outcome:
    """What the runner reports for an action: ``ok``, a ``reason`` when not, ``info``.

    DOWNLOAD info: ``size`` and optionally ``name`` / ``version``; ACTIVATE info: ``path``.
    """

    def __init__(self, ok, reason=None, info=None):
        self.ok = ok
        self.reason = reason
        self.info = info or {}

    def __repr__(self):
        return "Outcome(%r, %r)" % (self.ok, self.reason)


def succeeded(info=None):
    return Outcome(True, None, info)


def failed(reason):
    return Outcome(False, str(reason) or "unknown error")


# ---- validation of names coming from the cloud ------------------------------------


def entity_ok(s, lo=1, hi=63):
    """True for ``^[a-zA-Z0-9](-*[a-zA-Z0-9])*$`` with lo <= len <= hi (EntityName)."""
    if not isinstance(s, str) or not lo <= len(s) <= hi:
        return False
    for c in s:
        if c != "-" and c not in _ALNUM:
            return False
    return s[0] != "-" and s[-1] != "-"


def version_ok(s):
    """True for the Version shape: 1..64 of letters, digits, space, '_' and '.'."""
    if not isinstance(s, str) or not 1 <= len(s) <= 64:
        return False
    return all(c in _ALNUM or c in " _." for c in s)


def handle_ok(handle):
    """A handle becomes a directory name: EntityName rules, and never a path."""
    return entity_ok(handle) and "/" not in handle and ".." not in handle


def sha1_ok(s):
    if not isinstance(s, str) or len(s) != 40:
        return False
    return all(c in _HEX for c in s)


def model_name_for(handle):
    """ModelName derived from a handle (ModelName needs at least 4 characters)."""
    return handle if len(handle) >= 4 else handle + "-model"


def ascii_escape(text):
    """``text`` with every character outside printable ASCII written as a Python escape
    (``\\xNN``, ``\\uNNNN``, ``\\UNNNNNNNN``; a backslash doubled): control, C1 and bidi
    characters cannot reach a log or terminal, and each stored character is one byte."""
    if "\\" not in text:
        for b in utf8_buffer(text):
            if b < 32 or b > 126:
                break
        else:  # the usual case: nothing to escape (no list of every character)
            return text
    out = []
    for c in text:
        o = ord(c)
        if c == "\\":
            out.append("\\\\")
        elif 32 <= o < 127:
            out.append(c)
        elif o < 0x100:
            out.append("\\x%02x" % o)
        elif o < 0x10000:
            out.append("\\u%04x" % o)
        else:
            out.append("\\U%08x" % o)
    return "".join(out)


def _clip(reason, limit=MAX_REASON):
    """A message for the state and the cloud: ASCII-escaped, at most ``limit`` chars."""
    reason = ascii_escape(str(reason)[: limit + 1])
    return reason if len(reason) <= limit else reason[: limit - 3] + "..."


def show(value):
    """A cloud value quoted inside a message: clipped, ASCII-only, never its whole self."""
    if isinstance(value, str):
        clipped = value[:SHOW_CHARS]
        return "'%s'%s" % (ascii_escape(clipped), "..." if len(value) > SHOW_CHARS else "")
    if value is None or isinstance(value, bool):
        return str(value)
    if isinstance(value, int) and not -(10**18) < value < 10**18:
        return "a number of %d+ digits" % 18  # repr of a huge int is costly, or refused
    if isinstance(value, (int, float)):
        return _clip(repr(value), 24)
    return "a JSON %s" % ("array" if isinstance(value, list) else "object")


# ---- GetDeployments -> queue -----------------------------------------------------


def normalize_deployment(dep):
    """An EdgeDeployment dict -> the agent's plain form, or None without a valid name.

    Problems in a definition do not drop the deployment: they make that model FAIL
    (``error``), reported like any other failure. Only what the agent uses is kept, each
    string valid or clipped: a listing cannot make the state grow past its bounds.
    """
    from edgecore import s3url

    if not isinstance(dep, dict) or not entity_ok(dep.get("DeploymentName")):
        return None
    policy = dep.get("FailureHandlingPolicy") or ROLLBACK_ON_FAILURE
    defs = []
    raw = dep.get("Definitions") or []
    if not isinstance(raw, list):
        raw = []
    too_many = None
    if len(raw) > MAX_DEFS:
        too_many = "deployment has %d definitions; this agent applies at most %d" % (
            len(raw),
            MAX_DEFS,
        )
        raw = raw[:MAX_DEFS]
    for item in raw:
        if not isinstance(item, dict):
            item = {}
        handle = item.get("ModelHandle")
        desired = item.get("State")
        checksum = item.get("Checksum")
        if not isinstance(checksum, dict):
            checksum = {}
        csum = checksum.get("Sum")
        url = item.get("S3Url")
        d = {
            "handle": handle if handle_ok(handle) else "",
            "desired": desired if desired in (DEPLOY, UNDEPLOY) else None,
            "s3url": url if isinstance(url, str) and len(url) <= s3url.MAX_URL else None,
            "sha1": csum.lower() if isinstance(csum, str) and sha1_ok(csum.lower()) else None,
            "error": None,
        }
        if too_many:
            d["error"] = too_many
        elif not handle_ok(handle):
            d["error"] = "invalid ModelHandle %s: expected 1-63 letters, digits, hyphens" % (
                show(handle),
            )
        elif d["desired"] is None:
            d["error"] = "invalid State %s: expected DEPLOY or UNDEPLOY" % (show(desired),)
        elif desired == DEPLOY:
            ctype = checksum.get("Type")
            if ctype != "SHA1":
                d["error"] = "unsupported Checksum.Type %s: expected SHA1" % (show(ctype),)
            elif d["sha1"] is None:
                d["error"] = "invalid Checksum.Sum: expected 40 hex digits"
            else:
                try:
                    s3url.parse(url)
                except ValueError as exc:
                    d["error"] = _clip(exc)
        defs.append(d)
    if policy not in (ROLLBACK_ON_FAILURE, DO_NOTHING):
        policy = ROLLBACK_ON_FAILURE
    return {"name": dep["DeploymentName"], "policy": policy, "defs": defs}


def plan(state, result, now):
    """Queue the deployments of a GetDeployments result that are not done yet.

    The queue is rebuilt from the listing (a deployment the cloud no longer lists is
    not started); the in-flight one and the ones already done are skipped. The queue
    holds at most MAX_QUEUE_BYTES of deployments (always at least one): the others are
    queued by a later call, as it drains. ``done`` keeps every name still listed and the
    latest MAX_DONE others. Returns the number of listed deployments ignored for lack of
    a valid DeploymentName.
    """
    import json

    deps = result.get("Deployments") if isinstance(result, dict) else None
    if not isinstance(deps, list):
        deps = []
    listed = set()
    ignored = 0
    for dep in deps:
        name = dep.get("DeploymentName") if isinstance(dep, dict) else None
        if entity_ok(name):
            listed.add(name)
        else:
            ignored += 1
    done = state["done"]
    unlisted = [n for n in done if n not in listed]
    keep = set(unlisted[-MAX_DONE:])
    state["done"] = done = [n for n in done if n in listed or n in keep]
    skip = set(done)
    inflight = state.get("inflight")
    if inflight:
        skip.add(inflight["name"])
    queue = []
    size = 0
    for dep in deps:
        if not isinstance(dep, dict) or dep.get("DeploymentName") not in listed:
            continue
        if dep["DeploymentName"] in skip:
            continue
        n = normalize_deployment(dep)
        skip.add(n["name"])
        size += len(json.dumps(n))
        if queue and size > MAX_QUEUE_BYTES:
            break
        queue.append(n)
    state["queue"] = queue
    return ignored


# ---- the state machine -----------------------------------------------------------


def _same(a, b):
    if a is None or b is None:
        return a is None and b is None
    return a["sha1"] == b["sha1"]


def _copy(entry):
    return None if entry is None else dict(entry)


def _begin(state, dep, now):
    before = {}
    for d in dep["defs"]:
        if handle_ok(d["handle"]) and d["handle"] not in before:
            before[d["handle"]] = _copy(state["active"].get(d["handle"]))
    state["inflight"] = {
        "name": dep["name"],
        "policy": dep["policy"],
        "start": now,
        "defs": dep["defs"],
        "before": before,
        "i": 0,
        "step": "start",
        "phase": "apply",
        "prev": None,
        "staged": None,
        "rb": None,
        "results": [
            {"status": None, "reason": None, "rb": None, "name": None, "version": None}
            for _ in dep["defs"]
        ],
    }


def keep_list(state):
    """[handle, sha1] of every active model: versions CLEANUP must not remove."""
    out = []
    for h in sorted(state["active"]):
        out.append([h, state["active"][h]["sha1"]])
    return out


def results_full(state):
    """True when no new deployment may start until a heartbeat takes a result: the
    pending results are at MAX_PENDING_RESULTS or MAX_PENDING_BYTES (their size is
    kept in ``state["pending_bytes"]`` as they come and go, not measured per call)."""
    pending = state["pending"]
    if len(pending) >= MAX_PENDING_RESULTS:
        return True
    return bool(pending) and state.get("pending_bytes", 0) >= MAX_PENDING_BYTES


def _pend(state, result, add):
    """Keep ``state["pending_bytes"]`` as a result joins (add) or leaves ``pending``."""
    from edgecore.agentstate import pending_bytes

    n = pending_bytes([result])
    state["pending_bytes"] = max(0, state.get("pending_bytes", 0) + (n if add else -n))


def next_action(state, now):
    """The next Action to execute, or None when there is nothing to do.

    May start the next queued deployment or finish one that needs no I/O (state
    changes the runner must persist, like those of apply()). A queued deployment waits
    (None) while ``results_full``: one more result would be dropped.
    """
    while True:
        if state.get("gc"):
            return Action(CLEANUP, keep=keep_list(state))
        inf = state.get("inflight")
        if inf is None:
            if not state["queue"] or results_full(state):
                return None  # nothing to do, or wait for a heartbeat to take results
            _begin(state, state["queue"].pop(0), now)
            continue
        act = _step(state, inf, now)
        if act is not None:
            return act


def _want(d, inf):
    return {"sha1": d["sha1"], "s3url": d["s3url"], "deployment": inf["name"]}


def _step(state, inf, now):
    if inf["phase"] == "rollback":
        return _rollback_step(state, inf, now)
    i = inf["i"]
    defs = inf["defs"]
    if i >= len(defs):
        _finish(state, inf, now)
        return None
    d = defs[i]
    h = d["handle"]
    r = inf["results"][i]
    step = inf["step"]
    active = state["active"]
    if step == "start":
        inf["prev"] = _copy(active.get(h)) if handle_ok(h) else None
        if handle_ok(h):
            r["name"] = model_name_for(h)
        if d["sha1"] and sha1_ok(d["sha1"]):
            r["version"] = d["sha1"][:VERSION_DIGITS]
        if d["error"]:
            _fail(state, inf, d["error"])
            return None
        cur = active.get(h)
        if d["desired"] == DEPLOY:
            if cur is not None and cur["sha1"] == d["sha1"]:
                r["name"], r["version"] = cur["name"], cur["version"]
                _model_done(inf, "already active")
                return None
            inf["step"] = DOWNLOAD
        else:
            if cur is None:
                _model_done(inf, "not active")
                return None
            r["name"], r["version"] = cur["name"], cur["version"]
            inf["step"] = DEACTIVATE
        step = inf["step"]
    if step == DOWNLOAD:
        return Action(DOWNLOAD, h, model=_want(d, inf), deployment=inf["name"])
    if step == ACTIVATE:
        return Action(ACTIVATE, h, model=dict(inf["staged"]), deployment=inf["name"])
    if step == DEACTIVATE:
        return Action(DEACTIVATE, h, deployment=inf["name"])
    if step == RELOAD:
        return Action(RELOAD, h, model=_copy(active.get(h)), deployment=inf["name"])
    raise ValueError(
        "agent: inflight.step %r unknown: expected start/%s/%s/%s/%s"
        % (step, DOWNLOAD, ACTIVATE, DEACTIVATE, RELOAD)
    )


def _model_done(inf, reason):
    r = inf["results"][inf["i"]]
    r["status"] = SUCCESS
    r["reason"] = reason
    _next_def(inf)


def _next_def(inf):
    inf["i"] += 1
    inf["step"] = "start"
    inf["staged"] = None
    inf["prev"] = None


def _fail(state, inf, reason):
    i = inf["i"]
    defs = inf["defs"]
    r = inf["results"][i]
    r["status"] = FAIL
    r["reason"] = _clip(reason)
    h = defs[i]["handle"]
    active = state["active"]
    if inf["policy"] == ROLLBACK_ON_FAILURE:
        why = "deployment stopped: model %s failed" % (h or "?",)
        for j in range(i + 1, len(defs)):
            inf["results"][j]["status"] = FAIL
            inf["results"][j]["reason"] = "not attempted: " + why
        todo = []
        for d in defs:
            dh = d["handle"]
            if (
                dh in inf["before"]
                and dh not in todo
                and not _same(active.get(dh), inf["before"][dh])
            ):
                todo.append(dh)
        for j in range(i):
            rj = inf["results"][j]
            if rj["status"] == SUCCESS and defs[j]["handle"] in todo:
                rj["status"] = FAIL
                rj["reason"] = "rolled back: model %s failed" % (h,)
        inf["i"] = len(defs)
        inf["step"] = "start"
        targets = {}
        for dh in todo:
            targets[dh] = _copy(inf["before"][dh])
        inf["rb"] = {"todo": todo, "targets": targets, "k": 0, "step": "switch"}
        inf["rolled"] = len(todo)
        inf["phase"] = "rollback"
        return
    if handle_ok(h) and not _same(active.get(h), inf["prev"]):
        inf["rb"] = {"todo": [h], "targets": {h: _copy(inf["prev"])}, "k": 0, "step": "switch"}
        inf["phase"] = "rollback"
        return
    _next_def(inf)


def _rollback_step(state, inf, now):
    rb = inf["rb"]
    if rb["k"] >= len(rb["todo"]):
        inf["rb"] = None
        inf["phase"] = "apply"
        if inf["policy"] == DO_NOTHING:
            _next_def(inf)
        return None
    h = rb["todo"][rb["k"]]
    target = rb["targets"][h]
    if rb["step"] == "switch":
        if target is None:
            return Action(DEACTIVATE, h, deployment=inf["name"])
        return Action(ACTIVATE, h, model=dict(target), deployment=inf["name"])
    return Action(RELOAD, h, model=_copy(state["active"].get(h)), deployment=inf["name"])


def _rollback_failed(inf, h, reason):
    for j in range(len(inf["defs"])):
        if inf["defs"][j]["handle"] == h and inf["results"][j]["rb"] is None:
            inf["results"][j]["rb"] = _clip(reason)


def apply(state, action, outcome, now):
    """Advance the state with the outcome of ``action`` (the one next_action returned)."""
    if action.kind == CLEANUP:
        state["gc"] = False
        return
    inf = state.get("inflight")
    if inf is None:
        raise ValueError("agent.apply: no deployment in flight for action %r" % (action,))
    active = state["active"]
    if inf["phase"] == "rollback":
        rb = inf["rb"]
        h = rb["todo"][rb["k"]]
        if action.handle != h:
            raise ValueError(
                "agent.apply: rollback expected handle %r, got %r" % (h, action.handle)
            )
        target = rb["targets"][h]
        if rb["step"] == "switch":
            if outcome.ok:
                if target is None:
                    active.pop(h, None)
                else:
                    entry = dict(target)
                    if outcome.info.get("path"):
                        entry["path"] = outcome.info["path"]
                    active[h] = entry
                rb["step"] = "reload"
            else:
                _rollback_failed(
                    inf, h, "could not restore the previous state of %s: %s" % (h, outcome.reason)
                )
                rb["k"] += 1
                rb["step"] = "switch"
        else:
            if not outcome.ok:
                _rollback_failed(inf, h, "reload after rollback failed: %s" % (outcome.reason,))
            rb["k"] += 1
            rb["step"] = "switch"
        return
    i = inf["i"]
    d = inf["defs"][i]
    h = d["handle"]
    step = inf["step"]
    if action.kind != step or action.handle != h:
        raise ValueError("agent.apply: expected %s of %r, got %r" % (step, h, action))
    r = inf["results"][i]
    if not outcome.ok:
        prefix = {
            DOWNLOAD: "download failed",
            ACTIVATE: "activation failed",
            DEACTIVATE: "deactivation failed",
            RELOAD: "reload failed",
        }[step]
        _fail(state, inf, "%s: %s" % (prefix, outcome.reason))
        return
    info = outcome.info
    if step == DOWNLOAD:
        name = info.get("name")
        version = info.get("version")
        entry = {
            "name": name if entity_ok(name, 4, 255) else r["name"],
            "version": version if version_ok(version) else r["version"],
            "sha1": d["sha1"],
            "s3url": d["s3url"],
            "deployment": inf["name"],
            "size": info.get("size"),
            "path": None,
            "activated": None,
        }
        r["name"], r["version"] = entry["name"], entry["version"]
        inf["staged"] = entry
        inf["step"] = ACTIVATE
    elif step == ACTIVATE:
        entry = dict(inf["staged"])
        entry["path"] = info.get("path")
        entry["activated"] = now
        active[h] = entry
        inf["step"] = RELOAD
    elif step == DEACTIVATE:
        active.pop(h, None)
        inf["step"] = RELOAD
    else:
        _model_done(inf, "deployed" if d["desired"] == DEPLOY else "undeployed")


def _finish(state, inf, now):
    active = state["active"]
    models = []
    failures = []
    for j in range(len(inf["defs"])):
        d = inf["defs"][j]
        r = inf["results"][j]
        m = {}
        if entity_ok(d["handle"]):
            m["ModelHandle"] = d["handle"]
        if r["name"]:
            m["ModelName"] = r["name"]
        if r["version"]:
            m["ModelVersion"] = r["version"]
        if d["desired"] in (DEPLOY, UNDEPLOY):
            m["DesiredState"] = d["desired"]
        m["State"] = DEPLOY if d["handle"] in active else UNDEPLOY
        m["Status"] = r["status"] or FAIL
        m["StatusReason"] = r["reason"] or "not attempted"
        if r["rb"]:
            m["RollbackFailureReason"] = r["rb"]
        if m["Status"] != SUCCESS:
            failures.append("%s: %s" % (d["handle"] or "?", m["StatusReason"]))
        models.append(m)
    if not failures:
        status = SUCCESS
        message = "%d of %d models reached their desired state" % (len(models), len(models))
    else:
        status = FAIL
        tail = ""
        if inf["policy"] == ROLLBACK_ON_FAILURE:
            rolled = inf.get("rolled", 0)
            if rolled:
                tail = "; rolled back: %d model(s) restored to their previous state" % (rolled,)
            else:
                tail = "; rolled back: nothing had changed, previous state kept"
        head = "%d of %d models failed; first: " % (len(failures), len(models))
        # The first failure is clipped, never what happened to the deployment as a whole.
        message = head + _clip(failures[0], MAX_REASON - len(head) - len(tail)) + tail
    result = {
        "DeploymentName": inf["name"],
        "DeploymentStatus": status,
        "DeploymentStatusMessage": _clip(message),
        "DeploymentStartTime": inf["start"],
        "DeploymentEndTime": now,
        "DeploymentModels": models,
    }
    pending = state["pending"]
    pending.append(result)
    _pend(state, result, True)
    # A safety net: next_action starts nothing while results_full(), so this drops only
    # after a change of the bounds.
    while len(pending) > MAX_PENDING_RESULTS:
        _pend(state, pending.pop(0), False)
        state["dropped"] = state.get("dropped", 0) + 1
    state["done"].append(inf["name"])  # plan() bounds it against the listing
    state["last_result"] = result
    state["inflight"] = None
    state["gc"] = True


# ---- inference metrics and heartbeats --------------------------------------------


def finite(x):
    """True for an int or float that is neither NaN nor infinite (bool is not a number)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and x - x == 0


def time_ok(t):
    """True for epoch seconds the agent can sign and report: 0 <= t <= MAX_TIME."""
    return finite(t) and 0 <= t <= MAX_TIME


def check_inference(latency_ms=None, sample_time=None, now=None):
    """Raise ValueError (naming the field and the constraint) unless each value given is
    acceptable for a heartbeat: ``latency_ms`` a finite number of milliseconds in
    [0, MAX_LATENCY_MS], ``sample_time`` and ``now`` epoch seconds in [0, MAX_TIME].
    None means "not given". Used when an inference is recorded and when a spool line
    is read back."""
    if latency_ms is not None and not (finite(latency_ms) and 0 <= latency_ms <= MAX_LATENCY_MS):
        raise ValueError(
            "record_inference: latency_ms must be a finite number of milliseconds in 0..%d "
            "or None, got %s" % (MAX_LATENCY_MS, show(latency_ms))
        )
    for field, value in (("sample_time", sample_time), ("now", now)):
        if value is not None and not time_ok(value):
            raise ValueError(
                "record_inference: %s must be epoch seconds in 0..%d (year 2200) or None, "
                "got %s" % (field, MAX_TIME, show(value))
            )


def record_inference(state, model_handle, latency_ms=None, sample_time=None, now=None):
    """Record one inference of an active model (the application's hook).

    Feeds the heartbeat's LatestInference (``now``), LatestSampleTime (``sample_time``)
    and ModelMetrics (count, mean and max latency since the last acknowledged
    heartbeat). Returns False (and records nothing) when the handle is not active.
    Raises ValueError (``check_inference``) for a value a heartbeat could not carry.
    """
    if now is None:
        raise ValueError("record_inference: now must be epoch seconds, got None")
    check_inference(latency_ms, sample_time, now)
    if model_handle not in state["active"]:
        return False
    metrics = state["metrics"]
    m = metrics.get(model_handle)
    if m is None:
        m = {"n": 0, "ln": 0, "sum": 0.0, "max": 0.0, "li": None, "ls": None}
        metrics[model_handle] = m
    m["n"] += 1
    if latency_ms is not None:
        m["ln"] += 1
        m["sum"] += latency_ms
        if latency_ms > m["max"]:
            m["max"] = latency_ms
    m["li"] = int(now)
    if sample_time is not None:
        m["ls"] = int(sample_time)
    return True


def metrics_ok(m):
    """True for a metrics record (``state["metrics"][handle]``) a heartbeat can carry:
    counts are integers with 0 <= ln <= n, sum and max finite and in range, times valid.
    """
    if not isinstance(m, dict):
        return False
    n, ln, total, top = m.get("n"), m.get("ln"), m.get("sum"), m.get("max")
    if isinstance(n, bool) or isinstance(ln, bool) or not isinstance(n, int):
        return False
    if not (isinstance(ln, int) and 0 <= ln <= n and finite(total) and finite(top)):
        return False
    if not (0 <= top <= MAX_LATENCY_MS and 0 <= total <= ln * MAX_LATENCY_MS):
        return False
    return all(m.get(k) is None or time_ok(m[k]) for k in ("li", "ls"))


def _agent_metric_ok(metric):
    return (
        isinstance(metric, dict)
        and finite(metric.get("Value"))
        and (metric.get("Timestamp") is None or time_ok(metric["Timestamp"]))
    )


def _model_metrics(m, now):
    out = [
        {
            "Dimension": "inference",
            "MetricName": "inference-count",
            "Value": float(m["n"]),
            "Timestamp": now,
        }
    ]
    if m["ln"]:
        out.append(
            {
                "Dimension": "inference",
                "MetricName": "latency-mean-ms",
                "Value": m["sum"] / m["ln"],
                "Timestamp": now,
            }
        )
        out.append(
            {
                "Dimension": "inference",
                "MetricName": "latency-max-ms",
                "Value": float(m["max"]),
                "Timestamp": now,
            }
        )
    return out


def heartbeat_params(state, agent_version, device_name, fleet_name, agent_metrics, now):
    """SendHeartbeat parameters and a ``sent`` token for heartbeat_done().

    Carries the oldest pending DeploymentResult (SendHeartbeat takes one). Metrics a
    heartbeat could not carry (NaN, infinite, out of range) are left out, never the
    heartbeat: a bad record of ``state["metrics"]`` is deleted, and ``sent["dropped"]``
    names what was left out (``metrics[<handle>]``, ``AgentMetrics[<i>]``) for the log.
    """
    params = {
        "AgentVersion": agent_version,
        "DeviceName": device_name,
        "DeviceFleetName": fleet_name,
    }
    sent = {"result": None, "metrics": {}, "dropped": []}
    good = []
    for i in range(len(agent_metrics or [])):
        if _agent_metric_ok(agent_metrics[i]):
            good.append(agent_metrics[i])
        else:
            sent["dropped"].append("AgentMetrics[%d]" % i)
    if good:
        params["AgentMetrics"] = good
    models = []
    for h in sorted(state["active"]):
        a = state["active"][h]
        model = {"ModelName": a["name"], "ModelVersion": a["version"]}
        m = state["metrics"].get(h)
        if m is not None and not metrics_ok(m):
            del state["metrics"][h]
            sent["dropped"].append("metrics[%s]" % h)
            m = None
        if m is not None:
            if m["li"] is not None:
                model["LatestInference"] = m["li"]
            if m["ls"] is not None:
                model["LatestSampleTime"] = m["ls"]
            if m["n"]:
                model["ModelMetrics"] = _model_metrics(m, now)
                sent["metrics"][h] = [m["n"], m["ln"], m["sum"]]
        models.append(model)
    if models:
        params["Models"] = models
    if state["pending"]:
        params["DeploymentResult"] = state["pending"][0]
        sent["result"] = state["pending"][0]["DeploymentName"]
    return params, sent


def heartbeat_done(state, sent, ok, now):
    """After SendHeartbeat: on success drop the result it carried, reset sent metrics."""
    if not ok:
        state["heartbeat_failures"] = state.get("heartbeat_failures", 0) + 1
        return
    state["last_heartbeat"] = now
    state["heartbeat_failures"] = 0
    if sent["result"] is not None:
        pending = state["pending"]
        for j in range(len(pending)):
            if pending[j]["DeploymentName"] == sent["result"]:
                _pend(state, pending.pop(j), False)
                break
    for h in sent["metrics"]:
        m = state["metrics"].get(h)
        if m is None:
            continue
        n, ln, total = sent["metrics"][h]
        m["n"] = max(0, m["n"] - n)
        m["ln"] = max(0, m["ln"] - ln)
        m["sum"] = max(0.0, m["sum"] - total) if m["ln"] else 0.0
        if m["ln"] == 0:
            m["max"] = 0.0
    # Forget metrics of models no longer active.
    for h in list(state["metrics"]):
        if h not in state["active"]:
            del state["metrics"][h]


# ---- clock and retries -----------------------------------------------------------


def _offset(state):
    off = state.get("clock_offset", 0)
    return off if isinstance(off, int) and -MAX_TIME <= off <= MAX_TIME else 0


def signing_time(raw_now, state):
    """The time to sign with: the device clock corrected by the learned offset, never
    below the floor (the last time the state was saved), and within 0..MAX_TIME (a
    clock past it signs at MAX_TIME: the service then answers with its Date)."""
    raw = int(raw_now) if finite(raw_now) else 0
    t = raw + _offset(state)
    floor = state.get("clock_floor", 0)
    if time_ok(floor) and t < floor:
        t = int(floor)
    if t < 0:
        return 0
    return t if t <= MAX_TIME else MAX_TIME


def correct_clock(state, raw_now, server_time):
    """Learn the offset from a server's Date after a request rejected as skewed.

    Returns the new offset, or None, leaving the state as it was, when the correction
    is refused: the server's time is outside MIN_TIME..MAX_TIME (years 2000..2200; one
    hostile "Date: 31 Dec 9999" must not push signing out of range for good) or the
    device clock is not a finite number. The caller logs a refusal and keeps its offset.
    """
    if not (finite(server_time) and MIN_TIME <= server_time <= MAX_TIME):
        return None
    if not finite(raw_now) or not -MAX_TIME <= raw_now <= 2 * MAX_TIME:
        return None
    state["clock_offset"] = int(server_time) - int(raw_now)
    # A floor above the server's own time would keep us skewed forever.
    if state.get("clock_floor", 0) > server_time:
        state["clock_floor"] = int(server_time)
    return state["clock_offset"]


def is_skew_error(code, message):
    """True for the AWS errors that mean "your clock is off"."""
    if code in ("RequestTimeTooSkewed", "RequestExpired", "SignatureExpired"):
        return True
    if code in ("InvalidSignatureException", "AccessDeniedException", "AccessDenied"):
        text = (message or "").lower()
        # AWS says "Signature expired" for a clock behind, "Signature not yet current"
        # for one ahead: both are corrected from the server's Date.
        return (
            "signature expired" in text or "not yet current" in text or "skew" in text
        )
    return False


def is_retryable(code=None, status=None):
    """Throttling, 5xx and the like are retried; other errors are final."""
    if code in (
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestThrottled",
        "SlowDown",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "InternalServiceException",
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
    ):
        return True
    return status is not None and (status >= 500 or status == 429)


class Backoff:
    """Exponential backoff with full jitter, capped in attempts and in total time.

    ``delay(now, rand)`` returns the seconds to wait before the next attempt, or None
    when the budget is spent (``now`` is a monotonic time, ``rand`` a callable giving
    a float in [0, 1)). ``base * 2**attempt`` is capped at ``cap`` per wait.
    """

    def __init__(self, start, max_retries=5, time_budget=300, base=1.0, cap=60.0):
        self.start = start
        self.max_retries = max_retries
        self.time_budget = time_budget
        self.base = base
        self.cap = cap
        self.attempt = 0

    def delay(self, now, rand):
        if self.attempt >= self.max_retries:
            return None
        ceiling = self.base * (2**self.attempt)
        if ceiling > self.cap:
            ceiling = self.cap
        wait = rand() * ceiling
        if now - self.start + wait > self.time_budget:
            return None
        self.attempt += 1
        return wait
