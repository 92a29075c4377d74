"""Model packages: detect ``.tar`` / ``.tar.gz`` / ``.zip`` artifacts and unpack them safely.

Runs on CPython and MicroPython (``os`` calls only; compiles with ``mpy-cross``).

    fmt = detect_file(path)                       # "tar", "tar.gz", "zip" or None
    info = unpack(path, target, free_bytes=...)   # -> {"format", "entries", "bytes"}

``unpack`` reads the archive twice. Pass 1 reads only the headers and checks every
rule below, the totals against ``max_bytes`` / ``max_entries`` and the space needed
against ``free_bytes`` -- before a byte is written. Pass 2 writes into a fresh
sibling directory ``<target>.unpacking`` (bounding the bytes actually written per
entry by the size pass 1 accepted: a zip's declared sizes may lie), fsyncs, and
renames it to ``target``; on any failure that directory is removed, so a failed
unpack leaves nothing. Every failure is one ``ArchiveError`` whose message is the
reason a deployment FAILs with.

Rules: names are relative UTF-8 paths without ``..``, NUL, control characters or
backslashes (``./`` prefixes and ``.`` segments are dropped), at most MAX_DEPTH
segments and MAX_NAME bytes; no duplicate names and no entry under a file or a
symlink; regular files, directories, symlinks whose target (relative, resolved
through the archive's own symlinks) stays inside, hard links to a regular file of
the archive; no devices, FIFOs, sockets, sparse or unknown entry types, no encrypted
zip entries. Files get mode 0644 (0755 when the archive marks them executable),
directories 0755; owners, setuid bits and times are not restored.

Readers: CPython uses the standard library's ``tarfile`` / ``zipfile``
(``edgecore_ports.archive_std``), with the checks here rather than extraction
filters that differ between Python versions; MicroPython uses
``edgecore_ports.tarreader`` (``.tar``, and ``.tar.gz`` where the ``deflate`` module
exists) and refuses ``.zip`` with a clear reason. Symlinks and hard links are
refused where ``os`` cannot make them (MicroPython).
"""

import os
import sys

from edgecore.errors import EdgecoreError
from edgecore_ports.store import sync_dir

FILE = "file"
DIR = "dir"
SYMLINK = "symlink"
HARDLINK = "hardlink"

DEFAULT_MAX_BYTES = 4 * 1024 * 1024 * 1024
DEFAULT_MAX_ENTRIES = 10000
MAX_DEPTH = 32
MAX_NAME = 1024  # bytes of a whole path (UTF-8)
MAX_SEGMENT = 255
MAX_LINK_HOPS = 32
BLOCK = 4096  # space estimate: each entry rounds up to a block and costs one
CHUNK = 64 * 1024
TMP_SUFFIX = ".unpacking"

_S_IFMT = 0o170000
_S_IFDIR = 0o040000
_S_IFLNK = 0o120000


class ArchiveError(EdgecoreError):
    """The archive cannot be unpacked safely; the message says why (and names the entry)."""


class Entry:
    """One archive member as a reader reports it. ``kind`` is FILE, DIR, SYMLINK,
    HARDLINK or a word for a refused type (``device``, ``fifo``, ...); ``link`` is the
    target of a link; ``open()`` (pass 2, FILE only) returns an object with ``read(n)``."""

    def __init__(self, name, kind, size=0, mode=0, link=None, open=None):
        self.name = name
        self.kind = kind
        self.size = size
        self.mode = mode
        self.link = link
        self.open = open

    def __repr__(self):
        return "Entry(%r, %s, %d)" % (self.name, self.kind, self.size)


# ---- detection --------------------------------------------------------------------


def _octal(field):
    s = field.split(b"\x00", 1)[0].strip()
    if not s:
        return None
    n = 0
    for c in s:
        if c < 0x30 or c > 0x37:
            return None
        n = n * 8 + c - 0x30
    return n


def tar_checksum_ok(block):
    """True when ``block`` (512 bytes) is a tar header whose checksum adds up
    (unsigned, or signed as some old tars wrote it)."""
    if len(block) < 512:
        return False
    want = _octal(block[148:156])
    if want is None:
        return False
    unsigned = 256  # the checksum field counts as eight spaces
    signed = 256
    for i in range(512):
        if 148 <= i < 156:
            continue
        c = block[i]
        unsigned += c
        signed += c - 256 if c > 127 else c
    return want in (unsigned, signed)


def looks_like_tar(head):
    """A ustar/GNU magic at offset 257, or a v7 header with a valid checksum."""
    if len(head) < 512:
        return False
    if head[257:262] == b"ustar":
        return tar_checksum_ok(head)
    return head[0] != 0 and tar_checksum_ok(head)


