"""The device agent for MicroPython boards (ESP32, Raspberry Pi Pico W, ...).

Drives ``edgecore.agent``'s state machine like ``edgecore_ports.runner`` does on Linux,
with what a microcontroller has: no symlinks, no subprocess, no fsync, a FAT or
LittleFS flash filesystem, a heap of a few hundred KiB. Runs on CPython too (tests).

Use::

    from edgecore_ports.mp_agent import Agent
    a = Agent(config)            # config: a dict (see load_config)
    a.cycle()                    # poll -> download -> verify -> activate -> heartbeat
    a.run(feed=wdt.feed)         # forever, every heartbeat_interval seconds

Disk layout (no symlinks: the switch is a small pointer file)::

    <model_dir>/<handle>/current.json     {"sha1", "file", "name", "version"}: the active one
    <model_dir>/<handle>/<sha1>/<file>    a verified version (+ edgecore.json, its metadata)
    <model_dir>/<handle>/<sha1>.tmp/      a download in progress
    <state_dir>/state.json                the agent state (edgecore.agentstate)

A download streams through the port's ``open()`` into ``<sha1>.tmp/`` while
``edgecore.checksum.Verifier`` hashes each chunk, through ONE buffer reused for the
whole transfer; only a verified directory is renamed to ``<sha1>/``. A transfer cut
short (network error, 5xx) resumes in the same run: the retry asks for the rest with
``Range`` + ``If-Match: <first ETag>`` and keeps feeding the same Verifier; a 200, a 412
(the object changed) or a size on disk other than the bytes hashed restart from byte 0.
A restart of the agent still drops the partial (no sidecar). Activation is
the port's ``atomic_write`` of ``current.json`` (on FAT, which cannot rename over a
file, ``read_atomic`` recovers the ``.tmp`` a power cut may leave). The state is
written after every step; on start the pointers are made to match it.

Config keys: device_name, fleet_name, region, model_dir, state_dir (required);
credentials {access_key_id, secret_access_key[, session_token]}, endpoint_url,
s3_endpoint_url, s3_addressing_style, heartbeat_interval, ca_bundle, verify_tls,
free_space_reserve_bytes, max_retries, retry_time_budget, timeout.
"""

import json
import os

from edgecore import agent, agentstate, s3url, sigv4
from edgecore.errors import ClientError, EdgecoreError, TransportError
from edgecore_ports import (
    ConfigError,
    ascii_digits,
    check_endpoint_urls,
    check_seconds,
    config_with_defaults,
    content_range_total,
)

AGENT_VERSION = "0.1.0"
CHUNK = 4096
POINTER = "current.json"
META = "edgecore.json"
MAX_HEARTBEATS_PER_CYCLE = 5
DEFAULTS = {
    "endpoint_url": None,
    "s3_endpoint_url": None,
    "s3_addressing_style": "auto",
    "heartbeat_interval": 60,
    "ca_bundle": None,
    "verify_tls": True,
    "free_space_reserve_bytes": 16 * 1024,
    "max_retries": 3,
    "retry_time_budget": 60,
    "timeout": 30,
}


def load_config(doc):
    """Check a config dict; returns a new dict with the defaults filled in."""
    config = config_with_defaults(doc, DEFAULTS)
    creds = config.get("credentials")
    if not isinstance(creds, dict) or not creds.get("access_key_id") \
            or not creds.get("secret_access_key"):
        raise ConfigError("credentials", "expected {access_key_id, secret_access_key}")
    check_endpoint_urls(config)
    check_seconds(config, ("heartbeat_interval", "retry_time_budget", "timeout"))
    if config["s3_addressing_style"] not in ("auto", "path", "virtual"):
        raise ConfigError("s3_addressing_style", "expected auto, path or virtual")
    # No public-key crypto here: refuse rather than activate unverified artifacts.
    for key in ("artifact_signing_key", "require_artifact_signature"):
        if config.get(key):
            raise ConfigError(key, "this port cannot verify artifact signatures; remove it "
                              "or use the CPython agent")
    return config


