"""Data capture: a bounded on-disk buffer of CaptureData records and their upload to S3.

Runs on CPython and MicroPython (``os`` calls and the port's ``atomic_write`` only).

``CaptureStore(directory, port, buffer_bytes)`` keeps each confirmed capture as one
file, written atomically (temp, fsync, rename) before ``add`` returns::

    <directory>/q/<seq>_<model handle>_<capture id>.json   one JSON Lines record
    <directory>/b/<yyyymmddhh>_<handle>_<batch id>.json    a sealed batch: its record files
    <directory>/done.log                                   "S <id>" / "F <id> <reason>" lines

``add`` refuses a record with ``CaptureError("BufferFull")`` when the records on disk
plus this one would exceed ``buffer_bytes``: a capture is never dropped silently.
A batch is *sealed* (its manifest written atomically, its id fixed) before its first
upload attempt, so a retry after a kill PUTs the same bytes to the same key. After a
successful PUT the ids are appended to ``done.log`` first, then the manifest and the
records are removed: a kill at any point leaves either a batch to upload again (same
key) or records already marked done, which the next start removes. So every record
confirmed to the application is uploaded (at least once, duplicates only as the same
key) or reported FAILURE.

``Uploader`` seals batches of up to ``batch_size`` records of one model once that many
are waiting or the oldest has waited ``push_interval`` seconds, and PUTs each as
``<prefix>/<fleet>/<device>/<handle>/<yyyy>/<mm>/<dd>/<hh>/<batch id>.jsonl`` (the hour
the batch was sealed, UTC), signed with ``edgecore.sigv4`` (service ``s3``) and sent
through the port's ``open`` with a deadline (``timeout`` seconds for the whole PUT).
The object's URL and signing region come from ``locate(bucket, key)`` (the agent's: the
SDKs' endpoint rules, FIPS, dual-stack, a bucket's learnt region). Network errors, 5xx,
429 and 408 are retried with exponential backoff (jittered, capped at ``max_backoff``
seconds) for as long as the batch is buffered: an offline device keeps its captures. A
skewed clock (``on_skew``) and an expired token (``credentials.invalidate()``) are fixed
and retried at once. Other refusals (403 AccessDenied, 404 NoSuchBucket...) are retried
``max_refusals`` times, then the batch's captures are marked FAILURE with the reason.

``step()`` does a bounded amount of work (seal what is due, at most one PUT): the
MicroPython agent calls it once per cycle. ``start()``/``stop()`` run it in a thread on
CPython, so uploads never delay deployments or heartbeats.
"""

import json
import os

from edgecore import agent, s3url, sigv4
from edgecore.amztime import amz_date
from edgecore.errors import EdgecoreError
from edgecore_ports import new_lock

IN_PROGRESS = "IN_PROGRESS"
SUCCESS = "SUCCESS"
FAILURE = "FAILURE"
NOT_FOUND = "NOT_FOUND"

DEFAULT_BUFFER_BYTES = 64 * 1024 * 1024
DEFAULT_BATCH_SIZE = 10
DEFAULT_PUSH_INTERVAL = 4
MAX_RECORD_BYTES = 8 * 1024 * 1024
MAX_BATCH_BYTES = 16 * 1024 * 1024
MAX_TENSORS = 64
MAX_RANK = 32
MAX_JSON_DEPTH = 32
MAX_DONE = 10000  # capture ids whose final status is remembered
MAX_BACKOFF = 300
MAX_REFUSALS = 5
MAX_REASON = 300
DTYPES = {
    "bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "float16": 2, "bfloat16": 2,
    "int32": 4, "uint32": 4, "float32": 4, "int64": 8, "uint64": 8, "float64": 8,
}
EVENT_VERSION = "edgecore-capture-1"
_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
_NAME_CHARS = _ID_CHARS + ":/"


class CaptureError(EdgecoreError):
    """A capture refused. ``code``: ``ValidationError`` (``field`` names the member),
    ``BufferFull``, ``RecordTooLarge`` or ``CaptureIdInUse``."""

    def __init__(self, code, message, field=None):
        self.code = code
        self.field = field
        super().__init__(message)


def _invalid(field, expected):
    return CaptureError("ValidationError", "CaptureData: invalid %s: expected %s"
                        % (field, expected), field)


def capture_id_ok(s):
    return (isinstance(s, str) and 1 <= len(s) <= 128 and s[0] not in "._-"
            and all(c in _ID_CHARS for c in s))