def detect(head, gunzipped=None):
    """The format of an artifact from its first bytes: ``"zip"``, ``"tar"``,
    ``"tar.gz"`` or None. For gzip data, ``gunzipped`` is the first 512 bytes it
    decompresses to (a gzip that is not a tar is not an archive: None)."""
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b":
        return "tar.gz" if gunzipped is not None and looks_like_tar(gunzipped) else None
    return "tar" if looks_like_tar(head) else None


def gunzip_stream(f):
    """A reader of the decompressed bytes of gzip file object ``f``: MicroPython's
    ``deflate`` or CPython's ``gzip``; ArchiveError on a port with neither."""
    try:
        import deflate

        return deflate.DeflateIO(f, deflate.GZIP)
    except ImportError:
        pass
    try:
        import gzip
    except ImportError:
        raise ArchiveError(
            "a .tar.gz needs the deflate module, which this port lacks; deploy a .tar"
        ) from None
    return gzip.GzipFile(fileobj=f, mode="rb")


def read_full(f, n):
    """Up to ``n`` bytes of ``f``, fewer only at its end (``read`` may return less)."""
    parts = []
    got = 0
    while got < n:
        b = f.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


def detect_file(path):
    """``detect`` for the file at ``path``. A gzip file whose first bytes do not
    decompress raises ArchiveError (a corrupt package is not a plain file)."""
    with open(path, "rb") as f:
        head = read_full(f, 512)
        inner = None
        if head[:2] == b"\x1f\x8b":
            f.seek(0)
            try:
                inner = read_full(gunzip_stream(f), 512)
            except ArchiveError:
                raise
            except Exception as exc:  # zlib/deflate/gzip errors differ per runtime
                raise ArchiveError("corrupt gzip data: %s" % (exc,)) from None
    return detect(head, inner)


# ---- the rules ----------------------------------------------------------------------


def clean_name(name, what="entry"):
    """``name`` as a list of path segments inside the target; ArchiveError unless safe."""
    if isinstance(name, (bytes, bytearray)):
        try:
            name = bytes(name).decode("utf-8")
        except UnicodeError:
            raise ArchiveError("%s name is not UTF-8: %r" % (what, bytes(name)[:80])) from None
    shown = repr(name[:120])
    for c in name:
        if c < " " or c == "\x7f" or c == "\\":
            raise ArchiveError(
                "%s %s: control character or backslash in its name" % (what, shown)
            )
    if name.startswith("/"):
        raise ArchiveError("%s %s: absolute path" % (what, shown))
    if len(name.encode("utf-8")) > MAX_NAME:
        raise ArchiveError("%s %s...: name longer than %d bytes" % (what, shown, MAX_NAME))
    parts = []
    for seg in name.split("/"):
        if seg == "..":
            raise ArchiveError("%s %s: path traversal ('..')" % (what, shown))
        if seg and seg != ".":
            if len(seg.encode("utf-8")) > MAX_SEGMENT:
                raise ArchiveError(
                    "%s %s: a path segment is longer than %d bytes" % (what, shown, MAX_SEGMENT)
                )
            parts.append(seg)
    if len(parts) > MAX_DEPTH:
        raise ArchiveError("%s %s: deeper than %d directories" % (what, shown, MAX_DEPTH))
    return parts


