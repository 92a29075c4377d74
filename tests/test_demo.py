"""Tests of edgecore_tools.demo as a new user runs it (CPython): Ctrl-C at any moment
stops it cleanly, and `scripts/demo.sh`'s set-up needs no Node.js.

The demo's success path is tested in tests/test_localcloud.py (its cloud side and a run
with the real agent).
"""

import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _wait_for(proc, text, deadline):
    """Read proc's stderr until a line contains `text`; returns what was read."""
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return "".join(seen)
    raise AssertionError("no %r in the demo's output:\n%s" % (text, "".join(seen)))


@pytest.mark.parametrize("moment", ["cloud started", "agent run 1/"])
@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_cleanly_and_removes_the_temp_dir(tmp_path, moment, how):
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=ROOT)
    # Its own process group, as a terminal's foreground job: Ctrl-C reaches every process.
    proc = subprocess.Popen(
        [sys.executable, "-m", "edgecore_tools.demo"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )
    try:
        text = "starting the local cloud" if moment == "cloud started" else moment
        before = _wait_for(proc, text, time.monotonic() + 120)
        if how == signal.SIGINT:
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        else:
            proc.send_signal(how)  # a service manager stops the main process
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    err = before + err
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert "demo: interrupted" in err
    assert [p for p in os.listdir(str(tmp_path)) if p.startswith("edgecore-demo-")] == []


def test_setup_needs_no_node(tmp_path):
    """scripts/setup.sh (which demo.sh and test.sh run) never calls npm or node, and
    refuses an argument (the old --micropython) in one clear line."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    with open(os.path.join(ROOT, "scripts", "setup.sh")) as f:
        (repo / "scripts" / "setup.sh").write_text(f.read())
    (repo / "setup.cfg").write_text("")
    venv_bin = repo / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    os.symlink(sys.executable, str(venv_bin / "python"))
    time.sleep(0.01)
    (repo / ".venv" / ".edgecore-installed").write_text("")  # newer than setup.cfg
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("npm", "node"):
        (fake / tool).write_text("#!/bin/sh\necho %s was called >&2\nexit 9\n" % tool)
        os.chmod(str(fake / tool), 0o755)
    env = dict(os.environ, PATH=str(fake) + os.pathsep + os.environ["PATH"])
    proc = subprocess.run(
        ["bash", str(repo / "scripts" / "setup.sh")],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 0 and "was called" not in proc.stderr, proc.stderr
    proc = subprocess.run(
        ["bash", str(repo / "scripts" / "setup.sh"), "--micropython"],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert proc.returncode == 2 and "was called" not in proc.stderr
    assert "unknown argument --micropython" in proc.stderr
    for script in ("demo.sh", "test.sh"):
        with open(os.path.join(ROOT, "scripts", script)) as f:
            assert "bash scripts/setup.sh\n" in f.read(), script
