# Runs under MicroPython too
"""Tests of edgecore.agent, the pure deployment state machine (plain: pytest and MicroPython)."""

from edgecore import agent, agentstate

SHA_A1 = "a" * 40
SHA_A2 = "b" * 40
SHA_B1 = "c" * 40
SHA_BAD = "d" * 40  # the "cloud" never has an artifact with this digest


def definition(handle, sha1=None, state="DEPLOY", key=None):
    d = {
        "ModelHandle": handle,
        "State": state,
        "S3Url": "s3://bucket/%s" % (key or handle + "/model.tar.gz"),
    }
    if sha1 is not None:
        d["Checksum"] = {"Type": "SHA1", "Sum": sha1}
    return d


def deployments(*deps):
    return {"Deployments": list(deps)}


def deployment(name, defs, policy="ROLLBACK_ON_FAILURE"):
    return {
        "DeploymentName": name,
        "Type": "Model",
        "FailureHandlingPolicy": policy,
        "Definitions": defs,
    }


class Sim:
    """A stand-in for the runner: executes actions on an in-memory "disk".

    ``fail`` maps (kind, handle) -> reason for actions that must fail. Downloads of
    SHA_BAD fail as a checksum mismatch would. Each step round-trips the state through
    agentstate.dumps/loads, as the runner persists it.
    """

    def __init__(self, fail=None):
        self.fail = fail or {}
        self.versions = []  # [handle, sha1] verified on disk
        self.links = {}  # handle -> sha1 it points to
        self.log = []
        self.reloaded = []

    def execute(self, action):
        key = (action.kind, action.handle)
        self.log.append(key)
        if key in self.fail:
            return agent.failed(self.fail[key])
        if action.kind == agent.DOWNLOAD:
            if action.model["sha1"] == SHA_BAD:
                return agent.failed("checksum mismatch")
            self.versions.append([action.handle, action.model["sha1"]])
            return agent.succeeded({"size": 10})
        if action.kind == agent.ACTIVATE:
            if [action.handle, action.model["sha1"]] not in self.versions:
                return agent.failed("version not on disk")
            self.links[action.handle] = action.model["sha1"]
            return agent.succeeded({"path": "/models/" + action.handle})
        if action.kind == agent.DEACTIVATE:
            self.links.pop(action.handle, None)
            return agent.succeeded()
        if action.kind == agent.RELOAD:
            self.reloaded.append((action.handle, action.model and action.model["sha1"]))
            return agent.succeeded()
        if action.kind == agent.CLEANUP:
            self.versions = [v for v in self.versions if v in action.keep]
            return agent.succeeded()
        raise AssertionError(action.kind)

    def cycle(self, state, listing, now=1000):
        agent.plan(state, listing, now)
        while True:
            action = agent.next_action(state, now)
            if action is None:
                return agentstate.loads(agentstate.dumps(state))
            outcome = self.execute(action)
            agent.apply(state, action, outcome, now)
            state = agentstate.loads(agentstate.dumps(state))
            now += 1


def ack(state, n, now=5000):
    """n successful heartbeats, as the runner sends them; returns the results sent."""
    out = []
    for _ in range(n):
        params, sent = agent.heartbeat_params(state, "1", "dev", "fleet", [], now)
        if "DeploymentResult" in params:
            out.append(params["DeploymentResult"]["DeploymentName"])
        agent.heartbeat_done(state, sent, True, now)
    return out


def active_shas(state):
    out = {}
    for h in state["active"]:
        out[h] = state["active"][h]["sha1"]
    return out


