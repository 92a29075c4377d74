"""The Linux device image overlay (firmware/linux/), end to end. CPython only.

build-overlay.sh builds the tarball once per module (with the dependencies bundled as
a wheelhouse, so nothing is fetched from a package index); each test unpacks it into a
fresh temp root, runs its install.sh --root, and checks the tree. The last test runs the
installed agent (the venv's own interpreter, none of this source tree on sys.path)
against the local cloud: the model becomes active and the heartbeat arrives.
"""

import ast
import base64
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRMWARE = os.path.join(ROOT, "firmware", "linux")
INSTALL = "usr/lib/edgecore/install.sh"
EPOCH = "1764000000"  # SOURCE_DATE_EPOCH of the test builds

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the overlay targets Linux"
)


def _requirements(name):
    """Names of the unconditional requirements of installed distribution `name`."""
    out = []
    for req in importlib.metadata.requires(name) or ():
        if ";" in req and "extra" in req.split(";", 1)[1]:
            continue
        out.append(re.match(r"[A-Za-z0-9._-]+", req).group(0))
    return out


def repack_installed(name, dest):
    """Write a wheel of the installed distribution `name` into `dest` (offline wheelhouse).

    Copies the files its RECORD lists inside site-packages (no bytecode, no scripts: pip
    regenerates those), with the WHEEL file's first tag and a fresh RECORD.
    """
    dist = importlib.metadata.distribution(name)
    files = [f for f in dist.files if not str(f).startswith("..")]
    info = [str(f).split("/")[0] for f in files if str(f).endswith(".dist-info/METADATA")][0]
    tag = re.search(r"^Tag: *(\S+)", dist.read_text("WHEEL"), re.MULTILINE).group(1)
    path = os.path.join(dest, "%s-%s.whl" % (info[: -len(".dist-info")], tag))
    skip = ("/RECORD", "/INSTALLER", "/REQUESTED", "/direct_url.json", ".pyc")
    record = []
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for f in files:
            arc = str(f)
            if "__pycache__" in arc or arc.endswith(skip):
                continue
            data = f.read_binary()
            z.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append("%s,sha256=%s,%d" % (arc, digest.decode(), len(data)))
        record.append("%s/RECORD,," % info)
        z.writestr(info + "/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture(scope="module")
def overlay(tmp_path_factory):
    """(tarball path, wheelhouse dir): requests & co. bundled as wheels."""
    work = tmp_path_factory.mktemp("overlay")
    house = work / "wheelhouse"
    house.mkdir()
    todo, seen = ["requests"], set()
    while todo:
        name = todo.pop()
        if name.lower() in seen:
            continue
        seen.add(name.lower())
        repack_installed(name, str(house))
        todo.extend(_requirements(name))
    out = work / "edgecore-overlay.tar.gz"
    build(out, "--wheelhouse", str(house))
    return str(out), str(house)


def build(out, *options):
    env = dict(os.environ, PYTHON=sys.executable, SOURCE_DATE_EPOCH=EPOCH)
    proc = subprocess.run(
        ["bash", os.path.join(FIRMWARE, "build-overlay.sh")] + list(options) + [str(out)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)


@pytest.fixture(scope="module")
def installed(overlay, tmp_path_factory):
    """A tree with the overlay unpacked and install.sh --root run once (pip runs once per
    module); tests work on copies: the relocated venv refers to no temp path."""
    root = tmp_path_factory.mktemp("installed") / "root"
    root.mkdir()
    unpack(overlay[0], root)
    install(root)
    return root


def fresh_copy(installed, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(str(installed), str(root), symlinks=True)
    return root


def base_python():
    """The real interpreter behind this (possibly venv) Python: the 'target' python."""
    return os.path.realpath(getattr(sys, "_base_executable", sys.executable))


def unpack(tarball, root):
    with tarfile.open(tarball) as tar:
        if hasattr(tarfile, "data_filter"):  # 3.12+, backported to 3.8.17+: keeps modes
            tar.extractall(str(root), filter="tar")
        else:
            tar.extractall(str(root))


def install(root, *extra):
    proc = subprocess.run(
        ["sh", str(root / INSTALL), "--root", str(root), "--python", sys.executable,
         "--target-python", base_python()] + list(extra),
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def snapshot(root):
    """{relative path: (kind, mode, content digest or link target)} of the whole tree."""
    out = {}
    owners.clear()
    for dirpath, dirnames, filenames in os.walk(str(root)):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, str(root))
            st = os.lstat(path)
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", mode, os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                out[rel] = ("dir", mode, None)
            else:
                with open(path, "rb") as f:
                    out[rel] = ("file", mode, hashlib.sha256(f.read()).hexdigest())
            owners[rel] = (st.st_uid, st.st_gid)
    return out


owners = {}  # path -> (uid, gid) of the last snapshot(): compared where ownership matters


def snapshot_owned(root):
    owners.clear()
    tree = snapshot(root)
    return dict((k, v + owners[k]) for k, v in tree.items())


def test_tarball_has_files_only_root_owned(overlay):
    with tarfile.open(overlay[0]) as tar:
        members = tar.getmembers()
    names = sorted(m.name for m in members)
    assert all(m.isfile() for m in members), names  # no dir entries: /lib symlinks survive
    assert all(m.uid == 0 and m.gid == 0 for m in members)
    modes = dict((m.name, m.mode) for m in members)
    assert modes[INSTALL] == 0o755
    assert modes["usr/lib/systemd/system/edgecore.service"] == 0o644
    assert [n for n in names if n.endswith(".whl") and "/wheels/" not in n] == [
        "usr/lib/edgecore/edgecore-0.1.0-py3-none-any.whl"
    ]
    bundled = [os.path.basename(n).split("-")[0].lower() for n in names if "/wheels/" in n]
    assert "requests" in bundled and "urllib3" in bundled


def test_build_is_reproducible(overlay, tmp_path):
    again = tmp_path / "again.tar.gz"
    build(again, "--wheelhouse", overlay[1])
    with open(overlay[0], "rb") as a, open(str(again), "rb") as b:
        assert a.read() == b.read()


def test_install_is_idempotent_and_keeps_config(installed, tmp_path):
    root = fresh_copy(installed, tmp_path)
    first = snapshot(root)
    config = root / "etc/edgecore/agent.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    template = json.loads(config.read_text())
    assert template["device_name"] == "<device-name>"
    assert template["state_dir"] == "/var/lib/edgecore/state"
    for d in ("etc/edgecore", "var/lib/edgecore", "var/lib/edgecore/models",
              "var/lib/edgecore/state"):
        assert first[d] == ("dir", 0o750, None), d
    assert first["etc/systemd/system/multi-user.target.wants/edgecore.service"] == (
        "link", 0o777, "/usr/lib/systemd/system/edgecore.service")
    assert first["usr/local/bin/edgecore"][2] == "/opt/edgecore/bin/edgecore"
    # Relocated for the device: no trace of the temp root in the venv's scripts/config.
    script = (root / "opt/edgecore/bin/edgecore").read_text()
    # pip writes `#!<python>`, or a /bin/sh line that execs it when the interpreter path
    # it was given is too long for a shebang (127 bytes; seen under emulated arm64).
    sh_form = "#!/bin/sh\n'''exec' /opt/edgecore/bin/python \"$0\" \"$@\"\n"
    assert script.startswith("#!/opt/edgecore/bin/python\n") or script.startswith(sh_form), (
        script[:120]
    )
    leaks = []
    for dirpath, _, files in os.walk(str(root)):
        for name in files:
            path = os.path.join(dirpath, name)
            if not name.endswith(".pyc") and not os.path.islink(path):
                with open(path, "rb") as f:
                    if str(installed).encode() in f.read():
                        leaks.append(path)
    assert leaks == []

    # The template is refused as a bad config (exit 78: the unit does not restart on it).
    proc = subprocess.run(
        [str(root / "opt/edgecore/bin/python"), str(root / "opt/edgecore/bin/edgecore"),
         "run", "--once", "--config", str(config)],
        capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
    )
    assert proc.returncode == 78 and "device_name" in proc.stderr, proc.stderr

    install(root)  # same inputs: nothing changes
    assert snapshot(root) == first

    config.write_text('{"device_name": "mine"}')  # a user's edit survives a re-install
    os.chmod(str(config), 0o640)
    proc = install(root)
    assert "left as it is" in proc.stderr
    assert config.read_text() == '{"device_name": "mine"}'
    assert stat.S_IMODE(config.stat().st_mode) == 0o640


def test_unit_matches_current_agent():
    with open(os.path.join(FIRMWARE, "edgecore.service")) as f:
        unit = f.read()
    lines = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] not in "#;"
    )
    assert lines["ExecStart"] == "/opt/edgecore/bin/edgecore run --config /etc/edgecore/agent.json"
    # The agent sends READY=1 and WATCHDOG=1 (edgecore_tools/cli.py: sd_notify).
    assert lines["Type"] == "notify" and lines["NotifyAccess"] == "main"
    assert int(lines["WatchdogSec"]) >= 60
    assert lines["Restart"] == "on-failure" and lines["User"] == "edgecore"
    from edgecore_tools.cli import EX_CONFIG

    assert lines["RestartPreventExitStatus"] == str(EX_CONFIG)  # fix the config first
    # The docs say the same.
    with open(os.path.join(FIRMWARE, "README.md")) as f:
        readme = f.read()
    assert "`Type=notify`" in readme and "WatchdogSec=%s" % lines["WatchdogSec"] in readme
    assert "exit\n78" in readme or "exit 78" in readme
    assert "does not send" not in readme + unit and "does not yet" not in readme + unit


def test_install_ignores_the_callers_python_and_pip_environment(overlay, tmp_path):
    """A developer's shell with this source tree (and everything the test venv has) on
    PYTHONPATH, and pip settings of its own: the device venv still gets edgecore and its
    dependencies, installed in the venv itself."""
    root = tmp_path / "root"
    root.mkdir()
    unpack(overlay[0], root)
    site = [p for p in sys.path if p.endswith("site-packages")]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + site)
    env["PIP_TARGET"] = str(tmp_path / "elsewhere")  # would install outside the venv
    env["PIP_IGNORE_INSTALLED"] = "0"
    env["PIP_NO_DEPS"] = "1"  # would leave requests out
    env["PYTHONUSERBASE"] = str(tmp_path / "userbase")
    proc = subprocess.run(
        ["sh", str(root / INSTALL), "--root", str(root), "--python", sys.executable,
         "--target-python", base_python()],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "elsewhere").exists()
    clean = dict((k, v) for k, v in os.environ.items() if not k.startswith(("PYTHON", "PIP_")))
    python = str(root / "opt/edgecore/bin/python")
    where = subprocess.run(
        [python, "-c", "import edgecore, edgecore_tools.cli, requests; "
         "print(edgecore.__file__, edgecore_tools.cli.__file__, requests.__file__)"],
        capture_output=True, text=True, env=clean, cwd=str(tmp_path), timeout=60,
    )
    assert where.returncode == 0, where.stderr
    for path in where.stdout.split():
        assert path.startswith(str(root / "opt/edgecore")), where.stdout


