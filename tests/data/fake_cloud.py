"""An in-memory Edge Manager endpoint + S3 and a fake port, for the executor's plain tests
(tests/test_runner_rules.py, tests/test_download.py): they run on CPython and under
MicroPython, so this is plain Python too (no pytest, no threads, no sockets).

``FakeCloud`` has the port transport's two calls, ``transport`` (the API: POST
/GetDeployments, /SendHeartbeat) and ``open`` (S3: GET /<bucket>/<key>, with Range and
If-Match), answers as AWS does (rest-json errors with ``x-amzn-ErrorType``, S3 XML
errors, a ``Date``), records every request, and plays faults queued with ``fault()``.
``port`` is a port whose clocks the test moves; its files are the platform's.
"""

import json
import os
import sys

from edgecore.amztime import amz_date, http_date
from edgecore.checksum import new_hasher
from edgecore.errors import TransportError
from edgecore_ports import micropython as mp_port

if sys.implementation.name == "micropython":
    atomic_write = mp_port.atomic_write
else:  # the Linux port's (fsync): the MicroPython one calls os.sync() on CPython
    from edgecore_ports.linux import atomic_write

BUCKET = "models"
EDGE = "http://edge.test"
S3 = "http://s3.test"


def sha1_hex(data):
    from binascii import hexlify

    h = new_hasher("SHA1")
    h.update(data)
    return hexlify(h.digest()).decode()  # MicroPython's hashlib has no hexdigest()


def noise(n):
    """``n`` bytes of pseudo-random data (MicroPython's wasm port has no os.urandom)."""
    import random

    return bytes(random.getrandbits(8) for _ in range(n))


class Port:
    """Clock (epoch seconds) and monotonic time the test sets; files from the
    MicroPython port; ``free`` bytes of free space (None: the real figure)."""

    def __init__(self):
        self.now = 1700000000
        self.mono = 1000.0
        self.step = 0.0  # seconds monotonic() advances at every reading
        self.free = None

    def clock(self):
        return self.now

    def monotonic(self):
        self.mono += self.step
        return self.mono

    def atomic_write(self, path, data, mode=0o600):
        atomic_write(path, data, mode)

    def free_space(self, path):
        return mp_port.free_space(path) if self.free is None else self.free

    def metrics(self, model_dir, now):
        return [{"Dimension": "test", "MetricName": "Ticks", "Value": 1.0, "Timestamp": now}]


class Response:
    """A streamed answer: ``readinto`` hands out at most ``step`` bytes a read, raises
    TransportError after ``cut`` bytes, calls ``on_read(n)`` after each read."""

    def __init__(self, status, headers, body, step=None, cut=None, on_read=None):
        self.status = status
        self.headers = headers
        self.body = body
        self.pos = 0
        self.step = step
        self.cut = cut
        self.on_read = on_read
        self.deadlines = []  # every value the caller set
        self.closed = False

    @property
    def deadline(self):
        return self.deadlines[-1] if self.deadlines else None

    @deadline.setter
    def deadline(self, value):
        self.deadlines.append(value)

    def readinto(self, buf):
        if self.cut is not None and self.pos >= self.cut:
            raise TransportError("GET %s: connection reset (test)" % S3)
        n = min(len(buf), len(self.body) - self.pos)
        if self.step is not None:
            n = min(n, self.step)
        if self.cut is not None:
            n = min(n, self.cut - self.pos)
        buf[:n] = self.body[self.pos:self.pos + n]
        self.pos += n
        if self.on_read is not None:
            self.on_read(n)
        return n

    def read(self, n=-1):
        end = len(self.body) if n is None or n < 0 else min(len(self.body), self.pos + n)
        out = self.body[self.pos:end]
        self.pos = end
        return out

    def close(self):
        self.closed = True