def test_deploy_new_model():
    sim = Sim()
    state = agentstate.new_state(5)
    state = sim.cycle(state, deployments(deployment("d1", [definition("cam", SHA_A1)])))
    assert active_shas(state) == {"cam": SHA_A1}
    assert sim.log == [
        ("download", "cam"),
        ("activate", "cam"),
        ("reload", "cam"),
        ("cleanup", None),
    ]
    assert sim.links == {"cam": SHA_A1}
    assert len(state["pending"]) == 1
    res = state["pending"][0]
    assert res["DeploymentName"] == "d1"
    assert res["DeploymentStatus"] == "SUCCESS"
    m = res["DeploymentModels"][0]
    assert m["ModelHandle"] == "cam"
    assert m["ModelName"] == "cam-model"
    assert m["ModelVersion"] == SHA_A1[:12]
    assert m["DesiredState"] == "DEPLOY" and m["State"] == "DEPLOY"
    assert m["Status"] == "SUCCESS"
    assert "RollbackFailureReason" not in m
    assert res["DeploymentStartTime"] <= res["DeploymentEndTime"]
    assert state["active"]["cam"]["path"] == "/models/cam"
    assert state["done"] == ["d1"]
    assert state["inflight"] is None and not state["gc"]


def test_deployment_done_is_not_redone_and_satisfied_is_not_downloaded():
    sim = Sim()
    listing = deployments(deployment("d1", [definition("cam", SHA_A1)]))
    state = sim.cycle(agentstate.new_state(), listing)
    sim.log = []
    state = sim.cycle(state, listing)
    assert sim.log == []
    assert len(state["pending"]) == 1
    # A new deployment wanting what is already active: SUCCESS without a download.
    state = sim.cycle(state, deployments(deployment("d2", [definition("cam", SHA_A1)])))
    assert sim.log == [("cleanup", None)]
    assert state["pending"][1]["DeploymentModels"][0]["StatusReason"] == "already active"
    assert state["pending"][1]["DeploymentStatus"] == "SUCCESS"


def test_update_then_undeploy():
    sim = Sim()
    state = sim.cycle(
        agentstate.new_state(), deployments(deployment("d1", [definition("cam", SHA_A1)]))
    )
    state = sim.cycle(state, deployments(deployment("d2", [definition("cam", SHA_A2)])))
    assert active_shas(state) == {"cam": SHA_A2}
    assert sim.versions == [["cam", SHA_A2]]  # the old version was cleaned up
    state = sim.cycle(state, deployments(deployment("d3", [definition("cam", state="UNDEPLOY")])))
    assert state["active"] == {}
    assert sim.links == {} and sim.versions == []
    res = state["pending"][2]
    assert res["DeploymentStatus"] == "SUCCESS"
    m = res["DeploymentModels"][0]
    assert m["DesiredState"] == "UNDEPLOY" and m["State"] == "UNDEPLOY"
    assert m["ModelVersion"] == SHA_A2[:12]
    assert ("cam", None) in sim.reloaded
    # Undeploying what is not active succeeds without doing anything.
    sim.log = []
    state = sim.cycle(state, deployments(deployment("d4", [definition("x", state="UNDEPLOY")])))
    assert sim.log == [("cleanup", None)]
    assert state["pending"][3]["DeploymentModels"][0]["StatusReason"] == "not active"


def test_rollback_on_failure_restores_every_model():
    sim = Sim()
    state = sim.cycle(
        agentstate.new_state(), deployments(deployment("d1", [definition("cam", SHA_A1)]))
    )
    before = active_shas(state)
    state = sim.cycle(
        state,
        deployments(
            deployment(
                "d2",
                [
                    definition("cam", SHA_A2),
                    definition("lidar", SHA_BAD),
                    definition("gps", SHA_B1),
                ],
            )
        ),
    )
    assert active_shas(state) == before
    assert sim.links == {"cam": SHA_A1}
    assert sim.versions == [["cam", SHA_A1]]
    res = state["pending"][1]
    assert res["DeploymentStatus"] == "FAIL"
    assert "rolled back" in res["DeploymentStatusMessage"]
    cam, lidar, gps = res["DeploymentModels"]
    assert cam["Status"] == "FAIL" and cam["StatusReason"].startswith("rolled back")
    assert cam["State"] == "DEPLOY"
    assert lidar["Status"] == "FAIL" and "checksum mismatch" in lidar["StatusReason"]
    assert lidar["State"] == "UNDEPLOY"
    assert gps["Status"] == "FAIL" and gps["StatusReason"].startswith("not attempted")
    assert ("download", "gps") not in sim.log
    for m in res["DeploymentModels"]:
        assert "RollbackFailureReason" not in m


