"""Shared by the pytest files that drive the real MicroPython unix binary (those with the
line ``# Not under emulated ARM: <reason>``; the emulated-ARM legs skip them: the
binary is an x86 build, nothing about it is emulated there).

- ``BINARY``: the 32-bit unix build of ``firmware/micropython/build.sh unix`` (edgecore
  frozen in); ``require_binary()`` skips the calling module when it is missing, or fails
  when ``CI`` is set (CI builds it first, so a missing binary is a broken leg);
- ``make_pki(directory)``: a CA and a server certificate for localhost/127.0.0.1 (the
  local cloud's own ``Pki``), plus the CA as DER (``pki.ca_der``);
- ``serve(sock, handle)``: a thread per accepted connection;
- ``TlsFront(upstream_url, pki)``: TLS in front of a plain HTTP server of the local
  cloud (the Edge Manager stand-in, moto S3, a fault proxy); ``.url`` is
  ``https://localhost:<port>``;
- ``Device(config, workdir, heap="64k")``: the board agent
  (``edgecore_ports.mp_agent.Agent(config)``) in a process on the binary, cycling on
  command (``tests/micropython/agent_loop.py``): ``.cycle()`` returns a cycle's report.
"""

import json
import os
import re
import select
import socket
import ssl
import subprocess
import threading
from urllib.parse import urlsplit

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("EDGECORE_MP_CACHE", os.path.join(ROOT, ".cache", "micropython"))
BINARY = os.path.join(CACHE, "bin", "micropython32")
IDLE = 30  # seconds a piped connection may stay silent
AGENT_LOOP = os.path.join(ROOT, "tests", "micropython", "agent_loop.py")
HEAP = "64k"  # a board's heap
HEAP_MAP_LINE = re.compile(r"[0-9a-f]{8}: ")  # micropython.mem_info(1)'s map of the heap
DEVICE_TIMEOUT = 300  # seconds a device process may live (a hung one is killed)


def require_binary():
    """At module level: skip the module without the binary (fail under ``CI``)."""
    if os.path.exists(BINARY):
        return
    if os.environ.get("CI"):
        raise RuntimeError("no MicroPython binary at %s: run firmware/micropython/build.sh unix"
                           % BINARY)
    pytest.skip("no MicroPython binary: firmware/micropython/build.sh unix",
                allow_module_level=True)


def make_pki(directory):
    from edgecore_tools.localcloud.iot import Pki

    pki = Pki.create(directory, name="edgecore test CA", hosts=("localhost", "127.0.0.1"))
    pki.ca_der = os.path.join(str(directory), "ca.der")
    with open(pki.ca_path) as f, open(pki.ca_der, "wb") as out:
        out.write(ssl.PEM_cert_to_DER_cert(f.read()))
    return pki


def serve(sock, handle):
    """Accept connections on ``sock`` until it is closed, each handled by
    ``handle(conn)`` in a thread of its own."""

    def accept():
        while True:
            try:
                conn, _ = sock.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()


class TlsFront:
    """Terminates TLS (``pki``'s server certificate) and pipes each connection's bytes,
    unchanged, to ``upstream_url``'s host and port: the upstream checks the signature
    made for the front's Host. ``connections`` counts completed handshakes."""

    def __init__(self, upstream_url, pki):
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname, parts.port)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(pki.server_cert, pki.server_key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = "https://localhost:%d" % self.sock.getsockname()[1]
        self.connections = 0
        serve(self.sock, self._serve)

    def _serve(self, conn):
        conn.settimeout(IDLE)
        up = tls = None
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
            self.connections += 1
            up = socket.create_connection(self.upstream, timeout=IDLE)
            _pipe(tls, up)
        except (OSError, ssl.SSLError):
            pass  # a refused handshake or a cut connection: the client sees it
        finally:
            for s in (up, tls, conn):
                if s is not None:
                    s.close()

    def close(self):
        self.sock.close()


def _pipe(tls, up):
    """Both directions in one thread (an SSLSocket must not be read and written from two
    threads at once), until either side closes or stays silent for IDLE seconds."""
    while True:
        ready = [tls] if tls.pending() else select.select([tls, up], [], [], IDLE)[0]
        if not ready:
            return
        for src in ready:
            data = src.recv(65536)
            if not data:
                return
            (up if src is tls else tls).sendall(data)


class Device:
    """The agent process on the binary (see tests/micropython/agent_loop.py)."""

    def __init__(self, config, workdir, heap=HEAP, path=".frozen", probe=False):
        conf = os.path.join(str(workdir), "agent.json")
        with open(conf, "w") as f:
            json.dump(config, f)
        cmd = [BINARY] + (["-X", "heapsize=" + heap] if heap else []) + [AGENT_LOOP, conf]
        self.proc = subprocess.Popen(cmd + (["probe"] if probe else []), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, env=dict(os.environ, MICROPYPATH=path),
                                     cwd=str(workdir))
        self._killer = threading.Timer(DEVICE_TIMEOUT, self.proc.kill)
        self._killer.start()
        self.lines = []
        self.source = self._until("FROM ")

    def _until(self, prefix):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                self.proc.wait()
                raise AssertionError("the device ended (exit %s):\n%s"
                                     % (self.proc.returncode, self.transcript()))
            self.lines.append(line)
            if line.startswith(prefix):
                return line[len(prefix):].strip()

    def cycle(self):
        """One Agent.cycle(); its report."""
        self.proc.stdin.write("cycle\n")
        self.proc.stdin.flush()
        return json.loads(self._until("REPORT "))

    def api(self, op, *args):
        """``agent.api.<op>(*args)`` on the device: (True, result) or (False, error)."""
        self.proc.stdin.write("api %s\n" % json.dumps([op, list(args)]))
        self.proc.stdin.flush()
        return tuple(json.loads(self._until("API ")))

    def transcript(self, limit=80):
        """The last output lines, without the heap map of a MemoryError (its summary and
        the traceback stay)."""
        text = [line for line in self.lines if not HEAP_MAP_LINE.match(line)]
        return "".join(text[-limit:])

    def heap(self):
        """The last HEAP line (probe runs)."""
        return json.loads(self._until("HEAP "))

    def events(self, name):
        out = []
        for line in self.lines:
            if line.startswith("LOG "):
                level, event, fields = json.loads(line[4:])
                if event == name:
                    out.append(fields)
        return out

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except OSError:
            pass
        rest = self.proc.stdout.read()
        self.lines.extend(rest.splitlines(True))
        code = self.proc.wait()
        self._killer.cancel()
        return code

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        code = self.close()
        if exc[0] is None:
            assert code == 0, self.transcript()
