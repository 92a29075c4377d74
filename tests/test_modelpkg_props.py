"""Property: modelpkg's cheap pre-check never hides an archive ``archive.detect_file``
would find (random bytes, random tar headers, every tarfile format, zip, gzip); CPython."""

import io
import os
import tarfile
import tempfile
import zipfile

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore_ports import archive, modelpkg


def _both(data):
    fd, path = tempfile.mkstemp()
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            found = archive.detect_file(path)
        except archive.ArchiveError:
            found = "corrupt gzip"
        return found, modelpkg._could_be_archive(path, bytearray(4096))
    finally:
        os.remove(path)


def _tar(fmt, name, size, kind):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
        info = tarfile.TarInfo(name)
        info.type = kind
        if kind == tarfile.REGTYPE:
            info.size = size
            tf.addfile(info, io.BytesIO(b"x" * size))
        else:
            info.linkname = "target"
            tf.addfile(info)
    return buf.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=1200))
def test_random_bytes(data):
    found, could = _both(data)
    assert found is None or could, (found, data[:16])


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT]),
       st.text(min_size=1, max_size=150).filter(lambda s: "\x00" not in s),
       st.integers(0, 3000),
       st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE,
                        tarfile.CHRTYPE, tarfile.FIFOTYPE]))
def test_every_tar_tarfile_writes(fmt, name, size, kind):
    found, could = _both(_tar(fmt, name, size, kind))
    assert found == "tar" and could


@given(st.integers(1, 2000))
def test_v7_headers_with_their_checksum(size):
    # A v7 header: no ustar magic, only the checksum says it is a tar.
    data = bytearray(_tar(tarfile.USTAR_FORMAT, "m.bin", size, tarfile.REGTYPE))
    data[257:265] = b"\x00" * 8
    data[148:156] = b" " * 8
    data[148:155] = ("%06o\x00" % sum(data[:512])).encode()
    found, could = _both(bytes(data))
    assert found == "tar" and could


def test_zip_and_gzip():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a", b"b")
    assert _both(buf.getvalue()) == ("zip", True)
    assert _both(_tar_gz())[1] is True


def _tar_gz():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        tf.addfile(tarfile.TarInfo("empty"))
    return buf.getvalue()
