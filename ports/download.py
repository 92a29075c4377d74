"""Downloads of model artifacts: signed S3 GET, staging, verification, resume.

``download(runner, action)`` runs one DOWNLOAD action of ``edgecore.agent`` for the
executor (``edgecore_ports.runner.Runner``: its config, port, store, buffer, signed GET
and retry loop). The bytes stream through the runner's ONE buffer into the store's
staging directory, written then hashed (``edgecore.checksum.Verifier``), so the byte
count only covers bytes that are both; a verified, synced directory is renamed into
place by the store, so a version directory that exists is complete.

Every attempt is bounded: the response head must come within ``request_timeout``;
then the exchange's deadline moves to the time the rest of the body would take at
``min_download_rate`` (+ RATE_WINDOW), and a download that receives less than that
rate over any RATE_WINDOW seconds is cut; both are retried like a cut connection.
Free space (the rest of the body + ``free_space_reserve_bytes``) is checked before
the first byte is written; a body without Content-Length is stopped when it outgrows
that space.

Resume: a cut download continues with ``Range: bytes=<done>-`` and ``If-Match: <ETag
of the first response>`` feeding the same Verifier; a 200 (Range ignored), a 412 (the
object changed) or a Content-Range that does not continue the bytes start over from
byte 0. The first ETag is kept in a sidecar (``.resume.json``: sha1, url, etag) next to
the staged bytes, so a restarted agent re-hashes them once and continues too; staged
bytes without a matching sidecar are fetched again.

Signatures (CPython with ``cryptography``): with ``artifact_signing_key`` set, the
verified artifact must also match ``<key>.sig`` (see ``edgecore_ports.signing``).
Then a model package is unpacked into the version (``edgecore_ports.modelpkg``).
"""

import errno
import json

from edgecore import agent, s3url
from edgecore.checksum import Verifier
from edgecore.errors import ChecksumMismatch, EdgecoreError, TransportError
from edgecore_ports import ascii_digits, content_range_total
from edgecore_ports.store import (
    META,
    POINTER,
    file_size,
    isdir,
    listdir,
    makedirs,
    read_json,
    remove,
    sync_dir,
    sync_file,
    write_json,
)

RESUME_FILE = ".resume.json"
RATE_WINDOW = 30  # seconds over which min_download_rate is judged
MAX_NAME = 64  # characters of an artifact's file name (the end of its S3 key)
# errno values a retry cannot fix; the numbers are Linux's (and MicroPython's own
# ENOSPC), for the builds whose errno module does not name them
_ENAMETOOLONG = getattr(errno, "ENAMETOOLONG", 36)
_FINAL_ERRNOS = (getattr(errno, "ENOSPC", 28), getattr(errno, "EDQUOT", 122), _ENAMETOOLONG)


class DownloadError(EdgecoreError):
    """One attempt failed; ``str()`` is the reason reported. ``retryable``: another
    attempt may succeed; ``keep``: the bytes staged so far stay valid (an error answer
    about this request, or a cut connection); ``code`` / ``message``: S3's error."""

    def __init__(self, reason, retryable=False, keep=False, code=None, message=None):
        super().__init__(reason)
        self.retryable = retryable
        self.keep = keep
        self.code = code
        self.message = message


def describe(exc):
    """An error's text for a report: an OSError's strerror and file, else str()."""
    if isinstance(exc, OSError) and len(exc.args) > 1 and isinstance(exc.args[1], str):
        where = getattr(exc, "filename", None)
        return exc.args[1] + (": " + where if isinstance(where, str) else "")
    return str(exc) or exc.__class__.__name__


def _network_error(where, exc):
    """A DownloadError for a cut exchange or a failed write (the bytes so far kept)."""
    reason = "GET %s: %s" % (where, describe(exc))
    code = exc.args[0] if isinstance(exc, OSError) and exc.args else None
    if code in _FINAL_ERRNOS:
        if code == _ENAMETOOLONG:
            return DownloadError(reason)
        return DownloadError("no space left in model_dir while writing: " + reason)
    return DownloadError(reason, retryable=getattr(exc, "retryable", True) is not False,
                         keep=True)