def _finite(x):
    return x == x and x not in (float("inf"), float("-inf"))


def check_json(value, field):
    """CaptureError unless ``value`` is JSON data: finite numbers, string keys, nested
    at most MAX_JSON_DEPTH deep (checked without recursion)."""
    stack = [(value, 0)]
    while stack:
        v, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise _invalid(field, "JSON nested at most %d deep" % MAX_JSON_DEPTH)
        if isinstance(v, float):
            if not _finite(v):
                raise _invalid(field, "finite numbers (no NaN or Infinity)")
        elif isinstance(v, dict):
            for k in v:
                if not isinstance(k, str):
                    raise _invalid(field, "JSON objects with string keys")
                stack.append((v[k], depth + 1))
        elif isinstance(v, (list, tuple)):
            for item in v:
                stack.append((item, depth + 1))
        elif v is not None and not isinstance(v, (str, int, bool)):
            raise _invalid(field, "JSON data, not %s" % type(v).__name__)


def _b64(data):
    import binascii

    return binascii.b2a_base64(data).rstrip(b"\n").decode("ascii")


def tensor_json(t, field):
    """The record form of one tensor: ``{"name", "dtype", "shape", "data": bytes}``
    (raw bytes, sent as BASE64), ``{"name", "json": value}`` or ``{"name", "csv": text}``."""
    if not isinstance(t, dict):
        raise _invalid(field, "an object with name and data, json or csv")
    name = t.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 128 or not all(
            c in _NAME_CHARS for c in name):
        raise _invalid(field + ".name", "1-128 of letters, digits, '.', '_', '-', ':', '/'")
    kinds = [k for k in ("data", "json", "csv") if k in t]
    if len(kinds) != 1:
        raise _invalid(field, "exactly one of data (with dtype, shape), json or csv")
    if kinds[0] == "json":
        check_json(t["json"], field + ".json")
        return {"name": name, "encoding": "JSON", "data": t["json"]}
    if kinds[0] == "csv":
        if not isinstance(t["csv"], str):
            raise _invalid(field + ".csv", "a string")
        return {"name": name, "encoding": "CSV", "data": t["csv"]}
    data = t["data"]
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise _invalid(field + ".data", "bytes")
    dtype = t.get("dtype")
    if dtype not in DTYPES:
        raise _invalid(field + ".dtype", "one of " + ", ".join(sorted(DTYPES)))
    shape = t.get("shape")
    if not isinstance(shape, (list, tuple)) or len(shape) > MAX_RANK:
        raise _invalid(field + ".shape", "a list of at most %d sizes" % MAX_RANK)
    count = 1
    for n in shape:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise _invalid(field + ".shape", "integers >= 0")
        count *= n
    if count * DTYPES[dtype] != len(data):
        raise _invalid(field + ".data", "%d bytes for %s %s, got %d"
                       % (count * DTYPES[dtype], dtype, list(shape), len(data)))
    return {"name": name, "encoding": "BASE64", "dtype": dtype, "shape": list(shape),
            "data": _b64(bytes(data))}


def make_record(model_handle, capture_id, inference_time, inputs, outputs, auxiliary,
                model=None, device=None, fleet=None):
    """The JSON Lines record (bytes, ending in a newline) of one capture; CaptureError
    naming the field when anything is malformed."""
    if not agent.handle_ok(model_handle):
        raise _invalid("ModelHandle", "a model handle (1-63 letters, digits, '-')")
    if not capture_id_ok(capture_id):
        raise _invalid("CaptureId", "1-128 of letters, digits, '.', '_', '-' (not first)")
    if (isinstance(inference_time, bool) or not isinstance(inference_time, (int, float))
            or not _finite(inference_time) or inference_time < 0):
        raise _invalid("InferenceTime", "epoch seconds, a finite number >= 0")
    data = {}
    for key, tensors in (("inputs", inputs), ("outputs", outputs), ("auxiliary", auxiliary)):
        field = key[0].upper() + key[1:]
        if tensors is None:
            tensors = []
        if not isinstance(tensors, (list, tuple)) or len(tensors) > MAX_TENSORS:
            raise _invalid(field, "a list of at most %d tensors" % MAX_TENSORS)
        data[key] = [tensor_json(t, "%s[%d]" % (field, i)) for i, t in enumerate(tensors)]
    if not data["inputs"] and not data["outputs"]:
        raise _invalid("Inputs", "at least one input or output tensor")
    model = model or {}
    meta = {"captureId": capture_id, "modelHandle": model_handle,
            "inferenceTime": inference_time}
    for key, value in (("modelName", model.get("name")), ("modelVersion", model.get("version")),
                       ("modelSha1", model.get("sha1")), ("deviceName", device),
                       ("fleetName", fleet)):
        if value is not None:
            meta[key] = value
    record = {"eventVersion": EVENT_VERSION, "eventMetadata": meta, "captureData": data}
    return (json.dumps(record) + "\n").encode("utf-8")