def test_rollback_failure_is_reported():
    sim = Sim()
    state = sim.cycle(
        agentstate.new_state(), deployments(deployment("d1", [definition("cam", SHA_A1)]))
    )
    sim.versions = []  # the old version vanished from disk: restoring it must fail
    sim.fail[("reload", "cam")] = "runtime refused the model"
    state = sim.cycle(state, deployments(deployment("d2", [definition("cam", SHA_A2)])))
    res = state["pending"][1]
    m = res["DeploymentModels"][0]
    assert m["Status"] == "FAIL"
    assert "reload failed: runtime refused the model" in m["StatusReason"]
    assert "could not restore" in m["RollbackFailureReason"]
    assert "version not on disk" in m["RollbackFailureReason"]


def test_do_nothing_keeps_what_succeeded():
    sim = Sim()
    state = sim.cycle(
        agentstate.new_state(),
        deployments(
            deployment(
                "d1",
                [
                    definition("cam", SHA_A1),
                    definition("lidar", SHA_BAD),
                    definition("gps", SHA_B1),
                ],
                policy="DO_NOTHING",
            )
        ),
    )
    assert active_shas(state) == {"cam": SHA_A1, "gps": SHA_B1}
    res = state["pending"][0]
    assert res["DeploymentStatus"] == "FAIL"
    assert [m["Status"] for m in res["DeploymentModels"]] == ["SUCCESS", "FAIL", "SUCCESS"]


def test_do_nothing_reload_failure_puts_that_model_back():
    sim = Sim()
    state = sim.cycle(
        agentstate.new_state(), deployments(deployment("d1", [definition("cam", SHA_A1)]))
    )
    sim.fail[("reload", "cam")] = "boom"
    state = sim.cycle(
        state,
        deployments(
            deployment(
                "d2", [definition("cam", SHA_A2), definition("gps", SHA_B1)], policy="DO_NOTHING"
            )
        ),
    )
    del sim.fail[("reload", "cam")]
    assert active_shas(state) == {"cam": SHA_A1, "gps": SHA_B1}
    assert sim.links == {"cam": SHA_A1, "gps": SHA_B1}
    cam = state["pending"][1]["DeploymentModels"][0]
    assert cam["Status"] == "FAIL" and "reload failed: boom" in cam["StatusReason"]


def test_failed_download_never_replaces_active_model():
    sim = Sim(fail={("download", "cam"): "HTTP 404 NoSuchKey"})
    state = agentstate.new_state()
    state["active"]["cam"] = {
        "name": "cam-model",
        "version": "v1",
        "sha1": SHA_A1,
        "s3url": None,
        "deployment": None,
        "path": None,
        "size": None,
        "activated": None,
    }
    sim.versions.append(["cam", SHA_A1])
    state = sim.cycle(
        state, deployments(deployment("d1", [definition("cam", SHA_A2)], policy="DO_NOTHING"))
    )
    assert active_shas(state) == {"cam": SHA_A1}
    assert sim.log == [("download", "cam"), ("cleanup", None)]
    m = state["pending"][0]["DeploymentModels"][0]
    assert m["StatusReason"] == "download failed: HTTP 404 NoSuchKey"
    assert m["State"] == "DEPLOY"


def test_invalid_definitions_fail_with_reason():
    sim = Sim()
    bad_sum = definition("cam", "xyz")
    bad_type = definition("cam2", SHA_A1)
    bad_type["Checksum"]["Type"] = "MD5"
    bad_url = definition("cam3", SHA_A1)
    bad_url["S3Url"] = "s3://bucket-only"
    state = sim.cycle(
        agentstate.new_state(),
        deployments(
            deployment(
                "d1",
                [
                    definition("../etc", SHA_A1),
                    bad_sum,
                    bad_type,
                    bad_url,
                    definition("ok1", SHA_A1, state="MAYBE"),
                ],
                policy="DO_NOTHING",
            )
        ),
    )
    assert state["active"] == {}
    models = state["pending"][0]["DeploymentModels"]
    assert "ModelHandle" not in models[0]
    assert "invalid ModelHandle" in models[0]["StatusReason"]
    assert "40 hex" in models[1]["StatusReason"]
    assert "SHA1" in models[2]["StatusReason"]
    assert "object key is empty" in models[3]["StatusReason"]
    assert "DEPLOY or UNDEPLOY" in models[4]["StatusReason"]
    assert all(m["Status"] == "FAIL" for m in models)
    assert sim.log == [("cleanup", None)]


