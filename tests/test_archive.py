# Runs under MicroPython too
"""edgecore_ports.archive with hand-built tar archives: safe unpacking, and every hostile
archive refused with nothing written outside the target and no partial directory.

Plain asserts (no pytest): under MicroPython the port's own reader (tarreader) runs;
under CPython both readers run (tarfile as the port uses it, and tarreader)."""

import os
import sys

from data.archives import MODEL_TAR_GZ, WEIGHTS, d, f, hard, read, sym, tar, tar_header, tree

from edgecore_ports import archive
from edgecore_ports.archive import ArchiveError

CPYTHON = sys.implementation.name != "micropython"
IMPLS = ("mini", "std") if CPYTHON else ("mini",)
LINKS = hasattr(os, "symlink") and hasattr(os, "link")

_counter = [0]


def sandbox():
    """A fresh directory holding ``out/`` (the target's parent)."""
    try:
        import tempfile

        root = tempfile.mkdtemp()
    except ImportError:
        _counter[0] += 1
        root = "/tmp/archive-test-%d" % _counter[0]
        archive.remove_tree(root)
        os.mkdir(root)
    os.mkdir(root + "/out")
    return root


def write(path, data):
    with open(path, "wb") as fh:
        fh.write(data)


def unpack_bytes(data, impl, name="pkg.tar", **kw):
    box = sandbox()
    write(box + "/" + name, data)
    info = archive.unpack(box + "/" + name, box + "/out/v1", impl=impl, **kw)
    return box, info


def refused(data, words, impl, name="pkg.tar", **kw):
    """The archive is refused with ``words`` in the reason; nothing is left behind."""
    box = sandbox()
    write(box + "/" + name, data)
    try:
        archive.unpack(box + "/" + name, box + "/out/v1", impl=impl, **kw)
    except ArchiveError as exc:
        assert words in str(exc), (words, str(exc))
    else:
        raise AssertionError("not refused: " + words)
    assert tree(box) == {"/out": "dir", "/" + name: data}, tree(box)
    return box


def test_detect():
    plain = tar(f("a.bin", b"x"))
    assert archive.detect(plain) == "tar"
    assert archive.detect(b"PK\x03\x04rest") == "zip"
    assert archive.detect(b"PK\x05\x06" + b"\x00" * 18) == "zip"
    assert archive.detect(MODEL_TAR_GZ[:512], plain[:512]) == "tar.gz"
    assert archive.detect(MODEL_TAR_GZ[:512], b"not a tar") is None  # a plain .gz file
    assert archive.detect(b"\x00" * 1024) is None
    assert archive.detect(WEIGHTS) is None
    assert archive.detect(b"") is None
    # A v7 header (no ustar magic) is recognised by its checksum only.
    v7 = tar_header("old.bin", 0, magic=False)
    assert archive.detect(v7) == "tar"
    broken = bytearray(v7)
    broken[0] ^= 1
    assert archive.detect(bytes(broken)) is None


def test_detect_file_gz():
    box = sandbox()
    write(box + "/m.tgz", MODEL_TAR_GZ)
    assert archive.detect_file(box + "/m.tgz") == "tar.gz"
    write(box + "/w.bin", WEIGHTS)
    assert archive.detect_file(box + "/w.bin") is None


def test_unpack_tar_files_dirs_modes():
    data = tar(d("./"), d("./model"), f("./model/w.bin", WEIGHTS), f("model/run.sh", b"#!/bin/sh\n",
               0o755), f("top.txt", b"hello"), f("deep/er/x", b""))
    for impl in IMPLS:
        box, info = unpack_bytes(data, impl)
        assert info == {"format": "tar", "entries": 5, "bytes": len(WEIGHTS) + 10 + 5}, info
        got = tree(box + "/out/v1")
        assert got == {
            "/model": "dir", "/model/w.bin": WEIGHTS, "/model/run.sh": b"#!/bin/sh\n",
            "/top.txt": b"hello", "/deep": "dir", "/deep/er": "dir", "/deep/er/x": b"",
        }, got
        assert "v1.unpacking" not in os.listdir(box + "/out")
        if CPYTHON:
            assert os.stat(box + "/out/v1/model/run.sh")[0] & 0o777 == 0o755
            assert os.stat(box + "/out/v1/top.txt")[0] & 0o777 == 0o644


