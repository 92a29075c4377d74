"""The local SageMaker Edge Manager endpoint: rest-json over http.server, SigV4 checked.

POST /GetDeployments, /SendHeartbeat, /GetDeviceRegistration with the bodies, status
codes and error shapes of the real service (``x-amzn-ErrorType`` header + JSON
``{"message": ...}``). Every request is authenticated by ``sigcheck.verify`` (botocore's
signer); request bodies are validated against botocore's own copy of the service model.
Every response carries ``x-amzn-RequestId`` and ``Date`` (agents correct clock skew from
it). Test hooks: ``clock`` (server time source) and ``inject_fault``.
"""

import json
import logging
import re
import socket
import threading
import time
import uuid
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import sigcheck

log = logging.getLogger("edgecore_tools.localcloud")

MAX_BODY = 1 << 20
DEFAULT_CACHE_TTL = "3600"
_model = None
_model_lock = threading.Lock()


def service_model():
    """botocore's model of sagemaker-edge (loaded once; the validation source of truth)."""
    global _model
    with _model_lock:
        if _model is None:
            import botocore.session

            _model = botocore.session.get_session().get_service_model("sagemaker-edge")
        return _model


class ApiError(Exception):
    def __init__(self, status, code, message):
        Exception.__init__(self, "%s: %s" % (code, message))
        self.status = status
        self.code = code
        self.message = message


# ---------------------------------------------------------------- validation
def _camel(name):
    return name[:1].lower() + name[1:]


def _value_repr(value):
    return "'%s'" % value if isinstance(value, str) else json.dumps(value)


def _check(shape, value, path, errors):
    """Walk one wire value against its shape; constraint breaks go to `errors` (AWS
    wording), type confusion raises SerializationException as AWS does."""
    kind = shape.type_name
    if kind == "structure":
        if not isinstance(value, dict):
            raise ApiError(400, "SerializationException", "Expected an object at '%s'" % path)
        for req in shape.required_members:
            if value.get(req) is None:
                errors.append(
                    "Value null at '%s' failed to satisfy constraint: Member must not be null"
                    % (path + "." + _camel(req) if path else _camel(req))
                )
        for name, member in shape.members.items():
            if value.get(name) is not None:
                sub = path + "." + _camel(name) if path else _camel(name)
                _check(member, value[name], sub, errors)
    elif kind == "list":
        if not isinstance(value, list):
            raise ApiError(400, "SerializationException", "Expected a list at '%s'" % path)
        for i, item in enumerate(value):
            _check(shape.member, item, "%s.%d.member" % (path, i + 1), errors)
    elif kind == "string":
        if not isinstance(value, str):
            raise ApiError(400, "SerializationException", "Expected a string at '%s'" % path)
        _check_string(shape, value, path, errors)
    elif kind in ("double", "float", "integer", "long", "timestamp") and (
        isinstance(value, bool) or not isinstance(value, (int, float))
    ):
        # rest-json timestamps travel as epoch seconds (numbers).
        raise ApiError(400, "SerializationException", "Expected a number at '%s'" % path)


def _check_string(shape, value, path, errors):
    meta = shape.metadata
    prefix = "Value %s at '%s' failed to satisfy constraint: " % (_value_repr(value), path)
    if shape.enum and value not in shape.enum:
        errors.append(prefix + "Member must satisfy enum value set: [%s]" % ", ".join(shape.enum))
    if "min" in meta and len(value) < meta["min"]:
        errors.append(prefix + "Member must have length greater than or equal to %d" % meta["min"])
    if "max" in meta and len(value) > meta["max"]:
        errors.append(prefix + "Member must have length less than or equal to %d" % meta["max"])
    if "pattern" in meta and re.fullmatch(meta["pattern"], value) is None:
        errors.append(prefix + "Member must satisfy regular expression pattern: " + meta["pattern"])


def validate(operation, params):
    """Raise ApiError(ValidationException) listing every broken constraint, as AWS does."""
    errors = []
    _check(service_model().operation_model(operation).input_shape, params, "", errors)
    if errors:
        raise ApiError(
            400,
            "ValidationException",
            "%d validation error%s detected: %s"
            % (len(errors), "" if len(errors) == 1 else "s", "; ".join(errors)),
        )


