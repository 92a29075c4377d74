# Not under emulated ARM: the fleet server runs on the operator's hosts, never on a device
"""``edgecore-fleet``: serve under gunicorn with a config file and the environment, TLS,
/healthz, Prometheus metrics summed over worker processes, JSON logs, a clean SIGTERM;
the key commands; a clear message when the [fleet] extra is missing. CPython only."""

import json
import os
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest
from fleet_proc import stop

from edgecore_fleet import config as fleet_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fleet(*args, env=None, stdin=None):
    return subprocess.run([sys.executable, "-m", "edgecore_fleet"] + list(args),
                          capture_output=True, text=True, input=stdin, timeout=120,
                          env=dict(os.environ, PYTHONPATH=ROOT, **(env or {})))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_key_commands_and_config(tmp_path):
    db = str(tmp_path / "f.db")
    out = fleet("create-key", "--admin", "--database", db)
    assert out.returncode == 0, out.stderr
    admin = json.loads(out.stdout)
    assert admin["role"] == "admin" and len(admin["secret_access_key"]) == 40
    device = json.loads(fleet("create-key", "--device", "cam-1", "--database", db).stdout)
    assert device["device"] == "cam-1"
    imported = fleet("import-key", "--device", "cam-2", "--access-key-id", "AKIAMINIO1",
                     "--database", db, stdin="minio-secret\n")
    assert imported.returncode == 0, imported.stderr
    listing = fleet("keys", "--database", db)
    keys = json.loads(listing.stdout)
    assert sorted((k["akid"], k["role"], k["device"]) for k in keys) == sorted([
        (admin["access_key_id"], "admin", None), (device["access_key_id"], "device", "cam-1"),
        ("AKIAMINIO1", "device", "cam-2")])
    for secret in (admin["secret_access_key"], device["secret_access_key"], "minio-secret"):
        assert secret not in listing.stdout
    assert fleet("delete-key", "AKIAMINIO1", "--database", db).returncode == 0
    assert fleet("delete-key", "AKIAMINIO1", "--database", db).returncode == 2
    bad = fleet("create-key", "--device", "bad name", "--database", db)
    assert bad.returncode == 2 and "deviceName" not in bad.stderr and "pattern" in bad.stderr
    # Settings: file, then environment; secrets hidden; unknown keys refused.
    conf = tmp_path / "fleet.json"
    conf.write_text(json.dumps({"workers": 3, "s3": {"access_key_id": "AK",
                                                     "secret_access_key": "SSSECRET"}}))
    shown = fleet("config", "--config", str(conf), env={"EDGECORE_FLEET_WORKERS": "4",
                                                         "EDGECORE_FLEET_DATABASE": db})
    settings = json.loads(shown.stdout)
    assert settings["workers"] == 4 and settings["database"] == db
    assert "SSSECRET" not in shown.stdout
    conf.write_text(json.dumps({"wokers": 3}))
    bad = fleet("config", "--config", str(conf))
    assert bad.returncode == 2 and "unknown key(s) wokers" in bad.stderr
    with pytest.raises(fleet_config.ConfigError):
        fleet_config.load(environ={"EDGECORE_FLEET_TLS_CERT": "only-a-cert.pem"})


def test_missing_extra_names_it(tmp_path):
    (tmp_path / "sqlalchemy.py").write_text("raise ImportError('No module named sqlalchemy')")
    out = subprocess.run([sys.executable, "-m", "edgecore_fleet", "keys"], capture_output=True,
                         text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path),
                                                                         ROOT])))
    assert out.returncode == 1 and "pip install 'edgecore[fleet]'" in out.stderr
    assert "Traceback" not in out.stderr


def _get(url, context=None):
    with urllib.request.urlopen(url, timeout=10, context=context) as r:
        return r.status, r.read().decode()