class Plan:
    """Pass 1: the entries accepted so far and the totals; ``add`` raises on the
    first broken rule, ``finish`` checks what needs every entry (link targets)."""

    def __init__(self, max_bytes=DEFAULT_MAX_BYTES, max_entries=DEFAULT_MAX_ENTRIES,
                 links_ok=True):
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.links_ok = links_ok
        self.entries = []  # (path, kind, size, mode, link) in archive order
        self.kinds = {}  # path -> kind (implicit parent directories are DIR)
        self.symlinks = {}
        self.bytes = 0
        self.space = 0

    def add(self, e):
        parts = clean_name(e.name)
        path = "/".join(parts)
        shown = repr(path[:120])
        if len(self.entries) >= self.max_entries:
            raise ArchiveError("more than %d entries (the limit)" % self.max_entries)
        kind = e.kind
        if kind not in (FILE, DIR, SYMLINK, HARDLINK):
            raise ArchiveError("entry %s: %s entries are not allowed" % (shown, kind))
        if not parts:
            if kind == DIR:
                return  # "./": the target itself
            raise ArchiveError("entry %r: a %s without a name" % (e.name[:120], kind))
        if kind in (SYMLINK, HARDLINK) and not self.links_ok:
            raise ArchiveError("entry %s: %ss cannot be made on this port" % (shown, kind))
        size = e.size if kind == FILE else 0
        if size < 0:
            raise ArchiveError("entry %s: negative size" % shown)
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            have = self.kinds.get(parent)
            if have is None:
                self.kinds[parent] = DIR
            elif have != DIR:
                raise ArchiveError("entry %s: %s is a %s, not a directory" % (shown, parent, have))
        have = self.kinds.get(path)
        if have is not None and not (have == DIR and kind == DIR):
            raise ArchiveError("entry %s: duplicate name" % shown)
        link = None
        if kind == SYMLINK:
            link = e.link or ""
            if not link or "\x00" in link:
                raise ArchiveError("symlink %s: empty target" % shown)
            if link.startswith("/"):
                raise ArchiveError("symlink %s: absolute target %r" % (shown, link[:120]))
            self.symlinks[path] = link
        elif kind == HARDLINK:
            link = "/".join(clean_name(e.link or "", "hard link target of " + shown))
            if self.kinds.get(link) != FILE:
                raise ArchiveError(
                    "hard link %s: target %r is not a regular file earlier in the archive"
                    % (shown, link[:120])
                )
        self.kinds[path] = kind
        self.bytes += size
        if self.bytes > self.max_bytes:
            raise ArchiveError(
                "unpacked size over %d bytes (the limit) at entry %s" % (self.max_bytes, shown)
            )
        self.space += (size + BLOCK - 1) // BLOCK * BLOCK + BLOCK
        self.entries.append((path, kind, size, e.mode, link))

    def resolve(self, path, link):
        """The segments symlink ``path`` -> ``link`` points at, following the archive's
        symlinks as the kernel would; ArchiveError when it leaves the target."""
        stack = path.split("/")[:-1]
        todo = list(reversed(link.split("/")))
        hops = 0
        while todo:
            seg = todo.pop()
            if seg in ("", "."):
                continue
            if seg == "..":
                if not stack:
                    raise ArchiveError(
                        "symlink %r: target %r leaves the directory" % (path[:120], link[:120])
                    )
                stack.pop()
                continue
            stack.append(seg)
            inner = self.symlinks.get("/".join(stack))
            if inner is not None:
                hops += 1
                if hops > MAX_LINK_HOPS or inner.startswith("/"):
                    raise ArchiveError("symlink %r: target %r does not resolve inside the "
                                       "directory" % (path[:120], link[:120]))
                stack.pop()
                todo.extend(reversed(inner.split("/")))
        return stack

    def finish(self, free_bytes=None):
        # No entry lies under a symlink (add() refuses a symlink as a parent and a
        # name used as a parent as a symlink): only the link targets are left to check.
        for path in self.symlinks:
            self.resolve(path, self.symlinks[path])
        if free_bytes is not None and self.space > free_bytes:
            raise ArchiveError(
                "not enough free space to unpack: need about %d bytes, %d available"
                % (self.space, free_bytes)
            )


# ---- unpacking ----------------------------------------------------------------------


def _links_supported():
    return hasattr(os, "symlink") and hasattr(os, "link")


def open_reader(path, fmt, impl=None, max_entries=DEFAULT_MAX_ENTRIES):
    """A reader of ``path`` (``entries()`` generator of Entry, ``close()``).
    ``impl``: ``"std"`` (tarfile/zipfile, CPython's default) or ``"mini"``
    (edgecore_ports.tarreader, MicroPython's)."""
    if impl is None:
        impl = "mini" if sys.implementation.name == "micropython" else "std"
    if impl == "std":
        from edgecore_ports import archive_std

        return archive_std.open_reader(path, fmt, max_entries)
    if fmt == "zip":
        raise ArchiveError("zip archives cannot be unpacked on this port; deploy a .tar or .tar.gz")
    from edgecore_ports import tarreader

    return tarreader.FileReader(path, fmt == "tar.gz")


def _is_dir(path):
    try:
        st = getattr(os, "lstat", os.stat)(path)
    except OSError:
        return False
    return st[0] & _S_IFMT == _S_IFDIR


def remove_tree(path):
    """Remove ``path`` and everything under it, without following symlinks
    (iterative: the depth of the tree is not trusted)."""
    lstat = getattr(os, "lstat", os.stat)
    try:
        st = lstat(path)
    except OSError:
        return
    if st[0] & _S_IFMT != _S_IFDIR:
        os.remove(path)
        return
    stack = [(path, False)]
    while stack:
        d, emptied = stack.pop()
        if emptied:
            os.rmdir(d)
            continue
        stack.append((d, True))
        for name in os.listdir(d):
            p = d + "/" + name
            if lstat(p)[0] & _S_IFMT == _S_IFDIR:
                stack.append((p, False))
            else:
                os.remove(p)


