"""Property tests of the agent state machine (CPython, hypothesis).

Random sequences of deployments (deploy / update / undeploy of a few handles, both
failure policies), random failures of every action (download, checksum, activation,
deactivation, reload), random heartbeat failures and random crashes (an action executed
but its outcome lost: the state is reloaded from the last save). Invariants:
- every active model is a fully verified artifact present on "disk";
- every deployment gets exactly one result, kept until a heartbeat carrying it succeeds;
- a ROLLBACK_ON_FAILURE deployment that fails (with no rollback failure reported)
  leaves the active set exactly as it was before it began; a successful deployment
  leaves each handle in its desired state;
- after a cycle the disk (the active links) matches the state.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore import agent, agentstate

HANDLES = ["cam", "gps", "lidar"]
SHAS = ["1" * 40, "2" * 40, "3" * 40, "4" * 40]
BAD = "f" * 40  # an artifact whose bytes never match its checksum


class Disk:
    def __init__(self):
        self.versions = set()  # (handle, sha1) verified and on disk
        self.links = {}  # handle -> sha1
        self.verified = set()  # every (handle, sha1) ever verified
        self.fail = set()

    def execute(self, action):
        key = (action.kind, action.handle)
        if key in self.fail:
            return agent.failed("injected %s failure" % action.kind)
        if action.kind == agent.DOWNLOAD:
            if action.model["sha1"] == BAD:
                return agent.failed("SHA1 checksum mismatch")
            v = (action.handle, action.model["sha1"])
            self.versions.add(v)
            self.verified.add(v)
            return agent.succeeded({"size": 1})
        if action.kind == agent.ACTIVATE:
            v = (action.handle, action.model["sha1"])
            if v not in self.versions:
                return agent.failed("version not on disk")
            self.links[action.handle] = v[1]
            return agent.succeeded({"path": "/m/" + action.handle})
        if action.kind == agent.DEACTIVATE:
            self.links.pop(action.handle, None)
            return agent.succeeded()
        if action.kind == agent.RELOAD:
            return agent.succeeded()
        keep = set((h, s) for h, s in action.keep)
        self.versions = set(v for v in self.versions if v in keep)
        return agent.succeeded()


def shas(state):
    return dict((h, e["sha1"]) for h, e in state["active"].items())


definition_st = st.builds(
    lambda h, deploy, sha: {
        "ModelHandle": h,
        "State": "DEPLOY" if deploy else "UNDEPLOY",
        "S3Url": "s3://bucket/%s/%s" % (h, sha[:4]),
        "Checksum": {"Type": "SHA1", "Sum": sha},
    },
    st.sampled_from(HANDLES),
    st.booleans(),
    st.sampled_from(SHAS + [BAD]),
)

round_st = st.fixed_dictionaries(
    {
        "defs": st.lists(definition_st, min_size=0, max_size=4),
        "policy": st.sampled_from(["ROLLBACK_ON_FAILURE", "DO_NOTHING"]),
        "fail": st.sets(
            st.tuples(
                st.sampled_from([agent.DOWNLOAD, agent.ACTIVATE, agent.DEACTIVATE, agent.RELOAD]),
                st.sampled_from(HANDLES),
            ),
            max_size=3,
        ),
        "heartbeat_ok": st.booleans(),
        "crashes": st.lists(st.booleans(), min_size=1, max_size=8),
        "relist_old": st.booleans(),
    }
)


def check_disk(state, disk):
    for h, sha in shas(state).items():
        assert (h, sha) in disk.verified
        assert sha != BAD


@settings(max_examples=250, deadline=None)
@given(st.lists(round_st, min_size=1, max_size=6))
def test_random_deployments_keep_invariants(rounds):
    disk = Disk()
    state = agentstate.new_state(0)
    saved = agentstate.dumps(state)
    acked = []
    names = []
    now = 100
    for n, rnd in enumerate(rounds):
        name = "d%d" % n
        names.append(name)
        listing = [
            {
                "DeploymentName": name,
                "Type": "Model",
                "FailureHandlingPolicy": rnd["policy"],
                "Definitions": rnd["defs"],
            }
        ]
        if rnd["relist_old"]:
            # The cloud still lists earlier deployments: they must not be redone.
            listing = [{"DeploymentName": old, "Definitions": []} for old in names[:-1]] + listing
        disk.fail = rnd["fail"]
        before = shas(state)
        agent.plan(state, {"Deployments": listing}, now)
        saved = agentstate.dumps(state)  # the runner saves after planning
        crashes = list(rnd["crashes"])
        while True:
            action = agent.next_action(state, now)
            if action is None:
                break
            outcome = disk.execute(action)
            if crashes and crashes.pop(0):
                # Killed after the I/O, before the save: resume from the last save.
                state = agentstate.loads(saved)
                continue
            agent.apply(state, action, outcome, now)
            check_disk(state, disk)
            saved = agentstate.dumps(state)
            state = agentstate.loads(saved)
            now += 1
        # After the cycle: disk == state, versions of active models still on disk.
        assert disk.links == shas(state)
        for h, sha in shas(state).items():
            assert (h, sha) in disk.versions
        # Exactly one result for this deployment, the last one produced.
        res = state["last_result"]
        assert res["DeploymentName"] == name
        assert len(res["DeploymentModels"]) == len(rnd["defs"])
        after = shas(state)
        if res["DeploymentStatus"] == "SUCCESS":
            want = dict(before)
            for d in rnd["defs"]:
                if d["State"] == "DEPLOY":
                    want[d["ModelHandle"]] = d["Checksum"]["Sum"]
                else:
                    want.pop(d["ModelHandle"], None)
            assert after == want
            assert not rnd["fail"] or all(m["Status"] == "SUCCESS" for m in res["DeploymentModels"])
        else:
            assert any(m["Status"] == "FAIL" for m in res["DeploymentModels"])
            rb_failed = any("RollbackFailureReason" in m for m in res["DeploymentModels"])
            if rnd["policy"] == "ROLLBACK_ON_FAILURE" and not rb_failed:
                assert after == before
        for m in res["DeploymentModels"]:
            assert m["State"] == ("DEPLOY" if m["ModelHandle"] in after else "UNDEPLOY")
            if m["Status"] == "FAIL":
                assert m["StatusReason"]
        # Heartbeat: the result stays queued until a heartbeat carrying it succeeds.
        pending_before = [p["DeploymentName"] for p in state["pending"]]
        params, sent = agent.heartbeat_params(state, "1.0", "dev", "fleet", [], now)
        agent.heartbeat_done(state, sent, rnd["heartbeat_ok"], now)
        pending_after = [p["DeploymentName"] for p in state["pending"]]
        if rnd["heartbeat_ok"]:
            assert params["DeploymentResult"]["DeploymentName"] == pending_before[0]
            acked.append(pending_before[0])
            assert pending_after == pending_before[1:]
        else:
            assert pending_after == pending_before
        saved = agentstate.dumps(state)
    # Every deployment: exactly one result, acknowledged or still pending, in order.
    assert acked + [p["DeploymentName"] for p in state["pending"]] == names


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(HANDLES + ["gone"]),
            st.one_of(st.none(), st.floats(0, 1e6)),
            st.one_of(st.none(), st.integers(0, 2**31)),
        ),
        max_size=30,
    ),
    st.lists(st.booleans(), max_size=5),
)
def test_inference_metrics_add_up(records, acks):
    state = agentstate.new_state()
    for h in HANDLES:
        state["active"][h] = {
            "name": h + "-model",
            "version": "v1",
            "sha1": SHAS[0],
            "s3url": None,
            "deployment": None,
            "path": None,
            "size": None,
            "activated": None,
        }
    counted = {}
    for i, (h, latency, sample) in enumerate(records):
        ok = agent.record_inference(state, h, latency_ms=latency, sample_time=sample, now=i)
        assert ok == (h in HANDLES)
        if ok:
            counted[h] = counted.get(h, 0) + 1
    reported = {}
    for ok in acks + [True]:
        params, sent = agent.heartbeat_params(state, "1", "d", "f", [], 10**6)
        for model in params.get("Models", []):
            for metric in model.get("ModelMetrics", []):
                assert agent.entity_ok(metric["MetricName"], 4, 100)
                if metric["MetricName"] == "inference-count" and ok:
                    h = model["ModelName"][: -len("-model")]
                    reported[h] = reported.get(h, 0) + int(metric["Value"])
        agent.heartbeat_done(state, sent, ok, 10**6)
    assert reported == counted


# ---- issue 11: whatever the application records, the heartbeat goes out -------------

NUMBERS = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(NUMBERS, NUMBERS), max_size=8), st.integers(0, 3))
def test_any_recorded_inference_keeps_heartbeats_valid(records, n_results):
    from edgecore import wire

    state = agentstate.new_state()
    state["active"]["cam"] = dict(
        name="cam-model", version="v1", sha1=SHAS[0], s3url=None,
        deployment=None, path=None, size=None, activated=None,
    )
    for i in range(n_results):
        state["pending"].append(dict(
            DeploymentName="d%d" % i, DeploymentStatus="SUCCESS", DeploymentStatusMessage="ok",
            DeploymentStartTime=1, DeploymentEndTime=2, DeploymentModels=[],
        ))
    for latency, sample in records:
        try:
            agent.record_inference(state, "cam", latency_ms=latency, sample_time=sample, now=5)
        except ValueError as exc:
            assert "latency_ms" in str(exc) or "sample_time" in str(exc)
    # Whatever was accepted, the heartbeat is one the service model accepts, and the
    # saved state loads.
    params, sent = agent.heartbeat_params(state, "1", "dev", "fleet", [], 10**9)
    wire.validate("SendHeartbeat", params)
    assert agentstate.loads(agentstate.dumps(state)) is not None
    assert ("DeploymentResult" in params) == (n_results > 0)


# ---- issue 11: a hostile listing under 1 MiB never makes an unloadable state --------

MiB = 1024 * 1024


def _body_size(listing):
    # What the cloud sends: raw UTF-8 (the densest form of non-ASCII text).
    import json

    return len(json.dumps(listing, ensure_ascii=False).encode("utf-8"))


def _worst_case_listings():
    """GetDeployments answers just under 1 MiB, each aimed at one way the state grows."""
    sha = "a" * 40
    emoji = "\U0001f600"  # 4 bytes on the wire, 12 in the state's JSON (\ud83d\ude00)

    def dep(name, defs):
        return {"DeploymentName": name, "FailureHandlingPolicy": "DO_NOTHING", "Definitions": defs}

    def good(handle, url, s=sha):
        checksum = {"Type": "SHA1", "Sum": s}
        return {"ModelHandle": handle, "S3Url": url, "State": "DEPLOY", "Checksum": checksum}

    out = {}
    # Long non-ASCII handles (once stored raw and again in the error's repr).
    out["non-ASCII handles"] = [dep("d%d" % i, [good(emoji * 60000, "s3://b/k")]) for i in range(4)]
    # Many empty definitions: 3 bytes each on the wire, ~150 in the state.
    out["empty definitions"] = [dep("d0", [{}] * 250000)]
    # Many tiny deployments.
    out["tiny deployments"] = [
        {"DeploymentName": "d%d" % i, "Definitions": [{}]} for i in range(20000)
    ]
    # Valid 1024-character emoji URLs: downloaded, activated, kept in `active`.
    url = "s3://b/" + emoji * (1024 - 7)
    out["emoji URLs"] = [
        dep("e%d" % i, [good("h%d-%d" % (i, j), url, "%040x" % (i * 64 + j)) for j in range(16)])
        for i in range(15)
    ]
    # Anything where a string is expected.
    out["huge values"] = [dep("d0", [{"ModelHandle": "cam", "State": ["x" * 900000]}])]
    out["huge checksum"] = [dep("d0", [good("cam", "s3://b/k", "F" * 900000)])]
    return out


def test_worst_case_listings_under_1_mib_always_save_and_load():
    for label, deps in _worst_case_listings().items():
        listing = {"Deployments": deps}
        assert _body_size(listing) < MiB, (label, _body_size(listing))
        state = agentstate.new_state()
        disk = Disk()
        largest = 0
        for cycle in range(3):
            agent.plan(state, listing, 100 + cycle)
            state = agentstate.loads(agentstate.dumps(state))
            while True:
                action = agent.next_action(state, 100)
                if action is None:
                    break
                agent.apply(state, action, disk.execute(action), 100)
                data = agentstate.dumps(state)  # refuses what loads would refuse
                largest = max(largest, len(data))
                state = agentstate.loads(data)
            for _ in range(5):
                params, sent = agent.heartbeat_params(state, "1", "d", "f", [], 100)
                agent.heartbeat_done(state, sent, True, 100)
        assert largest < agentstate.MAX_STATE_BYTES // 2, (label, largest)
        assert state["dropped"] == 0, label
