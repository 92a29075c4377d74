"""The client applications use to talk to the edgecore agent (CPython, standard library
only: this file can be copied into an application as it is).

    from edgecore_ports.app import AppClient, tensor

    api = AppClient()                      # $EDGECORE_API_SOCKET or DEFAULT_SOCKET
    for m in api.list_models()["Models"]:
        print(m["ModelHandle"], m["Path"])
    changed = api.watch_models(since=version, timeout=60)   # long-poll
    api.record_inference("resnet", latency_ms=12.5)
    api.capture_data("resnet", "c-0001", inputs=[tensor("x", raw_bytes, "float32", [1, 3])],
                     outputs=[{"name": "label", "json": {"class": 3}}])
    api.get_capture_data_status("c-0001")["Status"]   # IN_PROGRESS/SUCCESS/FAILURE/NOT_FOUND

Each method is one HTTP/1.1 request on the agent's Unix socket (docs/local-api.md);
the MicroPython agent offers the same methods in-process (``edgecore_ports.appapi``).
A refusal raises ``ApiError`` (``status``, ``code``, ``message``, ``field``); a socket
that cannot be reached, or an answer cut short (the agent stopped), raises ``OSError``.
"""

import base64
import http.client
import json
import os
import socket
from urllib.parse import quote, urlencode

DEFAULT_SOCKET = "/var/lib/edgecore/state/api.sock"


class ApiError(Exception):
    """The agent refused a request; ``status`` is the HTTP status of its answer."""

    def __init__(self, status, code, message, field=None):
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        super().__init__("%s (%d): %s" % (code, status, message))


def tensor(name, data, dtype=None, shape=None):
    """A tensor for ``capture_data``: raw ``data`` bytes with ``dtype`` and ``shape``,
    or any array with ``tobytes()``, ``dtype`` and ``shape`` (numpy's) as ``data``."""
    if hasattr(data, "tobytes") and hasattr(data, "shape"):
        dtype = dtype or str(data.dtype)
        shape = list(data.shape) if shape is None else shape
        data = data.tobytes()
    if shape is None:
        shape = [len(data)]
    return {"name": name, "dtype": dtype or "uint8", "shape": list(shape), "data": bytes(data)}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _encode_tensors(items):
    if items is None:
        return None
    out = []
    for t in items:
        if isinstance(t, dict) and isinstance(t.get("data"), (bytes, bytearray, memoryview)):
            t = dict(t)
            t["data"] = base64.b64encode(bytes(t["data"])).decode("ascii")
        out.append(t)
    return out


class AppClient:
    """One connection to the agent's local API, kept open between calls (not
    thread-safe: use one client per thread)."""

    def __init__(self, socket_path=None, timeout=30.0):
        self.socket_path = socket_path or os.environ.get("EDGECORE_API_SOCKET") or DEFAULT_SOCKET
        self.timeout = timeout
        self._conn = None

    def close(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _request(self, method, path, doc=None, timeout=None):
        body = None if doc is None else json.dumps(doc).encode("utf-8")
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in (0, 1):
            if self._conn is None:
                self._conn = _UnixConnection(self.socket_path, timeout or self.timeout)
            self._conn.timeout = timeout or self.timeout
            if self._conn.sock is not None:
                self._conn.sock.settimeout(self._conn.timeout)
            try:
                self._conn.request(method, "/v1" + path, body, headers)
                resp = self._conn.getresponse()
                data = resp.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.close()  # the agent closed an idle keep-alive connection: once more
                if attempt:
                    raise
                continue
            except http.client.HTTPException as exc:
                # An answer cut short (the agent stopped or was killed mid-answer): an
                # OSError like any other lost connection, never retried here (a capture
                # may have been taken: a retry is answered CaptureIdInUse).
                self.close()
                raise ConnectionError("the agent's answer was cut short (%s: %s)"
                                      % (exc.__class__.__name__, exc)) from None
            except BaseException:
                self.close()
                raise
            if resp.will_close:
                self.close()
            break
        try:
            answer = json.loads(data.decode("utf-8")) if data else {}
        except ValueError:
            answer = {"Code": "BadResponse", "Message": data[:200].decode("utf-8", "replace")}
        if resp.status != 200:
            raise ApiError(resp.status, answer.get("Code", "Error"), answer.get("Message", ""),
                           answer.get("Field"))
        return answer

    def list_models(self):
        """``{"Models": [model...], "Version": token}``: the active models."""
        return self._request("GET", "/models")

    def describe_model(self, handle):
        """One model: handle, name, version, SHA1, path, activated-at, deployment, size,
        the last attempt to deploy it."""
        return self._request("GET", "/models/" + quote(handle, safe=""))

    def watch_models(self, since=None, timeout=60):
        """Wait until the active set differs from version ``since`` (at most ``timeout``
        seconds); ``{"Models", "Version", "Changed"}``."""
        query = {"timeout": timeout}
        if since is not None:
            query["since"] = since
        return self._request("GET", "/watch?" + urlencode(query), timeout=timeout + 30)

    def record_inference(self, handle, latency_ms=None, sample_time=None):
        doc = {"ModelHandle": handle}
        if latency_ms is not None:
            doc["LatencyMs"] = latency_ms
        if sample_time is not None:
            doc["SampleTime"] = sample_time
        return self._request("POST", "/inferences", doc)

    def capture_data(self, model_handle, capture_id, inputs=None, outputs=None, auxiliary=None,
                     inference_time=None):
        """Buffer one capture in the agent for upload to S3 (``{"CaptureId", "Status"}``).
        Tensors: ``tensor(...)``, ``{"name", "json": value}`` or ``{"name", "csv": text}``."""
        doc = {"ModelHandle": model_handle, "CaptureId": capture_id}
        for key, items in (("Inputs", inputs), ("Outputs", outputs), ("Auxiliary", auxiliary)):
            if items is not None:
                doc[key] = _encode_tensors(items)
        if inference_time is not None:
            doc["InferenceTime"] = inference_time
        return self._request("POST", "/captures", doc)

    def get_capture_data_status(self, capture_id):
        return self._request("GET", "/captures/" + quote(capture_id, safe=""))
