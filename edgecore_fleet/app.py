"""The fleet server as one WSGI application: routing, authentication, AWS error shapes.

- ``POST /GetDeployments`` etc.: the device API (rest-json, ``deviceapi``);
- ``POST /`` with ``X-Amz-Target: SageMaker.<Operation>``: the control plane (AWS JSON
  1.1, ``control``), admin keys only;
- ``GET /healthz`` (the database answers), ``GET /metrics`` (Prometheus),
  ``GET /dashboard...`` (read-only HTML, ``dashboard``).

Every API request is SigV4-verified (``sigcheck``) before anything else is looked at,
bodies are bounded (1 MiB) and parsed with a depth limit, and every answer carries
``x-amzn-RequestId``. Errors are AWS's: rest-json ``{"message"}`` + ``x-amzn-ErrorType``;
JSON 1.1 adds ``__type``. Nothing is kept between requests. Hooks for the embedded mode
and tests: ``clock``, ``date_header`` (send ``Date`` from that clock; gunicorn sends its
own), ``on_request(entry)``, ``take_fault(operation)`` and ``extra_check`` (a second,
independent signature check, e.g. botocore's in the test suite).
"""

import json
import logging
import time
import uuid
from email.utils import formatdate

from edgecore import jsonenc

from . import control, dashboard, deviceapi, sigcheck
from .errors import ApiError
from .metrics import CONTENT_TYPE as METRICS_TYPE
from .metrics import Metrics

log = logging.getLogger("edgecore_fleet")
access_log = logging.getLogger("edgecore_fleet.access")

MAX_BODY = 1 << 20
MAX_DEPTH = 32
JSON11 = "application/x-amz-json-1.1"
INTERNAL = (500, "InternalServiceException",
            "An internal failure occurred. Try your request again.")


class Context:
    """What an operation sees: the store, the verified request, the server's settings."""

    def __init__(self, app, verified, now):
        self.app = app
        self.store = app.store
        self.verified = verified
        self.now = now
        self.cache_ttl = app.cache_ttl
        self.region = app.region
        self.account = app.account
        self.s3 = app.s3