def test_deployments_without_valid_name_are_ignored():
    state = agentstate.new_state()
    ignored = agent.plan(
        state,
        {"Deployments": [{"Definitions": []}, {"DeploymentName": "-x"}, deployment("ok", [])]},
        1,
    )
    assert ignored == 2
    assert [q["name"] for q in state["queue"]] == ["ok"]
    assert agent.plan(state, {}, 1) == 0 and state["queue"] == []


def test_empty_deployment_gets_one_success_result():
    state = Sim().cycle(agentstate.new_state(), deployments(deployment("d1", [])))
    assert len(state["pending"]) == 1
    assert state["pending"][0]["DeploymentStatus"] == "SUCCESS"
    assert state["pending"][0]["DeploymentModels"] == []


def test_crash_before_apply_reexecutes_the_same_action():
    sim = Sim()
    state = agentstate.new_state()
    agent.plan(state, deployments(deployment("d1", [definition("cam", SHA_A1)])), 10)
    saved = agentstate.dumps(state)
    seen = []
    while True:
        action = agent.next_action(state, 10)
        if action is None:
            break
        # "Crash" after executing, before the state is saved: reload the last save.
        sim.execute(action)
        state = agentstate.loads(saved)
        again = agent.next_action(state, 10)
        assert again == action
        seen.append(action.kind)
        agent.apply(state, again, sim.execute(again), 10)
        saved = agentstate.dumps(state)
    assert seen == ["download", "activate", "reload", "cleanup"]
    assert active_shas(state) == {"cam": SHA_A1}
    assert len(state["pending"]) == 1


def test_heartbeat_carries_oldest_result_until_acknowledged():
    sim = Sim()
    state = sim.cycle(
        agentstate.new_state(),
        deployments(
            deployment("d1", [definition("cam", SHA_A1)]),
            deployment("d2", [definition("gps", SHA_B1)]),
        ),
    )
    assert [p["DeploymentName"] for p in state["pending"]] == ["d1", "d2"]
    params, sent = agent.heartbeat_params(state, "0.1.0", "dev-1", "fleet", [], 2000)
    assert params["AgentVersion"] == "0.1.0"
    assert params["DeviceName"] == "dev-1" and params["DeviceFleetName"] == "fleet"
    assert "AgentMetrics" not in params
    assert params["DeploymentResult"]["DeploymentName"] == "d1"
    assert params["Models"] == [
        {"ModelName": "cam-model", "ModelVersion": SHA_A1[:12]},
        {"ModelName": "gps-model", "ModelVersion": SHA_B1[:12]},
    ]
    agent.heartbeat_done(state, sent, False, 2000)
    assert len(state["pending"]) == 2 and state["last_heartbeat"] is None
    assert state["heartbeat_failures"] == 1
    agent.heartbeat_done(state, sent, True, 2001)
    assert [p["DeploymentName"] for p in state["pending"]] == ["d2"]
    assert state["last_heartbeat"] == 2001
    metric = {"Dimension": "system", "MetricName": "cpu", "Value": 0.5, "Timestamp": 2002}
    params, sent = agent.heartbeat_params(state, "0.1.0", "dev-1", "fleet", [metric], 2002)
    assert params["DeploymentResult"]["DeploymentName"] == "d2"
    assert params["AgentMetrics"] == [metric]
    agent.heartbeat_done(state, sent, True, 2003)
    params, sent = agent.heartbeat_params(state, "0.1.0", "dev-1", "fleet", [], 2004)
    assert "DeploymentResult" not in params and sent["result"] is None


