"""Model packages in the executor: an artifact that is a ``.tar``, ``.tar.gz`` or ``.zip``
becomes a directory (issue 13 item 1). Runs on CPython and MicroPython.

``unpack_staged(runner, part, meta)`` is called by ``edgecore_ports.download`` after the
artifact passed its SHA1 check (and signature) and before its staging directory is
renamed into place: when ``unpack_archives`` is on and ``archive.detect_file`` finds a
format, the archive is unpacked into ``content/`` of the staging directory
(``archive.unpack``: every safety rule, bounded by the free space of ``model_dir``
minus ``free_space_reserve_bytes``, by ``unpack_max_bytes`` and ``unpack_max_entries``),
the artifact is removed and ``edgecore.json`` says so (``"package"``, ``"file":
"content"``), so the store activates the directory (``store.CONTENT``). An
``ArchiveError`` is returned as the reason the model FAILs; the previous model stays
active (the state machine's rollback), and nothing of the failed version stays.

The artifact's SHA-256 is kept in the metadata (``"sha256"``, CPython): the artifact is
gone, yet a signing key pinned later must still be able to check the version on disk.
On MicroPython, ``.tar`` (and ``.tar.gz`` where ``deflate`` exists) unpack with the
same rules, through the executor's one buffer; a ``.zip`` FAILs with a clear reason.
"""

import os

from edgecore_ports.store import CONTENT, META, sync_dir, write_json

_OCTAL_FIELD = b"01234567 \x00"


def _could_be_archive(path, buf):
    """A cheap necessary condition for ``archive.detect_file`` (a zip or gzip magic, or a
    tar header's shape: the ustar magic, or octal checksum digits and a known type
    flag), read into ``buf``: a plain model file never loads the archive modules (1-2 KB
    of a board's heap)."""
    with open(path, "rb") as f:
        n = f.readinto(buf)
    head = bytes(buf[:min(n or 0, 512)])
    if head[:2] in (b"PK", b"\x1f\x8b"):
        return True
    if len(head) < 512 or head[0] == 0:
        return False
    return head[257:262] == b"ustar" or (
        head[156:157] in (b"0", b"\x00", b"1", b"2", b"3", b"4", b"5", b"6", b"7")
        and all(c in _OCTAL_FIELD for c in head[148:156]))


def _sha256(path, buf):
    """Hex SHA-256 of a file (None where hashlib has no sha256), read through ``buf``."""
    try:
        from hashlib import sha256
    except ImportError:
        return None
    import binascii

    h = sha256()
    with open(path, "rb") as f:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            h.update(buf[:n])
    return binascii.hexlify(h.digest()).decode("ascii")


def unpack_staged(runner, part, meta):
    """Unpack the verified artifact of ``part`` (a ``download.Staged``) when it is a
    package; ``meta`` (its edgecore.json dict) is updated. Returns None (done, or not a
    package) or the reason the model fails."""
    config = runner.config
    if not config["unpack_archives"] or not _could_be_archive(part.path, runner.buf):
        return None
    from edgecore_ports import archive

    fmt = "package"
    try:
        fmt = archive.detect_file(part.path)
        if fmt is None:
            return None
        free = runner.port.free_space(runner.store.root) - config["free_space_reserve_bytes"]
        info = archive.unpack(part.path, part.dir + "/" + CONTENT, fmt,
                              free_bytes=max(free, 0),
                              max_bytes=config["unpack_max_bytes"],
                              max_entries=config["unpack_max_entries"], buf=runner.buf)
    except archive.ArchiveError as exc:
        runner.log("error", "package.refused", handle=part.handle, reason=str(exc))
        return "model package refused: %s" % (exc,)
    except MemoryError:  # a board without room for the reader (gzip's window)
        return "model package: not enough memory to unpack a %s here" % (fmt,)
    digest = _sha256(part.path, runner.buf)
    os.remove(part.path)
    meta["file"] = CONTENT
    meta["package"] = fmt
    meta["entries"] = info["entries"]
    meta["unpacked_bytes"] = info["bytes"]
    if digest is not None:
        meta["sha256"] = digest
    write_json(part.dir + "/" + META, meta)
    sync_dir(part.dir)
    runner.log("info", "package.unpacked", handle=part.handle, format=fmt,
               entries=info["entries"], bytes=info["bytes"])
    return None
