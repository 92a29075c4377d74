"""edgecore_ports.archive on CPython: zip archives (the standard library's zipfile behind
archive_std), zip bombs, and property tests: random archives never write outside the
target, and the MicroPython tar reader reads what tarfile writes exactly as tarfile does."""

import io
import os
import stat
import struct
import tarfile
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgecore_ports import archive, archive_std, tarreader
from edgecore_ports.archive import ArchiveError


def _zip(members, compression=zipfile.ZIP_DEFLATED):
    """members: (name, data, unix_mode or None)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name, (2024, 1, 1, 0, 0, 0))
            info.compress_type = compression
            if mode is not None:
                info.create_system = 3
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buf.getvalue()


def _layout(tmp_path, data, name="pkg.zip"):
    src = tmp_path / name
    src.write_bytes(data)
    (tmp_path / "out").mkdir()
    return str(src), str(tmp_path / "out" / "v1")


def _everything(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_zip_unpacks(tmp_path):
    data = _zip([("model/", b"", stat.S_IFDIR | 0o755), ("model/w.bin", b"w" * 5000, None),
                 ("run.sh", b"#!/bin/sh\n", stat.S_IFREG | 0o755),
                 ("link", b"model/w.bin", stat.S_IFLNK | 0o777)])
    src, target = _layout(tmp_path, data)
    assert archive.detect_file(src) == "zip"
    info = archive.unpack(src, target)
    assert info == {"format": "zip", "entries": 4, "bytes": 5010}
    assert (tmp_path / "out/v1/model/w.bin").read_bytes() == b"w" * 5000
    assert os.readlink(target + "/link") == "model/w.bin"
    assert stat.S_IMODE(os.stat(target + "/run.sh").st_mode) == 0o755


@pytest.mark.parametrize(
    "members, words",
    [
        ([("../evil", b"x", None)], "path traversal"),
        ([("/etc/evil", b"x", None)], "absolute path"),
        ([("l", b"../../etc", stat.S_IFLNK | 0o777)], "leaves the directory"),
        ([("l", b"/etc/passwd", stat.S_IFLNK | 0o777)], "absolute target"),
        ([("null", b"", stat.S_IFCHR | 0o666)], "device"),
        ([("fifo", b"", stat.S_IFIFO | 0o666)], "fifo"),
        ([("a", b"1", None), ("a", b"2", None)], "duplicate"),
    ],
)
def test_zip_hostile_refused(tmp_path, members, words):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        data = _zip(members)
    src, target = _layout(tmp_path, data)
    with pytest.raises(ArchiveError, match=words):
        archive.unpack(src, target)
    assert _everything(tmp_path) == ["out", "pkg.zip"]


def test_zip_bomb_with_honest_sizes_refused_before_writing(tmp_path):
    data = _zip([("bomb%d" % i, b"\x00" * (4 << 20), None) for i in range(4)])
    assert len(data) < 100_000
    src, target = _layout(tmp_path, data)
    with pytest.raises(ArchiveError, match="unpacked size over"):
        archive.unpack(src, target, max_bytes=8 << 20)
    with pytest.raises(ArchiveError, match="not enough free space"):
        archive.unpack(src, target, free_bytes=1 << 20)
    assert _everything(tmp_path) == ["out", "pkg.zip"]


def _lie_about_size(data, name, size):
    """Rewrite the uncompressed size of ``name`` in its local and central headers."""
    out = bytearray(data)
    raw = name.encode()
    for sig, off_size, off_name in ((b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)):
        i = 0
        while True:
            i = out.find(sig, i)
            if i < 0:
                break
            if out[i + off_name : i + off_name + len(raw)] == raw:
                out[i + off_size : i + off_size + 4] = struct.pack("<I", size)
            i += 4
    return bytes(out)


def test_zip_bomb_with_lying_sizes_bounded_and_removed(tmp_path):
    data = _lie_about_size(_zip([("a.txt", b"ok", None), ("bomb", b"\x00" * (16 << 20), None)]),
                           "bomb", 1000)
    src, target = _layout(tmp_path, data)
    with pytest.raises(ArchiveError, match="bomb"):
        archive.unpack(src, target)
    assert _everything(tmp_path) == ["out", "pkg.zip"]


def test_zip_too_many_entries_refused_before_parsing(tmp_path, monkeypatch):
    data = _zip([("f%d" % i, b"", None) for i in range(50)], zipfile.ZIP_STORED)
    src, target = _layout(tmp_path, data)
    monkeypatch.setattr(zipfile, "ZipFile", None)  # must not get that far
    with pytest.raises(ArchiveError, match="more than 20 entries"):
        archive.unpack(src, target, max_entries=20)
    assert archive_std.zip_directory_bounds(src)[0] == 50


def test_zip_truncated_and_encrypted_refused(tmp_path):
    data = _zip([("a", os.urandom(10000), None)], zipfile.ZIP_STORED)
    src, target = _layout(tmp_path, data[: len(data) // 2], "cut.zip")
    with pytest.raises(ArchiveError, match="truncated"):
        archive.unpack(src, target, fmt="zip")
    enc = bytearray(_zip([("secret", b"x", None)], zipfile.ZIP_STORED))
    for sig, off in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        i = enc.find(sig)
        enc[i + off] |= 1  # the "encrypted" flag bit
    src2 = tmp_path / "enc.zip"
    src2.write_bytes(bytes(enc))
    with pytest.raises(ArchiveError, match="encrypted"):
        archive.unpack(str(src2), target)
    assert sorted(os.listdir(tmp_path / "out")) == []


# ---- properties ---------------------------------------------------------------------

_segment = st.sampled_from(["a", "b", "c", "..", ".", "", "x y", "\\", "/"])
_name = st.lists(_segment, min_size=1, max_size=4).map("/".join)
_member = st.tuples(
    st.sampled_from(["file", "dir", "symlink", "hardlink", "fifo"]),
    _name,
    st.binary(max_size=64),
    _name,
)


def _build_tar(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for kind, name, data, link in members:
            ti = tarfile.TarInfo(name or "x")
            ti.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
                       "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            if kind == "file":
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
            else:
                ti.linkname = link
                tf.addfile(ti)
    return buf.getvalue()


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=st.lists(_member, max_size=6), impl=st.sampled_from(["std", "mini"]))
def test_random_tar_never_escapes(tmp_path_factory, members, impl):
    box = tmp_path_factory.mktemp("box")
    outside_before = _everything(box)
    src = box / "pkg.tar"
    src.write_bytes(_build_tar(members))
    (box / "out").mkdir()
    target = str(box / "out" / "v1")
    try:
        archive.unpack(str(src), target, fmt="tar", impl=impl)
    except ArchiveError:
        assert os.listdir(box / "out") == []
    else:
        for p in (box / "out" / "v1").rglob("*"):
            if p.is_symlink():
                real = os.path.realpath(p)
                assert real == target or real.startswith(target + "/"), (p, real)
            else:
                assert os.path.realpath(p).startswith(target + "/")
    assert [p for p in _everything(box) if not p.startswith("out")] == outside_before + ["pkg.tar"]


@settings(max_examples=100, deadline=None)
@given(
    members=st.lists(
        st.tuples(st.text(st.characters(min_codepoint=48, max_codepoint=0x3FF), min_size=1,
                          max_size=150), st.binary(max_size=2000)),
        max_size=5, unique_by=lambda m: m[0]),
    fmt=st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]),
)
def test_tarreader_reads_what_tarfile_writes(members, fmt):
    if fmt == tarfile.USTAR_FORMAT:
        members = [(n, d) for n, d in members if len(n.encode()) <= 100]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    reader = tarreader.TarReader(io.BytesIO(buf.getvalue()))
    got = []
    while True:
        e = reader.next()
        if e is None:
            break
        got.append((e.name, e.kind, archive.read_full(e.open(), 1 << 20)))
    with tarfile.open(fileobj=io.BytesIO(buf.getvalue())) as tf:
        want = [(ti.name, "file", tf.extractfile(ti).read()) for ti in tf]
    assert got == want


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000))
def test_tarreader_random_bytes_only_archive_errors(data):
    reader = tarreader.TarReader(io.BytesIO(data))
    try:
        for _ in range(20):
            e = reader.next()
            if e is None:
                break
            archive.read_full(e.open(), 4096)
    except ArchiveError:
        pass