def read_config_file(path):
    try:
        with open(path) as f:
            return load_config(json.loads(f.read()))
    except OSError as exc:
        raise ConfigError("file", "cannot read %s (%s)" % (path, exc)) from None
    except ValueError as exc:
        raise ConfigError("file", "%s is not JSON (%s)" % (path, exc)) from None


# -- small file helpers (os only: MicroPython has no os.path, shutil) ----------------------


def _isdir(path):
    try:
        return os.stat(path)[0] & 0x4000 != 0
    except OSError:
        return False


def _names(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def _makedirs(path):
    built = ""
    for part in path.split("/"):
        if part:
            built = built + "/" + part if built or path.startswith("/") else part
            if not _isdir(built):
                os.mkdir(built)


def _remove(path):
    """Remove a file or a directory tree; a missing path is fine."""
    if _isdir(path):
        for name in _names(path):
            _remove(path + "/" + name)
        os.rmdir(path)
    else:
        try:
            os.remove(path)
        except OSError:
            pass


def _artifact_name(key):
    name = key.rsplit("/", 1)[-1]
    out = "".join(c if c.isalpha() or c.isdigit() or c in "._-" else "_" for c in name)
    out = out.lstrip(".")[-64:]
    return out if out and out != META and out != POINTER else "model"


def active_model(model_dir, handle):
    """(path of the active model file, pointer dict) of ``handle``, or (None, None).
    What an application on the board calls to find the model to load."""
    from edgecore_ports.micropython import read_atomic

    base = model_dir.rstrip("/") + "/" + handle
    data = read_atomic(base + "/" + POINTER)
    if data is None:
        return None, None
    try:
        ptr = json.loads(data)
        return "%s/%s/%s" % (base, ptr["sha1"], ptr["file"]), ptr
    except (ValueError, KeyError, TypeError):
        return None, None


def run_steps(gen, each=None):
    """Drive a generator to its end, calling ``each()`` after every step; its return value."""
    try:
        while True:
            next(gen)
            if each is not None:
                each()
    except StopIteration as stop:
        return stop.args[0] if stop.args else None


def _print_log(level, event, **fields):
    fields["level"] = level
    fields["event"] = event
    print(json.dumps(fields))


class _Fatal(Exception):
    """A download failure retrying will not fix (unless ``retryable`` is set)."""


class _Part:
    """The bytes of one download so far, across its retries in one run: ``done`` bytes
    written AND hashed by ``verifier`` (the file holds exactly those), the first
    response's ``etag`` (for If-Match) and metadata."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.done = 0
        self.verifier = None
        self.etag = None
        self.meta = {}


class Agent:
    """Executes the agent's decisions on a MicroPython board. See the module docstring.

    Injectable: ``port`` (default ``edgecore_ports.micropython``), ``connect`` (the
    port's socket layer, for runtimes without sockets), ``log(level, event, **fields)``,
    ``sleep(seconds)``, ``rand()``, ``reload_hook(handle, path_or_None)`` (raise to fail),
    ``progress(handle, done, total)`` (called per chunk: feed a watchdog here).
    """

    def __init__(self, config, port=None, connect=None, log=None, sleep=None, rand=None,
                 reload_hook=None, progress=None, buffer_size=CHUNK):
        from edgecore.client import Client
        from edgecore.credentials import Credentials

        self.config = config = load_config(config)
        if port is None:
            from edgecore_ports import micropython as port
        self.port = port
        self.http = port.make_transport(verify=config["verify_tls"],
                                        ca_bundle=config["ca_bundle"],
                                        timeout=config["timeout"], connect=connect)
        c = config["credentials"]
        self.creds = Credentials(c["access_key_id"], c["secret_access_key"],
                                 c.get("session_token"))
        self.client = Client(config["region"], self.creds, endpoint_url=config["endpoint_url"],
                             transport=self._transport, clock=self.now)
        self.log = log or _print_log
        if sleep is None:
            import time

            sleep = time.sleep
        self.sleep = sleep
        if rand is None:
            import random

            rand = random.random
        self.rand = rand
        self.reload_hook = reload_hook
        self.progress = progress
        self.buf = bytearray(buffer_size)  # the one buffer every download reuses
        self.model_dir = config["model_dir"].rstrip("/")
        self.state_path = config["state_dir"].rstrip("/") + "/state.json"
        self.state = None
        self._saved = None
        self._date = None

    # -- clock, state, requests --------------------------------------------------------

    def now(self):
        return agent.signing_time(self.port.clock(), self.state or {})

    def _transport(self, method, url, headers, body=b""):
        status, out, data = self.http.transport(method, url, headers, body)
        self._date = out.get("date")
        return status, out, data

    def save(self):
        """Write the state (atomically) when it changed."""
        self.state["clock_floor"] = max(self.state.get("clock_floor", 0), self.now())
        data = agentstate.dumps(self.state)
        if data != self._saved:
            self.port.atomic_write(self.state_path, data)
            self._saved = data

    def start(self):
        """Create the directories, load the state, make the pointers match it."""
        _makedirs(self.config["state_dir"].rstrip("/"))
        _makedirs(self.model_dir)
        data = self.port.read_atomic(self.state_path)
        self.state = agentstate.new_state(0) if data is None else agentstate.loads(data)
        self._saved = data
        self.recover()
        self.save()

    def recover(self):
        active = self.state["active"]
        for handle in _names(self.model_dir):
            base = self.model_dir + "/" + handle
            for name in _names(base):
                if name.endswith(".tmp") and name != POINTER + ".tmp":
                    _remove(base + "/" + name)  # a download cut short
            if handle not in active:
                _remove(base + "/" + POINTER)
                _remove(base + "/" + POINTER + ".tmp")
        for handle in active:
            path, ptr = active_model(self.model_dir, handle)
            if ptr is None or ptr.get("sha1") != active[handle]["sha1"]:
                try:
                    self._point(handle, active[handle])
                    self.log("warning", "recover.pointer", handle=handle)
                except (OSError, ValueError) as exc:  # should not happen: report, go on
                    self.log("error", "recover.failed", handle=handle, reason=str(exc))

    def _fix_clock(self):
        from edgecore.amztime import parse_http_date

        try:
            server = parse_http_date(self._date or "")
        except ValueError:
            return False
        agent.correct_clock(self.state, self.port.clock(), server)
        self.log("warning", "clock.corrected", offset=self.state["clock_offset"])
        return True

    def call(self, operation, **params):
        """A Client call, retried on throttling/5xx/network errors with backoff, once
        more after correcting the clock from the server's Date on a skew error."""
        backoff = agent.Backoff(self.port.monotonic(), self.config["max_retries"],
                                self.config["retry_time_budget"])
        fixed = False
        while True:
            self._date = None
            try:
                return getattr(self.client, operation)(**params)
            except ClientError as exc:
                if agent.is_skew_error(exc.code, exc.message) and not fixed and self._fix_clock():
                    fixed = True
                    continue
                if not agent.is_retryable(exc.code, exc.status):
                    raise
                last = exc
            except TransportError as exc:
                last = exc
            delay = backoff.delay(self.port.monotonic(), self.rand)
            if delay is None:
                raise last
            self.log("warning", "api.retry", operation=operation, reason=str(last))
            self.sleep(delay)

    # -- actions ---------------------------------------------------------------------------

    def execute(self, action):
        """Run one agent.Action; returns an agent.Outcome."""
        return run_steps(self.execute_steps(action))

    def execute_steps(self, action):
        """``execute`` as a generator (yields per download chunk; returns the Outcome)."""
        try:
            kind = action.kind
            if kind == agent.DOWNLOAD:
                return (yield from self._download(action))
            if kind == agent.ACTIVATE:
                return self._activate(action)
            if kind == agent.DEACTIVATE:
                _remove(self.model_dir + "/" + action.handle + "/" + POINTER)
                _remove(self.model_dir + "/" + action.handle + "/" + POINTER + ".tmp")
                return agent.succeeded()
            if kind == agent.RELOAD:
                return self._reload(action)
            if kind == agent.CLEANUP:
                return self._cleanup(action)
        except (OSError, ValueError, EdgecoreError) as exc:
            return agent.failed("%s: %s" % (exc.__class__.__name__, exc))
        raise ValueError("mp_agent: unknown action kind %r" % (action.kind,))

    def _vdir(self, handle, sha1):
        if not agent.handle_ok(handle) or not agent.sha1_ok(sha1):
            raise ValueError("model handle %r / sha1 not usable as a directory name" % (handle,))
        return "%s/%s/%s" % (self.model_dir, handle, sha1)

    def _read_meta(self, vdir):
        try:
            with open(vdir + "/" + META) as f:
                meta = json.loads(f.read())
            return meta if isinstance(meta, dict) else None
        except (OSError, ValueError):
            return None

    def _point(self, handle, entry):
        meta = self._read_meta(self._vdir(handle, entry["sha1"]))
        if meta is None:
            raise ValueError("version %s of %s is not on disk" % (entry["sha1"][:12], handle))
        ptr = {"sha1": entry["sha1"], "file": meta["file"], "name": entry.get("name"),
               "version": entry.get("version")}
        self.port.atomic_write(self.model_dir + "/" + handle + "/" + POINTER, json.dumps(ptr))
        return "%s/%s/%s/%s" % (self.model_dir, handle, entry["sha1"], meta["file"])

    def _activate(self, action):
        path = self._point(action.handle, action.model)
        self.log("info", "model.activated", handle=action.handle, sha1=action.model["sha1"])
        return agent.succeeded({"path": path})

    def _reload(self, action):
        if self.reload_hook is not None:
            path = None
            if action.model is not None:
                path = active_model(self.model_dir, action.handle)[0]
            try:
                self.reload_hook(action.handle, path)
            except Exception as exc:  # the application's failure, whatever it is
                return agent.failed("%s: %s" % (exc.__class__.__name__, exc))
        return agent.succeeded()

    def _cleanup(self, action):
        keep = {}
        for handle, sha1 in action.keep:
            keep[handle + "/" + sha1] = True
        for handle in _names(self.model_dir):
            base = self.model_dir + "/" + handle
            for name in _names(base):
                if name in (POINTER, POINTER + ".tmp") or (handle + "/" + name) in keep:
                    continue
                _remove(base + "/" + name)
            if not _names(base):
                os.rmdir(base)
        return agent.succeeded()

    def _download(self, action):
        handle, sha1 = action.handle, action.model["sha1"]
        vdir = self._vdir(handle, sha1)
        meta = self._read_meta(vdir)
        if meta is not None:  # renamed into place only after verification
            return agent.succeeded(meta)
        yield
        bucket, key = s3url.parse(action.model["s3url"])
        cfg = self.config
        url = s3url.object_url(bucket, key, cfg["region"], cfg["s3_endpoint_url"],
                               cfg["s3_addressing_style"])
        where = "s3://%s/%s" % (bucket, key)
        tmp = vdir + ".tmp"
        backoff = agent.Backoff(self.port.monotonic(), cfg["max_retries"],
                                cfg["retry_time_budget"])
        fixed = False
        part = _Part()
        while True:
            if not part.done:
                _remove(tmp)
                _makedirs(tmp)
            try:
                meta = yield from self._fetch(url, where, tmp, handle, sha1,
                                              _artifact_name(key), part)
                break
            except _Fatal as exc:
                reason = str(exc)
                if not getattr(exc, "keep", False):
                    part.reset()
                if getattr(exc, "skew", False) and not fixed and self._fix_clock():
                    fixed = True
                    continue
                if not getattr(exc, "retryable", False):
                    _remove(tmp)
                    return agent.failed(reason)
            except (TransportError, OSError) as exc:
                # Keep the bytes so far: the next attempt asks for the rest (Range).
                reason = "GET %s: %s" % (where, exc)
            except EdgecoreError as exc:  # e.g. more bytes than declared: never activated
                _remove(tmp)
                return agent.failed("GET %s: %s" % (where, exc))
            delay = backoff.delay(self.port.monotonic(), self.rand)
            if delay is None:
                _remove(tmp)
                return agent.failed(reason)
            self.log("warning", "download.retry", handle=handle, reason=reason, have=part.done)
            self.sleep(delay)
        os.rename(tmp, vdir)
        self.log("info", "download.verified", handle=handle, sha1=sha1, size=meta["size"])
        return agent.succeeded(meta)

    def _fetch(self, url, where, tmp, handle, sha1, filename, part):
        from edgecore.checksum import Verifier
        from edgecore.errors import ChecksumMismatch

        path = tmp + "/" + filename
        if part.done:
            try:
                size = os.stat(path)[6]
            except OSError:
                size = -1
            if size != part.done or not part.etag:  # e.g. a write cut short: start anew
                part.reset()
        extra = {}
        if part.done:
            # If-Match: a changed object answers 412, never bytes spliced onto old ones.
            extra = {"Range": "bytes=%d-" % part.done, "If-Match": part.etag}
        c = self.creds
        headers = sigv4.sign_request("GET", url, extra, b"", access_key=c.access_key,
                                     secret_key=c.secret_key, session_token=c.session_token,
                                     region=self.config["region"], service="s3",
                                     timestamp=self.now())
        resp = self.http.open("GET", url, headers)
        try:
            status, etag = resp.status, resp.headers.get("etag")
            if status == 206 and part.done:
                total = content_range_total(resp.headers.get("content-range"), part.done)
                limit = part.verifier.limit
                if total is None or (limit is not None and limit != total) \
                        or (etag and etag != part.etag):
                    exc = _Fatal("GET %s: HTTP 206 does not continue byte %d (Content-Range "
                                 "%r, ETag %r): starting over" % (
                                     where, part.done, resp.headers.get("content-range"), etag))
                    exc.retryable = True
                    raise exc
            elif status == 200:
                part.reset()  # a fresh answer (also to a Range request): from byte 0
                length = resp.headers.get("content-length", "")
                total = int(length) if ascii_digits(length) else None
                part.etag = etag
                part.verifier = Verifier("SHA1", sha1, limit=total,
                                         operation="download " + handle)
            else:
                code, message = s3url.parse_error(resp.read(s3url.MAX_ERROR_BODY))
                self._date = resp.headers.get("date")
                exc = _Fatal("GET %s: HTTP %d %s: %s" % (where, status, code, message))
                # 412/416 to a Range request: the object changed; restart from 0 (a retry).
                cut = part.done and status in (412, 416)
                exc.retryable = cut or agent.is_retryable(code, status)
                exc.keep = not cut  # an answer about this request, not about our bytes
                exc.skew = agent.is_skew_error(code, message)
                raise exc
            free = self.port.free_space(self.model_dir)
            if total is not None and \
                    free < total - part.done + self.config["free_space_reserve_bytes"]:
                raise _Fatal("not enough free space for %s: %d bytes needed, %d free"
                             % (where, total - part.done, free))
            for name in ("name", "version"):
                value = resp.headers.get("x-amz-meta-model-" + name)
                if value:
                    part.meta[name] = value
            verifier = part.verifier
            mv = memoryview(self.buf)
            size = len(mv)
            # "wb" truncates (MicroPython files may lack truncate()); "ab" appends to the
            # `done` bytes checked above.
            with open(path, "ab" if part.done else "wb") as f:
                while True:
                    n = resp.readinto(mv)
                    if not n:
                        break
                    chunk = mv if n == size else mv[:n]
                    f.write(chunk)
                    verifier.update(chunk)
                    part.done += n  # written and hashed
                    if self.progress is not None:
                        self.progress(handle, part.done, total)
                    yield
            try:
                verifier.finish()
            except ChecksumMismatch as exc:
                raise _Fatal("GET %s: %s" % (where, exc)) from None
            meta = {"sha1": sha1, "file": filename, "size": part.done}
            meta.update(part.meta)
            with open(tmp + "/" + META, "w") as f:
                f.write(json.dumps(meta))
            if hasattr(os, "sync"):
                os.sync()
            return meta
        finally:
            resp.close()

    # -- the cycle ---------------------------------------------------------------------------

    def reconcile_steps(self):
        """Execute every pending action, saving the state after each step; yields
        between actions and download chunks; returns the results finished meanwhile."""
        import gc

        finished = []
        while True:
            seen = self.state["last_result"]
            action = agent.next_action(self.state, self.now())
            if self.state["last_result"] is not seen:
                res = self.state["last_result"]
                finished.append(res)
                self.log("info", "deployment.done", deployment=res["DeploymentName"],
                         status=res["DeploymentStatus"])
            if action is None:
                self.save()
                return finished
            outcome = yield from self.execute_steps(action)
            agent.apply(self.state, action, outcome, self.now())
            self.save()
            gc.collect()  # keep the heap unfragmented between downloads
            yield

    def heartbeat(self):
        now = self.now()
        try:
            metrics = self.port.metrics(self.model_dir, now)
        except Exception:  # metrics are best effort
            metrics = []
        params, sent = agent.heartbeat_params(self.state, AGENT_VERSION,
                                              self.config["device_name"],
                                              self.config["fleet_name"], metrics, now)
        try:
            self.call("send_heartbeat", **params)
        except EdgecoreError:
            agent.heartbeat_done(self.state, sent, False, now)
            self.save()
            raise
        agent.heartbeat_done(self.state, sent, True, self.now())
        self.save()
        return True

    def cycle(self):
        """One cycle; returns {ok, errors, results} (ok: poll and heartbeat succeeded)."""
        return run_steps(self.cycle_steps())

    def cycle_steps(self):
        """``cycle`` as a generator: yields after every request, action and download
        chunk (so a caller can feed a watchdog or do its own work in between) and
        returns the report."""
        if self.state is None:
            self.start()
        report = {"ok": True, "errors": [], "results": []}
        try:
            result = self.call("get_deployments", DeviceName=self.config["device_name"],
                               DeviceFleetName=self.config["fleet_name"])
        except EdgecoreError as exc:
            report["ok"] = False
            report["errors"].append("GetDeployments: %s" % (exc,))
        else:
            agent.plan(self.state, result, self.now())
            self.save()
        result = None
        yield
        # An interrupted deployment resumes even when the poll failed.
        report["results"] = yield from self.reconcile_steps()
        for _ in range(MAX_HEARTBEATS_PER_CYCLE):
            yield
            try:
                self.heartbeat()
            except EdgecoreError as exc:
                report["ok"] = False
                report["errors"].append("SendHeartbeat: %s" % (exc,))
                break
            if not self.state["pending"]:
                break
        return report

    def record_inference(self, handle, latency_ms=None, sample_time=None):
        """The application's hook: counted in the next heartbeat's ModelMetrics."""
        return agent.record_inference(self.state, handle, latency_ms, sample_time, self.now())

    def run(self, feed=None, stop=None):
        """Cycle every heartbeat_interval seconds; ``feed()`` (a watchdog) is called after
        every step of a cycle (request, action, download chunk) and every second between."""
        while True:
            started = self.port.monotonic()
            try:
                report = run_steps(self.cycle_steps(), feed)
                if not report["ok"]:
                    self.log("error", "cycle.failed", errors=report["errors"])
            except agentstate.StateError:
                raise
            except Exception as exc:  # one bad cycle must not stop the device
                self.log("error", "cycle.crashed", reason="%s: %s" % (exc.__class__.__name__, exc))
            if stop is not None and stop():
                return
            while self.port.monotonic() - started < self.config["heartbeat_interval"]:
                if feed is not None:
                    feed()
                self.sleep(1)