# ---------------------------------------------------------------- operations
def _registered_device(db, params):
    name, fleet = params["DeviceName"], params["DeviceFleetName"]
    device = db.device(name)
    if device is None or device["fleet"] != fleet or device["registration"] != "REGISTERED":
        raise ApiError(
            400,
            "ValidationException",
            "Device %s is not registered with device fleet %s." % (name, fleet),
        )
    return device


def _definition(stored):
    """The wire Definition: only the model's members (the DB also keeps name/version)."""
    out = {"ModelHandle": stored["ModelHandle"]}
    if "S3Url" in stored:
        out["S3Url"] = stored["S3Url"]
        out["Checksum"] = {"Type": stored["Checksum"]["Type"], "Sum": stored["Checksum"]["Sum"]}
    out["State"] = stored["State"]
    return out


def op_get_deployments(server, params, signer):
    device = _registered_device(server.db, params)
    deployments = []
    for row in server.db.deployments_for(device["name"], device["fleet"]):
        deployments.append(
            {
                "DeploymentName": row["name"],
                "Type": "Model",
                "FailureHandlingPolicy": row["policy"],
                "Definitions": [_definition(d) for d in row["definitions"]],
            }
        )
    return {"Deployments": deployments}


def op_send_heartbeat(server, params, signer):
    device = _registered_device(server.db, params)
    heartbeat_id = server.db.add_heartbeat(
        device["name"], device["fleet"], params, received=server.clock()
    )
    if heartbeat_id is not None:
        server.db.set_heartbeat_signer(heartbeat_id, signer)
    return None


def op_get_device_registration(server, params, signer):
    device = server.db.device(params["DeviceName"])
    registered = (
        device is not None
        and device["fleet"] == params["DeviceFleetName"]
        and device["registration"] == "REGISTERED"
    )
    return {
        "DeviceRegistration": "REGISTERED" if registered else "NOT_REGISTERED",
        "CacheTTL": server.cache_ttl,
    }


OPERATIONS = {
    "/GetDeployments": ("GetDeployments", op_get_deployments),
    "/SendHeartbeat": ("SendHeartbeat", op_send_heartbeat),
    "/GetDeviceRegistration": ("GetDeviceRegistration", op_get_device_registration),
}


# ---------------------------------------------------------------- HTTP
class JsonReplies:
    """Replies of an AWS JSON endpoint (mixed into a BaseHTTPRequestHandler): every one
    with ``x-amzn-RequestId``; errors as ``{"message": ...}`` + ``x-amzn-ErrorType``."""

    def _error(self, status, code, message, request_id):
        payload = json.dumps({"message": message}).encode("utf-8")
        self._respond(status, payload, request_id, {"x-amzn-ErrorType": code})

    def _respond(self, status, payload, request_id, extra=None):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("x-amzn-RequestId", request_id)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


