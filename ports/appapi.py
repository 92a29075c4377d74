"""The applications' API: ListModels, DescribeModel, WatchModels, RecordInference,
CaptureData, GetCaptureDataStatus -- validated, over what the agent provides.

Runs on CPython and MicroPython. On CPython ``edgecore_ports.localapi`` serves an
``AppApi`` on a Unix socket (HTTP/1.1 + JSON, see docs/local-api.md); on MicroPython
the application calls the same methods in-process (no socket), with the same
arguments and results, and gets the same ``ApiError``.

What the agent (the executor) provides:

- ``ModelSet``: the active models as the API shows them. The executor calls
  ``models.update(models_from_state(state))`` after each saved state in which the
  active set (or a result) changed; ``update`` wakes every ``WatchModels`` waiting.
- ``record_inference(handle, latency_ms, sample_time) -> bool`` (the executor's
  ``Runner.record_inference``; False: the handle is not active).
- ``store`` (``edgecore_ports.capture.CaptureStore``) and ``uploader`` (its
  ``Uploader``, woken after each capture), or None when ``capture_s3_uri`` is unset.

Results are dicts of JSON data; failures raise ``ApiError`` with ``status`` (the HTTP
status the server answers with), ``code``, ``message`` and ``field``.
"""

from edgecore import agent
from edgecore.errors import EdgecoreError
from edgecore_ports import NoLock, capture

MAX_WATCH_SECONDS = 300
DEFAULT_WATCH_SECONDS = 60
_CAPTURE_STATUS = {"ValidationError": 400, "RecordTooLarge": 413, "CaptureIdInUse": 409,
                   "BufferFull": 507}


class ApiError(EdgecoreError):
    def __init__(self, status, code, message, field=None):
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        super().__init__("%s: %s" % (code, message))

    def to_json(self):
        out = {"Code": self.code, "Message": self.message}
        if self.field:
            out["Field"] = self.field
        return out


def _invalid(operation, field, expected):
    return ApiError(400, "ValidationError",
                    "%s: invalid %s: expected %s" % (operation, field, expected), field)


def _number(value, operation, field, optional=True, hi=None):
    """``value`` if it is a finite number >= 0 (and <= hi), None when optional and None."""
    if value is None and optional:
        return None
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or value != value
            or value < 0 or value == float("inf") or (hi is not None and value > hi)):
        raise _invalid(operation, field, "a finite number >= 0%s"
                       % ("" if hi is None else " and <= %s" % hi))
    return value


def _handle(value, operation):
    if not agent.handle_ok(value):
        raise _invalid(operation, "ModelHandle", "1-63 letters, digits or '-' (a model handle)")
    return value


def _last_attempts(state):
    """{handle: LastAttempt} from the results the state still holds (newest wins)."""
    results = list(state.get("pending") or [])
    if state.get("last_result"):
        results.append(state["last_result"])
    out = {}
    for res in results:
        end = res.get("DeploymentEndTime") or 0
        for m in res.get("DeploymentModels") or []:
            h = m.get("ModelHandle")
            if h is None or (h in out and out[h]["EndTime"] > end):
                continue
            out[h] = {"Deployment": res.get("DeploymentName"), "Status": m.get("Status"),
                      "StatusReason": m.get("StatusReason"),
                      "DesiredState": m.get("DesiredState"), "EndTime": end}
    return out


def models_from_state(state):
    """The API's view of an ``edgecore.agentstate`` state: a list of model dicts, the
    active ones (``Active: true``) and those whose last attempt is known but which are
    not active (``Active: false``: e.g. a first deployment that failed)."""
    attempts = _last_attempts(state)
    out = []
    active = state.get("active") or {}
    for h in sorted(active):
        e = active[h]
        out.append({
            "ModelHandle": h, "Active": True, "ModelName": e.get("name"),
            "ModelVersion": e.get("version"), "Sha1": e.get("sha1"), "Path": e.get("path"),
            "ActivatedAt": e.get("activated"), "Deployment": e.get("deployment"),
            "Size": e.get("size"), "LastAttempt": attempts.get(h),
        })
    for h in sorted(attempts):
        if h not in active:
            out.append({"ModelHandle": h, "Active": False, "LastAttempt": attempts[h]})
    return out


def _version(models):
    """A token that changes exactly when the active set does (handle, SHA1, path, time)."""
    import binascii
    import hashlib

    parts = []
    for m in models:
        if m.get("Active"):
            parts.append("%s|%s|%s|%s" % (m["ModelHandle"], m.get("Sha1"), m.get("Path"),
                                          m.get("ActivatedAt")))
    parts.sort()
    digest = hashlib.sha256("\n".join(parts).encode("utf-8")).digest()
    return binascii.hexlify(digest[:8]).decode("ascii")


def check_watch(since, timeout):
    """ApiError unless WatchModels' arguments are well formed."""
    if since is not None and (not isinstance(since, str) or len(since) > 64):
        raise _invalid("WatchModels", "Since", "a Version string from an earlier answer")
    _number(timeout, "WatchModels", "Timeout", False, MAX_WATCH_SECONDS)