def artifact_name(key):
    """A safe file name from the end of an S3 key: ASCII letters, digits, ``._-``."""
    out = []
    for c in key.rsplit("/", 1)[-1]:
        ok = ("a" <= c <= "z") or ("A" <= c <= "Z") or ("0" <= c <= "9") or c in "._-"
        out.append(c if ok else "_")
    name = "".join(out).lstrip(".")[-MAX_NAME:]
    return name if name and name not in (META, POINTER) else "model"


class Pace:
    """The minimum rate of one attempt: ``check(n)`` after each read of ``n`` bytes
    returns the rate (bytes/s) when fewer than ``min_rate`` bytes/s arrived over the
    last ``window`` seconds, else None. At most one sample a second is kept."""

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


class Staged:
    """A download in progress: its staging directory, open file, hash and byte count.

    ``done`` counts bytes written AND hashed; the file holds exactly those (bytes past
    it, from a write cut short, are dropped before the next write). The Verifier lives
    across the retries of one run, so a resumed transfer hashes only the new bytes."""

    def __init__(self, directory, filename, sha1, handle, url):
        self.dir = directory
        self.filename = filename
        self.path = directory + "/" + filename
        self.sha1 = sha1
        self.handle = handle
        self.url = url
        self.meta = {}
        self.done = 0
        self.file = None
        self.verifier = None
        self.etag = None
        self.from_disk = False  # the bytes so far were re-read after a restart

    def reset(self):
        self.close()
        remove(self.dir)
        self.done = 0
        self.verifier = None
        self.etag = None
        self.from_disk = False

    def resume_from_disk(self, buf):
        """Adopt the bytes an earlier run staged when its sidecar matches (same sha1 and
        url, an ETag); else start clean. Returns the bytes adopted."""
        doc = read_json(self.dir + "/" + RESUME_FILE, 4096) if isdir(self.dir) else None
        if doc is None or doc.get("sha1") != self.sha1 or doc.get("url") != self.url \
                or not isinstance(doc.get("etag"), str) or not doc["etag"] \
                or not file_size(self.path):
            self.reset()
            return 0
        verifier = Verifier("SHA1", self.sha1, operation="download " + self.handle)
        with open(self.path, "rb") as f:
            verifier.consume(f, buffer=buf)
        self.verifier = verifier
        self.done = verifier.bytes_seen
        self.etag = doc["etag"]
        self.from_disk = True
        return self.done

    def open(self, total, atomic_write):
        """The file to append to and the Verifier (new ones for a fresh download)."""
        if self.verifier is None:
            self.verifier = Verifier("SHA1", self.sha1, limit=total,
                                     operation="download " + self.handle)
            makedirs(self.dir)
            # Unbuffered, so that `done` counts bytes the system took: a buffer would
            # hold some back, and a refused flush (a full disk, a failing card) would
            # drop them while the hash already covers them.
            self.file = open(self.path, "wb", buffering=0)  # noqa: SIM115 (kept open)
            if self.etag:
                doc = {"sha1": self.sha1, "url": self.url, "etag": self.etag}
                atomic_write(self.dir + "/" + RESUME_FILE, json.dumps(doc))
        elif self.file is None:
            if total is not None:
                self.verifier.limit = total  # unknown when the bytes came from disk
            size = file_size(self.path)
            if size == self.done:
                self.file = open(self.path, "ab", buffering=0)  # noqa: SIM115
            elif size is not None and size > self.done:
                f = open(self.path, "r+b", buffering=0)  # noqa: SIM115
                if hasattr(f, "truncate"):
                    f.truncate(self.done)  # bytes past `done` were never hashed
                    f.seek(self.done)
                    self.file = f
                else:  # MicroPython: no truncate; start over (below)
                    f.close()
            if self.file is None:
                raise DownloadError("%s: the staged file holds %s bytes, not the %d hashed: "
                                    "starting over" % (self.handle, size, self.done),
                                    retryable=True)
        return self.file, self.verifier

    def close(self):
        f, self.file = self.file, None
        if f is not None:
            f.close()

    def commit(self):
        """Sync the artifact, write edgecore.json; returns the metadata. Anything else in
        the directory (the sidecar) is removed: a version holds the artifact and its
        metadata only."""
        if self.file is not None:
            sync_file(self.file)
        else:  # every byte came from disk (a restart after the last write)
            with open(self.path, "rb") as f:
                sync_file(f)
        self.close()
        for name in listdir(self.dir):
            if name != self.filename:
                remove(self.dir + "/" + name)
        meta = {"sha1": self.sha1, "file": self.filename, "size": self.done}
        meta.update(self.meta)
        write_json(self.dir + "/" + META, meta)
        sync_dir(self.dir)
        return meta


