# Not under emulated ARM: the fleet server runs on the operator's hosts, never on a device
"""``edgecore-fleet serve-iot``: the AWS IoT-compatible credentials endpoint under gunicorn
with mutual TLS. A device certificate attached to a thing (``iot-attach``) gets a
temporary key scoped to the thing's device, which edgecore's own IoT credentials provider
fetches and the fleet server accepts; other certificates fail the handshake, detached
ones get 403. CPython only."""

import json
import os
import subprocess
import sys
import time

import pytest
import requests
from fleet_proc import ROOT, free_port, stop

from edgecore.client import Client
from edgecore.errors import ClientError
from edgecore_fleet.app import FleetApp
from edgecore_fleet.embedded import EmbeddedServer
from edgecore_fleet.store import Store
from edgecore_ports import cpython
from edgecore_ports import credentials as ec
from edgecore_tools.localcloud.iot import Pki

ALIAS = "edgecore-device-role-alias"


def fleet(*args):
    out = subprocess.run([sys.executable, "-m", "edgecore_fleet"] + list(args),
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=ROOT))
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture
def endpoint(tmp_path):
    db = str(tmp_path / "fleet.db")
    store = Store.open(db).migrate()
    store.add_device("cam-1", "iot-fleet")
    store.add_device("cam-2", "iot-fleet")
    pki = Pki.create(tmp_path / "pki", hosts=("127.0.0.1",))
    port = free_port()
    env = dict(os.environ, PYTHONPATH=ROOT, EDGECORE_FLEET_DATABASE=db,
               EDGECORE_FLEET_TLS_CERT=pki.server_cert, EDGECORE_FLEET_TLS_KEY=pki.server_key,
               EDGECORE_FLEET_IOT_CA=pki.ca_path, EDGECORE_FLEET_IOT_BIND="127.0.0.1:%d" % port)
    log = open(str(tmp_path / "iot.log"), "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen([sys.executable, "-m", "edgecore_fleet", "serve-iot"],
                            stdout=subprocess.DEVNULL, stderr=log, env=env)
    api = EmbeddedServer(FleetApp(store)).start()
    try:
        deadline = time.monotonic() + 60
        while True:  # any TLS answer (even a refused handshake) means it listens
            try:
                requests.get("https://127.0.0.1:%d/" % port, verify=pki.ca_path, timeout=2)
                break
            except requests.exceptions.SSLError:
                break
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
                # gunicorn listens before its worker is up: a handshake may time out then
                assert proc.poll() is None and time.monotonic() < deadline, "no serve-iot"
                time.sleep(0.2)
        yield {"db": db, "store": store, "pki": pki, "port": port, "api": api,
               "url": "https://127.0.0.1:%d" % port}
        assert stop(proc) == 0
    finally:
        stop(proc)
        log.close()
        api.stop()
        store.close()


def test_attached_certificate_gets_a_key_scoped_to_its_device(endpoint, tmp_path):
    pki = endpoint["pki"]
    cert, key = pki.device("thing-1")
    attached = json.loads(fleet("iot-attach", "--database", endpoint["db"], "--thing",
                                "thing-1", "--device", "cam-1", "--cert", cert))
    assert attached["device"] == "cam-1" and len(attached["fingerprint"]) == 64
    provider = ec.provider_from_config({"iot": {
        "endpoint": "127.0.0.1", "port": endpoint["port"], "role_alias": ALIAS,
        "thing_name": "thing-1", "cert": cert, "key": key, "ca": pki.ca_path}}, environ={})
    creds = provider.get(time.time())
    assert creds.session_token and creds.expiration > time.time() + 3500
    client = Client("us-west-2", creds, endpoint_url=endpoint["api"].url,
                    transport=cpython.transport, clock=time.time)
    got = client.get_device_registration(DeviceName="cam-1", DeviceFleetName="iot-fleet")
    assert got["DeviceRegistration"] == "REGISTERED"
    with pytest.raises(ClientError) as info:
        client.get_deployments(DeviceName="cam-2", DeviceFleetName="iot-fleet")
    assert info.value.code == "AccessDeniedException"
    record = endpoint["store"].lookup_key(creds.access_key)
    assert record.device == "cam-1" and record.session_token == creds.session_token

    url = "%s/role-aliases/%s/credentials" % (endpoint["url"], ALIAS)
    resp = requests.get(url, cert=(cert, key), verify=pki.ca_path, timeout=10,
                        headers={"x-amzn-iot-thingname": "other-thing"})
    assert resp.status_code == 403 and resp.headers["x-amzn-ErrorType"] == "ForbiddenException"
    resp = requests.get(url.replace(ALIAS, "nope"), cert=(cert, key), verify=pki.ca_path,
                        timeout=10)
    assert resp.status_code == 404
    fleet("iot-detach", "--database", endpoint["db"], "--thing", "thing-1", "--cert", cert)
    resp = requests.get(url, cert=(cert, key), verify=pki.ca_path, timeout=10,
                        headers={"x-amzn-iot-thingname": "thing-1"})
    assert resp.status_code == 403


def test_certificates_of_another_ca_fail_the_handshake(endpoint, tmp_path):
    rogue_cert, rogue_key = Pki.create(tmp_path / "rogue").device("thing-1")
    fleet("iot-attach", "--database", endpoint["db"], "--thing", "thing-1", "--device",
          "cam-1", "--cert", rogue_cert)  # even attached: the CA does not vouch for it
    url = "%s/role-aliases/%s/credentials" % (endpoint["url"], ALIAS)
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(url, cert=(rogue_cert, rogue_key), verify=endpoint["pki"].ca_path,
                     timeout=10)
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(url, verify=endpoint["pki"].ca_path, timeout=10)  # no certificate
