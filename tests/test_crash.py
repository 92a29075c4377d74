"""Crash consistency: SIGKILL the real agent process at chosen points of deployments.

Against the local cloud (Edge Manager stand-in, signatures checked by botocore) and
moto's S3 server (signatures checked), ``python -m edgecore_tools.cli run --once`` is
started as a subprocess and killed with SIGKILL, then restarted (``--once``, a few times
at most) until it converges. Nothing in the product is throttled or instrumented: kill
points come from the agent's own structured log (JSON lines read from its stderr pipe),
from the download's staging file reaching a chosen byte count, and from the local cloud
recording the heartbeat that carries the deployment's result (the kill then lands
before the agent sees the response), each with a small seeded random delay.

One device goes round five scenarios, one deployment each (ROLLBACK_ON_FAILURE), one
kill per iteration (sometimes a second kill in the first restart: a crash loop):

    first     nothing active                  -> cam v1               SUCCESS
    update    cam v1                          -> cam v2               SUCCESS
    corrupt   cam v2, v3 tampered in S3       -> cam v2 kept          FAIL (checksum)
    rollback  cam v2; [cam v1, gps tampered]  -> cam v1, then back to v2, no gps   FAIL
    undeploy  cam v2                          -> nothing              SUCCESS

After every kill: the state file parses; each active model, if any, is a link into
.versions whose artifact is byte for byte the previous verified artifact or the new
one (SHA1 of the file == a checksum the cloud deployed; never the tampered bytes);
every .versions directory the links or the state refer to is complete (its file
hashes to its name); a result the saved state no longer holds was received by the
cloud (never lost). After convergence: the desired state is active, .staging is gone,
.versions holds exactly the active versions, no temp files are left, and the cloud
holds ONE result for the deployment, with the expected per-model statuses. The agent
promises at-least-once delivery (a result stays in the state until a heartbeat
carrying it succeeds), so identical duplicates are accepted only when a kill landed
after the cloud recorded the result and before the agent saved the acknowledgement;
two different results for one deployment always fail.

    EDGECORE_CRASH_SEED=N         seed (printed; default fixed)
    EDGECORE_CRASH_ITERATIONS=N   delivered kills wanted (default 50)
    EDGECORE_CRASH_MODEL_MIB=N    artifact size in MiB (default 4)

Run: ``python -m pytest tests/test_crash.py -s`` (-s shows the figures). CPython only.
"""

import hashlib
import json
import os
import random
import sys
import threading
import time

from edgecore import agentstate

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from agentproc import AgentRun  # noqa: E402

SEED = int(os.environ.get("EDGECORE_CRASH_SEED", "20261125"))
ITERATIONS = int(os.environ.get("EDGECORE_CRASH_ITERATIONS", "50"))
MODEL_BYTES = int(float(os.environ.get("EDGECORE_CRASH_MODEL_MIB", "4")) * 1024 * 1024)
HANDLES = ("cam", "gps")
ARTIFACT = "model.bin"
MAX_RESTARTS = 4  # --once runs allowed to converge after a kill
SCENARIOS = ("first", "update", "corrupt", "rollback", "undeploy")