def _write_all(f, data):
    """Write all of ``data`` to an unbuffered file (a raw write may take only part)."""
    view = memoryview(data)
    while len(view):
        n = f.write(view)
        if not n:  # not seen on regular files; never spin on it
            raise OSError(errno.EIO, "short write to " + str(getattr(f, "name", "file")))
        view = view[n:]


def download(runner, action):
    """Run a DOWNLOAD action; returns an ``edgecore.agent`` Outcome."""
    handle = action.handle
    sha1 = action.model["sha1"]
    bucket, key = s3url.parse(action.model["s3url"])
    where = "s3://%s/%s" % (bucket, key)
    vdir = runner.store.version_dir(handle, sha1)
    meta = runner.store.read_meta(vdir) if isdir(vdir) else None
    if meta is not None:
        # Renamed into place only after verification: complete by construction. But a
        # key pinned since then has not seen it: check the signature now.
        problem = None
        if runner.signing_key is not None:
            name = meta.get("file") or artifact_name(key)
            # An unpacked package's artifact is gone: its SHA-256 was kept (modelpkg).
            problem = check_signature(runner, bucket, key, where, handle, vdir + "/" + name,
                                      meta.get("sha256") if meta.get("package") else None)
        return _failed(runner, None, handle, where, problem) if problem else agent.succeeded(meta)
    url = runner.s3_location(bucket, key)[0]
    part = Staged(runner.store.staging_dir(handle, sha1), artifact_name(key), sha1, handle, url)
    adopted = part.resume_from_disk(runner.buf)
    if adopted:
        runner.log("info", "download.resume", handle=handle, url=where, have=adopted)

    def once():
        try:
            return _fetch(runner, bucket, key, where, part)
        except DownloadError as exc:
            if exc.keep:
                part.close()  # an error answer: the bytes so far stay valid
            else:
                part.reset()
            raise
        except (TransportError, OSError) as exc:
            part.close()  # keep what was received: the next attempt asks for the rest
            raise _network_error(where, exc) from None
        except EdgecoreError as exc:  # e.g. more bytes than declared: never retried
            raise DownloadError("GET %s: %s" % (where, exc)) from None

    def retrying(exc, delay):
        runner.log("warning", "download.retry", handle=handle, url=where, reason=str(exc),
                   delay=round(delay, 3), have=part.done)

    try:
        meta = runner.attempt(once, retrying)
        if runner.signing_key is not None:
            problem = check_signature(runner, bucket, key, where, handle, part.path)
            if problem is not None:
                return _failed(runner, part, handle, where, problem)
        from edgecore_ports.modelpkg import unpack_staged  # a board imports it when used

        problem = unpack_staged(runner, part, meta)
        if problem is not None:
            return _failed(runner, part, handle, where, problem)
        runner.store.commit(part.dir, vdir)
    except DownloadError as exc:
        reason = str(exc)
        if getattr(exc, "attempts", None):
            reason = "gave up after %d attempt(s): %s" % (exc.attempts, reason)
        return _failed(runner, part, handle, where, reason)
    finally:
        # Anything else (a kill, an unexpected error) leaves the staged bytes and their
        # sidecar for the next run; the store drops what no deployment wants any more.
        part.close()
    runner.log("info", "download.verified", handle=handle, sha1=sha1, size=meta["size"],
               url=where, attempts=runner.tries)
    return agent.succeeded(meta)


def _failed(runner, part, handle, where, reason):
    if part is not None:
        part.reset()
    runner.log("error", "download.failed", handle=handle, url=where, reason=reason)
    return agent.failed(reason)


