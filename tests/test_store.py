# Runs under MicroPython too (tests/micropython/run.mjs).
"""Tests of edgecore_ports.store: the disk layouts, with real files in a temp dir.

Every test runs with each store this runtime has (the pointer layout everywhere, the
symlink layout where os.symlink exists). Links planted by someone else: test_store_links.py.
"""

import os

from data.fake_cloud import cleanup, tempdir

from edgecore_ports.store import (
    META,
    PointerStore,
    SymlinkStore,
    default_store,
    exists,
    file_size,
    isdir,
    listdir,
    makedirs,
    read_json,
    remove,
    write_json,
)

STORES = [PointerStore] + ([SymlinkStore] if hasattr(os, "symlink") else [])
SHA_A, SHA_B, SHA_C = "a" * 40, "b" * 40, "c" * 40


class Port:
    def atomic_write(self, path, data, mode=0o600):
        with open(path + ".tmp", "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
        try:
            os.rename(path + ".tmp", path)
        except OSError:  # FAT
            os.remove(path)
            os.rename(path + ".tmp", path)


def with_stores(test):
    def run():
        for cls in STORES:
            root = tempdir()
            try:
                logs = []
                store = cls(root + "/models", Port(),
                            lambda level, event, logs=logs, **f: logs.append((level, event, f)))
                store.start()
                test(store, logs)
            finally:
                cleanup(root)

    return run


def put_version(store, handle, sha1, data=b"model"):
    """A committed version, as a download leaves it."""
    staging = store.staging_dir(handle, sha1)
    makedirs(staging)
    with open(staging + "/m.bin", "wb") as f:
        f.write(data)
    write_json(staging + "/" + META, {"sha1": sha1, "file": "m.bin", "size": len(data)})
    store.commit(staging, store.version_dir(handle, sha1))


def content(store, handle):
    path = store.active_path(handle)
    if path is None or not exists(path):
        return None
    if os.stat(path)[0] & 0o170000 == 0o040000:  # the symlink layout: a directory
        path += "/m.bin"
    with open(path, "rb") as f:
        return f.read()


def entry(sha1, name="cam-model"):
    return {"sha1": sha1, "name": name, "version": sha1[:12]}


def test_file_helpers():
    root = tempdir()
    try:
        makedirs(root + "/a/b/c")
        assert isdir(root + "/a/b/c") and listdir(root + "/a/b") == ["c"]
        assert listdir(root + "/missing") == [] and file_size(root + "/missing") is None
        write_json(root + "/a/b/c/x.json", {"k": 1})
        assert read_json(root + "/a/b/c/x.json") == {"k": 1}
        assert file_size(root + "/a/b/c/x.json") == len('{"k": 1}')
        with open(root + "/a/list.json", "w") as f:
            f.write("[1]")
        assert read_json(root + "/a/list.json") is None  # not an object
        remove(root + "/a")
        assert not exists(root + "/a")
        remove(root + "/a")  # a missing path is fine
    finally:
        cleanup(root)
    assert default_store() is (SymlinkStore if hasattr(os, "symlink") else PointerStore)


def test_activate_switch_and_deactivate():
    @with_stores
    def run(store, logs):
        try:
            store.activate("cam", entry(SHA_A))
            raise AssertionError("activated a version that is not on disk")
        except ValueError as exc:
            assert "not on disk" in str(exc)
        put_version(store, "cam", SHA_A, b"one")
        put_version(store, "cam", SHA_B, b"two")
        path = store.activate("cam", entry(SHA_A))
        assert content(store, "cam") == b"one" and path.startswith(store.root + "/cam")
        store.activate("cam", entry(SHA_B))
        assert content(store, "cam") == b"two"
        store.deactivate("cam")
        assert content(store, "cam") is None
        store.deactivate("cam")  # idempotent

    run()


def test_handles_and_sha1s_never_become_paths():
    @with_stores
    def run(store, logs):
        for handle in ("..", "../x", "a/b", "", ".", "x" * 64, "-a"):
            for call in ("version_dir", "staging_dir", "deactivate"):
                try:
                    if call == "deactivate":
                        store.deactivate(handle)
                    else:
                        getattr(store, call)(handle, SHA_A)
                    raise AssertionError("accepted %r" % handle)
                except ValueError:
                    pass
        try:
            store.version_dir("cam", "../" + "a" * 37)
            raise AssertionError("accepted a sha1 with a path")
        except ValueError:
            pass
        assert listdir(store.root + "/..") == ["models"]  # nothing made beside model_dir

    run()


def test_recover_makes_the_disk_match_the_state():
    @with_stores
    def run(store, logs):
        put_version(store, "cam", SHA_A, b"one")
        put_version(store, "gps", SHA_B, b"gps")
        store.activate("cam", entry(SHA_A))
        store.activate("gps", entry(SHA_B))
        # The state says: cam is active, gps is not (killed between the switch and the
        # save of an undeploy), and "lost" is active but its version is gone.
        store.recover({"cam": entry(SHA_A), "lost": entry(SHA_C)})
        assert content(store, "cam") == b"one" and content(store, "gps") is None
        assert [e for _, e, _ in logs if e != "recover.unlinked"] == ["recover.missing_version"]
        # Lost its link / pointer (a cut at the switch): made again.
        store.deactivate("cam")
        store.recover({"cam": entry(SHA_A)})
        assert content(store, "cam") == b"one"

    run()


def test_cleanup_keeps_the_active_versions_and_wanted_downloads():
    @with_stores
    def run(store, logs):
        for sha1 in (SHA_A, SHA_B):
            put_version(store, "cam", sha1)
        store.activate("cam", entry(SHA_B))
        wanted = store.staging_dir("cam", SHA_C)
        makedirs(wanted)
        stray = store.staging_dir("gps", SHA_A)
        makedirs(stray)
        with open(store.root + "/README", "w") as f:  # the user's file: never touched
            f.write("mine")
        removed = store.cleanup({("cam", SHA_B)}, {("cam", SHA_C)})
        assert removed == 1
        assert not isdir(store.version_dir("cam", SHA_A))
        assert isdir(store.version_dir("cam", SHA_B)) and content(store, "cam") == b"model"
        assert isdir(wanted) and not isdir(stray)
        assert exists(store.root + "/README")
        store.prune_staging(set())
        assert not isdir(wanted)

    run()


def test_pointer_store_reads_the_pointer_a_cut_left_as_tmp():
    root = tempdir()
    try:
        store = PointerStore(root + "/models", Port(), lambda *a, **k: None)
        store.start()
        put_version(store, "cam", SHA_A, b"one")
        store.activate("cam", entry(SHA_A))
        base = store.root + "/cam/current.json"
        os.rename(base, base + ".tmp")  # FAT: removed, not yet renamed
        assert content(store, "cam") == b"one"
        assert store.read_pointer("cam")["version"] == SHA_A[:12]
    finally:
        cleanup(root)