# Kill points: name -> the scenarios it applies to. Times come from the agent's log
# (event + a seeded random delay), the staging file's size, or the cloud's DB.
KINDS = {
    # the staging file reached a random fraction of the artifact
    "download-bytes": ("first", "update", "corrupt", "rollback"),
    # download.verified / download.failed logged, + 0-2 ms
    "after-download": ("first", "update", "corrupt", "rollback"),
    # a random moment between download.verified (poll.done for an undeploy) and the link
    # switch (model.activated / model.deactivated) of the uninterrupted run
    "activating": ("first", "update", "rollback", "undeploy"),
    # model.activated / model.deactivated logged (the link switched), + 0-1 ms: before
    # the state records it
    "activated": ("first", "update", "rollback", "undeploy"),
    # a random moment between the last model event (link switch / failed download) and
    # deployment.done: reload, the rollback (switch back + reload), the state saves
    "reloading": SCENARIOS,
    # a random moment between deployment.done and heartbeat.sent: CLEANUP of old
    # versions, the result's state save, the heartbeat request
    "finishing": SCENARIOS,
    # the cloud recorded the heartbeat carrying the result: killed before the reply
    "heartbeat-recorded": SCENARIOS,
    # 0-3 ms after the cloud recorded it: around the reply and the agent's state save
    "heartbeat-replied": SCENARIOS,
    # a random moment of the uninterrupted run's duration (startup, poll, anything)
    "random-time": SCENARIOS,
}
LAST_DEPLOY_EVENT = {
    "first": "model.activated",
    "update": "model.activated",
    "corrupt": "download.failed",
    "rollback": "download.failed",
    "undeploy": "model.deactivated",
}


def sha1(data):
    return hashlib.sha1(data).hexdigest()


class HeartbeatTrap:
    """Wraps the cloud DB's add_heartbeat: once armed, kills the agent right after the
    cloud recorded a heartbeat carrying the named deployment's result (delay 0: in the
    server thread, before the reply is written; delay > 0: from a timer)."""

    def __init__(self, db):
        self.db = db
        self.original = db.add_heartbeat
        self.armed = None  # (deployment, AgentRun, delay)
        self.lock = threading.Lock()
        db.add_heartbeat = self

    def __call__(self, device, fleet, body, received=None, **kwargs):
        out = self.original(device, fleet, body, received=received, **kwargs)
        with self.lock:
            armed = self.armed
            result = body.get("DeploymentResult") or {}
            if armed is None or result.get("DeploymentName") != armed[0]:
                return out
            self.armed = None
        run, delay = armed[1], armed[2]
        if delay <= 0:
            run.kill()
        else:
            threading.Timer(delay, run.kill).start()
        return out

    def arm(self, deployment, run, delay):
        with self.lock:
            self.armed = (deployment, run, delay)

    def disarm(self):
        with self.lock:
            self.armed = None

    def restore(self):
        self.db.add_heartbeat = self.original


class Device:
    """The device's directories, config file, and checks of what is on its disk."""

    def __init__(self, cloud, root):
        self.root = str(root)
        self.model_dir = os.path.join(self.root, "models")
        self.state_dir = os.path.join(self.root, "state")
        self.config_path = os.path.join(self.root, "agent.json")
        os.makedirs(self.root, exist_ok=True)
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(cloud.agent_config(self.model_dir, self.state_dir), f)

    def state(self):
        """The saved state (validated by the agent's own loader), or None before any."""
        path = os.path.join(self.state_dir, "state.json")
        if not os.path.exists(path):
            return None
        with open(path, "rb") as f:
            return agentstate.loads(f.read())

    def link_target_sha(self, handle):
        """SHA1 named by the handle's link (None when the handle is not active)."""
        link = os.path.join(self.model_dir, handle)
        if not os.path.lexists(link):
            return None
        assert os.path.islink(link), "%s is not a symlink" % link
        target = os.readlink(link)
        prefix = ".versions/%s-" % handle
        assert target.startswith(prefix), target
        return target[len(prefix) :]

    def active_sha(self, handle):
        """SHA1 of the bytes the application would load now, or None; the link target
        must be a complete version directory whose artifact hashes to its name."""
        named = self.link_target_sha(handle)
        if named is None:
            return None
        link = os.path.join(self.model_dir, handle)
        files = sorted(n for n in os.listdir(link) if n != "edgecore.json")
        assert files == [ARTIFACT], files
        with open(os.path.join(link, ARTIFACT), "rb") as f:
            actual = sha1(f.read())
        assert actual == named, "active %s holds bytes with SHA1 %s" % (named, actual)
        return actual

    def actives(self):
        return dict((h, self.active_sha(h)) for h in HANDLES)

    def versions(self):
        vroot = os.path.join(self.model_dir, ".versions")
        return sorted(os.listdir(vroot)) if os.path.isdir(vroot) else []

    def check_versions_complete(self, required=None):
        """Version directories are complete: artifact hashes to its name, meta parses.

        ``required``: the names that must be complete (those the links or the saved
        state refer to); any other may be half removed by a CLEANUP the kill interrupted
        (it is redone before anything else). Returns the names found incomplete."""
        partial = []
        for name in self.versions():
            vdir = os.path.join(self.model_dir, ".versions", name)
            try:
                with open(os.path.join(vdir, ARTIFACT), "rb") as f:
                    data = f.read()
                with open(os.path.join(vdir, "edgecore.json")) as f:
                    meta = json.load(f)
            except (OSError, ValueError) as exc:
                assert required is not None and name not in required, "%s: %s" % (name, exc)
                partial.append(name)
                continue
            assert name.rsplit("-", 1)[1] == sha1(data), (name, sha1(data))
            assert meta["sha1"] == sha1(data) and meta["size"] == len(data), meta
        return partial

    def staging_file(self, handle, sha):
        return os.path.join(self.model_dir, ".staging", "%s-%s" % (handle, sha), ARTIFACT)

    def leftovers(self):
        """Names that are neither an active link, .versions, nor state.json."""
        out = []
        if os.path.isdir(self.model_dir):
            out += [
                "models/" + n
                for n in os.listdir(self.model_dir)
                if n not in HANDLES and n != ".versions"
            ]
        if os.path.isdir(self.state_dir):
            out += ["state/" + n for n in os.listdir(self.state_dir) if n != "state.json"]
        return sorted(out)


