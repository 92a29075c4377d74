"""An ``edgecore run --once`` agent process for tests that kill it (test_crash, test_soak),
or the service loop (``once=False``: test_e2e_apps, which also serves the local API).

The agent runs as ``python -m edgecore_tools.cli`` in ``edgecore_tools.demo.agent_env()``
(credentials from its config only, this source tree importable); a thread reads its JSON
log lines from stderr so a test can wait for an event and SIGKILL it at a chosen moment.
"""

import json
import signal
import subprocess
import sys
import threading
import time

from edgecore_tools.demo import agent_env


class AgentRun:
    """One ``edgecore run --once`` subprocess; a thread reads its JSON log lines."""

    def __init__(self, config_path, timeout=60, once=True):
        self.timeout = timeout  # seconds, one run: a hang is a failure, not a wait
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edgecore_tools.cli", "run", "--config", config_path]
            + (["--once"] if once else []),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=agent_env(),
        )
        self.events = []  # (seconds since start, event name, record)
        self.other = []  # non-JSON stderr lines (the final "edgecore: error:" line)
        self.eof = False
        self.killed_at = None
        self._cond = threading.Condition()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            t = time.monotonic() - self.t0
            try:
                rec = json.loads(line)
                name = rec["event"]
            except (ValueError, KeyError, TypeError):
                rec, name = None, None
            with self._cond:
                if name is None:
                    self.other.append(line)
                else:
                    self.events.append((t, name, rec))
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def wait_event(self, names):
        """Block until one of ``names`` is logged; its (time, name), or None at exit."""
        names = (names,) if isinstance(names, str) else tuple(names)

        def seen():
            for t, name, _ in self.events:
                if name in names:
                    return t, name
            return None

        with self._cond:
            self._cond.wait_for(lambda: seen() or self.eof, self.timeout)
            return seen()

    def kill(self):
        """SIGKILL unless it already exited; True when the signal was delivered."""
        with self._lock:
            if self.killed_at is not None:
                return True
            if self.proc.poll() is not None:
                return False
            self.proc.send_signal(signal.SIGKILL)
            self.killed_at = time.monotonic() - self.t0
            return True

    def terminate(self):
        """SIGTERM (the service manager's stop); then ``finish()``."""
        self.proc.send_signal(signal.SIGTERM)

    def kill_after(self, delay):
        if delay > 0:
            time.sleep(delay)
        return self.kill()

    def finish(self):
        """Wait for the process (killed or not) and its log; returns the exit status."""
        try:
            rc = self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            self.proc.wait()
            raise AssertionError(
                "agent run did not finish in %ds; log: %s" % (self.timeout, self.log_tail())
            ) from None
        self._reader.join(10)
        return rc

    def event_times(self):
        out = {}
        for t, name, _ in self.events:
            out.setdefault(name, t)
        return out

    def log_tail(self, n=8):
        lines = [json.dumps(rec) for _, _, rec in self.events[-n:]] + self.other[-3:]
        return "\n".join(lines)
