"""CPython readers for ``edgecore_ports.archive``: the standard library's ``tarfile`` and
``zipfile`` turned into ``archive.Entry`` streams, their errors into ``ArchiveError``.

Only reading is delegated; every safety rule is ``archive``'s (tarfile's extraction
filters differ between Python versions and zipfile has none). Before ``zipfile``
parses a central directory, its end record is read here: the entry count and the
directory's size must fit ``max_entries``, so a hostile directory cannot make
``zipfile`` build millions of objects.
"""

import stat
import struct
import tarfile
import zipfile
import zlib

from edgecore_ports.archive import (
    DEFAULT_MAX_ENTRIES,
    DIR,
    FILE,
    HARDLINK,
    SYMLINK,
    ArchiveError,
    Entry,
)

# Errors reading a broken archive raises, besides ArchiveError.
READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError,
               zlib.error, ValueError, UnicodeError, NotImplementedError, RuntimeError,
               struct.error)
MAX_CD_ENTRY = 46 + 1024 + 512  # a central directory record: fixed part, name, extras
MAX_SYMLINK = 4096


def _reason(exc):
    return "%s: %s" % (exc.__class__.__name__, str(exc)[:200])


class _Guard:
    """A data stream whose read errors become ArchiveError."""

    def __init__(self, stream, name):
        self.stream = stream
        self.name = name

    def read(self, n):
        try:
            return self.stream.read(n)
        except READ_ERRORS as exc:
            raise ArchiveError("entry %r: corrupt or truncated data: %s"
                               % (self.name[:120], _reason(exc))) from None


class TarfileReader:
    def __init__(self, path, gz):
        self.path = path
        self.mode = "r:gz" if gz else "r:"
        self._tf = None

    def entries(self):
        self.close()
        try:
            # Stays open while entries() is iterated; close() closes it.
            self._tf = tf = tarfile.open(self.path, self.mode)  # noqa: SIM115
        except READ_ERRORS as exc:
            raise ArchiveError(
                "not a readable tar archive (corrupt or truncated): %s" % _reason(exc)
            ) from None
        while True:
            try:
                ti = tf.next()
            except READ_ERRORS as exc:
                raise ArchiveError("corrupt or truncated tar archive: %s" % _reason(exc)) from None
            if ti is None:
                return
            yield Entry(ti.name, _tar_kind(ti), ti.size, ti.mode, ti.linkname,
                        lambda ti=ti: _Guard(tf.extractfile(ti), ti.name))

    def close(self):
        if self._tf is not None:
            self._tf.close()
            self._tf = None


def _tar_kind(ti):
    if ti.issparse():
        return "sparse"
    if ti.isreg():
        return FILE
    if ti.isdir():
        return DIR
    if ti.issym():
        return SYMLINK
    if ti.islnk():
        return HARDLINK
    if ti.ischr() or ti.isblk():
        return "device"
    if ti.isfifo():
        return "fifo"
    return "unknown type %r" % (ti.type,)


def zip_directory_bounds(path):
    """(entry count, central directory size) from the end record (zip64 aware)."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        tail = min(size, 22 + 65535)
        f.seek(size - tail)
        data = f.read(tail)
        at = data.rfind(b"PK\x05\x06")
        if at < 0 or at + 22 > len(data):
            raise ArchiveError("zip archive without an end of central directory (truncated?)")
        count, cd_size = struct.unpack("<HI", data[at + 10 : at + 16])
        if count == 0xFFFF or cd_size == 0xFFFFFFFF:
            loc = at - 20
            if loc < 0 or data[loc : loc + 4] != b"PK\x06\x07":
                raise ArchiveError("zip64 archive without its end record locator")
            (offset,) = struct.unpack("<Q", data[loc + 8 : loc + 16])
            f.seek(offset)
            rec = f.read(56)
            if len(rec) != 56 or rec[:4] != b"PK\x06\x06":
                raise ArchiveError("zip64 end of central directory record not found")
            count, cd_size = struct.unpack("<QQ", rec[32:48])
    return count, cd_size


class ZipReader:
    def __init__(self, path, max_entries=DEFAULT_MAX_ENTRIES):
        self.path = path
        self.max_entries = max_entries
        self._zf = None

    def entries(self):
        self.close()
        try:
            count, cd_size = zip_directory_bounds(self.path)
        except (OSError, struct.error) as exc:
            raise ArchiveError("not a readable zip archive: %s" % _reason(exc)) from None
        if count > self.max_entries or cd_size > self.max_entries * MAX_CD_ENTRY:
            raise ArchiveError("more than %d entries (the limit): the zip directory lists %d "
                               "in %d bytes" % (self.max_entries, count, cd_size))
        try:
            self._zf = zf = zipfile.ZipFile(self.path)
            infos = zf.infolist()
        except READ_ERRORS as exc:
            raise ArchiveError("not a readable zip archive: %s" % _reason(exc)) from None
        for info in infos:
            yield self._entry(zf, info)

    def _entry(self, zf, info):
        mode = (info.external_attr >> 16) if info.create_system == 3 else 0
        fmt = stat.S_IFMT(mode)
        link = None
        if info.flag_bits & 0x1:
            kind = "encrypted"
        elif fmt == stat.S_IFLNK:
            kind = SYMLINK
            if info.file_size > MAX_SYMLINK:
                raise ArchiveError("symlink %r: target longer than %d bytes"
                                   % (info.filename[:120], MAX_SYMLINK))
            raw = _Guard(zf.open(info), info.filename).read(MAX_SYMLINK + 1)
            try:
                link = raw.decode("utf-8")
            except UnicodeError:
                raise ArchiveError(
                    "symlink %r: target is not UTF-8" % info.filename[:120]
                ) from None
        elif info.is_dir() or fmt == stat.S_IFDIR:
            kind = DIR
        elif fmt in (stat.S_IFCHR, stat.S_IFBLK):
            kind = "device"
        elif fmt == stat.S_IFIFO:
            kind = "fifo"
        elif fmt == stat.S_IFSOCK:
            kind = "socket"
        else:
            kind = FILE
        return Entry(info.filename, kind, info.file_size, mode, link,
                     lambda: _Guard(zf.open(info), info.filename))

    def close(self):
        if self._zf is not None:
            self._zf.close()
            self._zf = None


def open_reader(path, fmt, max_entries=DEFAULT_MAX_ENTRIES):
    if fmt == "zip":
        return ZipReader(path, max_entries)
    if fmt in ("tar", "tar.gz"):
        return TarfileReader(path, fmt == "tar.gz")
    raise ArchiveError("unknown archive format %r" % (fmt,))
