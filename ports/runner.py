"""The agent's executor: runs ``edgecore.agent``'s decisions on every runtime.

One ``Runner`` drives the agent on CPython (Linux boards: ``edgecore run``) and on
MicroPython (boards, and the MicroPython unix binary on small Linux devices:
``edgecore_ports.mp_agent.Agent`` is a thin wrapper). It owns a validated config
(``edgecore_ports.agentconfig``), a port (transport, clock, files, metrics), a
credentials provider, an ``edgecore.Client``, a ``Store`` (``edgecore_ports.store``:
the disk layout) and the state file ``<state_dir>/state.json``. A cycle is:
GetDeployments (retried) -> ``agent.plan`` -> execute ``agent.next_action`` until there
is none, saving the state after every step -> SendHeartbeat (retried).

What differs per runtime is small and chosen once: the store (a symlink switch on
Linux, a pointer file on FAT flash: ``store.default_store``), how files are synced
(``store.sync_file``), what a reload runs (``reload_hook`` everywhere; ``reload_command``
through ``subprocess`` on CPython), which crypto exists (signatures need CPython with
``cryptography``: refused at config load elsewhere), and a lock (CPython threads). Every
rule is written once, here and in ``edgecore_ports.download``:

- every API call has a deadline (``request_timeout``) over the whole exchange, every
  download a minimum rate and a deadline from it; a body without length is bounded by
  free space; a cut download resumes (also across restarts);
- throttling, 5xx and network errors are retried with exponential backoff and full
  jitter, capped by ``max_retries`` and ``retry_time_budget``; an error saying
  ``retryable = False`` (a device certificate the IoT endpoint refuses, a full disk) is
  final at once;
- requests are signed with ``agent.signing_time`` (device clock + learned offset, never
  below the floor saved with the state); a request refused as skewed corrects the
  offset from the response's ``Date`` and is retried at once, once; an expired token
  invalidates the credentials once;
- results are delivered at least once (a result stays in the state until a heartbeat
  carrying it is acknowledged); the state is saved atomically after every step; on
  start the disk is made to match the saved state and an interrupted deployment
  resumes at its saved step (every action is idempotent).

Inference metrics: in-process applications call ``Runner.record_inference``; others
``record_inference(state_dir, ...)``, which appends to a spool the agent folds into the
next heartbeat.
"""

import json
import os
import sys

from edgecore import agent, agentstate, wire
from edgecore.errors import (
    ClientError,
    EdgecoreError,
    ParamValidationError,
    ResponseParseError,
    TransportError,
)
from edgecore_ports import ConfigError, new_lock  # noqa: F401 (ConfigError: for the CLI)
from edgecore_ports.agentconfig import load_config, read_config_file  # noqa: F401 (re-exported)
from edgecore_ports.download import describe, download
from edgecore_ports.store import default_store, exists, file_size, listdir, makedirs

AGENT_VERSION = "0.1.0"
STATE_FILE = "state.json"
MAX_HEARTBEATS_PER_CYCLE = 5
FLOOR_REFRESH = 600  # seconds: the clock floor is saved at least this often when idle
TOKEN_CODES = ("ExpiredTokenException", "ExpiredToken", "UnrecognizedClientException",
               "InvalidToken", "TokenRefreshRequired")
INFERENCE_SPOOL = "inference.jsonl"
MAX_SPOOL_BYTES = 4 * 1024 * 1024
MICROPYTHON = sys.implementation.name == "micropython"
BUFFER_SIZE = 4096 if MICROPYTHON else 65536  # the one download buffer
STATE_HEAP_SHARE = 4  # a state file may use 1/4 of the free heap (parsing takes ~2x more)


def record_inference(state_dir, model_handle, latency_ms=None, sample_time=None, now=None):
    """The application's hook when it runs in another process than the agent (CPython).

    Appends one JSON line to ``<state_dir>/inference.jsonl`` (one small O_APPEND write,
    so concurrent writers do not interleave); the agent folds the lines into the next
    heartbeat's LatestInference / LatestSampleTime / ModelMetrics. In-process
    applications call ``Runner.record_inference`` instead.
    """
    import time

    now = time.time() if now is None else now
    agent.check_inference(latency_ms, sample_time, now)  # ValueError: NaN, inf, out of range
    rec = {"h": str(model_handle), "l": latency_ms, "s": sample_time, "t": now}
    path = state_dir.rstrip("/") + "/" + INFERENCE_SPOOL
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(rec) + "\n").encode("utf-8"))
    finally:
        os.close(fd)