def _region_redirect(runner, resp, bucket, key):
    """True when S3 answered that the bucket is in another region (301, or 400 with
    ``x-amz-bucket-region``, as botocore's redirector reads it): the region is remembered
    for the bucket and the request is retried once, signed for it (issue 12 item 4)."""
    region = resp.headers.get("x-amz-bucket-region")
    if resp.status not in (301, 400) or not region or \
            region == runner.s3_location(bucket, key)[1]:
        return False
    from edgecore.endpoints import valid_region

    if not valid_region(region):
        return False
    runner.bucket_regions[bucket] = region
    runner.log("warning", "s3.bucket_region", bucket=bucket, region=region)
    return True


def _fetch(runner, bucket, key, where, part):
    """One attempt: GET (the rest of) the object into ``part``; its metadata when the
    whole object is staged and verified."""
    headers = {}
    if part.done:
        headers["Range"] = "bytes=%d-" % part.done
        if part.etag:
            # The object must be the one the bytes on disk came from: a changed object
            # answers 412 and the download restarts from byte 0.
            headers["If-Match"] = part.etag
    monotonic = runner.port.monotonic
    resp = runner.s3_get(bucket, key, headers, monotonic() + runner.config["request_timeout"])
    try:
        status, etag = resp.status, resp.headers.get("etag")
        if status == 206 and part.done:
            total = content_range_total(resp.headers.get("content-range"), part.done)
            limit = part.verifier.limit
            if total is None or (limit is not None and limit != total) \
                    or (part.etag and etag and etag != part.etag):
                raise DownloadError(
                    "GET %s: HTTP 206 does not continue byte %d (Content-Range %r, ETag %r): "
                    "starting over" % (where, part.done, resp.headers.get("content-range"), etag),
                    retryable=True)
        elif status == 200:
            if part.verifier is not None:
                part.reset()  # the server ignored the Range (or none was sent): anew
            length = resp.headers.get("content-length")
            total = int(length) if length is not None and ascii_digits(length) else None
            part.etag = etag
        elif status == 416 and part.done and part.verifier is not None:
            # Nothing after the bytes we have: they may be the whole object (a restart
            # after the last write). The checksum decides; else start over.
            try:
                part.verifier.finish()
            except ChecksumMismatch:
                raise DownloadError("GET %s: HTTP 416, the staged bytes do not verify"
                                    % where, retryable=True) from None
            return part.commit()
        else:
            code, message = s3url.parse_error(_read_some(resp, runner.buf))
            runner.last_date = resp.headers.get("date")
            restart = status == 412 and part.done  # the object changed since byte 0
            exc = DownloadError(
                "GET %s: HTTP %d%s%s" % (where, status, (" " + code) if code else "",
                                         (": " + message) if message else ""),
                retryable=restart or agent.is_retryable(code, status), keep=not restart,
                code=code, message=message)
            exc.redirect = _region_redirect(runner, resp, bucket, key)
            raise exc
        free = runner.port.free_space(runner.store.root)
        reserve = runner.config["free_space_reserve_bytes"]
        need = (total - part.done) if total is not None else 0
        if free < need + reserve:
            raise DownloadError(
                "not enough free space in %s for %s: need %s bytes + %d reserve, %d available"
                % (runner.store.root, where, need if total is not None else "?", reserve, free))
        # A body without Content-Length (chunked, or read to the close) is bounded by
        # the space checked above: a hostile endpoint cannot fill model_dir.
        room = max(free - reserve, 0)
        rate = runner.config["min_download_rate"]
        # The head is in: the rest of the exchange may take as long as the rest of the
        # body needs at the minimum rate (the pace rule below cuts a slower one sooner).
        resp.deadline = monotonic() + (need or room) / rate + RATE_WINDOW if rate else None
        for name in ("name", "version"):
            value = resp.headers.get("x-amz-meta-model-" + name)
            if value:
                part.meta[name] = value
        f, verifier = part.open(total, runner.port.atomic_write)
        _receive(runner, resp, part, f, verifier, total, part.done + room, where)
        try:
            verifier.finish()
        except ChecksumMismatch as exc:
            if part.from_disk:
                # Bytes adopted after a restart (a power cut can leave garbage in an
                # unsynced tail): fetch everything again once before failing.
                raise DownloadError("GET %s: %s (bytes staged before a restart)"
                                    % (where, exc), retryable=True) from None
            raise DownloadError("GET %s: %s" % (where, exc)) from None
        return part.commit()
    finally:
        resp.close()