def _random_hex(n):
    try:
        raw = os.urandom(n)
    except (AttributeError, NotImplementedError):
        import random

        raw = bytes(random.getrandbits(8) for _ in range(n))
    import binascii

    return binascii.hexlify(raw).decode("ascii")


def _size(path):
    return os.stat(path)[6]


def _temp(name):
    """A temp file of an atomic write cut short (CPython's ``.<name>.<x>.tmp``,
    MicroPython's ``<name>.tmp``)."""
    return name.startswith(".") or name.endswith(".tmp")


class CaptureStore:
    """The bounded buffer; see the module doc. ``port`` gives ``atomic_write``;
    ``monotonic`` orders waiting times (default: the port's)."""

    def __init__(self, directory, port, buffer_bytes=DEFAULT_BUFFER_BYTES,
                 max_record_bytes=MAX_RECORD_BYTES, monotonic=None):
        self.dir = directory.rstrip("/")
        self.port = port
        self.buffer_bytes = buffer_bytes
        self.max_record_bytes = min(max_record_bytes, buffer_bytes)
        self.monotonic = monotonic or port.monotonic
        self.lock = new_lock()
        self.used = 0
        self.pending = {}  # record file -> (capture id, handle, size, monotonic added)
        self.batches = {}  # batch file -> [record files]
        self.ids = {}  # capture id -> record file, while buffered
        self.done = {}  # capture id -> (status, reason)
        self.done_order = []
        self.done_lines = 0
        self._seq = 0
        self._load()

    # ---- start-up ----------------------------------------------------------------

    def _load(self):
        for sub in ("", "/q", "/b"):
            try:
                os.mkdir(self.dir + sub)
            except OSError:
                pass  # exists
        self._load_done()
        for name in os.listdir(self.dir + "/b"):
            path = self.dir + "/b/" + name
            if _temp(name):
                os.remove(path)
                continue
            try:
                with open(path, "rb") as f:
                    names = json.loads(f.read())["records"]
            except (OSError, ValueError, KeyError, TypeError):
                os.remove(path)  # written atomically: unreadable means not ours
                continue
            self.batches[name] = names
        claimed = {}
        for names in self.batches.values():
            for n in names:
                claimed[n] = True
        now = self.monotonic()
        for name in sorted(os.listdir(self.dir + "/q")):
            path = self.dir + "/q/" + name
            parts = name[:-5].split("_", 2) if name.endswith(".json") else []
            if _temp(name) or len(parts) != 3:
                os.remove(path)  # never confirmed to the application
                continue
            seq, handle, cid = parts
            if not seq.isdigit():
                os.remove(path)
                continue
            self._seq = max(self._seq, int(seq) + 1)
            if cid in self.done and name not in claimed:
                os.remove(path)  # uploaded (or failed) before a kill cut the clean-up
                continue
            size = _size(path)
            self.used += size
            self.ids[cid] = name
            if name not in claimed:
                self.pending[name] = (cid, handle, size, now)
        for bname in list(self.batches):
            names = self.batches[bname]
            if all(self.ids.get(n.split("_", 2)[2][:-5]) == n for n in names):
                continue
            # Not possible by the order of writes (records go after their manifest); a
            # disk that lost a file: what is left cannot be uploaded as sealed.
            self._finish(bname, FAILURE, "a record of its batch was lost on disk")

    def _load_done(self):
        path = self.dir + "/done.log"
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return
        for line in data.split(b"\n"):
            parts = line.decode("utf-8", "replace").split(" ", 2)
            if len(parts) >= 2 and parts[0] in ("S", "F"):
                self._remember(parts[1], SUCCESS if parts[0] == "S" else FAILURE,
                               parts[2] if len(parts) > 2 else None)
                self.done_lines += 1

    def _remember(self, cid, status, reason):
        if cid not in self.done:
            self.done_order.append(cid)
        self.done[cid] = (status, reason)
        if len(self.done_order) > MAX_DONE + MAX_DONE // 10:
            for old in self.done_order[:-MAX_DONE]:
                self.done.pop(old, None)
            self.done_order = self.done_order[-MAX_DONE:]

    def _append_done(self, lines):
        path = self.dir + "/done.log"
        if self.done_lines + len(lines) > 2 * MAX_DONE:
            keep = []
            for cid in self.done_order:
                status, reason = self.done[cid]
                keep.append(self._done_line(cid, status, reason))
            self.port.atomic_write(path, "".join(keep), 0o600)
            self.done_lines = len(keep)
            return
        with open(path, "ab") as f:
            f.write("".join(lines).encode("utf-8"))
            f.flush()
            if hasattr(os, "fsync"):
                os.fsync(f.fileno())
        self.done_lines += len(lines)

    @staticmethod
    def _done_line(cid, status, reason):
        if status == SUCCESS:
            return "S %s\n" % cid
        return "F %s %s\n" % (cid, (reason or "").replace("\n", " ")[:MAX_REASON])

    # ---- the application's side ----------------------------------------------------

    def add(self, model_handle, capture_id, record):
        """Buffer one record (``make_record``'s bytes); returns once it is on disk."""
        size = len(record)
        if size > self.max_record_bytes:
            raise CaptureError("RecordTooLarge", "CaptureData: the record is %d bytes, over the "
                               "%d byte limit" % (size, self.max_record_bytes))
        with self.lock:
            if capture_id in self.ids or capture_id in self.done:
                raise CaptureError("CaptureIdInUse", "CaptureData: capture id %s is already "
                                   "used (status %s)" % (capture_id, self.status(capture_id)[0]),
                                   "CaptureId")
            if self.used + size > self.buffer_bytes:
                raise CaptureError("BufferFull", "CaptureData: buffer full (%d of %d bytes "
                                   "used, waiting for upload); try again later"
                                   % (self.used, self.buffer_bytes))
            name = "%010d_%s_%s.json" % (self._seq, model_handle, capture_id)
            self.port.atomic_write(self.dir + "/q/" + name, record, 0o600)
            self._seq += 1
            self.used += size
            self.ids[capture_id] = name
            self.pending[name] = (capture_id, model_handle, size, self.monotonic())

    def status(self, capture_id):
        """(IN_PROGRESS | SUCCESS | FAILURE | NOT_FOUND, reason or None)."""
        with self.lock:
            if capture_id in self.ids:
                return IN_PROGRESS, None
            return self.done.get(capture_id, (NOT_FOUND, None))

    # ---- the uploader's side -------------------------------------------------------

    def seal(self, batch_size, push_interval, epoch_now, max_batch_bytes=MAX_BATCH_BYTES):
        """Seal the batches that are due; returns their names."""
        sealed = []
        with self.lock:
            now = self.monotonic()
            while True:
                groups = {}
                for name in sorted(self.pending):
                    cid, handle, size, added = self.pending[name]
                    groups.setdefault(handle, []).append((name, size, added))
                due = None
                for handle, items in groups.items():
                    if len(items) >= batch_size or now - items[0][2] >= push_interval:
                        due = handle
                        break
                if due is None:
                    return sealed
                names = []
                total = 0
                for name, size, _ in groups[due][:batch_size]:
                    if names and total + size > max_batch_bytes:
                        break
                    names.append(name)
                    total += size
                bname = "%s_%s_%s.json" % (amz_date(int(epoch_now))[:11].replace("T", ""), due,
                                            _random_hex(8))
                self.port.atomic_write(self.dir + "/b/" + bname,
                                       json.dumps({"records": names}), 0o600)
                self.batches[bname] = names
                for name in names:
                    del self.pending[name]
                sealed.append(bname)

    def batch_body(self, bname):
        """The bytes to PUT for batch ``bname``: its records, in order."""
        parts = []
        for name in self.batches[bname]:
            with open(self.dir + "/q/" + name, "rb") as f:
                parts.append(f.read())
        return b"".join(parts)

    def finish(self, bname, status, reason=None):
        """Record the final ``status`` of every capture of batch ``bname``, then drop it."""
        with self.lock:
            self._finish(bname, status, reason)

    def _finish(self, bname, status, reason):
        names = self.batches.pop(bname)
        lines = []
        for name in names:
            cid = name[:-5].split("_", 2)[2]
            self._remember(cid, status, reason)
            lines.append(self._done_line(cid, status, reason))
        self._append_done(lines)
        os.remove(self.dir + "/b/" + bname)
        for name in names:
            cid = name[:-5].split("_", 2)[2]
            if self.ids.get(cid) == name:
                del self.ids[cid]
            try:
                size = _size(self.dir + "/q/" + name)
                os.remove(self.dir + "/q/" + name)
                self.used -= size
            except OSError:
                pass

    def counts(self):
        with self.lock:
            return {"pending": len(self.pending), "batches": len(self.batches),
                    "bytes": self.used, "buffer_bytes": self.buffer_bytes}