def _null_log(level, event, **fields):
    pass


def _state_limit():
    """The largest state file this runtime can load: MAX_STATE_BYTES, or a share of the
    free heap on MicroPython (a 64 KiB board must get a StateError, not MemoryError)."""
    import gc

    if not hasattr(gc, "mem_free"):
        return agentstate.MAX_STATE_BYTES
    gc.collect()
    return min(agentstate.MAX_STATE_BYTES, gc.mem_free() // STATE_HEAP_SHARE)


def _retryable(exc):
    """Whether another attempt may succeed (after a backoff)."""
    flag = getattr(exc, "retryable", None)
    if flag is not None:
        return flag
    if isinstance(exc, ClientError):
        return wire.is_retryable(exc) or agent.is_retryable(exc.code, exc.status)
    return isinstance(exc, (TransportError, ResponseParseError))


class Runner:
    """Executes the agent's decisions. See the module docstring.

    ``config``: a validated config (``load_config``). Injected for tests and embedding:
    ``port`` (default ``load_port(config["board"])``), ``credentials`` (a provider with
    ``get(now)``/``invalidate()`` or an ``edgecore.Credentials``; default from the
    config), ``http`` (``transport`` and ``open``; default ``port.make_transport``),
    ``store`` (a Store class; default the platform's), ``reload_hook``
    (``callable(handle, path_or_None)``; raises to fail), ``log`` (``callable(level,
    event, **fields)``), ``progress`` (``callable(handle, done, total_or_None)``),
    ``rand``/``sleep`` (backoff), ``crash_hook`` (``callable(point)``, for crash tests),
    ``feed`` (a watchdog: called after every request, action and download chunk, and
    every second between cycles), ``buffer_size`` (the download buffer).

    ``on_saved`` (``callable(state)``, None by default): called after every save that
    wrote the state, on the thread that saved, with the lock held where the save took
    it; the local API's model set follows the state through it (``appservice``).
    """

    def __init__(self, config, port=None, credentials=None, http=None, store=None,
                 reload_hook=None, log=None, progress=None, rand=None, sleep=None,
                 crash_hook=None, environ=None, feed=None, buffer_size=BUFFER_SIZE):
        self.config = config
        if port is None:
            from edgecore_ports import load_port

            port = load_port(config["board"])
        self.port = port
        self.log = log or _null_log
        if credentials is None:
            credentials = _credentials(config, environ, port, self.log)
        self.credentials = credentials
        self.http = http or make_http(port, config)
        self.store = (store or default_store())(config["model_dir"], port, self.log)
        self.reload_hook = reload_hook
        self.progress = progress
        if rand is None:
            import random

            rand = random.random
        self.rand = rand
        if sleep is None:
            import time

            sleep = time.sleep
        self.sleep = sleep
        self.crash_hook = crash_hook
        self.feed = feed
        self.buf = memoryview(bytearray(buffer_size))  # every download reuses it
        self.state_dir = config["state_dir"].rstrip("/") or "/"
        self.state_path = self.state_dir + "/" + STATE_FILE
        self.last_date = None  # the Date of the last answer (clock corrections)
        self.tries = 0  # attempts made by the last attempt() call
        self.bucket_regions = {}  # bucket -> the region S3 said it is in (issue 12 item 4)
        self._lock = new_lock()  # the application's threads record inferences
        self.state = None
        self.on_saved = None
        self._saved = None  # SHA-256 of the bytes last saved (agentstate.dump; not a copy)
        self._client = None
        self.signing_key = None
        if config["artifact_signing_key"]:
            from edgecore_ports.signing import load_public_key

            self.signing_key = load_public_key(config["artifact_signing_key"])

    # ---- clock, credentials, requests --------------------------------------------

    def point(self, name):
        """A step of the work is done: the crash tests' hook, the watchdog's feed."""
        if self.crash_hook is not None:
            self.crash_hook(name)
        if self.feed is not None:
            self.feed()

    def now(self):
        """The agent's notion of now: signing time (offset-corrected, floored)."""
        return agent.signing_time(self.port.clock(), self.state or {})

    def _creds(self, now=None):
        """The credentials to sign with now. A provider's failure is marked
        ``from_credentials`` so a report can say it is a credentials problem, not the
        service's answer (see ``describe_error``)."""
        c = self.credentials
        if not hasattr(c, "get"):
            return c
        try:
            return c.get(self.now() if now is None else now)
        except EdgecoreError as exc:
            exc.from_credentials = True
            raise

    def _collect(self):
        """On a board, collect the garbage before a connection: its TLS buffers are the
        largest blocks a cycle allocates, and a fragmented 64 KiB heap cannot give them."""
        if MICROPYTHON:
            import gc

            gc.collect()

    def _transport(self, method, url, headers, body=b""):
        self._collect()
        deadline = self.port.monotonic() + self.config["request_timeout"]
        status, headers_out, data = self.http.transport(method, url, headers, body,
                                                        deadline=deadline)
        self.last_date = headers_out.get("date")
        if self.feed is not None:
            self.feed()
        return status, headers_out, data

    def s3_location(self, bucket, key):
        """(url, signing region) of an object: the SDKs' endpoint rules (partition, FIPS,
        dual-stack, dotted buckets), signed for the bucket's own region once S3 named it
        (``bucket_regions``, learnt from an ``x-amz-bucket-region`` answer)."""
        from edgecore import s3url

        config = self.config
        return s3url.object_location(bucket, key, self.bucket_regions.get(bucket,
                                                                          config["region"]),
                                     config["s3_endpoint_url"], config["s3_addressing_style"],
                                     fips=bool(config["use_fips_endpoint"]),
                                     dualstack=bool(config["s3_use_dualstack_endpoint"]))

    def s3_get(self, bucket, key, headers, deadline):
        """A SigV4-signed (service s3) GET of an object; the streamed response. The URL
        sent is the one signed (``sigv4.sign`` encodes it once)."""
        from edgecore import sigv4

        url, region = self.s3_location(bucket, key)
        creds = self._creds()
        self._collect()
        url, signed = sigv4.sign("GET", url, headers, b"", access_key=creds.access_key,
                                 secret_key=creds.secret_key,
                                 session_token=creds.session_token, region=region,
                                 service="s3", timestamp=self.now())
        return self.http.open("GET", url, signed, deadline=deadline)

    @property
    def client(self):
        if self._client is None:
            from edgecore.client import Client

            config = self.config
            # Every setting explicit: the client looks nothing up on its own.
            self._client = Client(config["region"], _RunnerCredentials(self),
                                  endpoint_url=config["endpoint_url"],
                                  transport=self._transport, clock=self.now,
                                  use_fips_endpoint=bool(config["use_fips_endpoint"]),
                                  use_dualstack_endpoint=bool(config["use_dualstack_endpoint"]),
                                  # A board writes request bodies into the download
                                  # buffer (idle during API calls): no copy in its heap.
                                  body_buffer=self.buf if MICROPYTHON else None)
        return self._client

    def attempt(self, once, on_retry):
        """``once()`` until it returns. What may pass (throttling, 5xx, network) is retried
        after a backoff; a skewed clock is corrected from the answer's Date and an
        expired token refreshed, each once, and retried at once. The last error is
        raised when it is final, or when the retries are spent (then with ``attempts``
        set to the number made). An S3 answer naming the bucket's region (``redirect``)
        is retried at once, once. ``on_retry(error, delay)`` is called before each wait."""
        backoff = agent.Backoff(self.port.monotonic(), self.config["max_retries"],
                                self.config["retry_time_budget"])
        fixed_clock = fixed_creds = redirected = False
        self.tries = 0
        while True:
            self.tries += 1
            self.last_date = None
            try:
                return once()
            except (EdgecoreError, OSError) as exc:
                code = getattr(exc, "code", None)
                message = getattr(exc, "message", None) or str(exc)
                if not fixed_clock and agent.is_skew_error(code, message) and self._fix_clock():
                    fixed_clock = True
                    continue
                if not fixed_creds and code in TOKEN_CODES:
                    fixed_creds = True
                    if hasattr(self.credentials, "invalidate"):
                        self.credentials.invalidate()
                    continue
                if not redirected and getattr(exc, "redirect", False):
                    redirected = True  # S3 named the bucket's region: signed for it now
                    continue
                if not _retryable(exc):
                    raise
                delay = backoff.delay(self.port.monotonic(), self.rand)
                if delay is None:
                    try:
                        exc.attempts = self.tries
                    except AttributeError:  # a MicroPython built-in exception
                        pass
                    raise
                on_retry(exc, delay)
            self.sleep(delay)

    def fix_clock(self, date):
        """Correct the signing clock from a ``Date`` another thread received (the capture
        uploader's answers); True when the offset was learnt."""
        with self._lock:
            return self._fix_clock(date)

    def _fix_clock(self, date=None):
        from edgecore.amztime import parse_http_date

        date = self.last_date if date is None else date
        try:
            server = parse_http_date(date or "")
        except ValueError:
            return False
        offset = agent.correct_clock(self.state, self.port.clock(), server)
        if offset is None:  # a Date outside 2000..2200: never learnt (issue 11 item 1)
            self.log("warning", "clock.refused", date=agent.show(date))
            return False
        self.log("warning", "clock.corrected", offset=offset)
        return True

    def call(self, operation, **params):
        """A Client call, retried as ``attempt`` says."""

        def retrying(exc, delay):
            self.log("warning", "api.retry", operation=operation, reason=str(exc),
                     delay=round(delay, 3))

        return self.attempt(lambda: getattr(self.client, operation)(**params), retrying)

    # ---- state --------------------------------------------------------------------

    def load_state(self):
        """Load the saved state (or a fresh one); StateError if it is corrupt or larger
        than this runtime can hold. ``.tmp``: FAT's atomic write cut before its rename."""
        self.state = None
        for path in (self.state_path, self.state_path + ".tmp"):
            size = file_size(path)
            if size is None:
                continue
            limit = _state_limit()
            if size > limit:
                raise agentstate.StateError("document", "%d bytes, more than this device can "
                                            "load (%d)" % (size, limit))
            fixed = []
            try:
                with open(path, "rb") as f:
                    self.state = agentstate.loads(f.read(size), fixed)
            except MemoryError:
                raise agentstate.StateError("document", "%d bytes: not enough memory to load"
                                            % size) from None
            if fixed:  # numbers out of range were reset, never fatal
                self.log("warning", "state.repaired", fields=fixed)
            break
        if self.state is None:
            self.state = agentstate.new_state(0)
        return self.state

    def save(self):
        """Persist the state atomically (0600). An unchanged state is not rewritten
        unless the clock floor is FLOOR_REFRESH seconds old (flash wear on idle cycles)."""
        state = self.state
        floor = state.get("clock_floor", 0)
        now = self.now()
        try:
            if self._saved is not None and now - floor < FLOOR_REFRESH \
                    and agentstate.dump(state) == self._saved:
                return
            state["clock_floor"] = max(floor, now)
            # Streamed into the temp file (no copy of the state in memory); a state
            # larger than loads accepts stops the write, and the temp file goes.
            self._saved = self.port.atomic_write(
                self.state_path, lambda write: agentstate.dump(state, write), 0o600)
        except agentstate.StateError as exc:
            # Larger than loads accepts: writing it would stop the agent at its next
            # start. The previous file stays; the work goes on (and is redone after a
            # restart).
            self.log("error", "state.not_saved", reason=str(exc))
            return
        if self.on_saved is not None:
            self.on_saved(state)
        self.point("saved")

    def start(self):
        """Create directories, load the state and make the disk match it. The state
        directory is 0710: the agent's group may reach the local API's socket in it
        (``api.sock``, 0660), and list or read nothing (every file in it is 0600)."""
        makedirs(self.state_dir)
        if hasattr(os, "chmod"):
            os.chmod(self.state_dir, 0o710)
        self.store.start()
        self.load_state()
        self.recover()
        self.save()

    def recover(self):
        """Disk := saved state: temp files of a write cut short go, staged downloads stay
        only for the deployments that may still want them, model links/pointers fixed."""
        for name in listdir(self.state_dir):
            if name.startswith("." + STATE_FILE + ".") and name.endswith(".tmp"):
                os.remove(self.state_dir + "/" + name)
        self.store.prune_staging(self._wanted())
        self.store.recover(self.state["active"])

    def _wanted(self):
        """(handle, sha1) of the models the in-flight deployment (from its current
        definition on) and the queued ones may still download: staged bytes to keep."""
        state = self.state or {}
        deps = list(state.get("queue") or [])
        inf = state.get("inflight")
        if inf:
            deps.append({"defs": inf["defs"][inf.get("i", 0):]})
        wanted = set()
        for dep in deps:
            for d in dep.get("defs") or []:
                if d.get("desired") == agent.DEPLOY and agent.handle_ok(d.get("handle")) \
                        and agent.sha1_ok(d.get("sha1")):
                    wanted.add((d["handle"], d["sha1"]))
        return wanted

    # ---- actions ------------------------------------------------------------------

    def execute(self, action):
        """Run one agent.Action; returns agent.Outcome (never raises for I/O failures)."""
        kind = action.kind
        try:
            if kind == agent.DOWNLOAD:
                return download(self, action)
            if kind == agent.ACTIVATE:
                path = self.store.activate(action.handle, action.model)
                self.point("activated")
                self.log("info", "model.activated", handle=action.handle,
                         sha1=action.model["sha1"], deployment=action.deployment)
                return agent.succeeded({"path": path})
            if kind == agent.DEACTIVATE:
                self.store.deactivate(action.handle)
                self.log("info", "model.deactivated", handle=action.handle,
                         deployment=action.deployment)
                return agent.succeeded()
            if kind == agent.RELOAD:
                return self._reload(action)
            if kind == agent.CLEANUP:
                keep = set((h, s) for h, s in action.keep)
                if self.store.stale(keep):
                    with self._lock:
                        self.save()  # the saved state must not name what goes now
                removed = self.store.cleanup(keep, self._wanted())
                if removed:
                    self.log("info", "versions.removed", count=removed)
                return agent.succeeded()
        except (OSError, ValueError, EdgecoreError) as exc:
            return agent.failed(describe(exc))
        raise ValueError("runner: unknown action kind %r" % (kind,))

    def _reload(self, action):
        path = None if action.model is None else self.store.active_path(action.handle)
        if self.reload_hook is not None:
            try:
                self.reload_hook(action.handle, path)
            except Exception as exc:  # the application's failure, whatever it is
                return agent.failed("%s: %s" % (exc.__class__.__name__, exc))
        argv = self.config["reload_command"]
        if argv:
            from edgecore_ports.linux import run_reload_command

            problem = run_reload_command(argv, {
                "EDGECORE_MODEL_HANDLE": action.handle,
                "EDGECORE_MODEL_PATH": path or "",
                "EDGECORE_MODEL_SHA1": action.model["sha1"] if action.model else "",
            }, self.config["reload_timeout"])
            if problem is not None:
                return agent.failed(problem)
        return agent.succeeded()

    # ---- the cycle ----------------------------------------------------------------

    def reconcile(self):
        """Execute every pending action; returns the DeploymentResults finished meanwhile.

        The state is saved where a crash must find it (issue 11 item 3: the bytes written
        per cycle grow with what changed, not with every step of a long listing): after
        each switch on disk (activate, deactivate), before a cleanup removes versions,
        and when there is nothing left to do, before a heartbeat may carry a result. A
        step not saved is redone after a crash: every action is idempotent, and a
        finished deployment's result never left the device before the save that
        precedes the heartbeat."""
        finished = []
        while True:
            with self._lock:
                seen = self.state["last_result"]
                action = agent.next_action(self.state, self.now())
                res = self.state["last_result"]
                if res is not seen:  # next_action finished a deployment
                    finished.append(res)
                    self.log("info" if res["DeploymentStatus"] == "SUCCESS" else "error",
                             "deployment.done", deployment=res["DeploymentName"],
                             status=res["DeploymentStatus"],
                             message=res["DeploymentStatusMessage"])
                if action is None:
                    self.save()
                    return finished
            if action.kind == agent.DOWNLOAD:
                self.log("info", "download.start", handle=action.handle,
                         deployment=action.deployment, url=action.model["s3url"])
            outcome = self.execute(action)
            self.point("executed-" + action.kind)
            with self._lock:
                agent.apply(self.state, action, outcome, self.now())
                if action.kind in (agent.ACTIVATE, agent.DEACTIVATE):
                    self.save()

    def ingest_inferences(self):
        """Fold the lines other processes appended to the inference spool into the state.

        The spool is renamed first (new appends start a new file), read (bounded), then
        removed after the state is saved; a leftover from a crash is read first.
        """
        spool = self.state_dir + "/" + INFERENCE_SPOOL
        taken = spool + ".ingest"
        if not exists(taken):
            try:
                os.rename(spool, taken)
            except OSError:
                return 0
        count = bad = 0
        with open(taken, "rb") as f:
            data = f.read(min(file_size(taken) or 0, MAX_SPOOL_BYTES, _state_limit()))
        with self._lock:
            for raw in data.split(b"\n"):
                if not raw:
                    continue
                try:
                    rec = json.loads(raw.decode("utf-8"))
                    # Checked before int(): t = 1e400 would raise OverflowError.
                    agent.check_inference(rec.get("l"), rec.get("s"), now=rec["t"])
                    ok = agent.record_inference(self.state, rec["h"], latency_ms=rec.get("l"),
                                                sample_time=rec.get("s"), now=int(rec["t"]))
                except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
                    bad += 1
                    continue
                count += 1 if ok else 0
            self.save()
        os.remove(taken)
        if bad:
            self.log("warning", "inference.bad_lines", count=bad)
        return count

    def heartbeat(self):
        """Send one heartbeat; returns True on success (the result it carried is acked)."""
        try:
            self.ingest_inferences()
        except OSError as exc:
            self.log("warning", "inference.spool_failed", reason=describe(exc))
        now = self.now()
        try:
            metrics = self.port.metrics(self.store.root, now)
        except Exception as exc:  # metrics are best effort
            self.log("warning", "metrics.failed", reason=str(exc))
            metrics = []
        with self._lock:
            params, sent = agent.heartbeat_params(self.state, AGENT_VERSION,
                                                  self.config["device_name"],
                                                  self.config["fleet_name"], metrics, now)
        if sent["dropped"]:  # values a heartbeat cannot carry: left out, never the heartbeat
            self.log("warning", "metrics.dropped", fields=sent["dropped"])
        try:
            self.call("send_heartbeat", **params)
        except EdgecoreError as exc:
            with self._lock:
                if isinstance(exc, ParamValidationError) and sent["result"] is not None \
                        and (exc.field or "").startswith("DeploymentResult"):
                    # A result the service would never accept must not block the queue.
                    agent.heartbeat_done(self.state, {"result": sent["result"], "metrics": {}},
                                         True, now)
                    self.log("error", "result.dropped", deployment=sent["result"],
                             reason=str(exc))
                agent.heartbeat_done(self.state, sent, False, now)
                self.save()
            raise
        with self._lock:
            agent.heartbeat_done(self.state, sent, True, self.now())
            self.save()
        self.log("info", "heartbeat.sent", models=len(params.get("Models", [])),
                 result=sent["result"])
        return True

    def cycle(self):
        """One full cycle. Returns a report dict; ``ok`` is True when the poll and the
        heartbeat both succeeded (a FAILed deployment, reported, still counts as ok)."""
        if self.state is None:
            self.start()
        report = {"ok": True, "errors": [], "results": []}
        try:
            result = self.call("get_deployments", DeviceName=self.config["device_name"],
                               DeviceFleetName=self.config["fleet_name"])
        except EdgecoreError as exc:
            report["ok"] = False
            report["errors"].append(describe_error("GetDeployments", exc))
            self.log("error", "poll.failed", reason=str(exc))
            if getattr(exc, "from_credentials", False) and getattr(exc, "retryable", None) is False:
                # Nothing can be signed (downloads, heartbeats) until the credentials are
                # fixed: an interrupted deployment waits instead of failing for a reason
                # not its own, and the refused certificate is not presented again.
                self.log("error", "cycle.skipped", reason="credentials unavailable")
                return report
        else:
            with self._lock:
                ignored = agent.plan(self.state, result, self.now())
                self.save()
                # A staged download of a deployment the cloud no longer lists goes now,
                # not at the next restart or CLEANUP.
                self.store.prune_staging(self._wanted())
            result = None
            if ignored:
                self.log("warning", "poll.ignored", count=ignored)
            self.log("info", "poll.done", queued=len(self.state["queue"]))
        # An interrupted deployment resumes even when the poll failed.
        report["results"] = self.reconcile()
        # SendHeartbeat carries one result: drain a backlog with a few more heartbeats.
        for _ in range(MAX_HEARTBEATS_PER_CYCLE):
            try:
                self.heartbeat()
            except EdgecoreError as exc:
                report["ok"] = False
                report["errors"].append(describe_error("SendHeartbeat", exc))
                self.log("error", "heartbeat.failed", reason=str(exc))
                break
            if not self.state["pending"]:
                break
        return report

    def run_forever(self, stop=None):
        """Cycle every heartbeat_interval seconds until ``stop()`` returns True."""
        if self.state is None:
            self.start()
        while stop is None or not stop():
            started = self.port.monotonic()
            try:
                report = self.cycle()
                if not report["ok"]:
                    self.log("error", "cycle.failed", errors=report["errors"])
            except agentstate.StateError:
                raise
            except Exception as exc:  # never let one bad cycle kill the service
                self.log("error", "cycle.crashed",
                         reason="%s: %s" % (exc.__class__.__name__, exc))
            if stop is not None and stop():
                return
            interval = self.config["heartbeat_interval"]
            if self.feed is None:
                wait = interval - (self.port.monotonic() - started)
                if wait > 0:
                    self.sleep(wait)
            else:  # a watchdog: fed every second while waiting
                while self.port.monotonic() - started < interval:
                    self.feed()
                    self.sleep(1)

    def record_inference(self, model_handle, latency_ms=None, sample_time=None):
        """The application's hook (thread-safe); see agent.record_inference."""
        with self._lock:
            if self.state is None:
                return False
            return agent.record_inference(self.state, model_handle, latency_ms=latency_ms,
                                          sample_time=sample_time, now=self.now())


def make_http(port, config, **extra):
    """The port's transport as the config asks (TLS, proxy, socket timeouts)."""
    t = config["timeout"]
    if config["proxy"] is not None:
        extra["proxy"] = config["proxy"]
    return port.make_transport(verify=config["verify_tls"], ca_bundle=config["ca_bundle"],
                               timeout=tuple(t) if isinstance(t, list) else t, **extra)


def _credentials(config, environ, port, log):
    """The credentials provider the config asks for: the SDKs' chain on CPython
    (``edgecore_ports.credentials``); on a board the config's static keys, or the AWS
    IoT credentials provider (``edgecore_ports.mp_iot``: mTLS with the device cert)."""
    if MICROPYTHON:
        if config["iot"] is not None:
            from edgecore_ports.mp_iot import provider_from_config

            return provider_from_config(config, port, log=log)
        from edgecore.credentials import Credentials

        c = config["credentials"]
        return Credentials(c["access_key_id"], c["secret_access_key"], c.get("session_token"))
    from edgecore_ports.credentials import provider_from_config

    return provider_from_config(config, environ=environ, clock=port.clock)


def describe_error(operation, exc):
    """One entry of a cycle report's errors: ``"<Operation>: <error>"``, or
    ``"credentials: <error>"`` when the credentials provider failed (no request was sent)."""
    if getattr(exc, "from_credentials", False):
        return "credentials: %s" % (exc,)
    return "%s: %s" % (operation, exc)


class _RunnerCredentials:
    """The provider the runner's Client signs with: the runner's own ``_creds``, so a
    provider failure inside a Client call is marked as one."""

    def __init__(self, runner):
        self._runner = runner

    def get(self, now=None):
        return self._runner._creds(now)