def test_unpack_tar_gz():
    for impl in IMPLS:
        box, info = unpack_bytes(MODEL_TAR_GZ, impl, "model.tar.gz")
        assert info["format"] == "tar.gz"
        assert read(box + "/out/v1/model/weights.bin") == WEIGHTS
        assert read(box + "/out/v1/model/config.json") == b'{"layers": 3}\n'


def test_truncated_gz_refused():
    cut = MODEL_TAR_GZ[: len(MODEL_TAR_GZ) // 2]
    for impl in IMPLS:
        refused(cut, "", impl, "model.tar.gz", fmt="tar.gz")


def test_links_inside_allowed():
    if not LINKS:
        for impl in IMPLS:
            refused(tar(f("a", b"1"), sym("l", "a")), "cannot be made on this port", impl)
        return
    data = tar(f("a/f", b"1"), sym("a/l", "f"), sym("up", "a/../a/f"), hard("h", "a/f"),
               sym("dangling", "a/missing"))
    for impl in IMPLS:
        box, _ = unpack_bytes(data, impl)
        got = tree(box + "/out/v1")
        assert got["/a/l"] == "-> f" and got["/up"] == "-> a/../a/f", got
        assert got["/h"] == b"1" and got["/dangling"] == "-> a/missing"
        assert os.stat(box + "/out/v1/h")[3] == 2  # a real hard link: two names


def test_path_traversal_refused():
    for impl in IMPLS:
        refused(tar(f("../evil", b"x")), "path traversal", impl)
        refused(tar(d("a"), f("a/../../evil", b"x")), "path traversal", impl)
        refused(tar(f("ok", b"1"), f("./../evil", b"x")), "path traversal", impl)


def test_absolute_path_refused():
    for impl in IMPLS:
        refused(tar(f("/tmp/evil", b"x")), "absolute path", impl)


def test_symlink_out_refused():
    for impl in IMPLS:
        if not LINKS:
            refused(tar(sym("l", "../x")), "cannot be made on this port", impl)
            continue
        refused(tar(sym("l", "../../etc/passwd")), "leaves the directory", impl)
        refused(tar(sym("l", "/etc/passwd")), "absolute target", impl)
        # Each link alone stays inside, but b goes through a/l (= the root) and up.
        refused(tar(d("a"), sym("a/l", ".."), sym("b", "a/l/..")), "leaves the directory", impl)
        # A file written through a symlink, in either order.
        refused(tar(sym("l", "."), f("l/x", b"1")), "not a directory", impl)
        refused(tar(f("l/x", b"1"), sym("l", ".")), "duplicate", impl)
        refused(tar(sym("a", "b"), sym("b", "a")), "does not resolve", impl)


def test_hard_link_out_refused():
    for impl in IMPLS:
        if not LINKS:
            refused(tar(f("a", b"1"), hard("h", "a")), "cannot be made on this port", impl)
            continue
        refused(tar(hard("h", "../outside")), "path traversal", impl)
        refused(tar(hard("h", "/etc/passwd")), "absolute path", impl)
        refused(tar(hard("h", "missing")), "not a regular file", impl)
        refused(tar(d("dir"), hard("h", "dir")), "not a regular file", impl)


def test_device_and_fifo_refused():
    for impl in IMPLS:
        refused(tar(f("ok", b"1"), ("dev/null", None, b"3", "", 0o666)), "device", impl)
        refused(tar(("sda", None, b"4", "", 0o666)), "device", impl)
        refused(tar(("pipe", None, b"6", "", 0o666)), "fifo", impl)
        refused(tar(("odd", None, b"Z", "", 0o666)), "unknown type", impl)


def test_limits_checked_before_writing():
    big = tar(f("a", b"x" * 1000), f("b", b"y" * 1000))
    many = tar(*[f("f%d" % i, b"") for i in range(12)])
    for impl in IMPLS:
        refused(big, "unpacked size over 1500 bytes", impl, max_bytes=1500)
        refused(many, "more than 10 entries", impl, max_entries=10)
        refused(big, "not enough free space", impl, free_bytes=4096)
        unpack_bytes(big, impl, max_bytes=2000, max_entries=2, free_bytes=1 << 20)


def test_truncated_refused():
    data = tar(f("a", b"x" * 3000), f("b", b"y"))
    for impl in IMPLS:
        refused(data[: 512 + 1000], "truncated", impl)  # inside the first entry's data
        refused(data[:300], "truncated", impl, fmt="tar")  # inside the first header
    refused(data[: 512 + 3072 + 100], "truncated", "mini")  # inside the second header


def test_corrupt_header_refused():
    data = bytearray(tar(f("a", b"1"), f("b", b"2")))
    data[1024 + 5] ^= 0x20  # second header's name, checksum now wrong
    refused(bytes(data), "checksum", "mini", fmt="tar")


def test_names_refused():
    for impl in IMPLS:
        refused(tar(f("a", b"1"), f("a", b"2")), "duplicate", impl)
        refused(tar(f("a", b"1"), f("a/b", b"2")), "not a directory", impl)
        refused(tar(f("a\\..\\b", b"1")), "backslash", impl)
        refused(tar(f("a\x01b", b"1")), "control character", impl)
        refused(tar(f("/".join(["d"] * 40), b"1")), "deeper than", impl)


def test_zip_refused_without_reader():
    box = sandbox()
    write(box + "/p.zip", b"PK\x05\x06" + b"\x00" * 18)
    try:
        archive.unpack(box + "/p.zip", box + "/out/v1", impl="mini")
    except ArchiveError as exc:
        assert "zip archives cannot be unpacked on this port" in str(exc)
    else:
        raise AssertionError("zip accepted by the tar-only reader")
    assert os.listdir(box + "/out") == []


def test_existing_target_refused():
    box = sandbox()
    write(box + "/pkg.tar", tar(f("a", b"1")))
    os.mkdir(box + "/out/v1")
    try:
        archive.unpack(box + "/pkg.tar", box + "/out/v1")
    except ArchiveError as exc:
        assert "already exists" in str(exc)
    else:
        raise AssertionError("unpacked over an existing directory")
    assert os.listdir(box + "/out/v1") == []


def test_not_an_archive():
    box = sandbox()
    write(box + "/w.bin", WEIGHTS)
    try:
        archive.unpack(box + "/w.bin", box + "/out/v1")
    except ArchiveError as exc:
        assert "not a tar, tar.gz or zip" in str(exc)
    else:
        raise AssertionError("a plain file was unpacked")


def test_leftover_unpacking_dir_is_replaced():
    box = sandbox()
    write(box + "/pkg.tar", tar(f("a", b"1")))
    os.mkdir(box + "/out/v1.unpacking")
    write(box + "/out/v1.unpacking/stale", b"old")
    archive.unpack(box + "/pkg.tar", box + "/out/v1")
    assert tree(box + "/out") == {"/v1": "dir", "/v1/a": b"1"}


def test_pax_and_gnu_long_names():
    long_name = "/".join(["segment%02d" % i for i in range(12)]) + "/file.bin"  # > 100 bytes
    rec = "path=" + long_name + "\n"
    n = len(rec) + 4
    rec = ("%d " % n) + rec
    assert len(rec) == n
    pax = tar_header("PaxHeader", len(rec), b"x") + rec.encode() + b"\x00" * (-len(rec) % 512)
    gnu_name = (long_name + "2").encode() + b"\x00"
    gnu = (tar_header("././@LongLink", len(gnu_name), b"L") + gnu_name
           + b"\x00" * (-len(gnu_name) % 512))
    body = tar(f("short", b"1"))[:-1024]
    data = (body + pax + tar_header("ignored", 3) + b"abc" + b"\x00" * 509
            + gnu + tar_header("ignored2", 2) + b"de" + b"\x00" * 510 + b"\x00" * 1024)
    for impl in IMPLS:
        box, info = unpack_bytes(data, impl)
        assert read(box + "/out/v1/" + long_name) == b"abc"
        assert read(box + "/out/v1/" + long_name + "2") == b"de"
        assert info["entries"] == 3