def test_install_refuses_a_venv_without_edgecore(overlay, tmp_path):
    """The check after pip: a wheel that does not give the venv an importable agent is
    reported as a failure, not as success."""
    root = tmp_path / "root"
    root.mkdir()
    unpack(overlay[0], root)
    lib = root / "usr/lib/edgecore"
    real = [p for p in lib.iterdir() if p.name.startswith("edgecore-") and p.suffix == ".whl"]
    # A wheel named like edgecore's that installs no package (only its metadata).
    broken = tmp_path / real[0].name
    with zipfile.ZipFile(str(real[0])) as src, zipfile.ZipFile(str(broken), "w") as dst:
        for item in src.infolist():
            if ".dist-info/" in item.filename and not item.filename.endswith("RECORD"):
                dst.writestr(item, src.read(item))
        info = [n for n in src.namelist() if n.endswith(".dist-info/RECORD")][0]
        dst.writestr(info, "")
    proc = subprocess.run(
        ["sh", str(root / INSTALL), "--root", str(root), "--python", sys.executable,
         "--target-python", base_python(), "--wheel", str(broken)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "edgecore" in proc.stderr and "error" in proc.stderr, proc.stderr
    assert not (root / "opt/edgecore/.edgecore-wheel").exists()


def test_installed_agent_runs_against_local_cloud(installed, tmp_path, local_cloud, agent_env):
    root = fresh_copy(installed, tmp_path)
    # The device's config, with the data dirs of the installed tree.
    state = root / "var/lib/edgecore"
    config = local_cloud.agent_config(state / "models", state / "state", board="linux")
    (root / "etc/edgecore/agent.json").write_text(json.dumps(config))
    data = os.urandom(50000)
    dep = local_cloud.deploy("cam", "detector", "1.0", data=data)

    env = dict(agent_env)
    env.pop("PYTHONPATH", None)  # the installed venv only, not this source tree
    cwd = str(tmp_path)  # nor the current directory (python -c puts it on sys.path)
    python = str(root / "opt/edgecore/bin/python")
    where = subprocess.run(
        [python, "-c", "import edgecore, edgecore_ports, requests, sys; "
         "print(edgecore.__file__, edgecore_ports.__file__, requests.__file__, sys.prefix)"],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=60,
    )
    assert where.returncode == 0, where.stderr
    for path in where.stdout.split():
        assert path.startswith(str(root / "opt/edgecore")), where.stdout

    proc = subprocess.run(
        [python, str(root / "opt/edgecore/bin/edgecore"), "run", "--once",
         "--config", str(root / "etc/edgecore/agent.json")],
        capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    link = state / "models" / "cam"
    assert link.is_symlink()
    active = [p for p in link.iterdir() if p.name != "edgecore.json"]
    assert [p.read_bytes() == data for p in active] == [True]
    results = dict((r["deployment"], r["body"]) for r in local_cloud.results())
    assert results[dep["DeploymentName"]]["DeploymentStatus"] == "SUCCESS"
    hb = local_cloud.heartbeats()[-1]["body"]
    assert hb["Models"] == [{"ModelName": "detector", "ModelVersion": "1.0"}]
    assert stat.S_IMODE(os.stat(str(state / "state" / "state.json")).st_mode) == 0o600


# The minimal-library use (docs/library.md): its examples run on the vendored subset alone.
LIBRARY_FILES = ("__init__", "client", "wire", "shapes", "jsonenc", "sigv4", "amztime",
                 "credentials", "errors", "endpoints", "endpoints_data", "checksum", "sha1")


def test_library_doc_examples_run_on_vendored_subset(tmp_path):
    vendor = tmp_path / "vendor" / "edgecore"
    vendor.mkdir(parents=True)
    for name in LIBRARY_FILES:
        shutil.copy(os.path.join(ROOT, "edgecore", name + ".py"), str(vendor))
    with open(os.path.join(ROOT, "docs", "library.md")) as f:
        blocks = re.findall(r"```python\n(.*?)```", f.read(), re.S)
    # The make_transport example needs the CPython port (requests); the rest must not.
    code = "\n".join(b for b in blocks if "edgecore_ports" not in b)
    code += "\nprint(sorted(m.split('.')[0] for m in sys.modules if 'edgecore' in m"
    code += " or m.startswith('requests')))\n"
    proc = subprocess.run(
        [base_python(), "-I", "-S", "-c",
         "import sys; sys.path.insert(0, %r)\n%s" % (str(vendor.parent), code)],
        capture_output=True, text=True, timeout=60, cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    assert out[0] == "dep-1 ['cam']"
    assert "DeviceName pattern" in out
    assert "ValidationException 400 Device cam-1 is not registered" in out
    assert any(line.endswith("/models/cam%201/model.bin") for line in out)
    assert set(ast.literal_eval(out[-1])) == {"edgecore"}  # no edgecore_ports, no requests


def _tool(name):
    return shutil.which(name)


@pytest.mark.skipif(not _tool("systemd-analyze"), reason="needs systemd-analyze")
def test_units_verify(tmp_path):
    """systemd-analyze verify: the unit."""
    with open(os.path.join(FIRMWARE, "edgecore.service")) as f:
        unit = f.read()
    assert "/opt/edgecore/bin/edgecore run" in unit
    # verify checks that ExecStart's program exists: point it at one that does.
    unit = unit.replace("ExecStart=/opt/edgecore/bin/edgecore", "ExecStart=/bin/true")
    for name, text in (("edgecore.service", unit),):
        (tmp_path / name).write_text(text)
        proc = subprocess.run(
            ["systemd-analyze", "verify", "--man=no", str(tmp_path / name)],
            capture_output=True, text=True, timeout=60,
        )
        assert proc.returncode == 0 and name not in proc.stderr, proc.stderr


@pytest.mark.skipif(
    not (_tool("systemd-sysusers") and _tool("systemd-tmpfiles") and os.geteuid() == 0),
    reason="needs root, systemd-sysusers and systemd-tmpfiles",
)
def test_first_boot_creates_user_and_fixes_ownership(installed, tmp_path):
    """An image tree built without the user: at first boot sysusers.d + tmpfiles.d fix it;
    install.sh run again afterwards (now the user exists) changes nothing."""
    root = fresh_copy(installed, tmp_path)
    for cmd in (["systemd-sysusers", "--root", str(root)],
                ["systemd-tmpfiles", "--root", str(root), "--create"]):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    entry = [line.split(":") for line in (root / "etc/passwd").read_text().splitlines()
             if line.startswith("edgecore:")]
    assert len(entry) == 1 and entry[0][6] == "/usr/sbin/nologin"
    uid, gid = int(entry[0][2]), int(entry[0][3])
    tree = snapshot_owned(root)
    assert tree["etc/edgecore/agent.json"][1:2] + tree["etc/edgecore/agent.json"][3:] == (
        0o600, uid, gid)
    assert tree["etc/edgecore"] == ("dir", 0o750, None, 0, gid)
    for d in ("var/lib/edgecore", "var/lib/edgecore/models", "var/lib/edgecore/state"):
        assert tree[d] == ("dir", 0o750, None, uid, gid), d
    install(root)
    assert snapshot_owned(root) == tree
