# Runs under MicroPython too (tests/micropython/run.mjs).
"""Tests of edgecore_ports.download's parts: file names, the minimum-rate rule, the
staged bytes and their sidecar, what counts as final. Whole downloads through the
executor: test_runner_rules.py (both runtimes), test_faults.py (CPython, real servers)."""

import errno

from data.fake_cloud import cleanup, noise, sha1_hex, tempdir

from edgecore_ports.download import (
    MAX_NAME,
    RESUME_FILE,
    DownloadError,
    Pace,
    Staged,
    _network_error,
    artifact_name,
)
from edgecore_ports.store import file_size, listdir, read_json

URL = "http://s3.test/models/cam/m.bin"


def atomic_write(path, data, mode=0o600):
    with open(path, "w") as f:
        f.write(data)


def test_artifact_names_are_safe_and_short():
    assert artifact_name("models/cam/model.tar.gz") == "model.tar.gz"
    assert artifact_name("a/../..") == "model"  # only dots: nothing left
    assert artifact_name("x/.hidden") == "hidden"
    assert artifact_name("x/edgecore.json") == "model"
    assert artifact_name("x/current.json") == "model"
    assert artifact_name("x/caf\u00e9 m\u00e8ne\\..") == "caf__m_ne_.."
    long = artifact_name("x/" + "n" * 300 + ".bin")
    assert len(long) == MAX_NAME and long.endswith(".bin")  # never ENAMETOOLONG


def test_pace_judges_a_sliding_window():
    clock = [0.0]
    pace = Pace(lambda: clock[0], 1000, window=30)
    for _ in range(29):  # 29 s at 500 B/s: too early to judge
        clock[0] += 1
        assert pace.check(500) is None
    clock[0] += 1
    assert int(pace.check(500)) == 500  # 15000 bytes over 30 s
    fast = Pace(lambda: clock[0], 1000, window=30)
    for _ in range(120):  # a fast start does not excuse a later stall...
        clock[0] += 1
        fast.check(100000 if clock[0] < 90 + 30 else 10)
    assert fast.check(0) is not None
    assert len(fast.samples) <= 32  # bounded: at most one sample a second in the window
    off = Pace(lambda: clock[0], 0)
    clock[0] += 1000
    assert off.check(1) is None  # 0 disables the rule


def staged_download(root, data, done):
    """A Staged with ``done`` of ``data``'s bytes written and hashed, as a cut leaves it."""
    part = Staged(root + "/cam.tmp", "m.bin", sha1_hex(data), "cam", URL)
    part.etag = '"etag-1"'
    f, verifier = part.open(len(data), atomic_write)
    f.write(data[:done])
    verifier.update(data[:done])
    part.done = done
    part.close()
    return part


def test_the_sidecar_lets_a_restart_resume_only_the_same_download():
    root = tempdir()
    try:
        data = noise(5000)
        part = staged_download(root, data, 3000)
        assert read_json(part.dir + "/" + RESUME_FILE) == {
            "sha1": sha1_hex(data), "url": URL, "etag": '"etag-1"'}
        again = Staged(part.dir, "m.bin", sha1_hex(data), "cam", URL)
        assert again.resume_from_disk(bytearray(1000)) == 3000
        assert again.etag == '"etag-1"' and again.from_disk
        f, verifier = again.open(len(data), atomic_write)
        f.write(data[3000:])
        verifier.update(data[3000:])
        again.done = len(data)
        assert verifier.finish() == len(data)
        meta = again.commit()
        assert meta == {"sha1": sha1_hex(data), "file": "m.bin", "size": 5000}
        assert sorted(listdir(part.dir)) == ["edgecore.json", "m.bin"]  # no sidecar left
        # Another URL (or sha1) is another download: the bytes are not trusted.
        part = staged_download(root + "/2", data, 3000)
        other = Staged(part.dir, "m.bin", sha1_hex(data), "cam", URL + "?v=2")
        assert other.resume_from_disk(bytearray(1000)) == 0
        assert listdir(root + "/2") == []
    finally:
        cleanup(root)


def test_bytes_past_the_hashed_count_are_never_kept():
    """A write cut short leaves more bytes than were hashed: they are cut off where the
    file can be truncated, else the download starts over (never spliced in)."""
    root = tempdir()
    try:
        data = noise(4000)
        part = staged_download(root, data, 2000)
        part.verifier.limit = None
        with open(part.path, "ab") as f:
            f.write(b"garbage")
        try:
            f, _ = part.open(len(data), atomic_write)
        except DownloadError as exc:  # MicroPython: files cannot be truncated
            assert exc.retryable and "starting over" in str(exc)
            part.reset()
            assert listdir(root) == []
        else:
            part.close()
            assert file_size(part.path) == 2000
    finally:
        cleanup(root)


def test_failures_a_retry_cannot_fix_are_final():
    full = _network_error("s3://b/k", OSError(28, "No space left on device"))  # ENOSPC
    assert not full.retryable and str(full).startswith("no space left in model_dir")
    long = _network_error("s3://b/k", OSError(36, "File name too long"))  # ENAMETOOLONG
    assert not long.retryable
    cut = _network_error("s3://b/k", OSError(errno.EIO, "I/O error"))
    assert cut.retryable and cut.keep and str(cut).startswith("GET s3://b/k: ")
    refused = DownloadError("x")
    refused.retryable = False
    assert not _network_error("s3://b/k", refused).retryable