def test_record_inference_feeds_models_and_resets_after_ack():
    sim = Sim()
    state = sim.cycle(
        agentstate.new_state(), deployments(deployment("d1", [definition("camera", SHA_A1)]))
    )
    assert agent.record_inference(state, "nope", latency_ms=1, now=5) is False
    assert agent.record_inference(state, "camera", latency_ms=10, sample_time=90, now=100)
    assert agent.record_inference(state, "camera", latency_ms=30, now=101)
    assert agent.record_inference(state, "camera", now=102)
    params, sent = agent.heartbeat_params(state, "1", "d", "f", [], 200)
    model = params["Models"][0]
    assert model["ModelName"] == "camera"
    assert model["LatestInference"] == 102 and model["LatestSampleTime"] == 90
    values = {}
    for metric in model["ModelMetrics"]:
        assert metric["Dimension"] == "inference" and metric["Timestamp"] == 200
        assert agent.entity_ok(metric["MetricName"], 4, 100)
        values[metric["MetricName"]] = metric["Value"]
    assert values == {"inference-count": 3.0, "latency-mean-ms": 20.0, "latency-max-ms": 30.0}
    # One more inference between building the heartbeat and its acknowledgement.
    agent.record_inference(state, "camera", latency_ms=50, now=201)
    agent.heartbeat_done(state, sent, True, 202)
    params, sent = agent.heartbeat_params(state, "1", "d", "f", [], 300)
    values = {}
    for metric in params["Models"][0]["ModelMetrics"]:
        values[metric["MetricName"]] = metric["Value"]
    assert values == {"inference-count": 1.0, "latency-mean-ms": 50.0, "latency-max-ms": 50.0}
    agent.heartbeat_done(state, sent, True, 301)
    params, _ = agent.heartbeat_params(state, "1", "d", "f", [], 400)
    assert "ModelMetrics" not in params["Models"][0]
    assert params["Models"][0]["LatestInference"] == 201
    for bad in (-1, "3"):
        try:
            agent.record_inference(state, "camera", latency_ms=bad, now=1)
        except ValueError as exc:
            assert "latency_ms" in str(exc)
        else:
            raise AssertionError("accepted latency_ms=%r" % (bad,))


def test_pending_results_are_bounded_and_none_is_dropped():
    state = agentstate.new_state()
    deps = [deployment("d%d" % i, []) for i in range(agent.MAX_PENDING_RESULTS + 3)]
    listing = deployments(*deps)
    state = Sim().cycle(state, listing)
    # Held at the count bound, or earlier at the byte bound (a board's smaller state).
    held = len(state["pending"])
    assert agent.results_full(state) and 0 < held <= agent.MAX_PENDING_RESULTS
    assert state["pending"][0]["DeploymentName"] == "d0"
    assert state["dropped"] == 0 and state["queue"][0]["name"] == "d%d" % held
    assert state["pending_bytes"] == agentstate.pending_bytes(state["pending"])
    ack(state, 2)
    state = Sim().cycle(state, listing)
    assert len(state["pending"]) == held  # two acknowledged, two more started
    assert state["pending"][-1]["DeploymentName"] == "d%d" % (held + 1)
    assert state["pending_bytes"] == agentstate.pending_bytes(state["pending"])


def test_names_and_versions():
    assert agent.entity_ok("a") and agent.entity_ok("a-b--c9")
    for bad in ("", "-a", "a-", "a_b", "a/b", "a" * 64, None, 5):
        assert not agent.entity_ok(bad)
    assert agent.version_ok("1.0 beta_2") and not agent.version_ok("1-0")
    assert not agent.handle_ok("..") and not agent.handle_ok("/abs")
    assert agent.model_name_for("abc") == "abc-model" and agent.model_name_for("abcd") == "abcd"
    assert agent.sha1_ok(SHA_A1) and not agent.sha1_ok(SHA_A1.upper())