def _create(path, executable):
    """A new file opened for writing; never through a link, never over an existing one."""
    if hasattr(os, "O_EXCL") and hasattr(os, "fdopen"):
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(path, flags, 0o755 if executable else 0o644)
        return os.fdopen(fd, "wb")
    return open(path, "wb")


def _sync(f):
    f.flush()
    if hasattr(os, "fsync"):
        os.fsync(f.fileno())


def _copy(src, f, path, size, buf):
    """Copy exactly ``size`` bytes of entry data; ArchiveError on more or fewer."""
    done = 0
    while True:
        want = min(len(buf), size - done + 1)  # one byte more reveals a body too long
        data = src.read(want)
        if not data:
            break
        done += len(data)
        if done > size:
            raise ArchiveError(
                "entry %r: more data than its declared %d bytes (a zip bomb?)" % (path[:120], size)
            )
        f.write(data)
    if done != size:
        raise ArchiveError(
            "entry %r: truncated archive (%d of %d bytes)" % (path[:120], done, size)
        )


def _extract(reader, plan, root, buf):
    made = [root]
    later = []
    i = 0
    for e in reader.entries():
        parts = clean_name(e.name)
        if not parts and e.kind == DIR:
            continue
        if i >= len(plan.entries):
            raise ArchiveError("the archive changed while it was unpacked")
        path, kind, size, mode, link = plan.entries[i]
        i += 1
        if "/".join(parts) != path or e.kind != kind or (kind == FILE and e.size != size):
            raise ArchiveError("the archive changed while it was unpacked")
        full = root + "/" + path
        for k in range(1, len(parts) + (1 if kind == DIR else 0)):
            d = root + "/" + "/".join(parts[:k])
            if not _is_dir(d):
                os.mkdir(d)
                made.append(d)
        if kind == FILE:
            src = e.open()
            with _create(full, mode & 0o111) as f:
                _copy(src, f, path, size, buf)
                _sync(f)
        elif kind in (SYMLINK, HARDLINK):
            later.append((full, kind, link))
    if i != len(plan.entries):
        raise ArchiveError("the archive changed while it was unpacked")
    for full, kind, link in later:
        if kind == SYMLINK:
            os.symlink(link, full)
        else:
            os.link(root + "/" + link, full, follow_symlinks=False)
    if hasattr(os, "chmod"):
        for d in made:
            os.chmod(d, 0o755)
    for d in made:
        sync_dir(d)


def unpack(path, target, fmt=None, free_bytes=None, max_bytes=DEFAULT_MAX_BYTES,
           max_entries=DEFAULT_MAX_ENTRIES, impl=None, buf=None):
    """Unpack the archive at ``path`` into the new directory ``target`` (see the module
    doc). ``free_bytes``: the space that may be used (None: not checked); ``buf``: the
    copy buffer (a board passes the executor's one buffer; default CHUNK bytes). Returns
    ``{"format", "entries", "bytes"}``; raises ArchiveError."""
    if fmt is None:
        fmt = detect_file(path)
        if fmt is None:
            raise ArchiveError("not a tar, tar.gz or zip archive")
    try:
        os.stat(target)
    except OSError:
        pass
    else:
        raise ArchiveError("cannot unpack into %s: it already exists" % target)
    plan = Plan(max_bytes, max_entries, links_ok=_links_supported())
    reader = open_reader(path, fmt, impl, max_entries)
    try:
        for e in reader.entries():
            plan.add(e)
    finally:
        reader.close()
    plan.finish(free_bytes)
    tmp = target + TMP_SUFFIX
    remove_tree(tmp)
    reader = open_reader(path, fmt, impl, max_entries)
    try:
        os.mkdir(tmp)
        _extract(reader, plan, tmp, bytearray(CHUNK) if buf is None else buf)
        os.rename(tmp, target)
    except BaseException as exc:
        reader.close()
        try:
            remove_tree(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise ArchiveError("unpacking failed: %s" % (_os_reason(exc),)) from None
        raise
    reader.close()
    parent = target.rsplit("/", 1)[0] if "/" in target else "."
    sync_dir(parent or "/")
    return {"format": fmt, "entries": len(plan.entries), "bytes": plan.bytes}


def _os_reason(exc):
    text = getattr(exc, "strerror", None) or str(exc)
    name = getattr(exc, "filename", None)
    return "%s: %s" % (text, name) if isinstance(name, str) else text
