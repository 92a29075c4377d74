# Not under emulated ARM: drives the real MicroPython binary (an x86 build, tested natively)
"""The board's AWS IoT credentials provider (edgecore_ports.mp_iot) on the real 32-bit
unix binary at a 64 KiB heap, against the local IoT credentials endpoint
(edgecore_tools.localcloud.iot: mutual TLS, certificates attached to things, keys of the
local cloud): the device certificate presented by mbedtls, the answer's key signing a
real Edge Manager call, refresh, invalidate, a device clock 2 h ahead, and the refusals
(a certificate from another CA, one not attached to the thing, an unknown role alias).
The refresh logic against a fake transport: tests/test_mp_iot.py.

The binary comes from ``firmware/micropython/build.sh unix``; without it this module is
skipped, unless ``CI`` is set (then it fails).
"""

import json
import os
import subprocess
import time

import pytest
from mpdevice import BINARY, HEAP, Device, require_binary

from edgecore_tools.localcloud.iot import DEFAULT_ROLE_ALIAS, IotCredentialsEndpoint, Pki

require_binary()

THING = "edge-thing-1"

# Runs on the device: each step's outcome as one JSON line, then the provider's events.
SCRIPT = """
import json, sys
from edgecore.client import Client
from edgecore_ports import micropython as mp
from edgecore_ports import mp_iot
with open(sys.argv[1]) as f:  # a file: argv items of 256+ bytes kill the unix port
    a = json.loads(f.read())
events = []
p = mp_iot.provider_from_config({"iot": a["iot"]}, mp,
                                log=lambda level, event, **f: events.append(event))
for op, offset in a["steps"]:
    now = mp.clock() + offset
    try:
        if op == "get":
            c = p.get(now)
            r = {"key": c.access_key, "expiration": c.expiration}
        elif op == "invalidate":
            p.invalidate()
            r = {}
        else:  # GetDeviceRegistration signed with the provider's credentials at now
            client = Client(a["region"], p, endpoint_url=a["endpoint_url"], clock=lambda: now)
            r = {"registration": client.get_device_registration(
                DeviceName=a["device"], DeviceFleetName=a["fleet"])["DeviceRegistration"]}
    except Exception as exc:
        r = {"error": exc.__class__.__name__, "message": str(exc),
             "retryable": getattr(exc, "retryable", None)}
    print(json.dumps(r))
print(json.dumps({"events": events}))
"""


def device(cloud, iot_config, steps):
    args = {"iot": iot_config, "steps": steps, "region": cloud.region,
            "endpoint_url": cloud.endpoint_url, "device": cloud.device_name,
            "fleet": cloud.fleet_name}
    path = os.path.join(cloud.workdir, "device-args.json")
    with open(path, "w") as f:
        json.dump(args, f)
    proc = subprocess.run([BINARY, "-X", "heapsize=" + HEAP, "-c", SCRIPT, path],
                          capture_output=True, text=True, timeout=120, cwd="/",
                          env=dict(os.environ, MICROPYPATH=".frozen"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert len(lines) == len(steps) + 1, proc.stdout
    return lines[:-1], lines[-1]["events"]


@pytest.fixture
def iot(local_cloud, tmp_path):
    endpoint = IotCredentialsEndpoint.start(local_cloud, tmp_path / "pki")
    yield endpoint
    endpoint.stop()


def test_fetches_over_mtls_and_the_key_signs_edge_calls(local_cloud, iot):
    cert, key = iot.provision(THING)
    steps = [["get", 0], ["call", 0], ["get", 60], ["invalidate", 0], ["get", 60],
             ["call", 60]]
    out, events = device(local_cloud, iot.iot_config(THING, cert, key), steps)
    first, call, cached, _, second, call2 = out
    assert first.get("key") == iot.minted[0]["access_key_id"], out
    assert first["expiration"] == iot.minted[0]["expiration"]
    assert call == {"registration": "REGISTERED"}  # signed by the minted key
    assert cached["key"] == first["key"]  # no fetch within the window
    assert second["key"] == iot.minted[1]["access_key_id"] != first["key"]  # invalidated
    assert call2 == {"registration": "REGISTERED"}
    assert len(iot.minted) == 2 and [r["thing"] for r in iot.requests] == [THING, THING]
    assert events == ["credentials.fetched", "credentials.fetched"]


def test_refreshes_in_the_advisory_window_and_with_the_clock_ahead(local_cloud, iot):
    cert, key = iot.provision(THING)
    iot.add_role_alias("short", duration=900)  # windows: advisory 450 s, mandatory 300 s
    conf = iot.iot_config(THING, cert, key, role_alias="short")
    # The device clock 2 h ahead of the endpoint's: by it, the fresh keys look expired.
    out, events = device(local_cloud, conf, [["get", 7200], ["get", 7200 + 400],
                                             ["get", 7200 + 460], ["get", 7200 + 500]])
    first, cached, refreshed, again = out
    assert first.get("key") == iot.minted[0]["access_key_id"], out
    assert first["expiration"] <= time.time() + 900  # by the endpoint's clock
    assert cached["key"] == first["key"]
    assert refreshed["key"] == iot.minted[1]["access_key_id"] != first["key"]
    assert again["key"] == refreshed["key"] and len(iot.minted) == 2


def test_refusals_are_named_and_final(local_cloud, iot, tmp_path):
    cert, key = iot.provision(THING)
    other_cert, other_key = iot.provision("other-thing")
    rogue_cert, rogue_key = Pki.create(tmp_path / "rogue").device(THING)
    cases = [
        # A certificate the endpoint's CA did not issue: the handshake fails.
        (iot.iot_config(THING, rogue_cert, rogue_key), "refused the TLS handshake"),
        # Issued, but attached to another thing.
        (iot.iot_config(THING, other_cert, other_key), "HTTP 403 ForbiddenException"),
        (iot.iot_config(THING, cert, key, role_alias="no-such-alias"),
         "HTTP 404 ResourceNotFoundException"),
    ]
    for conf, what in cases:
        (out,), events = device(local_cloud, conf, [["get", 0]])
        assert out.get("error") == "IotCredentialsError" and what in out["message"], out
        assert "role alias %s" % conf["role_alias"] in out["message"]
        assert out["retryable"] is False, out  # the same files meet the same refusal
    assert iot.minted == [] and len(iot.handshake_failures) == 1
    assert [r["status"] for r in iot.requests] == [403, 404]
    assert DEFAULT_ROLE_ALIAS in cases[0][0]["role_alias"]


def test_the_board_agent_signs_with_the_iot_provider(local_cloud, iot, tmp_path):
    """The agent config's "iot" object on a board: the executor fetches credentials over
    mTLS (edgecore_ports.mp_iot) and signs its whole cycle with them."""
    cert, key = iot.provision(THING)
    data = os.urandom(20000)
    dep = local_cloud.deploy("cam", "detector", "1.0", data=data)
    config = local_cloud.agent_config(str(tmp_path / "flash" / "models"),
                                      str(tmp_path / "flash" / "state"))
    del config["credentials"]
    config["iot"] = iot.iot_config(THING, cert, key)
    with Device(config, tmp_path, heap=None) as dev:  # 64 KiB: tests/test_mp_cycle.py
        report = dev.cycle()
    assert report["ok"], dev.transcript()
    minted = iot.minted[0]["access_key_id"]
    assert [hb["access_key_id"] for hb in local_cloud.heartbeats()] == [minted]
    result = dict((r["deployment"], r["body"]) for r in local_cloud.results())
    assert result[dep["DeploymentName"]]["DeploymentStatus"] == "SUCCESS"
    assert len(iot.minted) == 1
