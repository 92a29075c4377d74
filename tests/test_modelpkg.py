# Runs under MicroPython too
"""Model packages in the executor (edgecore_ports.modelpkg through download and store):
a .tar/.tar.gz artifact becomes the active directory; a hostile one FAILs the model, the
previous one stays active and nothing is written outside the version directory.

The in-memory cloud of test_runner_rules (tests/data/fake_cloud.py), real files, every
store this runtime has. The same against the local cloud and a real agent process:
test_e2e_apps.py."""

import os
import sys

from data.archives import MODEL_TAR_GZ, WEIGHTS, d, f, hard, sym, tar, tar_header, tree
from test_runner_rules import (
    active_bytes,
    deploy_def,
    deployed,
    each_store,
    make_runner,
    named,
    staged,
)

from edgecore_ports.store import CONTENT, META, isdir, listdir

CPYTHON = sys.implementation.name != "micropython"
LINKS = hasattr(os, "symlink") and hasattr(os, "link")
GZIP = True
try:
    import deflate  # noqa: F401 (MicroPython's gzip)
except ImportError:
    try:
        import gzip  # noqa: F401
    except ImportError:
        GZIP = False

PKG = tar(d("model/"), f("model/weights.bin", WEIGHTS), f("model/labels.txt", b"cat\ndog\n"))


def active_dir(r, handle):
    """{relative path: bytes or "dir"} of the active model's directory, or None."""
    path = r.store.active_path(handle)
    try:
        return tree(path) if path else None
    except OSError:  # not a directory
        return None


def cycled(cloud, root, store, data, key="cam/v1/model.tar", **extra):
    """Deploy ``data`` as model "cam", run a cycle; (runner, sha1)."""
    _, sha = deployed(cloud, data, key)
    r = make_runner(cloud, root, store, **extra)
    assert r.cycle()["ok"]
    return r, sha


def result(cloud):
    return cloud.results()[-1]["DeploymentModels"][0]


def everything(root):
    """Every path under the test's root but the agent's own state and staging places."""
    return sorted(p for p in tree(root) if "/state/" not in p)


@each_store
def test_a_tar_package_is_activated_as_a_directory(cloud, root, store):
    r, sha = cycled(cloud, root, store, PKG)
    assert result(cloud)["Status"] == "SUCCESS", result(cloud)
    assert active_dir(r, "cam") == {"/model": "dir", "/model/weights.bin": WEIGHTS,
                                    "/model/labels.txt": b"cat\ndog\n"}
    vdir = r.store.version_dir("cam", sha)
    assert sorted(listdir(vdir)) == sorted([CONTENT, META])  # the artifact is gone
    (ev,) = named(r.events, "package.unpacked")
    assert ev["format"] == "tar" and ev["entries"] == 3, ev
    # The state's path is what an application opens: the directory itself.
    assert tree(r.state["active"]["cam"]["path"]) == active_dir(r, "cam")
    assert staged(r) == []


@each_store
def test_a_tar_gz_package_and_back_to_a_plain_file(cloud, root, store):
    if not GZIP:
        print("SKIP: no deflate/gzip on this port")
        return
    r, sha = cycled(cloud, root, store, MODEL_TAR_GZ, "cam/v1/model.tar.gz")
    assert result(cloud)["Status"] == "SUCCESS", result(cloud)
    assert active_dir(r, "cam")["/model/weights.bin"] == WEIGHTS
    url2, sha2 = cloud.put("cam/v2/model.bin", b"a plain model file")
    cloud.deploy(deploy_def("cam", url2, sha2))
    assert r.cycle()["ok"]
    assert result(cloud)["Status"] == "SUCCESS"
    assert active_bytes(r, "cam") == b"a plain model file"
    assert not isdir(r.store.version_dir("cam", sha))  # the package's version went


@each_store
def test_unpack_archives_false_keeps_the_artifact_a_file(cloud, root, store):
    r, sha = cycled(cloud, root, store, PKG, unpack_archives=False)
    assert sorted(listdir(r.store.version_dir("cam", sha))) == sorted(["model.tar", META])
    assert named(r.events, "package.unpacked") == []


