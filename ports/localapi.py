"""The local API server (CPython): an ``appapi.AppApi`` served as HTTP/1.1 + JSON on a
Unix domain socket, in the manner of Docker's Engine API. Reference: docs/local-api.md.

    server = LocalApiServer(api, "/var/lib/edgecore/state/api.sock", group="edgecore")
    server.start()          # a thread per connection, a watchdog thread
    ...
    server.stop()

Access is file permissions: the socket is created under a temporary name, given
``mode`` (0660) and ``group`` (default: the agent's own), then renamed into place, so
it is never reachable with looser permissions. A stale socket at the path is replaced;
anything else there is refused.

A hostile or broken client cannot crash or stall the agent: at most
``max_connections`` connections (more get 503 and are closed), a request (line,
headers, body) must arrive within ``request_timeout`` seconds of its first byte and a
response be taken within the same time (a watchdog thread shuts the socket down
otherwise), an idle keep-alive connection is closed after ``idle_timeout``, bodies
need a Content-Length of at most ``max_body`` bytes and are parsed with bounded depth,
and any error inside a request becomes a JSON error answer. ``http.server`` parses
the request line and headers (line length and header count bounded).
"""

import json
import os
import select
import socket
import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from edgecore.jsonenc import load_bounded
from edgecore_ports.appapi import DEFAULT_WATCH_SECONDS, ApiError, check_watch

MAX_BODY = 12 * 1024 * 1024  # a capture of 8 MiB of tensors, base64-encoded
MAX_DEPTH = 64
API_PREFIX = "/v1"


class _Gone(Exception):
    """The client went away during a long-poll."""


def _error(status, code, message, field=None):
    return ApiError(status, code, message, field)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "edgecore"
    sys_version = ""

    # ---- framing ---------------------------------------------------------------------

    def handle(self):
        srv = self.server
        self.close_connection = True
        try:
            while True:
                srv.watch(self, None)
                self.connection.settimeout(srv.idle_timeout)
                try:
                    if not self.rfile.peek(1):
                        return  # the client closed an idle connection
                except (OSError, ValueError):
                    return
                self.connection.settimeout(srv.request_timeout)
                srv.watch(self, time.monotonic() + srv.request_timeout)
                self.handle_one_request()
                if self.close_connection:
                    return
        finally:
            srv.watch(self, None, remove=True)

    def log_message(self, fmt, *args):
        self.server.log("debug", "localapi.request", line=fmt % args)

    def _send(self, status, doc):
        body = json.dumps(doc).encode("utf-8")
        self.server.watch(self, time.monotonic() + self.server.request_timeout)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _body(self):
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise _error(411, "LengthRequired", "a request body needs a Content-Length")
        length = self.headers.get("Content-Length", "0")
        if not length.isascii() or not length.isdigit():
            self.close_connection = True
            raise _error(400, "BadRequest", "Content-Length must be a number of bytes")
        n = int(length)
        if n > self.server.max_body:
            self.close_connection = True  # the body is not read: the connection is spent
            raise _error(413, "RequestTooLarge", "request body of %d bytes is over the %d "
                         "byte limit" % (n, self.server.max_body))
        data = self.rfile.read(n) if n else b""
        if len(data) != n:
            self.close_connection = True
            raise _error(400, "BadRequest", "request body shorter than its Content-Length")
        return data

    def _json(self, data):
        if not data:
            return {}
        try:
            doc = load_bounded(data, self.server.max_body, MAX_DEPTH)
        except (ValueError, RecursionError) as exc:
            raise _error(400, "BadRequest", "request body: %s" % exc) from None
        if not isinstance(doc, dict):
            raise _error(400, "BadRequest", "request body: expected a JSON object")
        return doc

    def _dispatch(self, method):
        status, doc = 200, None
        try:
            body = self._body() if method == "POST" else b""
            if method != "POST" and self.headers.get("Content-Length", "0") != "0":
                self._body()  # read and ignore, so the next request frames right
            doc = self.server.route(self, method, urlsplit(self.path), self._json(body))
        except ApiError as exc:
            status, doc = exc.status, exc.to_json()
        except _Gone:
            self.close_connection = True
            return
        except Exception as exc:  # a bug must answer 500, never end the server
            self.server.log("error", "localapi.failed",
                            reason="%s: %s" % (exc.__class__.__name__, exc), path=self.path[:200])
            status, doc = 500, {"Code": "InternalError", "Message": "the agent failed to "
                                "answer; see its log"}
        self._send(status, doc)

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def client_gone(self):
        """True when the peer closed its end (checked while a long-poll waits)."""
        try:
            ready, _, _ = select.select([self.connection], [], [], 0)
            if not ready:
                return False
            return self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (OSError, ValueError):
            return True


