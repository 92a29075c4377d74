# Runs under MicroPython too
"""Tests of edgecore.agentstate: the persistent agent state (plain: pytest and MicroPython)."""

from edgecore import agentstate
from edgecore.agentstate import StateError

SHA = "0123456789abcdef0123456789abcdef01234567"


def entry(**over):
    e = {
        "name": "cam-model",
        "version": "v1",
        "sha1": SHA,
        "s3url": "s3://b/k",
        "deployment": "d1",
        "path": "/m/cam",
        "size": 3,
        "activated": 7,
    }
    e.update(over)
    return e


def expect_error(doc, field):
    try:
        agentstate.validate(doc)
    except StateError as exc:
        assert exc.field == field, (exc.field, field)
        assert str(exc).startswith("load agent state: invalid " + field)
        return exc
    raise AssertionError("accepted a state with a bad %s" % field)


def test_new_state_round_trips():
    state = agentstate.new_state(1234)
    assert state["schema"] == agentstate.SCHEMA_VERSION
    assert state["clock_floor"] == 1234
    state["active"]["cam"] = entry()
    data = agentstate.dumps(state)
    assert isinstance(data, bytes)
    again = agentstate.loads(data)
    assert again == state
    assert agentstate.loads(data.decode()) == state


def test_missing_optional_keys_are_filled_in():
    state = agentstate.validate({"schema": 1})
    assert state == agentstate.new_state(0)


def test_rejects_garbage():
    for data in (b"", b"{", b"\xff\xfe", b"[1, 2]", b"null"):
        try:
            agentstate.loads(data)
        except StateError as exc:
            assert exc.field == "document"
        else:
            raise AssertionError("accepted %r" % (data,))
    # The limit shrunk for the test (a 4 MiB document does not fit a board's heap): the
    # size check reads it at each call.
    saved = agentstate.MAX_STATE_BYTES
    agentstate.MAX_STATE_BYTES = 1000
    try:
        agentstate.loads(b" " * 1001)
    except StateError as exc:
        assert "larger than 1000 bytes" in str(exc)
    else:
        raise AssertionError("accepted an oversized document")
    finally:
        agentstate.MAX_STATE_BYTES = saved


def test_rejects_unknown_schema():
    exc = expect_error({"schema": 2}, "schema")
    assert "not supported" in str(exc)
    expect_error({"schema": "1"}, "schema")
    expect_error({}, "schema")


def test_rejects_bad_active_models():
    for handle, e, field in (
        ("../x", entry(), "active"),
        ("cam", entry(sha1="XYZ"), "active[cam].sha1"),
        ("cam", entry(name=""), "active[cam].name"),
        ("cam", entry(path=5), "active[cam].path"),
        ("cam", entry(size="3"), "active[cam].size"),
        ("cam", "not an object", "active[cam]"),
    ):
        doc = agentstate.new_state()
        doc["active"][handle] = e
        expect_error(doc, field)


def test_rejects_bad_scalars_and_lists():
    for key, value in (
        ("gc", 1),
        ("pending", {}),
        ("done", [1]),
        ("metrics", []),
        ("pending", [{"x": 1}]),
        ("queue", [{"name": "d"}]),
    ):
        doc = agentstate.new_state()
        doc[key] = value
        expect_error(doc, key if key not in ("pending", "queue") or not value else "%s[0]" % key)


def test_rejects_bad_inflight():
    base = {
        "name": "d1",
        "policy": "DO_NOTHING",
        "phase": "apply",
        "step": "start",
        "start": 1,
        "i": 0,
        "defs": [
            {"handle": "cam", "desired": "DEPLOY", "s3url": "s3://b/k", "sha1": SHA, "error": None}
        ],
        "results": [{"status": None, "reason": None, "rb": None, "name": None, "version": None}],
        "before": {"cam": None},
        "prev": None,
        "staged": None,
        "rb": None,
    }
    doc = agentstate.new_state()
    doc["inflight"] = dict(base)
    agentstate.validate(doc)
    for key, value, field in (
        ("phase", "dance", "inflight.phase"),
        ("results", [], "inflight.results"),
        ("results", [{}], "inflight.results[0]"),
        ("defs", [{"handle": "cam"}], "inflight.defs[0]"),
        ("i", -1, "inflight.i"),
        ("start", "noon", "inflight.start"),
        ("before", {"cam": {"sha1": "x"}}, "inflight.before[cam].name"),
        ("phase", "rollback", "inflight.rb"),
    ):
        doc["inflight"] = dict(base)
        doc["inflight"][key] = value
        expect_error(doc, field)


HUGE = 10**30
INF = float("inf")
NAN = float("nan")
Y9999 = 253402300799  # 9999-12-31T23:59:59Z, as a hostile Date header gives


def repaired(doc):
    fixed = []
    state = agentstate.validate(doc, fixed)
    # Whatever was repaired, the state now saves and loads again as it is.
    assert agentstate.loads(agentstate.dumps(state)) == state
    return state, fixed