def referenced_versions(state, links):
    """Version directory names the links or the saved state may still switch to: the
    active ones, and while a deployment can still roll back, what it would restore."""
    names = set("%s-%s" % (h, s) for h, s in links.items() if s)
    entries = list(state["active"].items()) if state else []
    inf = state and state["inflight"]
    if inf and (inf["phase"] == "rollback" or inf["i"] < len(inf["defs"])):
        entries += list(inf["before"].items())
        h = inf["defs"][min(inf["i"], len(inf["defs"]) - 1)]["handle"]
        entries += [(h, inf.get("prev")), (h, inf.get("staged"))]
        if inf.get("rb"):
            entries += list(inf["rb"]["targets"].items())
    names.update("%s-%s" % (h, e["sha1"]) for h, e in entries if e)
    return names


def leftover_kind(name):
    """A leftover's name without its random part (for the figures)."""
    base = name.rsplit("/", 1)[-1]
    if base.startswith(".state.json.") and base.endswith(".tmp"):
        return name.rsplit("/", 1)[0] + "/.state.json.*.tmp"
    return name


class Scenario:
    """One deployment: its definitions, what may be active while it runs (handle ->
    set of SHA1 or None), the end state (handle -> SHA1 or None), the expected result
    (status, per-model Status), and the download to watch for download-bytes kills."""

    def __init__(self, kind, name, definitions, allowed, final, status, model_status, watch):
        self.kind = kind
        self.name = name
        self.definitions = definitions
        self.allowed = allowed
        self.final = final
        self.status = status
        self.model_status = model_status
        self.watch = watch  # (handle, sha1) or None


