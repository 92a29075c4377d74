# Runs under MicroPython too (tests/micropython/run.mjs).
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
        ("clock_floor", -1),
        ("clock_floor", 1.5),
        ("clock_offset", None),
        ("gc", 1),
        ("pending", {}),
        ("done", [1]),
        ("metrics", []),
        ("last_heartbeat", "yesterday"),
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
        ("before", {"cam": {"sha1": "x"}}, "inflight.before[cam].name"),
        ("phase", "rollback", "inflight.rb"),
    ):
        doc["inflight"] = dict(base)
        doc["inflight"][key] = value
        expect_error(doc, field)