def parse_s3_uri(uri):
    """``s3://bucket/prefix/`` -> (bucket, prefix without slashes at either end)."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise ValueError("capture_s3_uri: expected s3://bucket/prefix/, got %r" % (uri,))
    bucket, _, prefix = uri[5:].partition("/")
    s3url.parse("s3://%s/x" % bucket)  # the bucket's rules
    prefix = prefix.strip("/")
    for seg in prefix.split("/") if prefix else []:
        if seg in ("", ".", ".."):
            raise ValueError("capture_s3_uri: empty, '.' or '..' segment in the prefix")
    return bucket, prefix


class Uploader:
    """Uploads the store's batches; see the module doc.

    ``http``: an object with ``open(method, url, headers, body, deadline=)`` (the port's
    transport); ``locate(bucket, key) -> (url, signing region)`` (default: ``region`` and
    ``endpoint_url`` / ``addressing_style``); ``timeout``: seconds one PUT may take in
    all; ``credentials``: ``edgecore.Credentials`` or a provider with
    ``get(now)`` (and ``invalidate()``); ``now``: the signing clock (epoch seconds,
    skew-corrected by the agent); ``on_skew(date_header) -> bool``: corrects that
    clock from a server's ``Date``; ``log(level, event, **fields)``.
    """

    def __init__(self, store, s3_uri, fleet, device, region, http, credentials, now,
                 endpoint_url=None, addressing_style="auto", batch_size=DEFAULT_BATCH_SIZE,
                 push_interval=DEFAULT_PUSH_INTERVAL, max_batch_bytes=MAX_BATCH_BYTES,
                 max_refusals=MAX_REFUSALS, max_backoff=MAX_BACKOFF, rand=None, on_skew=None,
                 log=None, locate=None, timeout=120):
        self.store = store
        self.bucket, self.prefix = parse_s3_uri(s3_uri)
        self.fleet = fleet
        self.device = device
        self.http = http
        self.credentials = credentials
        self.now = now
        self.batch_size = batch_size
        self.push_interval = push_interval
        self.max_batch_bytes = max_batch_bytes
        self.max_refusals = max_refusals
        self.max_backoff = max_backoff
        if rand is None:
            import random

            rand = random.random
        self.rand = rand
        self.on_skew = on_skew
        self.log = log or (lambda level, event, **fields: None)
        self.locate = locate or (lambda bucket, key: (s3url.object_url(
            bucket, key, region, endpoint_url, addressing_style), region))
        self.timeout = timeout
        self.retry_at = {}  # batch -> monotonic time of its next attempt
        self.failures = {}  # batch -> (network/5xx failures, refusals)
        self._thread = None
        self._stop = False
        self._wake = None

    def key(self, bname):
        """The object key of batch ``bname`` (``<yyyymmddhh>_<handle>_<batch id>.json``)."""
        hour, handle, batch_id = bname[:-5].split("_", 2)
        parts = [self.fleet, self.device, handle, hour[0:4], hour[4:6], hour[6:8], hour[8:10],
                 batch_id + ".jsonl"]
        if self.prefix:
            parts.insert(0, self.prefix)
        return "/".join(parts)

    def step(self, max_uploads=1):
        """Seal what is due, then upload at most ``max_uploads`` due batches; returns the
        number uploaded. Never raises for a failed upload (it is retried later)."""
        self.store.seal(self.batch_size, self.push_interval, self.now(), self.max_batch_bytes)
        done = 0
        now = self.store.monotonic()
        for bname in sorted(self.store.batches):
            if done >= max_uploads:
                break
            if self.retry_at.get(bname, 0) > now:
                continue
            if self.upload(bname):
                done += 1
        return done

    def next_due(self):
        """Seconds until the next thing to do (a retry or a batch to seal), or None."""
        now = self.store.monotonic()
        waits = []
        for bname in list(self.store.batches):
            waits.append(self.retry_at.get(bname, 0) - now)
        with self.store.lock:
            added = [p[3] for p in self.store.pending.values()]
        if added:
            waits.append(min(added) + self.push_interval - now)
        return max(0, min(waits)) if waits else None

    def _credentials(self):
        c = self.credentials
        return c.get(self.now()) if hasattr(c, "get") else c

    def _put(self, key, body):
        """(status, error code, Date header) of one signed PUT, within ``timeout``."""
        url, region = self.locate(self.bucket, key)
        creds = self._credentials()
        url, headers = sigv4.sign(
            "PUT", url, {"Content-Type": "application/x-ndjson"}, body,
            access_key=creds.access_key, secret_key=creds.secret_key,
            session_token=creds.session_token, region=region, service="s3",
            timestamp=self.now(),
        )
        resp = self.http.open("PUT", url, headers, body,
                              deadline=self.store.monotonic() + self.timeout)
        try:
            status = resp.status
            code = None
            if status != 200:
                code, _ = s3url.parse_error(resp.read(s3url.MAX_ERROR_BODY))
            else:
                resp.read(s3url.MAX_ERROR_BODY)
            return status, code, resp.headers.get("date")
        finally:
            resp.close()

    def upload(self, bname):
        """One attempt (plus an immediate retry after each of a clock and a credentials fix);
        True when the batch was uploaded."""
        key = self.key(bname)
        body = self.store.batch_body(bname)
        fixed_clock = fixed_creds = False
        while True:
            try:
                status, code, date = self._put(key, body)
            except (EdgecoreError, OSError) as exc:
                status, code, date = None, None, None
                reason = "PUT s3://%s/%s: %s" % (self.bucket, key, exc)
            else:
                reason = "PUT s3://%s/%s: HTTP %d%s" % (self.bucket, key, status,
                                                        (" " + code) if code else "")
            if status == 200:
                self.store.finish(bname, SUCCESS)
                self.retry_at.pop(bname, None)
                self.failures.pop(bname, None)
                self.log("info", "capture.uploaded", key=key, bytes=len(body))
                return True
            if (code is not None and not fixed_clock and self.on_skew is not None
                    and agent.is_skew_error(code, reason)):
                fixed_clock = True
                if self.on_skew(date):
                    continue
            if (code in ("ExpiredToken", "InvalidToken", "TokenRefreshRequired")
                    and not fixed_creds and hasattr(self.credentials, "invalidate")):
                fixed_creds = True
                self.credentials.invalidate()
                continue
            break
        transient, refused = self.failures.get(bname, (0, 0))
        if status is None or agent.is_retryable(code, status) or status == 408:
            transient += 1
        else:
            refused += 1
            if refused >= self.max_refusals:
                self.store.finish(bname, FAILURE, reason)
                self.retry_at.pop(bname, None)
                self.failures.pop(bname, None)
                self.log("error", "capture.failed", key=key, reason=reason)
                return False
        self.failures[bname] = (transient, refused)
        delay = min(self.max_backoff, 2 ** min(transient + refused - 1, 16)) * (
            0.5 + self.rand() / 2)
        self.retry_at[bname] = self.store.monotonic() + delay
        self.log("warning", "capture.retry", key=key, reason=reason, delay=round(delay, 3))
        return False

    # ---- CPython: a thread of its own ---------------------------------------------

    def start(self):
        """Run ``step`` in a daemon thread until ``stop()`` (CPython)."""
        import threading

        self._stop = False
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="edgecore-capture", daemon=True)
        self._thread.start()

    def wake(self):
        """Look for work now (after an add, so a full batch goes without waiting)."""
        if self._wake is not None:
            self._wake.set()

    def stop(self, timeout=10):
        self._stop = True
        if self._wake is not None:
            self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self):
        while not self._stop:
            try:
                while self.step() and not self._stop:
                    pass
            except Exception as exc:  # a disk error must not end uploads for good
                self.log("error", "capture.step_failed",
                         reason="%s: %s" % (exc.__class__.__name__, exc))
            wait = self.next_due()
            self._wake.wait(1.0 if wait is None else min(max(wait, 0.01), 30.0))
            self._wake.clear()
