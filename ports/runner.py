"""The agent's I/O executor: runs ``edgecore.agent``'s actions against a port.

One ``Runner`` owns a config, a port (``edgecore_ports.load_port``), a credentials
provider, an ``edgecore.Client`` and the state file ``<state_dir>/state.json``. A
cycle is: GetDeployments (retried) -> ``agent.plan`` -> execute ``agent.next_action``
until there is none, saving the state after every step -> SendHeartbeat (retried).

Disk layout under ``model_dir``::

    <handle>                   symlink -> .versions/<handle>-<sha1>   (the active model)
    .versions/<handle>-<sha1>/ <artifact file name>, edgecore.json   (verified, fsynced)
    .staging/<handle>-<sha1>/  a download in progress: the artifact so far and
                               .resume.json (sha1, url, first response's ETag)

A download streams into ``.staging/<handle>-<sha1>/`` while hashing
(``edgecore.checksum.Verifier``); only a verified, fsynced directory is renamed into
``.versions``, so a version directory that exists is complete. Activation is an
atomic ``os.replace`` of the ``<handle>`` symlink; the state is saved after it. On
start, the disk is made to match the saved state (links fixed; staged downloads kept
only for the models the in-flight or queued deployments may still download, the rest
removed -- also after each poll and by CLEANUP), and an interrupted deployment resumes
at its saved step (every action is idempotent), so a kill at any point converges
without a half-written active model. A staged download whose sidecar matches (same
sha1 and URL, an ETag) is re-hashed from disk once and continued with ``Range`` and
``If-Match``; anything else there is deleted and fetched from byte 0.

Clock: requests are signed with ``agent.signing_time`` (device clock + learned offset,
never below the floor saved with the state); a request rejected as skewed corrects the
offset from the response's ``Date`` header and is retried once.

Retries: throttling, 5xx and network errors are retried with exponential backoff and
full jitter (``agent.Backoff``), capped by ``max_retries`` and ``retry_time_budget``,
unless the error says ``retryable = False`` (e.g. a device certificate the IoT
credentials endpoint refuses: retrying cannot help). A credentials provider failure is
reported as ``credentials: ...``; a final one ends the cycle (nothing can be signed);
a download cut short resumes with a ``Range`` request and ``If-Match: <ETag>`` (hashing
only the new bytes); it starts over if the server answers 200, or 412 (the object
changed: a retry, not a failure). Each attempt is bounded: an API call must complete
within ``request_timeout`` seconds, a download must receive ``min_download_rate``
bytes/s over any ``RATE_WINDOW`` seconds or the attempt is cut and retried (resuming),
both measured with the port's monotonic clock between reads. Free space
(``Content-Length`` of the GET + ``free_space_reserve_bytes``) is checked before the
first byte is written.

Inference metrics: in-process applications call ``Runner.record_inference``; others
call ``record_inference(state_dir, ...)``, which appends to a spool file the agent
folds into the next heartbeat.

CPython (symlinks, subprocess for ``reload_command``); the logic is plain enough for a
MicroPython runner to borrow (``os`` calls only, no pathlib).
"""

import errno
import json
import os
import random
import time

from edgecore import agent, agentstate, s3url, sigv4, wire
from edgecore.amztime import parse_http_date
from edgecore.checksum import Verifier
from edgecore.errors import (
    ChecksumMismatch,
    ClientError,
    EdgecoreError,
    ParamValidationError,
    ResponseParseError,
    TransportError,
)
from edgecore_ports import (
    ConfigError,
    ascii_digits,
    check_endpoint_urls,
    check_seconds,
    config_with_defaults,
    content_range_total,
)

AGENT_VERSION = "0.1.0"
STATE_FILE = "state.json"
VERSIONS = ".versions"
STAGING = ".staging"
META_FILE = "edgecore.json"
CHUNK = 64 * 1024
MAX_HEARTBEATS_PER_CYCLE = 5
FLOOR_REFRESH = 600  # seconds: the clock floor is saved at least this often when idle

DEFAULTS = {
    "endpoint_url": None,
    "s3_endpoint_url": None,
    "heartbeat_interval": 60,
    "board": "auto",
    "s3_addressing_style": "auto",
    "ca_bundle": None,
    "proxy": None,
    "verify_tls": True,
    "free_space_reserve_bytes": 16 * 1024 * 1024,
    "max_retries": 5,
    "retry_time_budget": 300,
    "reload_command": None,
    "reload_timeout": 120,
    # Per attempt: an API call (request + whole response) must finish within this many
    # seconds; a download must receive at least min_download_rate bytes/s over any
    # RATE_WINDOW seconds (0: no minimum). Either failure is retried like a cut
    # connection (a download resumes with Range).
    "request_timeout": 120,
    "min_download_rate": 1024,
    # Optional detached signatures (see edgecore_ports.signing): a PEM public key
    # (Ed25519 or ECDSA P-256) that every artifact's `<key>.sig` must verify with.
    "artifact_signing_key": None,
    "require_artifact_signature": False,
}
RATE_WINDOW = 30  # seconds over which min_download_rate is evaluated
RESUME_FILE = ".resume.json"  # sidecar of a staged download: sha1, url, ETag
MAX_API_BODY = 16 * 1024 * 1024