class EdgeRequestHandler(JsonReplies, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the real endpoint
    timeout = 120  # idle keep-alive connections do not hold a thread forever

    def version_string(self):
        return "edgecore-localcloud"

    def do_POST(self):
        self._handle()

    do_GET = do_PUT = do_DELETE = do_HEAD = do_PATCH = do_POST

    def log_message(self, fmt, *args):
        log.debug("%s %s", self.address_string(), fmt % args)

    def _read_body(self):
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding"):
                raise ApiError(411, "LengthRequiredException", "Content-Length is required")
            return b""
        try:
            length = int(length)
        except ValueError:
            raise ApiError(400, "SerializationException", "Invalid Content-Length") from None
        if length < 0 or length > MAX_BODY:
            raise ApiError(413, "RequestEntityTooLargeException", "Request body too large")
        return self.rfile.read(length)

    def _handle(self):
        server = self.server
        request_id = str(uuid.uuid4())
        operation = None
        body = None
        # For server.requests: the key the request names (replaced by the verified one).
        auth = self.headers.get("Authorization") or ""
        entry = {"operation": OPERATIONS.get(self.path.partition("?")[0], (self.path,))[0],
                 "request_id": request_id, "status": 200, "error": None,
                 "access_key_id": auth.partition("Credential=")[2].partition("/")[0] or None}
        error = None  # (status, code, message)
        try:
            body = self._read_body()
            now = server.clock()
            verified = sigcheck.verify(
                self.command, self.path, list(self.headers.items()), body,
                server.db.lookup_key, now=now, max_skew=server.max_skew,
            )
            route = OPERATIONS.get(self.path.partition("?")[0])
            if route is None or self.command != "POST":
                raise ApiError(404, "UnknownOperationException", "UnknownOperationException")
            operation, handler = route
            fault = server.take_fault(operation)
            if fault is not None:
                raise ApiError(*fault)
            try:
                params = json.loads(body.decode("utf-8")) if body else {}
            except ValueError:
                raise ApiError(400, "SerializationException", "Request body is not JSON") from None
            validate(operation, params)
            entry["access_key_id"] = verified.key.access_key
            result = handler(server, params, verified.key.access_key)
            payload = b"" if result is None else json.dumps(result).encode("utf-8")
        except (ApiError, sigcheck.AuthError) as e:
            if body is None:  # body left unread: the connection cannot be reused
                self.close_connection = True
            error = (e.status, e.code, e.message)
        except Exception:  # a real internal error: report it as AWS would, log the cause
            log.exception("internal error in %s", operation)
            error = (500, "InternalServiceException",
                     "An internal failure occurred. Try your request again.")
        if error is not None:
            entry.update(status=error[0], error=error[1])
        # Recorded before the reply: a client that has its answer finds its request there.
        server.record(entry)
        if error is not None:
            self._error(error[0], error[1], error[2], request_id)
        else:
            self._respond(200, payload, request_id)

    def date_time_string(self, timestamp=None):
        # The Date header follows the server clock, so a shifted test clock shows in it.
        return formatdate(self.server.clock() if timestamp is None else timestamp, usegmt=True)


class EdgeServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with the fleet DB and the test hooks attached."""

    daemon_threads = True

    def __init__(self, db, host="127.0.0.1", port=0, clock=None):
        ThreadingHTTPServer.__init__(self, (host, port), EdgeRequestHandler)
        self.db = db
        self.clock = clock or time.time
        self.max_skew = sigcheck.MAX_SKEW
        self.cache_ttl = DEFAULT_CACHE_TTL
        self._faults = {}
        self._fault_lock = threading.Lock()
        # Every request, in arrival order: {operation (or the path), request_id, status,
        # error (code or None), access_key_id (verified; for a rejected one: as named)}.
        self.requests = []
        self._thread = None
        self._connections = set()

    def get_request(self):
        conn, addr = ThreadingHTTPServer.get_request(self)
        with self._fault_lock:
            self._connections.add(conn)
        return conn, addr

    def shutdown_request(self, request):
        with self._fault_lock:
            self._connections.discard(request)
        ThreadingHTTPServer.shutdown_request(self, request)

    @property
    def url(self):
        host, port = self.server_address[:2]
        return "http://%s:%d" % (host, port)

    def inject_fault(self, operation, status=500, code="InternalServiceException",
                     message="An internal failure occurred. Try your request again.", times=1):
        """Make the next `times` authenticated calls of `operation` fail this way."""
        with self._fault_lock:
            self._faults.setdefault(operation, []).extend([(status, code, message)] * times)

    def take_fault(self, operation):
        with self._fault_lock:
            queue = self._faults.get(operation)
            return queue.pop(0) if queue else None

    def record(self, entry):
        with self._fault_lock:
            self.requests.append(entry)

    def start_background(self):
        service_model()  # load before the first request, not during it
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name="edge-endpoint",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self):
        """Stop accepting, and cut kept-alive connections so no request is served late."""
        self.shutdown()
        self.server_close()
        with self._fault_lock:
            connections = list(self._connections)
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(5)