def test_download_metadata_names_the_model():
    class NamedSim(Sim):
        def execute(self, action):
            outcome = Sim.execute(self, action)
            if action.kind == agent.DOWNLOAD and outcome.ok:
                outcome.info["name"] = "resnet50"
                outcome.info["version"] = "1.2"
            return outcome

    state = NamedSim().cycle(
        agentstate.new_state(), deployments(deployment("d1", [definition("cam", SHA_A1)]))
    )
    assert state["active"]["cam"]["name"] == "resnet50"
    assert state["pending"][0]["DeploymentModels"][0]["ModelVersion"] == "1.2"


def test_signing_time_floor_and_offset():
    state = agentstate.new_state(1700000000)
    assert agent.signing_time(5, state) == 1700000000  # booted at 1970
    agent.correct_clock(state, 5, 1750000000)
    assert agent.signing_time(6, state) == 1750000001
    state2 = agentstate.new_state(1800000000)
    agent.correct_clock(state2, 10, 1750000000)  # floor in the future: lowered
    assert agent.signing_time(10, state2) == 1750000000
    assert agent.is_skew_error(
        "InvalidSignatureException", "Signature expired: 2020 is now earlier than ..."
    )
    assert agent.is_skew_error("RequestTimeTooSkewed", "")
    # A device clock ahead of the service: AWS's wording for a request from the future.
    assert agent.is_skew_error(
        "InvalidSignatureException",
        "Signature not yet current: 20301111T000000Z is still later than 20261125T000000Z",
    )
    assert not agent.is_skew_error("InvalidSignatureException", "The signature does not match")
    assert agent.is_retryable("ThrottlingException", 400)
    assert agent.is_retryable(None, 503) and not agent.is_retryable("AccessDenied", 403)


def test_backoff_full_jitter_capped():
    b = agent.Backoff(0, max_retries=4, time_budget=1000, base=1, cap=5)
    delays = [b.delay(0, lambda: 0.999) for _ in range(5)]
    assert delays[4] is None
    ceilings = [1, 2, 4, 5]
    for d, c in zip(delays[:4], ceilings):
        assert 0 <= d < c and d > c * 0.99
    b = agent.Backoff(0, max_retries=10, time_budget=3, base=1, cap=5)
    assert b.delay(0, lambda: 0.5) == 0.5
    assert b.delay(2.9, lambda: 0.5) is None  # 2.9 + 1.0 > 3
    assert agent.Backoff(0).delay(0, lambda: 0.0) == 0.0


# ---- issue 11: hostile clocks, metrics, listings ----------------------------------

Y9999 = 253402300799  # Date: Fri, 31 Dec 9999 23:59:59 GMT


def test_hostile_date_is_refused_and_the_offset_kept():
    state = agentstate.new_state(1700000000)
    agent.correct_clock(state, 1700000000, 1700000060)
    for server in (Y9999, agent.MAX_TIME + 1, 0, agent.MIN_TIME - 1, float("inf"), float("nan")):
        assert agent.correct_clock(state, 1700000100, server) is None, server
        assert state["clock_offset"] == 60 and state["clock_floor"] == 1700000000
    for raw in (float("nan"), float("inf"), 10**20):
        assert agent.correct_clock(state, raw, 1700000000) is None, raw
        assert state["clock_offset"] == 60
    # The latest year the agent believes is still learnt, and signing stays in range.
    assert agent.correct_clock(state, 0, agent.MAX_TIME) == agent.MAX_TIME
    assert agent.signing_time(10, state) == agent.MAX_TIME


def test_signing_time_is_always_in_range():
    from edgecore import amztime

    state = agentstate.new_state(1700000000)
    for offset, floor, raw in (
        (Y9999, 1700000000, 1700000000),  # a learnt offset from before the fix
        (0, Y9999, 5),  # a floor saved past the range
        (0, 1700000000, float("nan")),
        (0, 1700000000, float("inf")),
        (-(10**12), 0, 1700000000),
        (0, -5, -(10**12)),
        (0, 1700000000, 10**15),  # a device clock far in the future
    ):
        state["clock_offset"], state["clock_floor"] = offset, floor
        t = agent.signing_time(raw, state)
        assert agent.time_ok(t), (offset, floor, raw, t)
        amztime.amz_date(t)  # formattable: the request can be signed and sent