def test_bad_clock_numbers_are_reset_not_fatal():
    for key, value, reset in (
        ("clock_offset", Y9999, 0),
        ("clock_offset", -HUGE, 0),
        ("clock_offset", None, 0),
        ("clock_offset", 1.5, 0),
        ("clock_floor", Y9999, 0),
        ("clock_floor", -1, 0),
        ("clock_floor", 1.5, 0),
        ("clock_floor", "soon", 0),
        ("last_heartbeat", Y9999, None),
        ("last_heartbeat", INF, None),
        ("last_heartbeat", NAN, None),
        ("last_heartbeat", "yesterday", None),
        ("heartbeat_failures", -3, 0),
        ("heartbeat_failures", HUGE, 0),
        ("dropped", True, 0),
    ):
        doc = agentstate.new_state(1700000000)
        doc[key] = value
        state, fixed = repaired(doc)
        assert state[key] == reset, (key, value, state[key])
        assert fixed == [key], (key, fixed)
    state, fixed = repaired(agentstate.new_state(1700000000))
    assert fixed == [] and state["clock_floor"] == 1700000000


def test_numbers_in_entries_metrics_and_results_are_range_checked():
    doc = agentstate.new_state(1700000000)
    doc["active"]["cam"] = entry(size=-1, activated=Y9999)
    doc["active"]["gps"] = entry()
    doc["metrics"]["cam"] = {"n": 2, "ln": 2, "sum": INF, "max": 1.0, "li": 5, "ls": None}
    doc["metrics"]["gps"] = {"n": 1, "ln": 1, "sum": 3.0, "max": 3.0, "li": 5, "ls": Y9999}
    doc["metrics"]["cpu"] = {"n": 1, "ln": 2, "sum": 3.0, "max": 3.0, "li": 5, "ls": None}
    doc["metrics"]["ok"] = {"n": 3, "ln": 1, "sum": 3.0, "max": 3.0, "li": 5, "ls": 6}
    good = {"DeploymentName": "d1", "DeploymentStartTime": 1, "DeploymentEndTime": 2}
    bad = {"DeploymentName": "d2", "DeploymentStartTime": 1, "DeploymentEndTime": HUGE}
    doc["pending"] = [good, bad]
    doc["last_result"] = {"DeploymentName": "d2", "DeploymentModels": [], "DeploymentEndTime": NAN}
    state, fixed = repaired(doc)
    assert state["active"]["cam"]["size"] is None and state["active"]["cam"]["activated"] is None
    assert state["active"]["gps"] == entry()
    assert list(state["metrics"]) == ["ok"]
    assert state["pending"] == [good] and state["dropped"] == 1
    assert state["last_result"] is None
    for field in (
        "active[cam].size",
        "active[cam].activated",
        "metrics[cam]",
        "metrics[gps]",
        "metrics[cpu]",
        "pending",
        "last_result",
    ):
        assert field in fixed, (field, fixed)
    doc = agentstate.new_state(1700000000)
    doc["last_result"] = "a string"
    assert repaired(doc)[0]["last_result"] is None


def test_inflight_start_out_of_range_becomes_the_floor():
    doc = agentstate.new_state(1700000000)
    doc["inflight"] = {"name": "d1", "policy": "DO_NOTHING", "phase": "apply", "step": "start"}
    doc["inflight"].update({"start": Y9999 * 10, "i": 0, "defs": [], "results": []})
    doc["inflight"].update({"before": {}, "prev": None, "staged": None, "rb": None})
    state, fixed = repaired(doc)
    assert state["inflight"]["start"] == 1700000000 and fixed == ["inflight.start"]


def test_dumps_refuses_what_loads_would_refuse():
    state = agentstate.new_state()
    state["done"] = ["d" * 60] * (agentstate.MAX_STATE_BYTES // 60)
    try:
        agentstate.dumps(state)
    except StateError as exc:
        assert exc.field == "document" and "larger than" in str(exc)
    else:
        raise AssertionError("dumps wrote a state loads refuses")
    state["done"] = state["done"][: len(state["done"]) // 2]
    assert agentstate.loads(agentstate.dumps(state))["done"] == state["done"]


def test_dump_streams_pieces_with_the_digest_of_dumps():
    import hashlib

    state = agentstate.new_state(1700000000)
    state["done"] = ["dep-%d-\u00e9" % i for i in range(200)]  # several sink buffers
    whole = agentstate.dumps(state)
    pieces = []
    digest = agentstate.dump(state, pieces.append)
    assert b"".join(pieces) == whole
    import gc

    if hasattr(gc, "mem_free"):  # MicroPython: never a block the size of the state
        assert len(pieces) > 1 and max(len(p) for p in pieces) <= agentstate.SINK_BUFFER
    assert digest == hashlib.sha256(whole).digest() == agentstate.dump(state)
    assert agentstate.loads(whole)["done"] == state["done"]


def test_dump_stops_at_the_bound_before_writing_it_all():
    state = agentstate.new_state()
    state["done"] = ["d" * 60] * (agentstate.MAX_STATE_BYTES // 60)
    written = [0]

    def write(piece):
        written[0] += len(piece)

    try:
        agentstate.dump(state, write)
    except StateError as exc:
        assert exc.field == "document" and "larger than" in str(exc)
    else:
        raise AssertionError("dump went past MAX_STATE_BYTES")
    assert written[0] <= agentstate.MAX_STATE_BYTES


def test_error_messages_quote_cloud_strings_clipped():
    doc = agentstate.new_state()
    doc["active"]["\u202e" + "x" * 5000] = entry()
    exc = expect_error(doc, "active")
    assert "\u202e" not in str(exc) and len(str(exc)) < 300