def _receive(runner, resp, part, f, verifier, total, room, where):
    """Stream the body through the runner's buffer into ``f`` and ``verifier``."""
    mv = runner.buf
    size = len(mv)
    pace = Pace(runner.port.monotonic, runner.config["min_download_rate"])
    while True:
        n = resp.readinto(mv)
        if not n:
            return
        if total is None and part.done + n > room:
            raise DownloadError(
                "GET %s: a body without Content-Length outgrew the free space of %s "
                "(%d bytes beyond the %d byte reserve); stopped"
                % (where, runner.store.root, room, runner.config["free_space_reserve_bytes"]))
        chunk = mv if n == size else mv[:n]
        _write_all(f, chunk)  # written, then hashed: `done` counts bytes that are both
        verifier.update(chunk)
        part.done += n
        if runner.progress is not None:
            runner.progress(part.handle, part.done, total)
        runner.point("download-chunk")
        slow = pace.check(n)
        if slow is not None and (total is None or part.done < total):
            raise TransportError(
                "GET %s: download too slow (%.0f bytes/s over the last %d s, "
                "min_download_rate %s): aborted, will resume"
                % (where, slow, RATE_WINDOW, runner.config["min_download_rate"]))


def check_signature(runner, bucket, key, where, handle, path, digest=None):
    """None when the artifact at ``path`` may be activated, else the reason it may not.

    The file has passed its SHA1 check; it is re-read once for its SHA-256 (constant
    memory; ``digest`` when it is known and the file gone) and checked against
    ``<key>.sig`` with the pinned key. A signature S3 says
    is not there (404, or 403 AccessDenied without list permission) is missing: a
    failure when ``require_artifact_signature``, else a warning."""
    from edgecore_ports import signing

    config = runner.config
    sig_where = where + signing.SUFFIX

    def once():
        try:
            return _get_small(runner, bucket, key + signing.SUFFIX, sig_where,
                              signing.MAX_SIGNATURE)
        except (TransportError, OSError) as exc:
            raise _network_error(sig_where, exc) from None

    try:
        status, body = runner.attempt(once, lambda exc, delay: None)
    except EdgecoreError as exc:
        return "artifact signature could not be fetched: %s" % (exc,)
    if status != 200:
        if config["require_artifact_signature"]:
            return "artifact signature missing: %s (HTTP %d)" % (sig_where, status)
        runner.log("warning", "signature.missing", handle=handle, url=sig_where, status=status)
        return None
    if body is None:
        return "artifact signature %s is larger than %d bytes" % (sig_where,
                                                                  signing.MAX_SIGNATURE)
    if digest is None:
        digest = signing.file_sha256(path)
    if not signing.verify(runner.signing_key, body, digest):
        return "artifact signature does not verify with the pinned key: %s (sha256 %s)" % (
            sig_where, digest)
    runner.log("info", "signature.verified", handle=handle, url=sig_where)
    return None


def _read_some(resp, buf):
    """The start of a small body (an error, a signature): up to ``len(buf)`` bytes, read
    into the runner's buffer (no allocation of a bound's size)."""
    got = 0
    while got < len(buf):  # readinto may return less than asked: loop
        n = resp.readinto(buf[got:])
        if not n:
            break
        got += n
    return bytes(buf[:got])


def _get_small(runner, bucket, key, where, limit):
    """(200, body or None when longer than ``limit``) or (404/403, None) of a signed S3
    GET; any other answer raises DownloadError (retried as S3 errors are)."""
    resp = runner.s3_get(bucket, key, {},
                         runner.port.monotonic() + runner.config["request_timeout"])
    try:
        body = _read_some(resp, runner.buf[:limit + 1])
    finally:
        resp.close()
    if resp.status == 200:
        return 200, (body if len(body) <= limit else None)
    code, message = s3url.parse_error(body)
    if resp.status == 404 or (resp.status == 403 and code == "AccessDenied"):
        return resp.status, None
    runner.last_date = resp.headers.get("date")
    exc = DownloadError("GET %s: HTTP %d%s" % (where, resp.status, (" " + code) if code else ""),
                        retryable=agent.is_retryable(code, resp.status), code=code,
                        message=message)
    exc.redirect = _region_redirect(runner, resp, bucket, key)
    raise exc