def test_check_inference_refuses_what_a_heartbeat_cannot_carry():
    agent.check_inference(0, 0, 0)
    agent.check_inference(agent.MAX_LATENCY_MS, agent.MAX_TIME, agent.MAX_TIME)
    agent.check_inference()
    for kwargs, field in (
        ({"latency_ms": float("inf")}, "latency_ms"),
        ({"latency_ms": float("nan")}, "latency_ms"),
        ({"latency_ms": 1e308}, "latency_ms"),
        ({"latency_ms": -1}, "latency_ms"),
        ({"latency_ms": True}, "latency_ms"),
        ({"latency_ms": "3"}, "latency_ms"),
        ({"sample_time": float("inf")}, "sample_time"),
        ({"sample_time": 1e300}, "sample_time"),
        ({"sample_time": -1}, "sample_time"),
        ({"now": Y9999}, "now"),
    ):
        try:
            agent.check_inference(**kwargs)
        except ValueError as exc:
            assert field in str(exc), (kwargs, str(exc))
        else:
            raise AssertionError("accepted %r" % (kwargs,))


def test_bad_inference_is_refused_and_never_blocks_a_heartbeat():
    state = Sim().cycle(
        agentstate.new_state(), deployments(deployment("d1", [definition("cam", SHA_A1)]))
    )
    assert agent.record_inference(state, "cam", latency_ms=10, now=100)
    before = dict(state["metrics"]["cam"])
    for kwargs in ({"latency_ms": float("inf")}, {"latency_ms": 1e308}, {"sample_time": 1e300}):
        try:
            agent.record_inference(state, "cam", now=101, **kwargs)
        except ValueError:
            pass
        else:
            raise AssertionError("recorded %r" % (kwargs,))
    assert state["metrics"]["cam"] == before
    # A record that went bad anyway (an older agent, a hand-edited file): the heartbeat
    # goes without those metrics, carrying its result.
    state["metrics"]["cam"]["sum"] = float("inf")
    nan_metric = {"Dimension": "board", "MetricName": "t", "Value": float("nan"), "Timestamp": 1}
    ok_metric = {"Dimension": "board", "MetricName": "u", "Value": 1.0, "Timestamp": 1}
    params, sent = agent.heartbeat_params(state, "1", "d", "f", [nan_metric, ok_metric], 200)
    assert params["DeploymentResult"]["DeploymentName"] == "d1"
    assert params["AgentMetrics"] == [ok_metric]
    assert "ModelMetrics" not in params["Models"][0]
    assert sent["dropped"] == ["AgentMetrics[0]", "metrics[cam]"]
    assert "cam" not in state["metrics"]
    agent.heartbeat_done(state, sent, True, 201)
    assert state["pending"] == []
    assert agent.record_inference(state, "cam", latency_ms=5, now=300)
    params, sent = agent.heartbeat_params(state, "1", "d", "f", [], 400)
    assert params["Models"][0]["ModelMetrics"][0]["Value"] == 1.0 and sent["dropped"] == []


def run_cycles(listing, cycles, heartbeats=5, measure=False):
    """Runner-like cycles with a heartbeat budget; returns (state, downloads per
    deployment, results the cloud acknowledged, largest saved state in bytes)."""
    state = agentstate.new_state()
    sim = Sim()
    runs = {}
    acked = []
    largest = 0
    for c in range(cycles):
        agent.plan(state, listing, 1000 + c)
        while True:
            action = agent.next_action(state, 1000 + c)
            if action is None:
                break
            if action.kind == agent.CLEANUP:
                agent.apply(state, action, agent.succeeded(), 1000 + c)
                continue
            if action.kind == agent.DOWNLOAD:
                runs[action.deployment] = runs.get(action.deployment, 0) + 1
            outcome = sim.execute(action)
            assert outcome.ok, (action, outcome)
            agent.apply(state, action, outcome, 1000 + c)
            if measure and action.kind in (agent.ACTIVATE, agent.DEACTIVATE):
                # where the runner saves mid-cycle (a switch on disk), and at its end
                largest = max(largest, len(agentstate.dumps(state)))
        if measure:
            largest = max(largest, len(agentstate.dumps(state)))
        acked += ack(state, heartbeats)
    return state, runs, acked, largest


