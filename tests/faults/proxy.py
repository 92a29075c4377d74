"""A fault-injecting HTTP/1.1 proxy for tests (CPython, 127.0.0.1 only).

``FaultProxy(upstream_url, flavor="edge"|"s3")`` listens on 127.0.0.1:<free port> and
forwards each request to the upstream (the local cloud endpoint or moto's S3 server, plain
HTTP). Point the agent's ``endpoint_url`` / ``s3_endpoint_url`` at ``proxy.url``: the
``Host`` header is forwarded unchanged, so the upstream checks the signature the agent
made for the proxy's address.

Faults are chosen per *request* (keep-alive connections are served request by request):
explicitly with ``add_fault(kind, op=None, times=1, **params)`` (a queue, matched by
operation), or at random with ``rate``/``kinds`` from a seeded ``random.Random``.

Kinds (``KINDS``) and their parameters:

- ``latency`` (``delay`` s before the response), ``throttle`` (``bps`` bytes/s),
- ``reset`` (``after`` body bytes, ``grace`` s, then RST via SO_LINGER 0), ``truncate`` (``after``
  body bytes, then a normal close), ``stall`` (``after`` body bytes, stop for ``stall``
  s, then the rest), ``corrupt`` (flip one bit of body byte ``at``; default the middle),
- ``drop_response`` (forward to the upstream, read its answer, close without a byte),
- the proxy's own answers, never forwarded: ``http500``, ``http503``, ``http429``,
  ``skew`` (403 RequestTimeTooSkewed), ``sig_expired`` (403 InvalidSignatureException
  "Signature expired"; S3: RequestTimeTooSkewed), ``sig_future`` (403
  InvalidSignatureException "Signature not yet current": the device clock is ahead),
  ``expired_token`` (edge: 403
  ExpiredTokenException; S3: 400 ExpiredToken). Edge errors are rest-json
  (``x-amzn-ErrorType`` + ``{"message"}``), S3 errors are XML; every answer carries a
  ``Date`` of the proxy's clock plus ``server_clock_offset`` seconds.

``log`` holds one dict per request (op, method, path, lower-cased headers, fault,
status, body_sent, body_len); ``counts`` (a Counter) the faults applied. Every loop is
bounded in count and time: reads have socket timeouts and size caps, a connection
serves at most ``MAX_REQUESTS_PER_CONN`` requests, the proxy at most ``max_connections``.
"""

import collections
import email.utils
import json
import random
import socket
import struct
import threading
import time

KINDS = (
    "latency",
    "throttle",
    "reset",
    "truncate",
    "stall",
    "corrupt",
    "drop_response",
    "http500",
    "http503",
    "http429",
    "skew",
    "sig_expired",
    "sig_future",
    "expired_token",
)
OWN_ANSWERS = (
    "http500",
    "http503",
    "http429",
    "skew",
    "sig_expired",
    "sig_future",
    "expired_token",
)
MAX_HEAD = 64 * 1024
MAX_BODY = 256 * 1024 * 1024
MAX_REQUESTS_PER_CONN = 10000
IO_TIMEOUT = 30.0  # seconds any single socket read/write may block
IDLE_TIMEOUT = 10.0  # a keep-alive client connection idle this long is closed