class FakeCloud:
    """The Edge Manager API and S3 in memory (see the module docstring)."""

    def __init__(self):
        self.port = Port()
        self.offset = 0  # the cloud's clock minus the device's
        self.max_skew = None  # seconds of X-Amz-Date skew refused (None: any accepted)
        self.objects = {}  # "/bucket/key" -> bytes
        self.deployments = []
        self.heartbeats = []
        self.requests = []  # {"op", "path", "headers", "status"}
        self.faults = []  # [op, kind, arg]
        self.read_step = None  # bytes an S3 body read hands out at most (None: any)
        self.n = 0

    # ---- set-up --------------------------------------------------------------------

    def put(self, key, data):
        self.objects["/%s/%s" % (BUCKET, key)] = data
        return "s3://%s/%s" % (BUCKET, key), sha1_hex(data)

    def deploy(self, *defs, **kw):
        self.n += 1
        name = kw.get("name") or "dep-%d" % self.n
        self.deployments.append({"DeploymentName": name, "Type": "Model",
                                 "FailureHandlingPolicy": kw.get("policy",
                                                                 "ROLLBACK_ON_FAILURE"),
                                 "Definitions": list(defs)})
        return name

    def fault(self, op, kind, arg=None, times=1):
        for _ in range(times):
            self.faults.append([op, kind, arg])

    def results(self):
        return [hb["DeploymentResult"] for hb in self.heartbeats if "DeploymentResult" in hb]

    def gets(self):
        return [r for r in self.requests if r["op"] == "GetObject"]

    # ---- answers -------------------------------------------------------------------

    def _time(self):
        return self.port.now + self.offset

    def _fault(self, op):
        for f in self.faults:
            if f[0] == op:
                self.faults.remove(f)
                return f[1], f[2]
        return None, None

    def _skewed(self, headers):
        sent = headers.get("X-Amz-Date", "")
        return self.max_skew is not None and sent != amz_date(self._time()) and \
            abs(_amz_epoch(sent) - self._time()) > self.max_skew

    def _record(self, op, path, headers, status):
        self.requests.append({"op": op, "path": path, "headers": dict(headers),
                              "status": status})

    def transport(self, method, url, headers, body=b"", timeout=None, deadline=None):
        """The Edge Manager API."""
        op = url[len(EDGE) + 1:]
        assert deadline is not None, "an API call without a deadline"
        kind, arg = self._fault(op)
        date = {"date": http_date(self._time()), "content-type": "application/json"}
        if kind == "reset":
            self._record(op, url, headers, None)
            raise TransportError("POST %s: connection reset (test)" % EDGE)
        if self._skewed(headers) or kind == "skew":
            self._record(op, url, headers, 403)
            date["x-amzn-errortype"] = "InvalidSignatureException"
            return 403, date, b'{"message": "Signature expired: is now earlier than ..."}'
        if kind == "status":
            self._record(op, url, headers, arg[0])
            date["x-amzn-errortype"] = arg[1]
            return arg[0], date, b'{"message": "injected"}'
        self._record(op, url, headers, 200)
        if op == "GetDeployments":
            return 200, date, json.dumps({"Deployments": self.deployments}).encode()
        if op == "SendHeartbeat":
            self.heartbeats.append(json.loads(body))
            if kind == "drop":  # recorded, then the answer is lost
                raise TransportError("POST %s: connection reset (test)" % EDGE)
            return 200, date, b""
        return 404, date, b"{}"

    def open(self, method, url, headers, body=b"", timeout=None, deadline=None):
        """S3 GET (or PUT: captured data) of a path-style object URL."""
        path = url[len(S3):]
        assert deadline is not None, "a GET without a deadline"
        date = {"date": http_date(self._time())}
        if method == "PUT":
            kind, arg = self._fault("PutObject")
            if kind == "status":
                self._record("PutObject", path, headers, arg[0])
                return Response(arg[0], date, b"<Error><Code>%s</Code></Error>" % arg[1].encode())
            self._record("PutObject", path, headers, 200)
            self.objects[path] = bytes(body)
            return Response(200, date, b"")
        kind, arg = self._fault("GetObject")
        if self._skewed(headers) or kind == "skew":
            return self._s3_error(path, headers, 403, "RequestTimeTooSkewed", date)
        if kind == "status":
            return self._s3_error(path, headers, arg[0], arg[1], date)
        data = self.objects.get(path)
        if data is None:
            return self._s3_error(path, headers, 404, "NoSuchKey", date)
        etag = '"%s"' % sha1_hex(data)[:32]
        match = headers.get("If-Match")
        if match is not None and match != etag:
            return self._s3_error(path, headers, 412, "PreconditionFailed", date)
        out = {"date": date["date"], "etag": etag}
        status = 200
        rng = headers.get("Range")
        if rng:
            start = int(rng[len("bytes="):-1])
            if start >= len(data):
                return self._s3_error(path, headers, 416, "InvalidRange", date)
            out["content-range"] = "bytes %d-%d/%d" % (start, len(data) - 1, len(data))
            data, status = data[start:], 206
        if kind == "corrupt":
            data = data[:arg] + bytes([data[arg] ^ 1]) + data[arg + 1:]
        if kind != "chunked":
            out["content-length"] = str(len(data))
        self._record("GetObject", path, headers, status)
        step, cut, on_read = self.read_step, None, None
        if kind == "cut":
            cut = arg
        elif kind == "slow":  # arg: (bytes a read, seconds of monotonic time a read)
            step = arg[0]
            on_read = lambda n: self._advance(arg[1])  # noqa: E731
        return Response(status, out, data, step=step, cut=cut, on_read=on_read)

    def _advance(self, seconds):
        self.port.mono += seconds

    def _s3_error(self, path, headers, status, code, date):
        self._record("GetObject", path, headers, status)
        body = ("<Error><Code>%s</Code><Message>injected %s</Message></Error>"
                % (code, code)).encode()
        date["content-length"] = str(len(body))
        return Response(status, date, body)


def _amz_epoch(text):
    from edgecore.amztime import days_from_civil

    try:
        y, mo, d = int(text[0:4]), int(text[4:6]), int(text[6:8])
        hh, mi, ss = int(text[9:11]), int(text[11:13]), int(text[13:15])
    except ValueError:
        return 0
    return days_from_civil(y, mo, d) * 86400 + hh * 3600 + mi * 60 + ss


_made = [0]


def tempdir():
    """A new empty directory under /tmp (or $TMPDIR); remove it with ``cleanup``."""
    base = (getattr(os, "getenv", lambda k: None)("TMPDIR") or "/tmp").rstrip("/")
    while True:  # mkdir is the test of a free name
        _made[0] += 1
        path = "%s/edgecore-test-%d" % (base, _made[0])
        try:
            os.mkdir(path)
            return path
        except OSError:
            continue


def cleanup(path):
    from edgecore_ports.store import remove

    remove(path)
