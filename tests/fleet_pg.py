"""Test-only: a throw-away PostgreSQL server from Debian's ``postgresql`` package.

``PostgresServer.start()`` runs ``initdb`` and ``pg_ctl`` in a temporary directory (as the
``postgres`` user when running as root: PostgreSQL refuses to run as root), listening on
127.0.0.1:<free port> with trust authentication and fsync off (test data only);
``new_database()`` returns the URL of a fresh database; ``stop()`` stops it and removes
the directory. ``available()`` says whether the binaries are installed (``.ci/run``
installs them on CI).
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid


def _bindir():
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return os.path.dirname(found[-1])
    path = shutil.which("pg_ctl")
    return os.path.dirname(path) if path else None


def available():
    return _bindir() is not None


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, directory, port, user):
        self.directory = directory
        self.port = port
        self.user = user
        self._bin = _bindir()

    def _run(self, *argv):
        cmd = [os.path.join(self._bin, argv[0])] + list(argv[1:])
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", self.user, "--"] + cmd
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)

    @classmethod
    def start(cls):
        if not available():
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        user = "postgres" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
        directory = tempfile.mkdtemp(prefix="edgecore-pg-")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(user)
            os.chown(directory, entry.pw_uid, entry.pw_gid)
        server = cls(directory, _free_port(), user)
        data = os.path.join(directory, "data")
        try:
            server._run("initdb", "-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8",
                        "--no-sync")
            server._run("pg_ctl", "-D", data, "-l", os.path.join(directory, "log"), "-w",
                        "-t", "60", "-o",
                        "-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off "
                        "-c synchronous_commit=off -c full_page_writes=off "
                        "-c max_connections=300" % (server.port, directory), "start")
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        return server

    def url(self, database="postgres"):
        return "postgresql://postgres@127.0.0.1:%d/%s" % (self.port, database)

    def new_database(self):
        import psycopg

        name = "fleet_" + uuid.uuid4().hex[:12]
        with psycopg.connect("host=127.0.0.1 port=%d user=postgres dbname=postgres"
                             % self.port, autocommit=True) as conn:
            conn.execute("CREATE DATABASE %s" % name)
        return self.url(name)

    def stop(self):
        try:
            self._run("pg_ctl", "-D", os.path.join(self.directory, "data"), "-m", "immediate",
                      "-w", "stop")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
