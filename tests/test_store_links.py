"""The symlink layout (edgecore_ports.store.SymlinkStore) against links planted by someone
else (CPython: MicroPython has no symlinks). The agent never follows a link for its own
directories: it removes the link and makes its directory, so a cleanup cannot delete
outside model_dir."""

import os

from edgecore_ports.store import SymlinkStore, remove


def make_store(tmp_path):
    logs = []
    store = SymlinkStore(str(tmp_path / "models"), None,
                         lambda level, event, **f: logs.append((event, f)))
    return store, logs


def test_planted_versions_and_staging_links_are_replaced_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / ("cam-" + "a" * 40)
    victim.mkdir()
    (victim / "precious").write_bytes(b"not the agent's")
    (tmp_path / "models").mkdir()
    os.symlink(str(outside), str(tmp_path / "models" / ".versions"))
    os.symlink(str(outside), str(tmp_path / "models" / ".staging"))
    store, logs = make_store(tmp_path)
    store.start()
    assert not os.path.islink(str(tmp_path / "models" / ".versions"))
    assert os.path.isdir(str(tmp_path / "models" / ".versions"))
    assert not os.path.lexists(str(tmp_path / "models" / ".staging"))
    assert [e for e, _ in logs] == ["store.replaced", "store.replaced"]
    store.cleanup(set(), set())
    store.prune_staging(set())
    assert (victim / "precious").read_bytes() == b"not the agent's"


def test_remove_deletes_a_link_not_its_target(tmp_path):
    target = tmp_path / "target"
    target.mkdir()
    (target / "f").write_bytes(b"x")
    tree = tmp_path / "tree"
    tree.mkdir()
    os.symlink(str(target), str(tree / "link"))
    remove(str(tree))
    assert not tree.exists() and (target / "f").read_bytes() == b"x"


def test_a_file_where_the_link_goes_is_not_replaced(tmp_path):
    store, _ = make_store(tmp_path)
    store.start()
    (tmp_path / "models" / "cam").write_bytes(b"the user's")
    try:
        store.deactivate("cam")
        raise AssertionError("removed a file the agent did not make")
    except ValueError as exc:
        assert "not a link made by edgecore" in str(exc)
    assert (tmp_path / "models" / "cam").read_bytes() == b"the user's"
