"""Model versions on disk: staged, committed, activated, recovered, cleaned up.

A ``Store`` knows one layout under ``model_dir``; the executor (``edgecore_ports.runner``)
asks it where a version or a download lives and to switch the active one. Every
layout keeps a verified version in its own directory (the artifact + ``edgecore.json``,
its metadata), renamed into place only after verification, and a download in
progress in a staging directory next to it (the bytes so far + ``.resume.json``).

``SymlinkStore`` (Linux, where ``os.symlink`` exists)::

    <handle>                   symlink -> .versions/<handle>-<sha1>   (the active model)
    .versions/<handle>-<sha1>/ <artifact>, edgecore.json
    .staging/<handle>-<sha1>/  <artifact so far>, .resume.json

``PointerStore`` (FAT / LittleFS flash: no symlinks; also the MicroPython unix port)::

    <handle>/current.json      {"sha1", "file", "name", "version"}: the active version
    <handle>/<sha1>/           <artifact>, edgecore.json
    <handle>/<sha1>.tmp/       <artifact so far>, .resume.json

A model package (``edgecore_ports.modelpkg``: a ``.tar``/``.tar.gz``/``.zip`` artifact)
is unpacked into ``content/`` of its version directory instead of the artifact
(``edgecore.json`` then says ``"package"``), and the active path is that directory:
the symlink points at ``.versions/<handle>-<sha1>/content``, the pointer's file is
``content``.

Only ``os`` calls MicroPython has (no ``os.path``, ``shutil``); the agent's own
directories are examined with ``lstat`` where it exists, so a symlink planted in their
place is removed as a link, never followed.
"""

import json
import os

META = "edgecore.json"
POINTER = "current.json"
CONTENT = "content"  # a model package's unpacked directory inside its version
_lstat = getattr(os, "lstat", os.stat)
_TYPE, _DIR, _LINK = 0o170000, 0o040000, 0o120000


def _mode(path):
    try:
        return _lstat(path)[0] & _TYPE
    except OSError:
        return None


def isdir(path):
    """A directory (not a link to one)."""
    return _mode(path) == _DIR


def islink(path):
    return _mode(path) == _LINK


def exists(path):
    return _mode(path) is not None


def listdir(path):
    try:
        return os.listdir(path)
    except OSError:
        return []


def file_size(path):
    """Size in bytes of a file, or None when there is none."""
    try:
        return os.stat(path)[6]
    except OSError:
        return None


def makedirs(path):
    built = ""
    for part in path.split("/"):
        if part:
            built = built + "/" + part if built or path.startswith("/") else part
            if not isdir(built):
                os.mkdir(built)


def remove(path):
    """Remove a file, link or directory tree; links are removed, never followed."""
    if isdir(path):
        for name in listdir(path):
            remove(path + "/" + name)
        os.rmdir(path)
    elif exists(path):
        os.remove(path)


def sync_file(f):
    """Make what was written to ``f`` durable (fsync; ``os.sync()`` where there is none)."""
    f.flush()
    if hasattr(os, "fsync") and hasattr(f, "fileno"):
        os.fsync(f.fileno())
    elif hasattr(os, "sync"):
        os.sync()


def sync_dir(path):
    """Make a rename inside ``path`` durable where the platform can (POSIX: fsync the dir)."""
    if not hasattr(os, "fsync"):
        if hasattr(os, "sync"):
            os.sync()
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on a directory
    finally:
        os.close(fd)


def read_small(path, limit):
    """The bytes of a file of at most ``limit`` bytes; None when it is missing or larger
    (sized first: MicroPython's ``read(n)`` allocates n bytes before reading)."""
    size = file_size(path)
    if size is None or size > limit:
        return None
    with open(path, "rb") as f:
        return f.read(size)


def read_json(path, limit=65536):
    """The JSON object in a small file, or None (missing, unreadable, not an object)."""
    try:
        data = read_small(path, limit)
        doc = None if data is None else json.loads(data)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def write_json(path, doc):
    """Write a small JSON file durably (its directory is synced by the caller)."""
    with open(path, "wb") as f:
        f.write(json.dumps(doc).encode())
        sync_file(f)


def default_store():
    """The layout this platform supports: symlinks where ``os`` has them."""
    return SymlinkStore if hasattr(os, "symlink") else PointerStore