def hostile():
    """(name, archive bytes, words the FAIL reason must hold) this runtime can read."""
    out = [
        ("traversal", tar(f("model/../../escaped.txt", b"x")), "path traversal"),
        ("absolute", tar(f("/tmp/edgecore-absolute.txt", b"x")), "absolute path"),
        ("device", tar((b"dev/null", None, b"3", "", 0o644)), "device entries"),
        ("fifo", tar(("pipe", None, b"6", "", 0o644)), "fifo entries"),
        ("hard link out", tar(hard("h", "../../outside")),
         "path traversal" if LINKS else "cannot be made on this port"),
        # A bomb as declared: more than unpack_max_bytes (set to 64 KiB below).
        ("bomb", tar(f("a.bin", b"\x00" * 40000), f("b.bin", b"\x00" * 40000)),
         "unpacked size over"),
        ("entries", tar(*[f("e%d" % i, b"") for i in range(9)]), "more than 8 entries"),
        ("truncated", tar(f("w.bin", WEIGHTS))[:1024], "truncated"),
    ]
    if hasattr(os, "symlink"):
        out.append(("symlink out", tar(sym("link", "../../../etc")), "leaves the directory"))
        out.append(("absolute symlink", tar(sym("link", "/etc/passwd")), "absolute target"))
    else:
        out.append(("symlink", tar(sym("link", "inside")), "cannot be made on this port"))
    if CPYTHON:
        import io
        import zipfile

        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("zeros.bin", b"\x00" * (1 << 20))  # 1 MiB that deflates to ~1 KiB
        out.append(("zip bomb", buf.getvalue(), "unpacked size over"))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("../zip-escaped.txt", b"x")
        out.append(("zip traversal", buf.getvalue(), "path traversal"))
    else:
        out.append(("zip", b"PK\x03\x04" + b"\x00" * 100, "zip archives cannot be unpacked"))
    return out


@each_store
def test_hostile_packages_fail_and_the_previous_model_stays(cloud, root, store):
    r, sha = cycled(cloud, root, store, PKG, "cam/good/model.tar", unpack_max_bytes=65536,
                    unpack_max_entries=8)
    good = active_dir(r, "cam")
    before = everything(root)
    for name, data, words in hostile():
        bad_url, bad_sha = cloud.put("cam/%s/model.tar" % name.replace(" ", "-"), data)
        cloud.deploy(deploy_def("cam", bad_url, bad_sha))
        assert r.cycle()["ok"], name
        res = result(cloud)
        assert res["Status"] == "FAIL", (name, res)
        assert "model package refused" in res["StatusReason"], (name, res)
        assert words in res["StatusReason"], (name, words, res["StatusReason"])
        assert active_dir(r, "cam") == good, name
        assert r.state["active"]["cam"]["sha1"] == sha, name
        assert not isdir(r.store.version_dir("cam", bad_sha)), name
        assert everything(root) == before, (name, everything(root))
        assert staged(r) == [], (name, staged(r))
    if CPYTHON:
        assert not os.path.exists("/tmp/edgecore-absolute.txt")


@each_store
def test_a_package_larger_than_the_free_space_fails_before_writing(cloud, root, store):
    big = tar(f("w.bin", WEIGHTS * 8))  # 16 KiB
    url, sha = cloud.put("cam/v1/model.tar", big)
    cloud.deploy(deploy_def("cam", url, sha))
    r = make_runner(cloud, root, store)
    cloud.port.free = len(big) + 1024  # room to download it, not to unpack it too
    assert r.cycle()["ok"]
    res = result(cloud)
    assert res["Status"] == "FAIL" and "not enough free space to unpack" in res["StatusReason"]
    assert r.state["active"] == {}


@each_store
def test_a_restart_relinks_the_package_directory(cloud, root, store):
    r, sha = cycled(cloud, root, store, PKG)
    link = r.store.active_path("cam")
    if hasattr(r.store, "link"):
        os.remove(link)  # a link lost with a power cut
    else:
        os.remove(r.store.root + "/cam/current.json")
    again = make_runner(cloud, root, store)
    again.start()
    assert active_dir(again, "cam")["/model/labels.txt"] == b"cat\ndog\n"


@each_store
def test_a_tar_with_a_bad_header_checksum_is_a_plain_file(cloud, root, store):
    data = bytearray(tar_header("w.bin", 4) + b"abcd" + b"\x00" * 1532)
    data[0] ^= 1  # not detected as a tar: deployed as it is
    r, sha = cycled(cloud, root, store, bytes(data))
    assert result(cloud)["Status"] == "SUCCESS"
    assert "model.tar" in listdir(r.store.version_dir("cam", sha))