def many(n, handles=1):
    return {
        "Deployments": [
            deployment("dep-%d" % i, [definition("h%d" % (i % handles), "%040x" % i)])
            for i in range(n)
        ]
    }


def test_150_in_one_listing_lose_no_result():
    state, runs, acked, _ = run_cycles(many(150), 16, heartbeats=10)
    assert state["dropped"] == 0
    assert sorted(acked) == sorted("dep-%d" % i for i in range(150))  # each exactly once
    assert set(runs) == set(acked)


def test_300_listed_on_every_poll_run_once():
    state, runs, acked, _ = run_cycles(many(300), 32, heartbeats=10)
    assert len(runs) == 300 and max(runs.values()) == 1
    assert len(acked) == 300 and state["dropped"] == 0
    assert sorted(state["done"]) == sorted("dep-%d" % i for i in range(300))
    # Nothing left to do, however often the same listing comes back.
    agent.plan(state, many(300), 9999)
    assert state["queue"] == [] and agent.next_action(state, 9999) is None


def test_done_forgets_only_unlisted_names_past_the_bound():
    state = agentstate.new_state()
    state["done"] = ["old-%d" % i for i in range(agent.MAX_DONE + 10)] + ["dep-1"]
    agent.plan(state, many(2), 1)
    assert state["done"][-1] == "dep-1" and len(state["done"]) == agent.MAX_DONE + 1
    assert state["done"][0] == "old-10"
    assert [q["name"] for q in state["queue"]] == ["dep-0"]


def test_a_huge_listing_keeps_the_state_small():
    # 2000 deployments on CPython (~30x the queue budget); ~15x a board's budget on
    # MicroPython, whose heap could not even hold 2000.
    n = 2000 if agent.MAX_QUEUE_BYTES >= 64 * 1024 else max(16, agent.MAX_QUEUE_BYTES // 64)
    listing = many(n, handles=4)
    state = agentstate.new_state()
    agent.plan(state, listing, 1)
    assert 0 < len(state["queue"]) < n
    assert len(agentstate.dumps(state)) <= agent.MAX_QUEUE_BYTES + 1024
    state, runs, acked, largest = run_cycles(listing, 2, measure=True)
    # Each save is bounded by the queue budget and the pending cap, not the listing.
    assert largest < agent.MAX_QUEUE_BYTES + 100 * 1024, largest
    assert state["dropped"] == 0 and set(acked) <= set(runs)


def test_a_long_failure_keeps_the_rollback_in_the_message():
    sim = Sim(fail={("download", "cam"): "checksum mismatch: " + "x" * 2000})
    state = sim.cycle(
        agentstate.new_state(), deployments(deployment("d1", [definition("cam", SHA_A1)]))
    )
    message = state["pending"][0]["DeploymentStatusMessage"]
    assert len(message) <= agent.MAX_REASON
    assert message.startswith("1 of 1 models failed; first: cam: download failed: checksum")
    assert message.endswith("; rolled back: nothing had changed, previous state kept")


def test_ascii_escape():
    plain = "GET s3://b/k: HTTP 403 AccessDenied: no ~ {ok} [x]" * 5
    assert agent.ascii_escape(plain) is plain  # nothing to escape: the str itself
    assert agent.ascii_escape("a\\b") == "a\\\\b"
    assert agent.ascii_escape("caf\u00e9\n\u202e\U0001f600") == "caf\\xe9\\x0a\\u202e\\U0001f600"
    assert agent.ascii_escape("\x7f~ ") == "\\x7f~ "
    assert agent.ascii_escape("") == ""
