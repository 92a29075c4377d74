"""A small streaming tar reader for ports without ``tarfile`` (MicroPython).

Reads ustar, GNU (``L``/``K`` long names) and POSIX pax (``x`` records ``path``,
``linkpath``, ``size``; ``g`` ignored) headers from any object with ``read(n)`` --
a file, or ``deflate.DeflateIO`` for a ``.tar.gz`` -- without seeking. Every header's
checksum is verified; a short header or entry is a truncated archive. Entry types:
regular (``0``, NUL, ``7``), hard link (``1``), symlink (``2``), directory (``5``);
devices, FIFOs, sparse and unknown types are reported by kind for
``edgecore_ports.archive`` to refuse. Metadata blocks (long names, pax records) are
bounded to MAX_META bytes. Errors are ``archive.ArchiveError``.
"""

from edgecore_ports.archive import (
    DIR,
    FILE,
    HARDLINK,
    SYMLINK,
    ArchiveError,
    Entry,
    gunzip_stream,
    read_full,
    tar_checksum_ok,
)

BLOCK = 512
MAX_META = 64 * 1024
_KINDS = {
    b"0": FILE, b"\x00": FILE, b"7": FILE, b"1": HARDLINK, b"2": SYMLINK, b"5": DIR,
    b"3": "device", b"4": "device", b"6": "fifo", b"S": "sparse",
}


def _number(field, what):
    """An octal (or GNU base-256) numeric header field."""
    if field and field[0] & 0x80:
        n = field[0] & 0x7F
        if n & 0x40:
            raise ArchiveError("tar header: negative %s" % what)
        for c in field[1:]:
            n = n * 256 + c
        return n
    s = field.split(b"\x00", 1)[0].strip()
    n = 0
    for c in s:
        if c < 0x30 or c > 0x37:
            raise ArchiveError("tar header: %s is not an octal number" % what)
        n = n * 8 + c - 0x30
    return n


def _text(field):
    return field.split(b"\x00", 1)[0]


def _decode(raw, what):
    try:
        return raw.decode("utf-8")
    except UnicodeError:
        raise ArchiveError("tar header: %s is not UTF-8" % what) from None


def _pax(data):
    """{key: value bytes} of pax extended header records ``"<len> <key>=<value>\\n"``."""
    out = {}
    pos = 0
    while pos < len(data):
        sp = data.find(b" ", pos)
        if sp < 0:
            break
        length = 0
        for c in data[pos:sp]:
            if c < 0x30 or c > 0x39:
                raise ArchiveError("tar pax header: bad record length")
            length = length * 10 + c - 0x30
        end = pos + length
        if length <= sp - pos or end > len(data) or data[end - 1] != 0x0A:
            raise ArchiveError("tar pax header: malformed record")
        key, eq, value = data[sp + 1 : end - 1].partition(b"=")
        if not eq:
            raise ArchiveError("tar pax header: record without '='")
        out[key] = value
        pos = end
    return out


class TarReader:
    """Entries of a tar stream ``f`` (``read(n)``), one at a time, without seeking."""

    def __init__(self, f):
        self.f = f
        self._left = 0  # data bytes of the current entry not yet read
        self._pad = 0

    def _exact(self, n):
        data = read_full(self.f, n)
        if len(data) != n:
            raise ArchiveError("truncated archive (ended inside an entry or header)")
        return data

    def _skip(self, n):
        while n > 0:
            k = min(n, 16384)
            self._exact(k)
            n -= k

    def read(self, n):
        """Up to ``n`` data bytes of the current entry; b"" at its end."""
        n = min(n, self._left)
        if n <= 0:
            return b""
        try:
            data = self.f.read(n)
        except Exception as exc:  # decompression errors differ per runtime
            raise ArchiveError("corrupt archive: %s" % (exc,)) from None
        if not data:
            raise ArchiveError("truncated archive (ended inside an entry)")
        self._left -= len(data)
        return data

    def _meta(self, size):
        if size > MAX_META:
            raise ArchiveError("tar header: extended header of %d bytes (over %d)"
                               % (size, MAX_META))
        data = self._exact(size)
        self._skip(-size % BLOCK)
        return data

    def next(self):
        """The next Entry, or None at the end of the archive."""
        self._skip(self._left + self._pad)
        self._left = self._pad = 0
        pax = {}
        long_name = long_link = None
        while True:
            block = read_full(self.f, BLOCK)
            if not block:
                return None  # end of file without the end-of-archive blocks: accepted
            if len(block) != BLOCK:
                raise ArchiveError("truncated archive (ended inside a header)")
            if block == b"\x00" * BLOCK:
                return None
            if not tar_checksum_ok(block):
                raise ArchiveError("tar header: bad checksum (corrupt or not a tar)")
            kind_flag = block[156:157]
            size = _number(block[124:136], "size")
            if kind_flag in (b"x", b"g"):
                records = _pax(self._meta(size))
                if kind_flag == b"x":
                    pax = records
                continue
            if kind_flag == b"L":
                long_name = _text(self._meta(size))
                continue
            if kind_flag == b"K":
                long_link = _text(self._meta(size))
                continue
            break
        name = _text(block[0:100])
        if block[257:262] == b"ustar":
            prefix = _text(block[345:500])
            if prefix:
                name = prefix + b"/" + name
        name = pax.get(b"path", long_name or name)
        link = pax.get(b"linkpath", long_link or _text(block[157:257]))
        if b"size" in pax:
            size = _number(pax[b"size"], "pax size")
        kind = _KINDS.get(kind_flag)
        if kind is None:
            kind = "unknown type %r" % (kind_flag,)
        self._left = size if kind not in (DIR, SYMLINK) else 0
        self._pad = -self._left % BLOCK
        if kind in (DIR, SYMLINK) and size:  # no data is expected: skip any
            self._left, self._pad = size, -size % BLOCK
        return Entry(
            _decode(name, "name"), kind, size if kind == FILE else 0,
            _number(block[100:108], "mode"),
            _decode(link, "link name") if kind in (SYMLINK, HARDLINK) else None,
            self._open,
        )

    def _open(self):
        return self


class FileReader:
    """``archive.open_reader``'s reader of a ``.tar`` (``gz=False``) or ``.tar.gz`` file."""

    def __init__(self, path, gz):
        self.path = path
        self.gz = gz
        self._f = None

    def entries(self):
        self.close()
        self._f = open(self.path, "rb")  # noqa: SIM115 (closed by close(), across entries())
        stream = gunzip_stream(self._f) if self.gz else self._f
        tar = TarReader(stream)
        while True:
            try:
                e = tar.next()
            except ArchiveError:
                raise
            except Exception as exc:  # decompression errors differ per runtime
                raise ArchiveError("corrupt archive: %s" % (exc,)) from None
            if e is None:
                return
            yield e

    def close(self):
        if self._f is not None:
            self._f.close()
            self._f = None