class FleetApp:
    """The WSGI callable. See the module docstring for the hooks."""

    def __init__(self, store, region="us-west-2", account="000000000000", s3=None,
                 clock=None, max_skew=sigcheck.MAX_SKEW, cache_ttl=deviceapi.DEFAULT_CACHE_TTL,
                 date_header=False, dashboard=True, on_request=None, take_fault=None,
                 extra_check=None):
        self.store = store
        self.region = region
        self.account = account
        self.s3 = s3
        self.clock = clock or time.time
        self.max_skew = max_skew
        self.cache_ttl = cache_ttl
        self.date_header = date_header
        self.dashboard = dashboard
        self.on_request = on_request
        self.take_fault = take_fault
        self.extra_check = extra_check
        self.metrics = Metrics(store)

    # ------------------------------------------------------------------ WSGI
    def __call__(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        path = environ.get("PATH_INFO") or "/"
        if method in ("GET", "HEAD") and environ.get("HTTP_X_AMZ_TARGET") is None:
            if path == "/healthz":
                return self._healthz(start_response)
            if path == "/metrics":
                return self._reply(start_response, 200, self.metrics.render(),
                                   [("Content-Type", METRICS_TYPE)])
            if self.dashboard and (path == "/" or path.startswith("/dashboard")):
                status, html = dashboard.render(self.store, path, self.clock())
                return self._reply(start_response, status, html.encode("utf-8"),
                                   [("Content-Type", "text/html; charset=utf-8")])
        return self._api(environ, start_response)

    def _healthz(self, start_response):
        try:
            self.store.revision()
            status, body = 200, {"status": "ok"}
        except Exception as exc:  # the database is down: say so, never a traceback
            log.warning("healthz: database unavailable: %s", type(exc).__name__)
            status, body = 503, {"status": "unavailable"}
        return self._reply(start_response, status, json.dumps(body).encode(),
                           [("Content-Type", "application/json")])

    def _reply(self, start_response, status, payload, headers):
        headers = list(headers) + [("Content-Length", str(len(payload)))]
        if self.date_header:
            headers.append(("Date", formatdate(self.clock(), usegmt=True)))
        start_response("%d %s" % (status, _REASONS.get(status, "Error")), headers)
        return [payload]

    # ------------------------------------------------------------------ APIs
    def _api(self, environ, start_response):
        started = time.monotonic()
        request_id = str(uuid.uuid4())
        target = environ.get("HTTP_X_AMZ_TARGET")
        raw_path = environ.get("RAW_URI") or environ.get("REQUEST_URI") or _raw_path(environ)
        path = raw_path.partition("?")[0]
        if target is not None:
            api = "control"
            operation = target.rpartition(".")[2] if target.startswith("SageMaker.") else target
        else:
            api = "device"
            operation = deviceapi.ROUTES.get(path, path)
        headers = _headers(environ)
        auth = sigcheck.header(headers, "authorization") or ""
        entry = {"operation": operation, "request_id": request_id, "status": 200,
                 "error": None,
                 "access_key_id": auth.partition("Credential=")[2].partition("/")[0] or None}
        payload, error = b"", None
        try:
            with self.store.request():
                payload = self._serve(environ, api, raw_path, target, operation, headers,
                                      entry)
        except ApiError as e:  # sigcheck.AuthError too
            error = (e.status, e.code, e.message)
        except Exception:  # a real internal error: answered as AWS would, cause logged
            log.exception("internal error in %s", operation)
            error = INTERNAL
        content_type = JSON11 if api == "control" else "application/json"
        extra = [("x-amzn-RequestId", request_id)]
        if error is not None:
            entry.update(status=error[0], error=error[1])
            body = {"message": error[2]}
            if api == "control":
                body["__type"] = error[1]
            payload = json.dumps(body).encode("utf-8")
            extra.append(("x-amzn-ErrorType", error[1]))
        seconds = time.monotonic() - started
        self.metrics.observe(api, operation if error is None or error[0] != 404 else "unknown",
                             entry["status"], seconds)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info("request", extra={"fields": {
                "api": api, "operation": operation, "status": entry["status"],
                "error": entry["error"], "access_key_id": entry["access_key_id"],
                "request_id": request_id, "ms": round(seconds * 1000, 2)}})
        # Recorded before the reply: a client that has its answer finds its request there.
        if self.on_request is not None:
            self.on_request(entry)
        return self._reply(start_response, entry["status"], payload,
                           [("Content-Type", content_type)] + extra)

    def _serve(self, environ, api, raw_path, target, operation, headers, entry):
        """Authenticate and run one API request; returns the response body."""
        path = raw_path.partition("?")[0]
        body = _read_body(environ)
        now = self.clock()
        verified = sigcheck.verify(environ["REQUEST_METHOD"], raw_path, headers, body,
                                   self.store.lookup_key, now, self.max_skew)
        if self.extra_check is not None:
            self.extra_check(environ["REQUEST_METHOD"], raw_path, headers, body,
                             verified.key, verified.region)
        entry["access_key_id"] = verified.key.access_key
        ctx = Context(self, verified, now)
        if api == "device":
            result = self._device(ctx, environ["REQUEST_METHOD"], path, operation, body)
            return b"" if result is None else json.dumps(result).encode("utf-8")
        return json.dumps(self._control(ctx, target, operation, body)).encode("utf-8")

    def _fault(self, operation):
        fault = self.take_fault(operation) if self.take_fault is not None else None
        if fault is not None:
            raise ApiError(*fault)

    def _device(self, ctx, method, path, operation, body):
        if path not in deviceapi.ROUTES or method != "POST":
            raise ApiError(404, "UnknownOperationException", "UnknownOperationException")
        self._fault(operation)
        params = _parse_json(body)
        return deviceapi.handle(ctx, operation, params)

    def _control(self, ctx, target, operation, body):
        if not target.startswith("SageMaker.") or operation not in control.HANDLERS:
            raise ApiError(400, "UnknownOperationException",
                           "Operation %s is not supported." % target[:100])
        self._fault(operation)
        params = _parse_json(body) if body else {}
        return control.handle(ctx, operation, params)


def _parse_json(body):
    try:
        params = jsonenc.load_bounded(body, MAX_BODY, MAX_DEPTH)
    except ValueError:
        raise ApiError(400, "SerializationException", "Request body is not valid JSON") \
            from None
    if not isinstance(params, dict):
        raise ApiError(400, "SerializationException", "Expected an object at '<root>'")
    return params


def _read_body(environ):
    length = environ.get("CONTENT_LENGTH")
    if not length:
        if environ.get("HTTP_TRANSFER_ENCODING"):
            raise ApiError(411, "LengthRequiredException", "Content-Length is required")
        return b""
    try:
        length = int(length)
    except ValueError:
        raise ApiError(400, "SerializationException", "Invalid Content-Length") from None
    if length < 0 or length > MAX_BODY:
        raise ApiError(413, "RequestEntityTooLargeException", "Request body too large")
    body = environ["wsgi.input"].read(length)
    if len(body) != length:
        raise ApiError(400, "SerializationException", "Request body shorter than its "
                       "Content-Length")
    return body


def _headers(environ):
    """(name, value) pairs as received (WSGI folds repeated headers with ',')."""
    out = []
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            out.append((key[5:].replace("_", "-").lower(), value))
    if environ.get("CONTENT_TYPE"):
        out.append(("content-type", environ["CONTENT_TYPE"]))
    if environ.get("CONTENT_LENGTH"):
        out.append(("content-length", environ["CONTENT_LENGTH"]))
    return out


def _raw_path(environ):
    from urllib.parse import quote

    path = quote(environ.get("PATH_INFO", "/").encode("latin-1"), safe="/~!$&'()*+,;=:@-._")
    query = environ.get("QUERY_STRING")
    return path + ("?" + query if query else "")


_REASONS = {200: "OK", 302: "Found", 400: "Bad Request", 403: "Forbidden",
            404: "Not Found", 411: "Length Required", 413: "Request Entity Too Large",
            500: "Internal Server Error", 503: "Service Unavailable"}