def _query(parts, name, cast, operation):
    values = parse_qs(parts.query, keep_blank_values=True).get(name)
    if not values:
        return None
    try:
        return cast(values[-1])
    except ValueError:
        raise ApiError(400, "ValidationError", "%s: invalid %s: expected a number"
                       % (operation, name), name) from None


def _tensors(doc, key):
    """The request's tensors with base64 ``data`` decoded to bytes."""
    import binascii

    items = doc.get(key)
    if not isinstance(items, list):
        return items
    out = []
    for i, t in enumerate(items):
        if isinstance(t, dict) and isinstance(t.get("data"), str):
            t = dict(t)
            try:
                t["data"] = binascii.a2b_base64(t["data"].encode("ascii"))
            except (ValueError, UnicodeError, binascii.Error):
                raise ApiError(400, "ValidationError", "CaptureData: invalid %s[%d].data: "
                               "expected base64" % (key, i), "%s[%d].data" % (key, i)) from None
        out.append(t)
    return out


class LocalApiServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """See the module doc. ``log(level, event, **fields)`` receives the server's events."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = False

    def __init__(self, api, path, mode=0o660, group=None, max_connections=128,
                 request_timeout=10.0, idle_timeout=60.0, max_body=MAX_BODY, log=None):
        self.api = api
        self.path = path
        self.mode = mode
        self.group = group
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.idle_timeout = idle_timeout
        self.max_body = max_body
        self.log = log or (lambda level, event, **fields: None)
        self._deadlines = {}  # handler -> monotonic deadline or None
        self._lock = threading.Lock()
        self._active = 0
        self._stopping = threading.Event()
        self._service_threads = []
        socketserver.UnixStreamServer.__init__(self, path, _Handler, bind_and_activate=False)

    # ---- set-up ----------------------------------------------------------------------

    def server_bind(self):
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            pass
        else:
            import stat

            if not stat.S_ISSOCK(st.st_mode):
                raise OSError("api_socket %s exists and is not a socket; not replacing it"
                              % self.path)
        tmp = "%s.%d.tmp" % (self.path, os.getpid())
        if os.path.lexists(tmp):
            os.unlink(tmp)
        self.socket.bind(tmp)
        try:
            if self.group is not None:
                import grp

                gid = self.group if isinstance(self.group, int) else grp.getgrnam(self.group).gr_gid
                os.chown(tmp, -1, gid)
            os.chmod(tmp, self.mode)
            os.rename(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
        self.server_address = self.path

    def start(self):
        """Bind, listen and serve in background threads."""
        try:
            self.server_bind()
            self.server_activate()
        except BaseException:
            self.server_close()
            raise
        for target, name in ((self.serve_forever, "edgecore-api"),
                             (self._watchdog, "edgecore-api-watchdog")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._service_threads.append(t)
        self.log("info", "localapi.listening", path=self.path)
        return self

    def stop(self):
        """Stop accepting, close every connection, remove the socket file."""
        self._stopping.set()
        self.shutdown()
        self.server_close()
        with self._lock:
            handlers = list(self._deadlines)
        for h in handlers:
            _shut(h.connection)
        for t in self._service_threads:
            t.join(5)
        try:
            if os.path.exists(self.path) and os.stat(self.path).st_ino == self._ino:
                os.unlink(self.path)
        except (OSError, AttributeError):
            pass

    def server_activate(self):
        super().server_activate()
        self._ino = os.stat(self.path).st_ino

    # ---- connections -----------------------------------------------------------------

    def process_request(self, request, client_address):
        with self._lock:
            full = self._active >= self.max_connections
            if not full:
                self._active += 1
        if full:
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            with self._lock:
                self._active -= 1
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._active -= 1

    def _refuse(self, request):
        body = json.dumps({"Code": "TooManyConnections", "Message": "the agent serves at most "
                           "%d connections" % self.max_connections}).encode()
        try:
            request.setblocking(False)
            request.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json"
                         b"\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
        except OSError:
            pass
        self.shutdown_request(request)
        self.log("warning", "localapi.refused", reason="too many connections")

    def handle_error(self, request, client_address):
        import sys

        exc = sys.exc_info()[1]
        self.log("warning", "localapi.connection_failed",
                 reason="%s: %s" % (exc.__class__.__name__, exc))

    def watch(self, handler, deadline, remove=False):
        """Set (or clear) the time by which ``handler``'s connection must progress."""
        with self._lock:
            if remove:
                self._deadlines.pop(handler, None)
            else:
                self._deadlines[handler] = deadline

    def _watchdog(self):
        while not self._stopping.wait(0.25):
            now = time.monotonic()
            with self._lock:
                late = [h for h, d in self._deadlines.items() if d is not None and d < now]
                for h in late:
                    self._deadlines[h] = None
            for h in late:
                self.log("warning", "localapi.deadline", reason="request not complete within "
                         "%s s" % self.request_timeout)
                _shut(h.connection)

    def counts(self):
        with self._lock:
            return {"connections": self._active}

    # ---- routes ----------------------------------------------------------------------

    def route(self, handler, method, parts, doc):
        path = parts.path
        if not path.startswith(API_PREFIX + "/"):
            raise ApiError(404, "NotFound", "no such endpoint: %s (the API is under %s/)"
                           % (path[:100], API_PREFIX))
        segs = [unquote(s) for s in path[len(API_PREFIX) + 1:].split("/")]
        api = self.api
        if segs == ["models"] and method == "GET":
            return api.list_models()
        if len(segs) == 2 and segs[0] == "models" and method == "GET":
            return api.describe_model(segs[1])
        if segs == ["watch"] and method == "GET":
            return self._watch(handler, _query(parts, "since", str, "WatchModels"),
                               _query(parts, "timeout", float, "WatchModels"))
        if segs == ["inferences"] and method == "POST":
            return api.record_inference(doc.get("ModelHandle"), doc.get("LatencyMs"),
                                        doc.get("SampleTime"))
        if segs == ["captures"] and method == "POST":
            return api.capture_data(doc.get("ModelHandle"), doc.get("CaptureId"),
                                    doc.get("InferenceTime"), _tensors(doc, "Inputs"),
                                    _tensors(doc, "Outputs"), _tensors(doc, "Auxiliary"))
        if len(segs) == 2 and segs[0] == "captures" and method == "GET":
            return api.get_capture_data_status(segs[1])
        known = segs[:1] in (["models"], ["watch"], ["inferences"], ["captures"])
        raise ApiError(405 if known else 404, "MethodNotAllowed" if known else "NotFound",
                       "%s %s is not an operation of this API" % (method, path[:100]))

    def _watch(self, handler, since, timeout):
        """WatchModels in one-second slices, so a client that hung up frees its thread."""
        timeout = DEFAULT_WATCH_SECONDS if timeout is None else timeout
        check_watch(since, timeout)
        self.watch(handler, None)  # waiting is the server's doing, not the client's
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            result = self.api.watch_models(since, max(0.0, min(1.0, left)))
            if result["Changed"] or left <= 1.0 or self._stopping.is_set():
                return result
            if handler.client_gone():
                raise _Gone()


def _shut(sock):
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