# (status, edge code, edge message, s3 code, s3 message)
_ERRORS = {
    "http500": (
        500,
        "InternalServiceException",
        "An internal failure occurred. Try your request again.",
        "InternalError",
        "We encountered an internal error. Please try again.",
    ),
    "http503": (
        503,
        "ServiceUnavailableException",
        "Service is unavailable. Try your request again.",
        "SlowDown",
        "Please reduce your request rate.",
    ),
    "http429": (
        429,
        "ThrottlingException",
        "Rate exceeded",
        "SlowDown",
        "Please reduce your request rate.",
    ),
    "skew": (
        403,
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
    ),
    "sig_expired": (
        403,
        "InvalidSignatureException",
        "Signature expired: 20200101T000000Z is now earlier than 20200101T000500Z "
        "(20200101T001000Z - 5 min.)",
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
    ),
    "sig_future": (
        403,
        "InvalidSignatureException",
        "Signature not yet current: 20200101T001000Z is still later than 20200101T000500Z "
        "(20200101T000000Z + 5 min.)",
        "RequestTimeTooSkewed",
        "The difference between the request time and the current time is too large.",
    ),
    "expired_token": (
        403,
        "ExpiredTokenException",
        "The security token included in the request is expired",
        "ExpiredToken",
        "The provided token has expired.",
    ),
}
_S3_STATUS = {"expired_token": 400}
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class _Closed(Exception):
    """The client went away (or sent nothing more) on a keep-alive connection."""


def _recv_until(sock, buf, marker, limit):
    """Read into ``buf`` (bytearray) until it contains ``marker``; bounded by ``limit``."""
    while marker not in buf:
        if len(buf) > limit:
            raise ValueError("HTTP head longer than %d bytes" % limit)
        data = sock.recv(65536)
        if not data:
            raise _Closed()
        buf += data
    return buf.index(marker)


def _recv_exact(sock, buf, n):
    while len(buf) < n:
        data = sock.recv(min(65536, n - len(buf)))
        if not data:
            raise _Closed()
        buf += data


def _parse_head(head):
    """(first line, [(name, value)], {lower name: value}) of an HTTP head (bytes)."""
    lines = head.decode("latin-1").split("\r\n")
    pairs = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.partition(":")
        pairs.append((name.strip(), value.strip()))
    return lines[0], pairs, dict((k.lower(), v) for k, v in pairs)


def _build_head(first, pairs):
    return ("\r\n".join([first] + ["%s: %s" % kv for kv in pairs]) + "\r\n\r\n").encode("latin-1")


def _operation(flavor, method, path):
    if flavor == "s3":
        return {"GET": "GetObject", "HEAD": "HeadObject", "PUT": "PutObject"}.get(method, method)
    return path.split("?", 1)[0].strip("/") or method