class Store:
    """What every layout shares; subclasses name the paths and do the switching.

    ``port`` supplies ``atomic_write``; ``log(level, event, **fields)`` reports repairs."""

    def __init__(self, model_dir, port, log):
        self.root = model_dir.rstrip("/") or "/"
        self.port = port
        self.log = log

    def read_meta(self, vdir):
        return read_json(vdir + "/" + META)

    def _check(self, handle, sha1=None):
        """A handle (and sha1) becomes a file name: never a path, never anything odd."""
        from edgecore.agent import handle_ok, sha1_ok

        if not handle_ok(handle) or (sha1 is not None and not sha1_ok(sha1)):
            raise ValueError("model handle %r / sha1 not usable as a file name" % (handle,))

    def commit(self, staging, vdir):
        """Rename a verified, synced staging directory into place."""
        os.rename(staging, vdir)
        sync_dir(vdir.rsplit("/", 1)[0])

    def cleanup(self, keep, wanted):
        """Remove versions not in ``keep`` and staged downloads not in ``wanted`` (sets of
        (handle, sha1)); returns the number of versions removed. The caller saves the
        state first when ``stale(keep)`` is not empty: a saved state must never name a
        version that is gone (a rollback after a restart would need it)."""
        stale = self.stale(keep)
        for path in stale:
            remove(path)
        self.prune_staging(wanted)
        for path in stale[:1]:
            sync_dir(path.rsplit("/", 1)[0])
        return len(stale)


class SymlinkStore(Store):
    """Active model = a symlink switched atomically (see the module docstring)."""

    VERSIONS = ".versions"
    STAGING = ".staging"

    def start(self):
        makedirs(self.root)
        for name in (self.VERSIONS, self.STAGING):
            path = self.root + "/" + name
            if exists(path) and not isdir(path):  # e.g. a symlink planted there
                os.remove(path)
                self.log("warning", "store.replaced", path=path, reason="not a directory")
        makedirs(self.root + "/" + self.VERSIONS)

    def version_dir(self, handle, sha1):
        self._check(handle, sha1)
        return "%s/%s/%s-%s" % (self.root, self.VERSIONS, handle, sha1)

    def staging_dir(self, handle, sha1):
        self._check(handle, sha1)
        makedirs(self.root + "/" + self.STAGING)
        return "%s/%s/%s-%s" % (self.root, self.STAGING, handle, sha1)

    def _target(self, handle, sha1):
        """The link's target: the version directory, or its unpacked package."""
        target = "%s/%s-%s" % (self.VERSIONS, handle, sha1)
        meta = self.read_meta(self.root + "/" + target)
        if meta is not None and meta.get("package"):
            target += "/" + CONTENT
        return target

    def link(self, handle):
        self._check(handle)
        return self.root + "/" + handle

    def active_path(self, handle):
        return self.link(handle)

    def activate(self, handle, entry):
        if not isdir(self.version_dir(handle, entry["sha1"])):
            raise ValueError("version %s of %s is not on disk" % (entry["sha1"][:12], handle))
        self._switch(handle, self._target(handle, entry["sha1"]))
        return self.link(handle)

    def _switch(self, handle, target):
        link = self.link(handle)
        if exists(link) and not islink(link):
            raise ValueError("%s exists and is not a link made by edgecore; not replacing it"
                             % link)
        tmp = "%s/.%s.link-tmp" % (self.root, handle)
        if exists(tmp):
            os.remove(tmp)
        os.symlink(target, tmp)
        os.rename(tmp, link)
        sync_dir(self.root)

    def deactivate(self, handle):
        link = self.link(handle)
        if islink(link):
            os.remove(link)
            sync_dir(self.root)
        elif exists(link):
            raise ValueError("%s is not a link made by edgecore; not removing it" % link)

    def recover(self, active):
        """Links := ``active`` (handle -> entry): stray and temp links go, missing ones
        are made again."""
        for name in listdir(self.root):
            path = self.root + "/" + name
            if name.startswith(".") and name.endswith(".link-tmp"):
                os.remove(path)
            elif not name.startswith(".") and name not in active and islink(path) \
                    and os.readlink(path).startswith(self.VERSIONS + "/"):
                os.remove(path)
                self.log("warning", "recover.unlinked", handle=name)
        for handle in sorted(active):
            sha1 = active[handle]["sha1"]
            target = self._target(handle, sha1)
            link = self.link(handle)
            if islink(link) and os.readlink(link) == target:
                continue
            if not isdir(self.version_dir(handle, sha1)):
                self.log("error", "recover.missing_version", handle=handle, sha1=sha1)
                continue
            self._switch(handle, target)
            self.log("warning", "recover.relinked", handle=handle, sha1=sha1)
        sync_dir(self.root)

    def stale(self, keep):
        """The version directories not in ``keep`` (a set of (handle, sha1))."""
        vroot = self.root + "/" + self.VERSIONS
        return [vroot + "/" + n for n in listdir(vroot) if _split(n) not in keep]

    def prune_staging(self, wanted):
        staging = self.root + "/" + self.STAGING
        if not isdir(staging):
            remove(staging)  # a file or link in its place
            return
        for name in listdir(staging):
            path = staging + "/" + name
            if _split(name) not in wanted or not isdir(path):
                remove(path)
        if not listdir(staging):
            os.rmdir(staging)