class ModelSet:
    """The models the API serves, a version token, and a wait for the next change
    (a threading.Condition on CPython; on MicroPython ``wait`` returns at once)."""

    def __init__(self, models=None):
        try:
            import threading

            self._cond = threading.Condition()
        except ImportError:
            self._cond = None
        self._models = []
        self.version = _version([])
        if models:
            self.update(models)

    def _locked(self):
        return self._cond if self._cond is not None else NoLock()

    def update(self, models):
        """Replace the models (a list of dicts, ``models_from_state``'s form); wakes the
        watchers when the active set changed. Returns True when it did."""
        models = list(models)
        version = _version(models)
        with self._locked():
            changed = version != self.version
            self._models = models
            self.version = version
            if changed and self._cond is not None:
                self._cond.notify_all()
        return changed

    def snapshot(self):
        """(version, models) seen together."""
        with self._locked():
            return self.version, self._models

    def wait(self, since, timeout):
        """Block until the version differs from ``since`` or ``timeout`` seconds passed;
        returns (version, models)."""
        with self._locked():
            if self._cond is not None and since == self.version and timeout > 0:
                self._cond.wait_for(lambda: self.version != since, timeout)
            return self.version, self._models


class AppApi:
    """The operations; see the module doc. ``device``/``fleet`` go into capture records."""

    def __init__(self, models, record_inference=None, store=None, uploader=None, device=None,
                 fleet=None, clock=None):
        self.models = models
        self._record_inference = record_inference
        self.store = store
        self.uploader = uploader
        self.device = device
        self.fleet = fleet
        if clock is None:
            import time

            clock = time.time
        self.clock = clock

    def list_models(self):
        version, models = self.models.snapshot()
        return {"Models": [m for m in models if m.get("Active")], "Version": version}

    def _active(self, handle, operation):
        _handle(handle, operation)
        for m in self.models.snapshot()[1]:
            if m["ModelHandle"] == handle and m.get("Active"):
                return m
        raise ApiError(404, "ModelNotActive", "%s: model %s is not active" % (operation, handle),
                       "ModelHandle")

    def describe_model(self, handle):
        _handle(handle, "DescribeModel")
        for m in self.models.snapshot()[1]:
            if m["ModelHandle"] == handle:
                return m
        raise ApiError(404, "ModelNotFound", "DescribeModel: no model %s on this device"
                       % handle, "ModelHandle")

    def watch_models(self, since=None, timeout=DEFAULT_WATCH_SECONDS):
        """Returns when the active set's version differs from ``since`` (at once when
        ``since`` is None or already stale), else after ``timeout`` seconds with
        ``Changed: false``."""
        check_watch(since, timeout)
        if since is None:
            version, models = self.models.snapshot()
        else:
            version, models = self.models.wait(since, timeout)
        return {"Models": [m for m in models if m.get("Active")], "Version": version,
                "Changed": version != since}

    def record_inference(self, handle, latency_ms=None, sample_time=None):
        _handle(handle, "RecordInference")
        # The bounds a heartbeat can carry (agent.check_inference's).
        _number(latency_ms, "RecordInference", "LatencyMs", hi=agent.MAX_LATENCY_MS)
        _number(sample_time, "RecordInference", "SampleTime", hi=agent.MAX_TIME)
        if self._record_inference is None or not self._record_inference(
                handle, latency_ms, sample_time):
            raise ApiError(404, "ModelNotActive", "RecordInference: model %s is not active"
                           % handle, "ModelHandle")
        return {}

    def capture_data(self, model_handle, capture_id, inference_time=None, inputs=None,
                     outputs=None, auxiliary=None):
        """Buffer one capture for upload; ``inputs``/``outputs``/``auxiliary`` are lists
        of tensors (see ``edgecore_ports.capture.tensor_json``)."""
        if self.store is None:
            raise ApiError(503, "CaptureNotConfigured",
                           "CaptureData: capture_s3_uri is not set in the agent config")
        model = self._active(model_handle, "CaptureData")
        when = self.clock() if inference_time is None else inference_time
        try:
            rec = capture.make_record(
                model_handle, capture_id, when, inputs, outputs, auxiliary,
                model={"name": model.get("ModelName"), "version": model.get("ModelVersion"),
                       "sha1": model.get("Sha1")},
                device=self.device, fleet=self.fleet)
            self.store.add(model_handle, capture_id, rec)
        except capture.CaptureError as exc:
            raise ApiError(_CAPTURE_STATUS.get(exc.code, 400), exc.code, str(exc),
                           exc.field) from None
        if self.uploader is not None:
            self.uploader.wake()
        return {"CaptureId": capture_id, "Status": capture.IN_PROGRESS}

    def get_capture_data_status(self, capture_id):
        if not capture.capture_id_ok(capture_id):
            raise _invalid("GetCaptureDataStatus", "CaptureId",
                           "1-128 of letters, digits, '.', '_', '-' (not first)")
        if self.store is None:
            status, reason = capture.NOT_FOUND, None
        else:
            status, reason = self.store.status(capture_id)
        out = {"CaptureId": capture_id, "Status": status}
        if reason:
            out["Reason"] = reason
        return out
