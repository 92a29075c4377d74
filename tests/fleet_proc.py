"""Test and benchmark helper: ``edgecore-fleet serve`` as a real process.

``FleetServer(database, workers=1, threads=4, log=None)`` starts it on 127.0.0.1:<free
port> and waits for /healthz; ``.url``, ``.workers()`` (the gunicorn worker pids, e.g.
to SIGKILL one), ``.stop()`` (SIGTERM, then kill). ``free_port()``, ``child_pids(pid)``,
``stop(proc)``.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child_pids(pid):
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry))
    return out


class FleetServer:
    def __init__(self, database, workers=1, threads=4, log=None, log_level="info"):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        env = dict(os.environ, PYTHONPATH=ROOT, EDGECORE_FLEET_LOG_LEVEL=log_level)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgecore_fleet", "serve", "--database", database,
             "--bind", "127.0.0.1:%d" % self.port, "--workers", str(workers), "--threads",
             str(threads)],
            stdout=subprocess.DEVNULL, stderr=log or subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("edgecore-fleet serve did not start")
            time.sleep(0.2)

    def workers(self):
        return child_pids(self.proc.pid)

    def stop(self):
        stop(self.proc)


def stop(proc, timeout=30):
    """SIGTERM, wait; kill if it lingers. Returns the exit status of the SIGTERM stop, or
    None when it had to be killed."""
    if proc.poll() is not None:
        return proc.returncode
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return None