def _split(name):
    """(handle, sha1) of ``<handle>-<sha1>``."""
    return (name[:-41], name[-40:])


class PointerStore(Store):
    """Active model = a small pointer file written atomically (see the module docstring).

    On FAT, which cannot rename over a file, the port's ``atomic_write`` removes the old
    pointer first: a power cut in between leaves only ``current.json.tmp``, which
    ``read_pointer`` falls back to."""

    def start(self):
        makedirs(self.root)

    def version_dir(self, handle, sha1):
        self._check(handle, sha1)
        return "%s/%s/%s" % (self.root, handle, sha1)

    def staging_dir(self, handle, sha1):
        self._check(handle, sha1)
        makedirs(self.root + "/" + handle)
        return "%s/%s/%s.tmp" % (self.root, handle, sha1)

    def read_pointer(self, handle):
        self._check(handle)
        base = "%s/%s/%s" % (self.root, handle, POINTER)
        return read_json(base) or read_json(base + ".tmp")

    def active_path(self, handle):
        ptr = self.read_pointer(handle)
        if ptr is None or not isinstance(ptr.get("sha1"), str) \
                or not isinstance(ptr.get("file"), str):
            return None
        return "%s/%s/%s/%s" % (self.root, handle, ptr["sha1"], ptr["file"])

    def activate(self, handle, entry):
        vdir = self.version_dir(handle, entry["sha1"])
        meta = self.read_meta(vdir)
        if meta is None or not isinstance(meta.get("file"), str):
            raise ValueError("version %s of %s is not on disk" % (entry["sha1"][:12], handle))
        ptr = {"sha1": entry["sha1"], "file": meta["file"], "name": entry.get("name"),
               "version": entry.get("version")}
        self.port.atomic_write("%s/%s/%s" % (self.root, handle, POINTER), json.dumps(ptr))
        return vdir + "/" + meta["file"]

    def deactivate(self, handle):
        self._check(handle)
        base = "%s/%s/%s" % (self.root, handle, POINTER)
        remove(base)
        remove(base + ".tmp")

    def _handles(self):
        from edgecore.agent import handle_ok

        return [h for h in listdir(self.root) if handle_ok(h) and isdir(self.root + "/" + h)]

    def recover(self, active):
        """Pointers := ``active``: a pointer of a handle not active goes, a missing or
        wrong one is written again from the version on disk."""
        for handle in self._handles():
            if handle not in active:
                self.deactivate(handle)
        for handle in sorted(active):
            ptr = self.read_pointer(handle)
            if ptr is not None and ptr.get("sha1") == active[handle]["sha1"]:
                continue
            try:
                self.activate(handle, active[handle])
                self.log("warning", "recover.pointer", handle=handle)
            except (OSError, ValueError) as exc:  # should not happen: report, go on
                self.log("error", "recover.missing_version", handle=handle, reason=str(exc))

    def stale(self, keep):
        out = []
        for handle in self._handles():
            base = self.root + "/" + handle
            for name in listdir(base):
                if not name.endswith(".tmp") and name not in (POINTER, POINTER + ".tmp") \
                        and (handle, name) not in keep:
                    out.append(base + "/" + name)
        return out

    def cleanup(self, keep, wanted):
        removed = Store.cleanup(self, keep, wanted)
        for handle in self._handles():  # a handle with nothing left goes
            if not listdir(self.root + "/" + handle):
                os.rmdir(self.root + "/" + handle)
        return removed

    def prune_staging(self, wanted):
        for handle in self._handles():
            base = self.root + "/" + handle
            for name in listdir(base):
                if name.endswith(".tmp") and name != POINTER + ".tmp" \
                        and (handle, name[:-4]) not in wanted:
                    remove(base + "/" + name)