def load_config(doc, environ=None):
    """Validate an agent config dict; returns a new dict with defaults and env overrides.

    ``AWS_ENDPOINT_URL_SAGEMAKER_EDGE`` / ``AWS_ENDPOINT_URL_S3`` override
    ``endpoint_url`` / ``s3_endpoint_url``, as in the AWS SDKs.
    """
    environ = os.environ if environ is None else environ
    config = config_with_defaults(doc, DEFAULTS)
    for key in ("device_name", "fleet_name"):
        if not agent.entity_ok(config[key].replace("_", "-")):
            raise ConfigError(key, "expected 1-63 letters, digits, '-' or '_'")
    if environ.get("AWS_ENDPOINT_URL_SAGEMAKER_EDGE"):
        config["endpoint_url"] = environ["AWS_ENDPOINT_URL_SAGEMAKER_EDGE"]
    if environ.get("AWS_ENDPOINT_URL_S3"):
        config["s3_endpoint_url"] = environ["AWS_ENDPOINT_URL_S3"]
    check_endpoint_urls(config)
    check_seconds(config, ("heartbeat_interval", "retry_time_budget", "reload_timeout",
                           "request_timeout"))
    for key in ("free_space_reserve_bytes", "max_retries"):
        v = config[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ConfigError(key, "expected an integer >= 0")
    v = config["min_download_rate"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ConfigError("min_download_rate", "expected a number of bytes/s >= 0 (0: no minimum)")
    if config["s3_addressing_style"] not in ("auto", "path", "virtual"):
        raise ConfigError("s3_addressing_style", "expected auto, path or virtual")
    if config["board"] not in ("auto", "linux", "raspberrypi", "jetson", "micropython"):
        raise ConfigError("board", "expected auto, linux, raspberrypi or jetson")
    if not isinstance(config["verify_tls"], bool):
        raise ConfigError("verify_tls", "expected true or false")
    rc = config["reload_command"]
    if rc is not None and (
        not isinstance(rc, list) or not rc or not all(isinstance(a, str) for a in rc)
    ):
        raise ConfigError("reload_command", "expected a non-empty list of strings (argv)")
    if not isinstance(config["require_artifact_signature"], bool):
        raise ConfigError("require_artifact_signature", "expected true or false")
    if config["artifact_signing_key"] is not None:
        from edgecore_ports.signing import load_public_key

        load_public_key(config["artifact_signing_key"])  # fail at start-up, not per download
    elif config["require_artifact_signature"]:
        raise ConfigError(
            "require_artifact_signature", "true needs artifact_signing_key (a PEM public key)"
        )
    return config


def read_config_file(path, environ=None):
    """Read and validate a JSON config file."""
    try:
        with open(path, "rb") as f:
            doc = json.loads(f.read().decode("utf-8"))
    except OSError as exc:
        raise ConfigError("file", "cannot read %s: %s" % (path, exc.strerror or exc)) from None
    except ValueError as exc:
        raise ConfigError("file", "%s is not JSON: %s" % (path, exc)) from None
    return load_config(doc, environ)


def _join(*parts):
    return "/".join(p.rstrip("/") if i == 0 else p.strip("/") for i, p in enumerate(parts))


def _rmtree(path):
    import shutil

    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _artifact_name(key):
    name = key.rsplit("/", 1)[-1]
    out = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).lstrip(".")
    if not out or out == META_FILE:
        out = "model"
    return out


INFERENCE_SPOOL = "inference.jsonl"
MAX_SPOOL_BYTES = 4 * 1024 * 1024


def record_inference(state_dir, model_handle, latency_ms=None, sample_time=None, now=None):
    """The application's hook when it runs in another process than the agent.

    Appends one JSON line to ``<state_dir>/inference.jsonl`` (one small O_APPEND write,
    so concurrent writers do not interleave); the agent folds the lines into the next
    heartbeat's LatestInference / LatestSampleTime / ModelMetrics. In-process
    applications call ``Runner.record_inference`` instead.
    """
    if latency_ms is not None and (
        isinstance(latency_ms, bool) or not isinstance(latency_ms, (int, float)) or latency_ms < 0
    ):
        raise ValueError("record_inference: latency_ms must be a number >= 0 or None")
    line = (
        json.dumps(
            {
                "h": str(model_handle),
                "l": latency_ms,
                "s": sample_time,
                "t": time.time() if now is None else now,
            }
        )
        + "\n"
    )
    fd = os.open(_join(state_dir, INFERENCE_SPOOL), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


class _Fatal(Exception):
    """A download failure that retrying will not fix; its message is the reason."""


class _Partial:
    """A download in progress: its staging directory, open file, hash and byte count.

    The Verifier lives as long as the download (across retries), so a resumed
    transfer hashes only the new bytes: no hash copy or re-read is needed. The first
    response's ETag is kept in a sidecar (``RESUME_FILE``: sha1, url, etag) next to
    the artifact, so a restarted agent can resume too (``resume_from_disk``): it
    re-hashes the bytes on disk once, then asks for the rest with ``Range`` and
    ``If-Match``.
    """

    def __init__(self, directory, filename, sha1, handle, url=None):
        self.dir = directory
        self.filename = filename
        self.sha1 = sha1
        self.handle = handle
        self.url = url
        self.meta = {"sha1": sha1}
        self.done = 0
        self.file = None
        self.verifier = None
        self.etag = None
        self.from_disk = False  # the bytes so far were re-read after a restart

    def reset(self):
        self.close()
        self.remove()
        self.done = 0
        self.verifier = None
        self.etag = None
        self.from_disk = False

    def remove(self):
        if os.path.exists(self.dir):
            _rmtree(self.dir)

    def _path(self, name=None):
        return _join(self.dir, name or self.filename)

    def read_sidecar(self):
        """The sidecar's dict when it describes this download (same sha1 and url, an
        ETag), else None (missing, corrupt or another download's)."""
        try:
            with open(self._path(RESUME_FILE), "rb") as f:
                doc = json.loads(f.read(4096).decode("utf-8"))
        except (OSError, ValueError):
            return None
        if (
            not isinstance(doc, dict)
            or doc.get("sha1") != self.sha1
            or doc.get("url") != self.url
            or not isinstance(doc.get("etag"), str)
            or not doc["etag"]
        ):
            return None
        return doc

    def resume_from_disk(self):
        """Adopt the staged bytes of an earlier run when its sidecar matches; else
        start clean. Returns the bytes adopted (0 when starting clean)."""
        self.close()
        doc = self.read_sidecar() if os.path.isdir(self.dir) else None
        path = self._path()
        if doc is None or not os.path.isfile(path) or not os.path.getsize(path):
            self.reset()
            return 0
        verifier = Verifier("SHA1", self.sha1, operation="download " + self.handle)
        with open(path, "rb") as f:
            verifier.consume(f)
        self.verifier = verifier
        self.done = verifier.bytes_seen
        self.etag = doc["etag"]
        self.from_disk = True
        return self.done

    def save_sidecar(self, atomic_write):
        if self.etag:
            data = json.dumps({"sha1": self.sha1, "url": self.url, "etag": self.etag})
            atomic_write(self._path(RESUME_FILE), data, 0o600)

    def open(self, total):
        if self.verifier is None:
            self.verifier = Verifier(
                "SHA1", self.sha1, limit=total, operation="download " + self.handle
            )
            os.makedirs(self.dir, exist_ok=True)
            # Unbuffered, so that `done` counts bytes the kernel took: a buffer would hold
            # some back, and a refused flush (a full disk, a failing card) would drop them
            # while the hash already covers them. Stays open across calls (closed by
            # close()/commit()): not a `with` block.
            self.file = open(self._path(), "wb", buffering=0)  # noqa: SIM115
        elif self.file is None:
            if total is not None:
                self.verifier.limit = total  # unknown when the bytes came from disk
            self.file = open(self._path(), "r+b", buffering=0)  # noqa: SIM115
            # Bytes past `done` (a write cut short) were never hashed: drop them.
            self.file.truncate(self.done)
            self.file.seek(self.done)
        return self.file, self.verifier

    def close(self):
        if self.file is not None:
            try:
                self.file.close()
            finally:
                self.file = None

    def commit(self):
        """fsync the artifact, write edgecore.json; returns the metadata. Anything else
        in the directory (the resume sidecar, a temp file of its write) is removed
        first: a version directory holds the artifact and edgecore.json only."""
        if self.file is not None:
            os.fsync(self.file.fileno())
        else:  # all bytes came from disk (a restart after the last write)
            fd = os.open(self._path(), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.close()
        for name in os.listdir(self.dir):
            if name != self.filename:
                _rmtree(self._path(name))
        self.meta["size"] = self.done
        self.meta["file"] = self.filename
        with open(self._path(META_FILE), "w") as f:
            f.write(json.dumps(self.meta))
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(self.dir)
        return self.meta


def _write_all(f, data):
    """Write all of ``data`` to an unbuffered file (a raw write may take only part)."""
    view = memoryview(data)
    while view:
        n = f.write(view)
        if not n:  # not seen on regular files; never spin on it
            raise OSError(errno.EIO, "short write to %s" % f.name)
        view = view[n:]


class _Pace:
    """The minimum-throughput rule of one download attempt: ``check(n)`` after each
    read of ``n`` bytes returns the rate (bytes/s) when fewer than ``min_rate`` bytes/s
    arrived over the last RATE_WINDOW seconds, else None. Samples are kept at most one
    a second, so the window holds a bounded number of them."""

    def __init__(self, monotonic, min_rate, window=RATE_WINDOW):
        self.monotonic = monotonic
        self.min_rate = min_rate
        self.window = window
        self.got = 0
        self.samples = [(monotonic(), 0)]  # (time, bytes received by then)

    def check(self, n):
        self.got += n
        if not self.min_rate:
            return None
        now = self.monotonic()
        samples = self.samples
        if now - samples[-1][0] >= 1:
            samples.append((now, self.got))
        # Keep one sample at or before the window's start: the rate's baseline.
        while len(samples) > 1 and samples[1][0] <= now - self.window:
            samples.pop(0)
        t0, b0 = samples[0]
        if now - t0 < self.window:
            return None
        rate = (self.got - b0) / float(now - t0)
        return rate if rate < self.min_rate else None


def _null_log(level, event, **fields):
    pass


class Runner:
    """Executes the agent's decisions. See the module docstring.

    Injected for tests and embedding: ``port`` (default ``load_port(config["board"])``),
    ``credentials`` (a provider with ``get(now)``/``invalidate()`` or an
    ``edgecore.Credentials``; default ``provider_from_config``), ``http`` (an object with
    ``transport`` and ``open``; default ``port.make_transport(...)``), ``reload_hook``
    (``callable(handle, path_or_None)``; raises to fail), ``log``
    (``callable(level, event, **fields)``), ``progress`` (``callable(handle, done,
    total_or_None)``), ``rand``/``sleep`` (backoff), ``crash_hook`` (``callable(point)``,
    for crash tests: raise from it to simulate a kill).
    """

    def __init__(
        self,
        config,
        port=None,
        credentials=None,
        http=None,
        reload_hook=None,
        log=None,
        progress=None,
        rand=None,
        sleep=None,
        crash_hook=None,
        environ=None,
    ):
        self.config = config
        if port is None:
            from edgecore_ports import load_port

            port = load_port(config["board"])
        self.port = port
        if credentials is None:
            from edgecore_ports.credentials import provider_from_config

            credentials = provider_from_config(config, environ=environ, clock=port.clock)
        self.credentials = credentials
        if http is None:
            if hasattr(port, "make_transport"):
                http = port.make_transport(
                    verify=config["verify_tls"],
                    ca_bundle=config["ca_bundle"],
                    proxy=config["proxy"],
                )
            else:
                http = port
        self.http = http
        self.reload_hook = reload_hook
        self.log = log or _null_log
        self.progress = progress
        self.rand = rand or random.random
        self.sleep = sleep or time.sleep
        self.crash_hook = crash_hook
        self.model_dir = config["model_dir"].rstrip("/") or "/"
        self.state_dir = config["state_dir"].rstrip("/") or "/"
        self.state_path = _join(self.state_dir, STATE_FILE)
        self._last_date = None
        self._lock = None
        try:
            import threading

            self._lock = threading.RLock()
        except ImportError:
            pass
        self.state = None
        self._saved = None  # the bytes last saved
        self._client = None
        self.signing_key = None
        if config.get("artifact_signing_key"):
            from edgecore_ports.signing import load_public_key

            self.signing_key = load_public_key(config["artifact_signing_key"])

    # ---- small helpers ----------------------------------------------------------

    def _crash_point(self, point):
        if self.crash_hook is not None:
            self.crash_hook(point)

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

    def _invalidate(self):
        if hasattr(self.credentials, "invalidate"):
            self.credentials.invalidate()

    def _transport(self, method, url, headers, body=b""):
        opener = getattr(self.http, "open", None)
        if opener is None:
            status, headers_out, data = self.http.transport(method, url, headers, body)
        else:
            status, headers_out, data = self._exchange(opener, method, url, headers, body)
        self._last_date = headers_out.get("date")
        return status, headers_out, data

    def _exchange(self, opener, method, url, headers, body):
        """One API exchange, the whole response read within ``request_timeout`` seconds
        (checked after each read: a peer trickling bytes under the per-read timeout
        cannot hold the agent). Raises TransportError, retried like a network error."""
        limit = self.config["request_timeout"]
        deadline = self.port.monotonic() + limit
        origin = "/".join(url.split("/", 3)[:3])

        def check():
            if self.port.monotonic() > deadline:
                raise TransportError(
                    "%s %s: no complete response within request_timeout (%s s)"
                    % (method, origin, limit)
                )

        resp = opener(method, url, headers, body)
        try:
            check()
            bound = getattr(self.http, "max_body", MAX_API_BODY)
            declared = resp.headers.get("content-length")
            if declared is not None and ascii_digits(declared) and int(declared) > bound:
                raise TransportError(
                    "%s %s: response body of %s bytes exceeds the %d byte bound"
                    % (method, origin, declared, bound)
                )
            chunks = []
            size = 0
            while True:
                data = resp.read(CHUNK)
                if not data:
                    break
                size += len(data)
                if size > bound:
                    raise TransportError(
                        "%s %s: response body exceeds the %d byte bound" % (method, origin, bound)
                    )
                chunks.append(data)
                check()
            return resp.status, resp.headers, b"".join(chunks)
        finally:
            resp.close()

    @property
    def client(self):
        if self._client is None:
            from edgecore.client import Client

            self._client = Client(
                self.config["region"],
                _RunnerCredentials(self),
                endpoint_url=self.config["endpoint_url"],
                transport=self._transport,
                clock=self.now,
            )
        return self._client

    def _version_dir(self, handle, sha1):
        if not agent.handle_ok(handle) or not agent.sha1_ok(sha1):
            raise ValueError("model handle %r / sha1 not usable as a directory name" % (handle,))
        return _join(self.model_dir, VERSIONS, handle + "-" + sha1)

    def _link(self, handle):
        if not agent.handle_ok(handle):
            raise ValueError("model handle %r is not a valid ModelHandle" % (handle,))
        return _join(self.model_dir, handle)

    # ---- state ------------------------------------------------------------------

    def load_state(self):
        """Load the saved state (or a fresh one); raises agentstate.StateError if corrupt."""
        try:
            with open(self.state_path, "rb") as f:
                data = f.read(agentstate.MAX_STATE_BYTES + 1)
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
            self.state = agentstate.new_state(0)
        else:
            self.state = agentstate.loads(data)
        return self.state

    def save(self):
        """Persist the state atomically (0600). An unchanged state is not rewritten
        unless the clock floor is FLOOR_REFRESH seconds old (flash wear on idle cycles)."""
        state = self.state
        floor = state.get("clock_floor", 0)
        now = self.now()
        if (
            self._saved is not None
            and now - floor < FLOOR_REFRESH
            and agentstate.dumps(state) == self._saved
        ):
            return
        state["clock_floor"] = max(floor, now)
        data = agentstate.dumps(state)
        self.port.atomic_write(self.state_path, data, 0o600)
        self._saved = data
        self._crash_point("saved")

    def start(self):
        """Create directories, load the state and make the disk match it."""
        for d in (self.state_dir, self.model_dir, _join(self.model_dir, VERSIONS)):
            os.makedirs(d, exist_ok=True)
        try:
            os.chmod(self.state_dir, 0o700)
        except OSError:
            pass
        self.load_state()
        self.recover()
        self.save()

    def recover(self):
        """Disk := saved state: drop staging leftovers (except downloads a queued or
        in-flight deployment may resume), fix or remove model links."""
        self._prune_staging()
        # Temp files of an atomic write or link switch cut short by a kill.
        for name in os.listdir(self.state_dir):
            if name.startswith("." + STATE_FILE + ".") and name.endswith(".tmp"):
                os.unlink(_join(self.state_dir, name))
        for name in os.listdir(self.model_dir):
            if name.startswith(".") and name.endswith(".link-tmp"):
                os.unlink(_join(self.model_dir, name))
        active = self.state["active"]
        for name in os.listdir(self.model_dir):
            if name.startswith(".") or name in active:
                continue
            path = _join(self.model_dir, name)
            if os.path.islink(path) and os.readlink(path).startswith(VERSIONS + "/"):
                os.unlink(path)
                self.log("warning", "recover.unlinked", handle=name)
        for handle in sorted(active):
            entry = active[handle]
            target = VERSIONS + "/" + handle + "-" + entry["sha1"]
            link = self._link(handle)
            if os.path.islink(link) and os.readlink(link) == target:
                continue
            if not os.path.isdir(self._version_dir(handle, entry["sha1"])):
                # Should not happen (versions are kept while active); report, keep going.
                self.log("error", "recover.missing_version", handle=handle, sha1=entry["sha1"])
                continue
            self._switch(handle, target)
            self.log("warning", "recover.relinked", handle=handle, sha1=entry["sha1"])
        _fsync_dir(self.model_dir)

    def _wanted_downloads(self):
        """Staging names (``<handle>-<sha1>``) of the models the in-flight deployment
        (from its current definition on) and the queued ones may still download."""
        state = self.state or {}
        deps = list(state.get("queue") or [])
        inf = state.get("inflight")
        if inf:
            deps.append({"defs": inf["defs"][inf.get("i", 0) :]})
        names = set()
        for dep in deps:
            for d in dep.get("defs") or []:
                h, sha1 = d.get("handle"), d.get("sha1")
                if d.get("desired") == agent.DEPLOY and agent.handle_ok(h) and agent.sha1_ok(sha1):
                    names.add(h + "-" + sha1)
        return names

    def _prune_staging(self):
        """Remove staged downloads no deployment wants (and .staging once empty): a
        kept one is resumed, after its sidecar is checked, by _download."""
        staging = _join(self.model_dir, STAGING)
        if not os.path.isdir(staging):
            if os.path.lexists(staging):
                _rmtree(staging)
            return
        keep = self._wanted_downloads()
        for name in os.listdir(staging):
            path = _join(staging, name)
            if name not in keep or os.path.islink(path) or not os.path.isdir(path):
                _rmtree(path)
        if not os.listdir(staging):
            os.rmdir(staging)

    # ---- actions ----------------------------------------------------------------

    def execute(self, action):
        """Run one agent.Action; returns agent.Outcome (never raises for I/O failures)."""
        try:
            if action.kind == agent.DOWNLOAD:
                return self._download(action)
            if action.kind == agent.ACTIVATE:
                return self._activate(action)
            if action.kind == agent.DEACTIVATE:
                return self._deactivate(action)
            if action.kind == agent.RELOAD:
                return self._reload(action)
            if action.kind == agent.CLEANUP:
                return self._cleanup(action)
        except (OSError, ValueError, EdgecoreError) as exc:
            return agent.failed(self._describe(exc))
        raise ValueError("runner: unknown action kind %r" % (action.kind,))

    @staticmethod
    def _describe(exc):
        if isinstance(exc, OSError) and exc.strerror:
            where = exc.filename if isinstance(exc.filename, str) else ""
            return "%s%s" % (exc.strerror, (": " + where) if where else "")
        return str(exc) or exc.__class__.__name__

    def _switch(self, handle, target):
        link = self._link(handle)
        if os.path.exists(link) and not os.path.islink(link):
            raise ValueError(
                "%s exists and is not a link made by edgecore; not replacing it" % link
            )
        tmp = _join(self.model_dir, "." + handle + ".link-tmp")
        if os.path.islink(tmp) or os.path.exists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, link)
        _fsync_dir(self.model_dir)

    def _activate(self, action):
        sha1 = action.model["sha1"]
        vdir = self._version_dir(action.handle, sha1)
        if not os.path.isdir(vdir):
            return agent.failed("version %s of %s is not on disk" % (sha1[:12], action.handle))
        self._switch(action.handle, VERSIONS + "/" + action.handle + "-" + sha1)
        self._crash_point("activated")
        self.log(
            "info", "model.activated", handle=action.handle, sha1=sha1, deployment=action.deployment
        )
        return agent.succeeded({"path": self._link(action.handle)})

    def _deactivate(self, action):
        link = self._link(action.handle)
        if os.path.islink(link):
            os.unlink(link)
            _fsync_dir(self.model_dir)
        elif os.path.exists(link):
            return agent.failed("%s is not a link made by edgecore; not removing it" % link)
        self.log("info", "model.deactivated", handle=action.handle, deployment=action.deployment)
        return agent.succeeded()

    def _reload(self, action):
        path = None
        if action.model is not None:
            path = self._link(action.handle)
        if self.reload_hook is not None:
            try:
                self.reload_hook(action.handle, path)
            except Exception as exc:  # the application's failure, whatever it is
                return agent.failed("%s: %s" % (exc.__class__.__name__, exc))
        argv = self.config.get("reload_command")
        if argv:
            import subprocess

            env = dict(os.environ)
            env["EDGECORE_MODEL_HANDLE"] = action.handle
            env["EDGECORE_MODEL_PATH"] = path or ""
            env["EDGECORE_MODEL_SHA1"] = action.model["sha1"] if action.model else ""
            try:
                proc = subprocess.run(
                    argv,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    timeout=self.config["reload_timeout"],
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                return agent.failed("reload_command %s: %s" % (argv[0], exc))
            if proc.returncode != 0:
                tail = proc.stderr[-300:].decode("utf-8", "replace").strip()
                return agent.failed(
                    "reload_command %s exited with %d%s"
                    % (argv[0], proc.returncode, (": " + tail) if tail else "")
                )
        return agent.succeeded()

    def _cleanup(self, action):
        keep = set(h + "-" + s for h, s in action.keep)
        vroot = _join(self.model_dir, VERSIONS)
        removed = 0
        for name in os.listdir(vroot):
            if name not in keep:
                _rmtree(_join(vroot, name))
                removed += 1
        self._prune_staging()
        _fsync_dir(vroot)
        if removed:
            self.log("info", "versions.removed", count=removed)
        return agent.succeeded()

    # ---- downloads --------------------------------------------------------------

    def _download(self, action):
        handle = action.handle
        sha1 = action.model["sha1"]
        vdir = self._version_dir(handle, sha1)
        bucket, key = s3url.parse(action.model["s3url"])
        where = "s3://%s/%s" % (bucket, key)
        if os.path.isdir(vdir):
            # Renamed into place only after verification: complete by construction. But
            # a key pinned since then has not seen it: check the signature now.
            meta = self._read_meta(vdir)
            if self.signing_key is not None:
                path = _join(vdir, meta.get("file") or _artifact_name(key))
                problem = self._check_signature(bucket, key, where, handle, path)
                if problem is not None:
                    self.log("error", "download.failed", handle=handle, url=where, reason=problem)
                    return agent.failed(problem)
            return agent.succeeded(meta)
        url = s3url.object_url(
            bucket,
            key,
            self.config["region"],
            self.config["s3_endpoint_url"],
            self.config["s3_addressing_style"],
        )
        staging = _join(self.model_dir, STAGING)
        os.makedirs(staging, exist_ok=True)
        part = _Partial(
            _join(staging, handle + "-" + sha1), _artifact_name(key), sha1, handle, url=url
        )
        adopted = part.resume_from_disk()
        if adopted:
            self.log("info", "download.resume", handle=handle, url=where, have=adopted)
        backoff = agent.Backoff(
            self.port.monotonic(), self.config["max_retries"], self.config["retry_time_budget"]
        )
        fixed_clock = fixed_creds = False
        attempts = 0
        info = None

        def fail(reason):
            part.close()
            part.remove()
            self.log("error", "download.failed", handle=handle, url=where, reason=reason)
            return agent.failed(reason)

        try:
            while True:
                attempts += 1
                try:
                    info = self._fetch(url, where, part)
                    break
                except _Fatal as exc:
                    reason = str(exc)
                    if getattr(exc, "keep", False):
                        part.close()  # an error answer: the bytes so far stay valid
                    else:
                        part.reset()
                    code = getattr(exc, "code", None)
                    if (
                        code is not None
                        and agent.is_skew_error(code, reason)
                        and not fixed_clock
                        and self._fix_clock(getattr(exc, "date", None))
                    ):
                        fixed_clock = True
                        continue
                    if (
                        code in ("ExpiredToken", "InvalidToken", "TokenRefreshRequired")
                        and not fixed_creds
                    ):
                        fixed_creds = True
                        self._invalidate()
                        continue
                    if not getattr(exc, "retryable", False):
                        return fail(reason)
                except (TransportError, OSError) as exc:
                    # Keep what was received: the next attempt asks for the rest (Range).
                    part.close()
                    reason = "GET %s: %s" % (where, self._describe(exc))
                    if getattr(exc, "retryable", None) is False:  # e.g. a refused certificate
                        return fail(reason)
                    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        return fail("no space left in model_dir while writing: " + reason)
                except EdgecoreError as exc:  # e.g. a body longer than its Content-Length
                    return fail("GET %s: %s" % (where, exc))
                delay = backoff.delay(self.port.monotonic(), self.rand)
                if delay is None:
                    return fail("gave up after %d attempt(s): %s" % (attempts, reason))
                self.log(
                    "warning",
                    "download.retry",
                    handle=handle,
                    url=where,
                    reason=reason,
                    delay=round(delay, 3),
                    have=part.done,
                )
                self.sleep(delay)
        finally:
            # Anything else (a kill, an unexpected error) leaves the staged bytes and
            # their sidecar for the next run; recover()/CLEANUP drop what no
            # deployment wants any more.
            part.close()
        if self.signing_key is not None:
            problem = self._check_signature(bucket, key, where, handle, part._path())
            if problem is not None:
                return fail(problem)
        os.replace(part.dir, vdir)
        _fsync_dir(_join(self.model_dir, VERSIONS))
        self.log(
            "info",
            "download.verified",
            handle=handle,
            sha1=sha1,
            size=info["size"],
            url=where,
            attempts=attempts,
        )
        return agent.succeeded(info)

    def _check_signature(self, bucket, key, where, handle, path):
        """None when the artifact at ``path`` may be activated, else the reason it may not.

        The file has passed its SHA1 check; it is re-read once for its SHA-256 (constant
        memory) and checked against ``<key>.sig`` with the pinned key."""
        from edgecore_ports import signing

        sig_url = s3url.object_url(
            bucket,
            key + signing.SUFFIX,
            self.config["region"],
            self.config["s3_endpoint_url"],
            self.config["s3_addressing_style"],
        )
        sig_where = where + signing.SUFFIX
        backoff = agent.Backoff(
            self.port.monotonic(), self.config["max_retries"], self.config["retry_time_budget"]
        )
        while True:
            try:
                status, body = self._get_small(sig_url, signing.MAX_SIGNATURE)
                if status == 200 or status == 404 or not agent.is_retryable(None, status):
                    break
                reason = "GET %s: HTTP %d" % (sig_where, status)
            except (TransportError, OSError) as exc:
                reason = "GET %s: %s" % (sig_where, self._describe(exc))
            delay = backoff.delay(self.port.monotonic(), self.rand)
            if delay is None:
                return "artifact signature could not be fetched: " + reason
            self.sleep(delay)
        if status == 404:
            if self.config["require_artifact_signature"]:
                return "artifact signature missing: %s (HTTP 404)" % sig_where
            self.log("warning", "signature.missing", handle=handle, url=sig_where)
            return None
        if status != 200:
            return "artifact signature could not be fetched: GET %s: HTTP %d" % (
                sig_where, status)
        if body is None:
            return "artifact signature %s is larger than %d bytes" % (
                sig_where, signing.MAX_SIGNATURE)
        digest = signing.file_sha256(path)
        if not signing.verify(self.signing_key, body, digest):
            return "artifact signature does not verify with the pinned key: %s (sha256 %s)" % (
                sig_where, digest)
        self.log("info", "signature.verified", handle=handle, url=sig_where)
        return None

    def _get_small(self, url, limit):
        """(status, body) of a signed S3 GET; body is None when longer than ``limit``."""
        resp = self._s3_get(url, {})
        body = b""
        try:
            while len(body) <= limit:  # read() may return less than asked: loop
                chunk = resp.read(limit + 1 - len(body))
                if not chunk:
                    break
                body += chunk
        finally:
            resp.close()
        return resp.status, (body if len(body) <= limit else None)

    def _fix_clock(self, date_header):
        if not date_header:
            return False
        try:
            server = parse_http_date(date_header)
        except ValueError:
            return False
        raw = self.port.clock()
        agent.correct_clock(self.state, raw, server)
        self.log("warning", "clock.corrected", offset=self.state["clock_offset"])
        return True

    def _s3_get(self, url, request_headers):
        """Send a SigV4-signed (service s3) GET of ``url``; returns the streamed response."""
        creds = self._creds()
        headers = sigv4.sign_request(
            "GET",
            url,
            request_headers,
            b"",
            access_key=creds.access_key,
            secret_key=creds.secret_key,
            session_token=creds.session_token,
            region=self.config["region"],
            service="s3",
            timestamp=self.now(),
        )
        return self.http.open("GET", url, headers)

    def _fetch(self, url, where, part):
        request_headers = {}
        if part.done:
            request_headers["Range"] = "bytes=%d-" % part.done
            if part.etag:
                # The object must be the one the bytes on disk came from: a changed
                # object answers 412 and the download restarts from byte 0.
                request_headers["If-Match"] = part.etag
        resp = self._s3_get(url, request_headers)
        try:
            etag = resp.headers.get("etag")
            if resp.status == 206 and part.done:
                total = content_range_total(resp.headers.get("content-range"), part.done)
                if total is None:
                    raise _Fatal(
                        "GET %s: HTTP 206 with an unexpected Content-Range %r"
                        % (where, resp.headers.get("content-range"))
                    )
                if part.etag and etag and etag != part.etag:
                    # If-Match not honoured and the object changed: start over.
                    exc = _Fatal("GET %s: ETag changed during the download" % where)
                    exc.retryable = True
                    raise exc
            elif resp.status == 200:
                if part.verifier is not None:
                    part.reset()  # the server ignored the Range (or none was sent): anew
                length = resp.headers.get("content-length")
                total = int(length) if length is not None and ascii_digits(length) else None
                part.etag = etag
            elif resp.status == 416 and part.done and part.verifier is not None:
                # Nothing after the bytes we have: they may be the whole object (a
                # restart after the last write). The checksum decides; else restart.
                try:
                    part.verifier.finish()
                except ChecksumMismatch:
                    exc = _Fatal("GET %s: HTTP 416, the staged bytes do not verify" % where)
                    exc.retryable = True
                    raise exc from None
                return part.commit()
            else:
                body = resp.read(s3url.MAX_ERROR_BODY)
                code, message = s3url.parse_error(body)
                exc = _Fatal(
                    "GET %s: HTTP %d%s%s"
                    % (
                        where,
                        resp.status,
                        (" " + code) if code else "",
                        (": " + message) if message else "",
                    )
                )
                exc.code = code
                exc.date = resp.headers.get("date")
                if resp.status == 412 and part.done:
                    # The object changed since the first byte: drop the partial and
                    # fetch the new one from 0 (a retry, not a failure).
                    exc.retryable = True
                else:
                    exc.retryable = agent.is_retryable(code, resp.status)
                    exc.keep = True  # an answer about this request, not about our bytes
                raise exc
            free = self.port.free_space(self.model_dir)
            reserve = self.config["free_space_reserve_bytes"]
            need = (total - part.done) if total is not None else 0
            if free < need + reserve:
                raise _Fatal(
                    "not enough free space in %s for %s: need %s bytes + %d reserve, "
                    "%d available"
                    % (self.model_dir, where, need if total is not None else "?", reserve, free)
                )
            for name, header in (
                ("name", "x-amz-meta-model-name"),
                ("version", "x-amz-meta-model-version"),
            ):
                if resp.headers.get(header):
                    part.meta[name] = resp.headers[header]
            fresh = part.verifier is None
            f, verifier = part.open(total)
            if fresh:
                part.save_sidecar(self.port.atomic_write)
            pace = _Pace(self.port.monotonic, self.config["min_download_rate"])
            # A body without Content-Length (chunked, or read to the close) is bounded by
            # the space checked above: a hostile endpoint cannot fill model_dir.
            room = part.done + max(free - reserve, 0)
            mv = memoryview(bytearray(CHUNK))
            while True:
                n = resp.readinto(mv)
                if not n:
                    break
                if total is None and part.done + n > room:
                    raise _Fatal(
                        "GET %s: a body without Content-Length outgrew the free space of "
                        "%s (%d bytes beyond the %d byte reserve); stopped"
                        % (where, self.model_dir, room, reserve)
                    )
                chunk = mv[:n]
                _write_all(f, chunk)  # written, then hashed: `done` counts bytes that are both
                verifier.update(chunk)
                part.done += n
                if self.progress is not None:
                    self.progress(part.handle, part.done, total)
                self._crash_point("download-chunk")
                slow = pace.check(n)
                if slow is not None and (total is None or part.done < total):
                    raise TransportError(
                        "GET %s: download too slow (%.0f bytes/s over the last %d s, "
                        "min_download_rate %s): aborted, will resume"
                        % (where, slow, RATE_WINDOW, self.config["min_download_rate"])
                    )
            try:
                verifier.finish()
            except ChecksumMismatch as exc:
                if part.from_disk:
                    # Bytes adopted after a restart (a power cut can leave garbage in
                    # an unsynced tail): fetch everything again once before failing.
                    again = _Fatal("GET %s: %s (bytes staged before a restart)" % (where, exc))
                    again.retryable = True
                    raise again from None
                raise _Fatal("GET %s: %s" % (where, exc)) from None
            return part.commit()
        finally:
            resp.close()

    def _read_meta(self, vdir):
        try:
            with open(_join(vdir, META_FILE)) as f:
                meta = json.loads(f.read(65536))
            return meta if isinstance(meta, dict) else {}
        except (OSError, ValueError):
            return {}

    # ---- API calls ----------------------------------------------------------------

    def call(self, operation, **params):
        """A Client call with retries (throttling/5xx/network), one clock correction
        on a skew rejection and one credentials refresh on an expired token. An error
        whose ``retryable`` attribute is False (e.g. a device certificate the IoT
        credentials endpoint refuses) is raised at once, whatever its type."""
        backoff = agent.Backoff(
            self.port.monotonic(), self.config["max_retries"], self.config["retry_time_budget"]
        )
        fixed_clock = fixed_creds = False
        while True:
            self._last_date = None
            try:
                return getattr(self.client, operation)(**params)
            except (ClientError, TransportError, ResponseParseError) as exc:
                if getattr(exc, "retryable", None) is False:
                    raise
                if isinstance(exc, ClientError):
                    if (
                        agent.is_skew_error(exc.code, exc.message)
                        and not fixed_clock
                        and self._fix_clock(self._last_date)
                    ):
                        fixed_clock = True
                        continue
                    if (
                        exc.code
                        in ("ExpiredTokenException", "ExpiredToken", "UnrecognizedClientException")
                        and not fixed_creds
                    ):
                        fixed_creds = True
                        self._invalidate()
                        continue
                    if not (wire.is_retryable(exc) or agent.is_retryable(exc.code, exc.status)):
                        raise
                last = exc
            delay = backoff.delay(self.port.monotonic(), self.rand)
            if delay is None:
                raise last
            self.log(
                "warning", "api.retry", operation=operation, reason=str(last), delay=round(delay, 3)
            )
            self.sleep(delay)

    # ---- the cycle ----------------------------------------------------------------

    def _locked(self):
        return self._lock if self._lock is not None else _NoLock()

    def reconcile(self):
        """Execute every pending action, saving the state after each step. Returns the
        DeploymentResults finished meanwhile."""
        finished = []
        while True:
            with self._locked():
                seen = self.state["last_result"]
                action = agent.next_action(self.state, self.now())
                res = self.state["last_result"]
                if res is not seen:  # next_action finished a deployment
                    finished.append(res)
                    self.log(
                        "info" if res["DeploymentStatus"] == "SUCCESS" else "error",
                        "deployment.done",
                        deployment=res["DeploymentName"],
                        status=res["DeploymentStatus"],
                        message=res["DeploymentStatusMessage"],
                    )
                if action is None:
                    self.save()
                    return finished
            if action.kind == agent.DOWNLOAD:
                self.log(
                    "info",
                    "download.start",
                    handle=action.handle,
                    deployment=action.deployment,
                    url=action.model["s3url"],
                )
            outcome = self.execute(action)
            self._crash_point("executed-" + action.kind)
            with self._locked():
                agent.apply(self.state, action, outcome, self.now())
                self.save()

    def ingest_inferences(self):
        """Fold the lines other processes appended to the inference spool into the state.

        The spool is renamed first (new appends start a new file), read (bounded), then
        removed after the state is saved; a leftover from a crash is read first.
        """
        spool = _join(self.state_dir, INFERENCE_SPOOL)
        taken = spool + ".ingest"
        if not os.path.exists(taken):
            try:
                os.replace(spool, taken)
            except OSError:
                return 0
        count = bad = 0
        with open(taken, "rb") as f:
            data = f.read(MAX_SPOOL_BYTES)
        with self._locked():
            for raw in data.splitlines():
                try:
                    rec = json.loads(raw.decode("utf-8"))
                    ok = agent.record_inference(
                        self.state,
                        rec["h"],
                        latency_ms=rec.get("l"),
                        sample_time=rec.get("s"),
                        now=int(rec["t"]),
                    )
                except (ValueError, KeyError, TypeError, AttributeError):
                    bad += 1
                    continue
                count += 1 if ok else 0
            self.save()
        os.unlink(taken)
        if bad:
            self.log("warning", "inference.bad_lines", count=bad)
        return count

    def heartbeat(self):
        """Send one heartbeat; returns True on success (the result it carried is acked)."""
        try:
            self.ingest_inferences()
        except OSError as exc:
            self.log("warning", "inference.spool_failed", reason=self._describe(exc))
        now = self.now()
        try:
            metrics = self.port.metrics(self.model_dir, now)
        except Exception as exc:  # metrics are best effort
            self.log("warning", "metrics.failed", reason=str(exc))
            metrics = []
        with self._locked():
            params, sent = agent.heartbeat_params(
                self.state,
                AGENT_VERSION,
                self.config["device_name"],
                self.config["fleet_name"],
                metrics,
                now,
            )
        try:
            self.call("send_heartbeat", **params)
        except ParamValidationError as exc:
            with self._locked():
                if sent["result"] is not None and (exc.field or "").startswith("DeploymentResult"):
                    # A result the service would never accept must not block the queue.
                    agent.heartbeat_done(
                        self.state, {"result": sent["result"], "metrics": {}}, True, now
                    )
                    self.log("error", "result.dropped", deployment=sent["result"], reason=str(exc))
                agent.heartbeat_done(self.state, sent, False, now)
                self.save()
            raise
        except EdgecoreError:
            with self._locked():
                agent.heartbeat_done(self.state, sent, False, now)
                self.save()
            raise
        with self._locked():
            agent.heartbeat_done(self.state, sent, True, self.now())
            self.save()
        self.log(
            "info", "heartbeat.sent", models=len(params.get("Models", [])), result=sent["result"]
        )
        return True

    def cycle(self):
        """One full cycle. Returns a report dict; ``ok`` is True when the poll and the
        heartbeat both succeeded (a FAILed deployment, reported, still counts as ok)."""
        if self.state is None:
            self.start()
        report = {"ok": True, "errors": [], "results": []}
        try:
            result = self.call(
                "get_deployments",
                DeviceName=self.config["device_name"],
                DeviceFleetName=self.config["fleet_name"],
            )
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
            with self._locked():
                ignored = agent.plan(self.state, result, self.now())
                self.save()
                # A staged download of a deployment the cloud no longer lists goes now,
                # not at the next restart or CLEANUP.
                self._prune_staging()
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
        while True:
            started = self.port.monotonic()
            try:
                self.cycle()
            except agentstate.StateError:
                raise
            except Exception as exc:  # never let one bad cycle kill the service
                self.log("error", "cycle.crashed", reason="%s: %s" % (exc.__class__.__name__, exc))
            if stop is not None and stop():
                return
            wait = self.config["heartbeat_interval"] - (self.port.monotonic() - started)
            if wait > 0:
                self.sleep(wait)

    def record_inference(self, model_handle, latency_ms=None, sample_time=None):
        """The application's hook (thread-safe); see agent.record_inference."""
        with self._locked():
            if self.state is None:
                return False
            return agent.record_inference(
                self.state,
                model_handle,
                latency_ms=latency_ms,
                sample_time=sample_time,
                now=self.now(),
            )


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


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
