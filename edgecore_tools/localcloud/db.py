"""Fleet state of the local cloud in SQLite: devices, keys, deployments, heartbeats.

One connection per FleetDB guarded by a lock (the HTTP server is threaded); WAL mode so
the admin CLI can read and write while ``serve`` runs in another process.
"""

import json
import sqlite3
import threading
import time

from .sigcheck import KeyRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    name TEXT PRIMARY KEY,
    fleet TEXT NOT NULL,
    registration TEXT NOT NULL DEFAULT 'REGISTERED',
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS access_keys (
    akid TEXT PRIMARY KEY,
    secret TEXT NOT NULL,
    token TEXT,
    expiration REAL,
    device TEXT,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS deployments (
    name TEXT PRIMARY KEY,
    fleet TEXT,
    device TEXT,
    policy TEXT NOT NULL,
    definitions TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 1,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS heartbeats (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    fleet TEXT NOT NULL,
    received REAL NOT NULL,
    body TEXT NOT NULL,
    access_key_id TEXT
);
CREATE TABLE IF NOT EXISTS deployment_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    device TEXT NOT NULL,
    deployment TEXT,
    status TEXT,
    received REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS iot_things (
    thing TEXT PRIMARY KEY,
    device TEXT
);
CREATE TABLE IF NOT EXISTS iot_attachments (
    thing TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (thing, fingerprint)
);
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class FleetDB:
    """Thread-safe access to the local cloud's SQLite file."""

    def __init__(self, path):
        self.path = str(path)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._conn.row_factory = sqlite3.Row
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(SCHEMA)
            columns = [r["name"] for r in self._conn.execute("PRAGMA table_info(heartbeats)")]
            if "access_key_id" not in columns:  # a DB file from before the column
                self._conn.execute("ALTER TABLE heartbeats ADD COLUMN access_key_id TEXT")
            self._conn.commit()

    def close(self):
        with self._lock:
            self._conn.close()

    def _exec(self, sql, args=()):
        with self._lock:
            cur = self._conn.execute(sql, args)
            self._conn.commit()
            return cur

    def _query(self, sql, args=()):
        with self._lock:
            return [dict(r) for r in self._conn.execute(sql, args).fetchall()]

    # settings (e.g. where the S3 stand-in of a running `serve` is)
    def set_setting(self, name, value):
        self._exec("INSERT OR REPLACE INTO settings VALUES (?, ?)", (name, json.dumps(value)))

    def get_setting(self, name, default=None):
        rows = self._query("SELECT value FROM settings WHERE name = ?", (name,))
        return json.loads(rows[0]["value"]) if rows else default

    # devices
    def add_device(self, name, fleet, registration="REGISTERED"):
        self._exec(
            "INSERT OR REPLACE INTO devices VALUES (?, ?, ?, ?)",
            (name, fleet, registration, time.time()),
        )

    def set_registration(self, name, registration):
        self._exec("UPDATE devices SET registration = ? WHERE name = ?", (registration, name))

    def device(self, name):
        rows = self._query("SELECT * FROM devices WHERE name = ?", (name,))
        return rows[0] if rows else None

    def devices(self):
        return self._query("SELECT * FROM devices ORDER BY name")

    # access keys
    def add_key(self, akid, secret, token=None, expiration=None, device=None):
        self._exec(
            "INSERT OR REPLACE INTO access_keys VALUES (?, ?, ?, ?, ?, ?)",
            (akid, secret, token, expiration, device, time.time()),
        )

    def lookup_key(self, akid):
        rows = self._query("SELECT * FROM access_keys WHERE akid = ?", (akid,))
        if not rows:
            return None
        r = rows[0]
        return KeyRecord(r["akid"], r["secret"], r["token"], r["expiration"], r["device"])

    def keys(self):
        """Key listing without secrets."""
        return self._query(
            "SELECT akid, token IS NOT NULL AS has_token, expiration, device, created "
            "FROM access_keys ORDER BY created"
        )

    # IoT things and their certificates (SHA-256 fingerprints), for the IoT endpoint
    def attach_certificate(self, thing, fingerprint, device):
        """Attach a certificate to `thing`, creating it for `device` if new; a given
        device (not None) also re-maps an existing thing."""
        with self._lock:
            self._conn.execute("INSERT OR IGNORE INTO iot_things VALUES (?, ?)", (thing, device))
            if device is not None:
                self._conn.execute(
                    "UPDATE iot_things SET device = ? WHERE thing = ?", (device, thing)
                )
            self._conn.execute(
                "INSERT OR IGNORE INTO iot_attachments VALUES (?, ?)", (thing, fingerprint)
            )
            self._conn.commit()

    def detach_certificate(self, thing, fingerprint):
        self._exec(
            "DELETE FROM iot_attachments WHERE thing = ? AND fingerprint = ?", (thing, fingerprint)
        )

    def iot_thing(self, thing):
        """{"thing", "device", "certs": set of fingerprints} or None."""
        rows = self._query("SELECT * FROM iot_things WHERE thing = ?", (thing,))
        if not rows:
            return None
        certs = self._query("SELECT fingerprint FROM iot_attachments WHERE thing = ?", (thing,))
        return dict(rows[0], certs=set(r["fingerprint"] for r in certs))

    def things_with_certificate(self, fingerprint):
        rows = self._query(
            "SELECT thing FROM iot_attachments WHERE fingerprint = ? ORDER BY thing", (fingerprint,)
        )
        return [r["thing"] for r in rows]

    # deployments
    def add_deployment(self, name, policy, definitions, device=None, fleet=None):
        """Record a deployment; it supersedes older active deployments of the same target
        that touch any of its model handles (the device then sees one desired state per
        handle)."""
        handles = set(d["ModelHandle"] for d in definitions)
        with self._lock:
            for row in self._conn.execute(
                "SELECT name, definitions FROM deployments WHERE active = 1 AND "
                "device IS ? AND fleet IS ?",
                (device, fleet),
            ).fetchall():
                if handles & set(d["ModelHandle"] for d in json.loads(row["definitions"])):
                    self._conn.execute(
                        "UPDATE deployments SET active = 0 WHERE name = ?", (row["name"],)
                    )
            self._conn.execute(
                "INSERT INTO deployments VALUES (?, ?, ?, ?, ?, 1, ?)",
                (name, fleet, device, policy, json.dumps(definitions), time.time()),
            )
            self._conn.commit()

    def cancel_deployment(self, name):
        self._exec("UPDATE deployments SET active = 0 WHERE name = ?", (name,))

    def deployments(self, active_only=False):
        sql = "SELECT * FROM deployments"
        if active_only:
            sql += " WHERE active = 1"
        rows = self._query(sql + " ORDER BY created, rowid")
        for r in rows:
            r["definitions"] = json.loads(r["definitions"])
        return rows

    def deployments_for(self, device, fleet):
        rows = self._query(
            "SELECT * FROM deployments WHERE active = 1 AND (device = ? OR "
            "(device IS NULL AND fleet = ?)) ORDER BY created, rowid",
            (device, fleet),
        )
        for r in rows:
            r["definitions"] = json.loads(r["definitions"])
        return rows

    # heartbeats and results
    def add_heartbeat(self, device, fleet, body, received=None):
        """Record a heartbeat (and its DeploymentResult, if any); returns its id."""
        received = time.time() if received is None else received
        with self._lock:
            heartbeat_id = self._conn.execute(
                "INSERT INTO heartbeats (device, fleet, received, body) VALUES (?, ?, ?, ?)",
                (device, fleet, received, json.dumps(body)),
            ).lastrowid
            result = body.get("DeploymentResult")
            if result is not None:
                self._conn.execute(
                    "INSERT INTO deployment_results (device, deployment, status, received, body) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (
                        device,
                        result.get("DeploymentName"),
                        result.get("DeploymentStatus"),
                        received,
                        json.dumps(result),
                    ),
                )
            self._conn.commit()
        return heartbeat_id

    def set_heartbeat_signer(self, heartbeat_id, access_key_id):
        """Record which access key signed a heartbeat. A separate step because wrappers
        of add_heartbeat (crash tests) keep its signature."""
        self._exec(
            "UPDATE heartbeats SET access_key_id = ? WHERE id = ?", (access_key_id, heartbeat_id)
        )

    def heartbeats(self, device=None):
        """[{id, device, fleet, received, body, access_key_id}] oldest first."""
        return self._rows_with_body("heartbeats", device)

    def results(self, device=None):
        return self._rows_with_body("deployment_results", device)

    def _rows_with_body(self, table, device):
        sql = "SELECT * FROM %s" % table
        args = ()
        if device is not None:
            sql += " WHERE device = ?"
            args = (device,)
        rows = self._query(sql + " ORDER BY id", args)
        for r in rows:
            r["body"] = json.loads(r["body"])
        return rows