def test_serve_tls_metrics_logs_and_sigterm(tmp_path):
    from edgecore_tools.localcloud.iot import make_cert, make_key, write_pem

    key = make_key()
    write_pem(tmp_path / "tls.key", key)
    write_pem(tmp_path / "tls.pem", make_cert("127.0.0.1", key, hosts=("127.0.0.1",)))
    port = free_port()
    db = str(tmp_path / "serve.db")
    conf = tmp_path / "fleet.json"
    conf.write_text(json.dumps({"bind": "127.0.0.1:%d" % port, "workers": 2, "threads": 2,
                                "tls_cert": str(tmp_path / "tls.pem")}))
    env = dict(os.environ, PYTHONPATH=ROOT, EDGECORE_FLEET_DATABASE=db,
               EDGECORE_FLEET_TLS_KEY=str(tmp_path / "tls.key"))
    err = open(str(tmp_path / "stderr"), "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, "-m", "edgecore_fleet", "serve", "--config",
                             str(conf)], stdout=subprocess.DEVNULL, stderr=err, env=env)
    context = ssl.create_default_context(cafile=str(tmp_path / "tls.pem"))
    url = "https://127.0.0.1:%d" % port
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                assert _get(url + "/healthz", context) == (200, '{"status": "ok"}')
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
        with pytest.raises(OSError):  # plain HTTP is not served on a TLS port
            _get("http://127.0.0.1:%d/healthz" % port)
        # Device API calls over TLS with edgecore's client, then metrics of both workers.
        from edgecore.client import Client
        from edgecore.credentials import Credentials
        from edgecore_fleet.store import Store
        from edgecore_ports import cpython

        store = Store.open(db)
        store.add_device("tls-dev", "tls-fleet")
        store.add_key("AKIDTLS", "tls-secret", device="tls-dev")
        store.close()
        transport = cpython.make_transport(ca_bundle=str(tmp_path / "tls.pem")).transport
        client = Client("us-west-2", Credentials("AKIDTLS", "tls-secret"), endpoint_url=url,
                        transport=transport, clock=time.time)
        n = 20
        for _ in range(n):
            client.send_heartbeat(AgentVersion="1", DeviceName="tls-dev",
                                  DeviceFleetName="tls-fleet")
        status, text = _get(url + "/metrics", context)
        assert status == 200
        line = [x for x in text.splitlines() if x.startswith(
            'edgecore_fleet_requests_total{api="device",operation="SendHeartbeat"')]
        assert line and float(line[0].split()[-1]) == n  # summed over the workers
        assert "edgecore_fleet_heartbeats %d.0" % n in text
        assert stop(proc) == 0
    finally:
        stop(proc)
        err.close()
    lines = (tmp_path / "stderr").read_text().splitlines()
    records = [json.loads(x) for x in lines]  # every line is one JSON object
    requests = [r for r in records if r.get("logger") == "edgecore_fleet.access"]
    assert len(requests) == n
    assert requests[0]["operation"] == "SendHeartbeat" and requests[0]["status"] == 200
    assert requests[0]["access_key_id"] == "AKIDTLS"
    assert "tls-secret" not in "\n".join(lines)
    assert any("Booting worker" in r["message"] for r in records)


def test_deploy_files_agree_with_the_cli():
    deploy = os.path.join(ROOT, "deploy")
    settings = fleet_config.load(os.path.join(deploy, "fleet.json"), environ={
        "EDGECORE_FLEET_S3_ACCESS_KEY_ID": "AK", "EDGECORE_FLEET_S3_SECRET_ACCESS_KEY": "S"})
    assert settings["bind"] == ["0.0.0.0:8443"] and settings["s3"]["secret_access_key"] == "S"
    from edgecore_fleet.__main__ import build_parser

    parser = build_parser()
    with open(os.path.join(deploy, "edgecore-fleet-iot.service")) as f:
        unit = f.read()
    assert "ExecStart=/opt/edgecore-fleet/bin/edgecore-fleet serve-iot --config" in unit
    with open(os.path.join(deploy, "edgecore-fleet.service")) as f:
        unit += f.read()
    assert settings["iot_ca"] and settings["iot_role_aliases"]
    for line in unit.splitlines():
        if line.startswith(("ExecStart=", "ExecStartPre=")):
            argv = line.split("=", 1)[1].split()
            assert argv[0] == "/opt/edgecore-fleet/bin/edgecore-fleet"
            args = parser.parse_args(argv[1:])  # the unit's command lines parse
            assert args.config == "/etc/edgecore-fleet/fleet.json"
    assert "User=edgecore-fleet" in unit and "EnvironmentFile=-/etc/edgecore-fleet/env" in unit