class FaultProxy:
    """See the module docstring. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        upstream_url,
        flavor="edge",
        seed=0,
        rate=0.0,
        kinds=KINDS,
        ops=None,
        params=None,
        server_clock_offset=0,
        max_connections=100000,
        sleep=time.sleep,
    ):
        if not upstream_url.startswith("http://"):
            raise ValueError("FaultProxy: upstream_url must be plain http://host:port")
        hostport = upstream_url[len("http://") :].split("/", 1)[0]
        host, _, port = hostport.rpartition(":")
        self.upstream = (host, int(port))
        if flavor not in ("edge", "s3"):
            raise ValueError("FaultProxy: flavor must be 'edge' or 's3'")
        self.flavor = flavor
        self.rng = random.Random(seed)
        self.rate = rate
        self.kinds = tuple(kinds)
        self.ops = ops  # random faults only for these operations (None: all)
        self.params = params or {}  # kind -> fixed params for random faults
        self.server_clock_offset = server_clock_offset
        self.max_connections = max_connections
        self.sleep = sleep
        self.log = []
        self.counts = collections.Counter()
        self.connections = 0
        self._planned = []  # [kind, op, times, params]
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._socks = set()
        self._listener = None
        self.port = None

    # ---- control --------------------------------------------------------------

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def add_fault(self, kind, op=None, times=1, **params):
        """Apply ``kind`` to the next ``times`` requests of operation ``op`` (any: None)."""
        if kind not in KINDS:
            raise ValueError("FaultProxy: unknown fault kind %r" % (kind,))
        with self._lock:
            self._planned.append([kind, op, times, params])

    def clear(self):
        with self._lock:
            del self._planned[:]

    def requests(self, op=None):
        with self._lock:
            return [e for e in self.log if op is None or e["op"] == op]

    def start(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        s.settimeout(0.2)
        self._listener = s
        self.port = s.getsockname()[1]
        t = threading.Thread(target=self._accept_loop, name="faultproxy-accept", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self, timeout=5.0):
        self._stop.set()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + timeout
        for t in list(self._threads):
            t.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # ---- plumbing ---------------------------------------------------------------

    def _accept_loop(self):
        while not self._stop.is_set() and self.connections < self.max_connections:
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._socks.add(conn)
                self._threads = [x for x in self._threads if x.is_alive()]
                self._threads.append(t)
            t.start()

    def _choose(self, op):
        with self._lock:
            for entry in self._planned:
                kind, want, times, params = entry
                if want is None or want == op:
                    entry[2] -= 1
                    if entry[2] <= 0:
                        self._planned.remove(entry)
                    return kind, dict(params)
            if self.rate <= 0 or (self.ops is not None and op not in self.ops):
                return None, {}
            if self.rng.random() >= self.rate:
                return None, {}
            kind = self.rng.choice(self.kinds)
            params = dict(self.params.get(kind, {}))
            if kind in ("reset", "truncate", "stall"):
                params.setdefault("frac", self.rng.random())
            if kind == "corrupt":
                params.setdefault("frac", self.rng.random())
            return kind, params

    def _serve(self, conn):
        conn.settimeout(IDLE_TIMEOUT)
        buf = bytearray()
        try:
            for _ in range(MAX_REQUESTS_PER_CONN):
                if self._stop.is_set():
                    return
                if not self._one(conn, buf):
                    return
                conn.settimeout(IDLE_TIMEOUT)
        except (_Closed, OSError, ValueError):
            return
        finally:
            with self._lock:
                self._socks.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _one(self, conn, buf):
        """Serve one request from ``conn``; False when the connection must close."""
        end = _recv_until(conn, buf, b"\r\n\r\n", MAX_HEAD)
        conn.settimeout(IO_TIMEOUT)
        head = bytes(buf[:end])
        del buf[: end + 4]
        first, pairs, hdrs = _parse_head(head)
        method, path = first.split(" ")[:2]
        if "chunked" in hdrs.get("transfer-encoding", "").lower():
            raise ValueError("chunked request bodies are not supported")
        length = int(hdrs.get("content-length", "0") or 0)
        if length > MAX_BODY:
            raise ValueError("request body too large")
        _recv_exact(conn, buf, length)
        body = bytes(buf[:length])
        del buf[:length]
        op = _operation(self.flavor, method, path)
        kind, params = self._choose(op)
        entry = {
            "op": op,
            "method": method,
            "path": path,
            "headers": dict(hdrs),
            "fault": kind,
            "status": None,
            "body_sent": 0,
            "body_len": None,
        }
        with self._lock:
            self.log.append(entry)
            if kind is not None:
                self.counts[kind] += 1
        if kind in OWN_ANSWERS:
            status, out_head, out_body = self._own_answer(kind, op)
            entry["status"] = status
            entry["body_len"] = len(out_body)
            conn.sendall(out_head + out_body)
            entry["body_sent"] = len(out_body)
            return True
        # Forward: a fresh upstream connection per request (Connection: close), so the
        # upstream's framing never matters; the client keeps its keep-alive connection.
        pairs = [(k, v) for k, v in pairs if k.lower() not in ("connection", "keep-alive")]
        pairs.append(("Connection", "close"))
        status, rpairs, rbody = self._exchange(_build_head(first, pairs) + body)
        entry["status"] = status
        entry["body_len"] = len(rbody)
        if kind == "drop_response":
            return False
        rlow = dict((k.lower(), v) for k, v in rpairs)
        framed = "content-length" in rlow or "chunked" in rlow.get("transfer-encoding", "")
        rpairs = [(k, v) for k, v in rpairs if k.lower() not in ("connection", "keep-alive")]
        rpairs.append(("Connection", "keep-alive" if framed else "close"))
        rhead = _build_head(rpairs.pop(0)[1], rpairs)
        return self._send_response(conn, rhead, rbody, kind, params, entry) and framed

    def _exchange(self, request):
        up = socket.create_connection(self.upstream, timeout=IO_TIMEOUT)
        with self._lock:
            self._socks.add(up)
        try:
            up.sendall(request)
            data = bytearray()
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    break
                data += chunk
                if len(data) > MAX_BODY + MAX_HEAD:
                    raise ValueError("upstream response too large")
        finally:
            with self._lock:
                self._socks.discard(up)
            up.close()
        end = bytes(data).index(b"\r\n\r\n")
        first, pairs, _ = _parse_head(bytes(data[:end]))
        status = int(first.split(" ")[1])
        # The status line rides along as the first pair, rebuilt by _build_head.
        return status, [("", first)] + pairs, bytes(data[end + 4 :])

    def _send_response(self, conn, head, body, kind, params, entry):
        """Send head + body with ``kind`` applied; False when the connection is closed."""
        n = len(body)

        def cut():
            if "after" in params:
                return max(0, min(n, int(params["after"])))
            return int(n * params.get("frac", 0.5))

        if kind == "latency":
            self.sleep(params.get("delay", 0.2))
        if kind == "corrupt" and n:
            at = params.get("at")
            at = int(n * params.get("frac", 0.5)) if at is None else at
            at = max(0, min(n - 1, at))
            body = body[:at] + bytes([body[at] ^ 0x01]) + body[at + 1 :]
            entry["corrupt_at"] = at
        if kind in ("reset", "truncate"):
            k = cut()
            conn.sendall(head + body[:k])
            entry["body_sent"] = k
            if kind == "reset":
                # A moment for the client to read what was sent (an RST discards the
                # peer's unread data): keeps "bytes on disk > 0" deterministic in tests.
                self._stop.wait(params.get("grace", 0.05))
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            else:
                conn.shutdown(socket.SHUT_WR)
            return False
        if kind == "stall":
            k = cut()
            conn.sendall(head + body[:k])
            entry["body_sent"] = k
            self._stop.wait(params.get("stall", 1.0))
            if self._stop.is_set():
                return False
            conn.sendall(body[k:])
            entry["body_sent"] = n
            return True
        if kind == "throttle":
            bps = max(1, int(params.get("bps", 64 * 1024)))
            conn.sendall(head)
            step = max(1, bps // 20)
            for i in range(0, n, step):  # bounded: n / step iterations
                if self._stop.is_set():
                    return False
                conn.sendall(body[i : i + step])
                entry["body_sent"] = min(n, i + step)
                self.sleep(step / float(bps))
            return True
        conn.sendall(head + body)
        entry["body_sent"] = n
        return True

    def _own_answer(self, kind, op):
        status, ecode, emsg, scode, smsg = _ERRORS[kind]
        date = email.utils.formatdate(time.time() + self.server_clock_offset, usegmt=True)
        rid = "faultproxy-%d" % len(self.log)
        if self.flavor == "edge":
            body = json.dumps({"message": emsg}).encode("utf-8")
            pairs = [
                ("Content-Type", "application/json"),
                (
                    "x-amzn-ErrorType",
                    ecode + ":http://internal.amazon.com/coral/com.amazon.sagemaker.edge/",
                ),
                ("x-amzn-RequestId", rid),
            ]
        else:
            status = _S3_STATUS.get(kind, status)
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code>'
                "<Message>%s</Message><RequestId>%s</RequestId></Error>" % (scode, smsg, rid)
            ).encode("utf-8")
            pairs = [("Content-Type", "application/xml"), ("x-amz-request-id", rid)]
        reason = _REASONS[status]
        pairs += [("Date", date), ("Content-Length", str(len(body))), ("Connection", "keep-alive")]
        return status, _build_head("HTTP/1.1 %d %s" % (status, reason), pairs), body