class Harness:
    def __init__(self, cloud, tmp_path, rng):
        self.cloud = cloud
        self.rng = rng
        self.device = Device(cloud, tmp_path / "device")
        self.trap = HeartbeatTrap(cloud.db)
        self.blobs = {}
        self.urls = {}
        for label in ("v1", "v2", "v3"):
            data = rng.randbytes(MODEL_BYTES)
            self.blobs[label] = data
            key = "models/%s/%s" % (sha1(data), ARTIFACT)
            stored = data
            if label == "v3":  # same size, one flipped byte: fails only at the very end
                stored = bytearray(data)
                stored[len(data) // 2] ^= 0xFF
                stored = bytes(stored)
            cloud.s3.put_object(cloud.bucket, key, stored)
            self.urls[label] = "s3://%s/%s" % (cloud.bucket, key)
        self.sha = dict((k, sha1(v)) for k, v in self.blobs.items())
        self.count = 0
        self.stats = {
            "runs": 0,
            "restarts": [],
            "kills": 0,
            "second_kills": 0,
            "kinds": {},
            "missed": {},
            "phases": {},
            "duplicates": 0,
            "leftovers": {},
            "partial_versions": 0,
        }

    def definition(self, handle, label, state="DEPLOY"):
        return {
            "ModelHandle": handle,
            "ModelName": handle + "-detector",
            "ModelVersion": label,
            "State": state,
            "S3Url": self.urls[label],
            "Checksum": {"Type": "SHA1", "Sum": self.sha[label]},
        }

    def new_scenario(self, kind, prefix):
        self.count += 1
        name = "%s-%03d-%s" % (prefix, self.count, kind)
        v1, v2, v3 = self.sha["v1"], self.sha["v2"], self.sha["v3"]
        d = self.definition
        nothing = {"cam": {None}, "gps": {None}}
        if kind == "first":
            s = Scenario(
                kind,
                name,
                [d("cam", "v1")],
                dict(nothing, cam={None, v1}),
                {"cam": v1, "gps": None},
                "SUCCESS",
                ["SUCCESS"],
                ("cam", v1),
            )
        elif kind == "update":
            s = Scenario(
                kind,
                name,
                [d("cam", "v2")],
                dict(nothing, cam={v1, v2}),
                {"cam": v2, "gps": None},
                "SUCCESS",
                ["SUCCESS"],
                ("cam", v2),
            )
        elif kind == "corrupt":
            s = Scenario(
                kind,
                name,
                [d("cam", "v3")],
                dict(nothing, cam={v2}),
                {"cam": v2, "gps": None},
                "FAIL",
                ["FAIL"],
                ("cam", v3),
            )
        elif kind == "rollback":
            # cam v2 -> v1 succeeds, then gps fails its checksum: cam goes back to v2.
            s = Scenario(
                kind,
                name,
                [d("cam", "v1"), d("gps", "v3")],
                dict(nothing, cam={v1, v2}),
                {"cam": v2, "gps": None},
                "FAIL",
                ["FAIL", "FAIL"],
                ("cam", v1),
            )
        else:
            s = Scenario(
                kind,
                name,
                [d("cam", "v2", "UNDEPLOY")],
                dict(nothing, cam={v2, None}),
                {"cam": None, "gps": None},
                "SUCCESS",
                ["SUCCESS"],
                None,
            )
        self.cloud.db.add_deployment(
            name, "ROLLBACK_ON_FAILURE", s.definitions, device=self.cloud.device_name
        )
        return s

    def results_for(self, name):
        return [r["body"] for r in self.cloud.results() if r["deployment"] == name]

    # ---- invariants -------------------------------------------------------------

    def check_after_kill(self, s, limits):
        """What must hold at ANY moment; returns the observed phase for the figures.
        ``limits["max_results"]`` is raised when the kill left the result recorded by
        the cloud but still pending in the saved state (it will be sent again)."""
        dev = self.device
        state = dev.state()  # parses, or raises StateError naming the field
        actives = dev.actives()
        for h in HANDLES:
            assert actives[h] in s.allowed[h], "%s: %s active %s, expected one of %s" % (
                s.name,
                h,
                actives[h],
                s.allowed[h],
            )
        links = dict((h, dev.link_target_sha(h)) for h in HANDLES)
        partial = dev.check_versions_complete(referenced_versions(state, links))
        self.stats["partial_versions"] += len(partial)
        for name in dev.leftovers():
            k = leftover_kind(name)
            self.stats["leftovers"][k] = self.stats["leftovers"].get(k, 0) + 1
        recorded = len(self.results_for(s.name))
        if state is None:
            return "no-state-yet"
        pending = [p["DeploymentName"] for p in state["pending"]]
        inf = state["inflight"]
        if s.name in pending:
            limits["max_results"] = max(limits["max_results"], recorded + 1)
            phase = "result-recorded-unacked" if recorded else "result-pending"
        elif s.name in state["done"]:
            assert recorded, (
                "%s: result acknowledged in the state but never received "
                "by the cloud (lost)" % s.name
            )
            limits["max_results"] = max(limits["max_results"], recorded)
            phase = "cleanup-pending" if state["gc"] else "result-acked"
        elif inf is not None and inf["name"] == s.name:
            phase = "inflight-%d-%s" % (inf["i"], inf["step"])
            if inf["phase"] == "rollback":
                phase = "inflight-rollback-%s" % inf["rb"]["step"]
        else:
            assert recorded == 0, "%s: a result was sent before the deployment was done" % (s.name,)
            if s.watch is None:
                phase = "not-started"
            elif os.path.exists(dev.staging_file(*s.watch)):
                phase = "downloading"
            elif "%s-%s" % s.watch in dev.versions():
                phase = "verified-unsaved"
            else:
                phase = "not-started"
        for h in HANDLES:
            saved = state["active"].get(h)
            if (saved["sha1"] if saved else None) != links[h]:
                phase += "+link-ahead"
                break
        return phase

    def converged(self, s):
        state = self.device.state()
        return (
            state is not None
            and state["inflight"] is None
            and not state["queue"]
            and not state["pending"]
            and not state["gc"]
            and s.name in state["done"]
            and self.device.actives() == s.final
        )

    def check_converged(self, s, limits):
        dev = self.device
        state = dev.state()
        assert dev.actives() == s.final
        for h in HANDLES:
            saved = state["active"].get(h)
            assert (saved["sha1"] if saved else None) == s.final[h], (h, saved)
        want_versions = sorted("%s-%s" % (h, x) for h, x in s.final.items() if x)
        assert dev.versions() == want_versions, dev.versions()
        dev.check_versions_complete()
        left = dev.leftovers()
        tmp = [n for n in left if leftover_kind(n) == "state/.state.json.*.tmp"]
        assert not tmp, (
            "%s: temp files of state saves a kill interrupted are never removed, so one "
            "more piles up with every such crash: %s" % (s.name, tmp)
        )
        assert left == [], "%s: leftovers after convergence: %s" % (s.name, left)
        bodies = self.results_for(s.name)
        assert bodies, "%s: no result reported after convergence" % s.name
        distinct = set(json.dumps(b, sort_keys=True) for b in bodies)
        assert len(distinct) == 1, "%s: %d different results: %s" % (
            s.name,
            len(distinct),
            sorted(distinct),
        )
        assert len(bodies) <= max(1, limits["max_results"]), (
            "%s: %d copies of its result, but no kill hit the window between the cloud "
            "recording it and the agent saving the acknowledgement" % (s.name, len(bodies))
        )
        self.stats["duplicates"] += len(bodies) - 1
        res = bodies[0]
        assert res["DeploymentStatus"] == s.status, res
        models = res["DeploymentModels"]
        assert [m["ModelHandle"] for m in models] == [d["ModelHandle"] for d in s.definitions]
        assert [m["Status"] for m in models] == s.model_status, models
        for m, d in zip(models, s.definitions):
            assert m["DesiredState"] == d["State"], m
            assert m["State"] == ("DEPLOY" if s.final[d["ModelHandle"]] else "UNDEPLOY"), m
            assert "RollbackFailureReason" not in m, m
        if s.status == "FAIL":
            assert "checksum mismatch" in models[-1]["StatusReason"].lower(), models
            assert "rolled back" in res["DeploymentStatusMessage"], res
        if s.kind == "rollback":
            assert models[0]["StatusReason"].startswith("rolled back"), models
            assert "1 model(s) restored" in res["DeploymentStatusMessage"], res
        # The last heartbeat shows what is active.
        hb = self.cloud.heartbeats()[-1]["body"]
        shown = [m["ModelVersion"] for m in hb.get("Models", [])]
        assert shown == [s.final[h][:12] for h in HANDLES if s.final[h]], shown

    # ---- runs ---------------------------------------------------------------------

    def run_clean(self, s):
        """An uninterrupted run; returns its event times (for the kill schedule)."""
        run = AgentRun(self.device.config_path)
        rc = run.finish()
        self.stats["runs"] += 1
        assert rc == 0, run.log_tail()
        assert self.converged(s), run.log_tail()
        self.check_converged(s, {"max_results": 1})
        times = run.event_times()
        times["exit"] = time.monotonic() - run.t0
        return times

    def kill_run(self, s, kind, timing):
        """Start a run and kill it at ``kind``; True when the kill was delivered."""
        rng = self.rng
        run = AgentRun(self.device.config_path)
        t = timing[s.kind]
        last = LAST_DEPLOY_EVENT[s.kind]
        if kind == "download-bytes":
            if run.wait_event("download.start"):
                goal = int(rng.uniform(0.02, 0.98) * MODEL_BYTES)
                path = self.device.staging_file(*s.watch)
                while run.proc.poll() is None:
                    try:
                        if os.path.getsize(path) >= goal:
                            break
                    except OSError:
                        pass
                    time.sleep(0.0003)
                run.kill()
        elif kind == "after-download":
            if run.wait_event(("download.verified", "download.failed")):
                run.kill_after(rng.uniform(0, 0.002))
        elif kind == "activating":
            start = "poll.done" if s.kind == "undeploy" else "download.verified"
            switch = "model.deactivated" if s.kind == "undeploy" else "model.activated"
            gap = max(0.0, t[switch] - t[start])
            if run.wait_event(start):
                run.kill_after(rng.uniform(0, gap))
        elif kind == "activated":
            if run.wait_event(("model.activated", "model.deactivated")):
                run.kill_after(rng.uniform(0, 0.001))
        elif kind == "reloading":
            gap = max(0.0, t["deployment.done"] - t[last])
            if run.wait_event(last):
                run.kill_after(rng.uniform(0, gap))
        elif kind == "finishing":
            gap = max(0.0, t["heartbeat.sent"] - t["deployment.done"])
            if run.wait_event("deployment.done"):
                run.kill_after(rng.uniform(0, gap))
        elif kind in ("heartbeat-recorded", "heartbeat-replied"):
            delay = 0 if kind == "heartbeat-recorded" else rng.uniform(0, 0.003)
            self.trap.arm(s.name, run, delay)
        elif kind == "random-time":
            when = rng.uniform(0, t["exit"])
            run.kill_after(max(0.0, when - (time.monotonic() - run.t0)))
        else:
            raise AssertionError(kind)
        run.finish()
        self.trap.disarm()
        self.stats["runs"] += 1
        return run.killed_at is not None

    def iteration(self, s, kind, timing, second_kill):
        limits = {"max_results": 1}
        delivered = self.kill_run(s, kind, timing)
        if delivered:
            self.stats["kills"] += 1
            self.stats["kinds"][kind] = self.stats["kinds"].get(kind, 0) + 1
        else:
            self.stats["missed"][kind] = self.stats["missed"].get(kind, 0) + 1
        phase = self.check_after_kill(s, limits)
        self.stats["phases"][phase] = self.stats["phases"].get(phase, 0) + 1
        # A crash loop: the first restart is killed too, at a random moment.
        if second_kill and not self.converged(s) and self.kill_run(s, "random-time", timing):
            self.stats["second_kills"] += 1
            self.check_after_kill(s, limits)
        restarts = 0
        while True:
            restarts += 1
            run = AgentRun(self.device.config_path)
            rc = run.finish()
            self.stats["runs"] += 1
            self.check_after_kill(s, limits)
            if rc == 0 and self.converged(s):
                break
            assert restarts < MAX_RESTARTS, (
                "%s (%s): not converged after %d restarts "
                "(rc %d); log:\n%s" % (s.name, kind, restarts, rc, run.log_tail())
            )
        self.check_converged(s, limits)
        self.stats["restarts"].append(restarts)
        return delivered


def test_sigkill_during_deployments_converges(local_cloud, tmp_path):
    started = time.monotonic()
    rng = random.Random(SEED)
    print(
        "\ncrash test: EDGECORE_CRASH_SEED=%d EDGECORE_CRASH_ITERATIONS=%d model %d bytes"
        % (SEED, ITERATIONS, MODEL_BYTES)
    )
    h = Harness(local_cloud, tmp_path, rng)
    try:
        # Calibrate: one uninterrupted run of each scenario (event times for the kills).
        timing = {}
        for kind in SCENARIOS:
            timing[kind] = h.run_clean(h.new_scenario(kind, "calib"))
        # Per scenario, a shuffled deck of the kill kinds that apply, dealt in turn.
        decks = {}
        delivered = iterations = 0
        while delivered < ITERATIONS:
            assert iterations < 2 * ITERATIONS + 10, "too many kills missed: %r" % (
                h.stats["missed"],
            )
            kind = SCENARIOS[iterations % len(SCENARIOS)]
            deck = decks.get(kind)
            if not deck:
                deck = [k for k in sorted(KINDS) if kind in KINDS[k]]
                rng.shuffle(deck)
                decks[kind] = deck
            point = deck.pop()
            s = h.new_scenario(kind, "crash")
            try:
                if h.iteration(s, point, timing, second_kill=rng.random() < 0.15):
                    delivered += 1
            except Exception as exc:  # e.g. StateError: an unreadable state file
                raise AssertionError(
                    "iteration %d (%s, kill at %s; EDGECORE_CRASH_SEED=%d): %s: %s"
                    % (iterations, s.name, point, SEED, exc.__class__.__name__, exc)
                ) from exc
            iterations += 1
    finally:
        h.trap.restore()
    elapsed = time.monotonic() - started
    st = h.stats
    restarts = st["restarts"]
    print(
        "crash test: %d iterations, %d kills delivered (+%d second kills in a restart), "
        "%d agent runs, %.1f s" % (iterations, st["kills"], st["second_kills"], st["runs"], elapsed)
    )
    print("  kill points delivered: %s" % json.dumps(st["kinds"], sort_keys=True))
    print("  kill points missed (run ended first): %s" % json.dumps(st["missed"], sort_keys=True))
    print("  phases observed after the kill: %s" % json.dumps(st["phases"], sort_keys=True))
    print(
        "  restarts to converge: max %d, mean %.2f; duplicate results (at-least-once): %d"
        % (max(restarts), sum(restarts) / float(len(restarts)), st["duplicates"])
    )
    print(
        "  leftovers seen after kills: %s; half-removed old versions seen: %d"
        % (json.dumps(st["leftovers"], sort_keys=True), st["partial_versions"])
    )
    print(
        "  calibration (s since spawn): %s"
        % json.dumps(
            dict((k, dict((e, round(v, 3)) for e, v in timing[k].items())) for k in timing),
            sort_keys=True,
        )
    )
    assert st["kills"] >= ITERATIONS
    if ITERATIONS >= 40:
        # Deterministic triggers: each kind of kill point was really reached, and the
        # states they target were really observed.
        assert set(st["kinds"]) == set(KINDS), st["kinds"]
        for phase in ("downloading", "result-recorded-unacked"):
            assert st["phases"].get(phase), (phase, st["phases"])
