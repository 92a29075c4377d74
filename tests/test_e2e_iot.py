"""End to end: the agent with ``config["iot"]`` against the local AWS IoT credentials
provider (mutual TLS), the local Edge Manager endpoint (signatures checked by
botocore) and moto's S3. Expired IoT credentials are refreshed. CPython only.

Time: the cloud and the device share one fake clock (real time + an offset the test
advances), so credentials expire without sleeping and without any clock skew between
them. The "revoked early" cases leave the clock alone and let the cloud end the key.
"""

import json
import time

import pytest

from edgecore.client import Client
from edgecore.credentials import Credentials
from edgecore.errors import ClientError
from edgecore_ports import load_port
from edgecore_ports.runner import Runner, load_config
from edgecore_tools.localcloud.iot import IotCredentialsEndpoint, Pki

THING = "edge-thing-1"


class FakeClock:
    """Wall clock + an offset the test moves forward: one time for cloud and device."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self):
        return time.time() + self.offset

    def advance(self, seconds):
        self.offset += seconds


class ClockedPort:
    """The real platform port with its clock replaced."""

    def __init__(self, port, clock):
        self._port = port
        self.clock = clock

    def __getattr__(self, name):
        return getattr(self._port, name)


@pytest.fixture
def iot_cloud(local_cloud_factory, tmp_path):
    clock = FakeClock()
    cloud = local_cloud_factory(clock=clock)
    iot = IotCredentialsEndpoint.start(cloud, tmp_path / "pki")  # follows cloud.server.clock
    try:
        yield cloud, iot, clock
    finally:
        iot.stop()


def make_runner(cloud, iot, clock, tmp_path, cert, key, **iot_extra):
    doc = iot.agent_config(tmp_path / "models", tmp_path / "state", THING, cert, key,
                           iot_extra=dict({"timeout": [5, 5]}, **iot_extra))
    config = load_config(doc, environ={})
    events = []
    runner = Runner(config, port=ClockedPort(load_port(config["board"]), clock), environ={},
                    log=lambda level, event, **f: events.append((event, f)),
                    sleep=lambda s: None)
    runner.events = events
    return runner


def active_bytes(tmp_path, handle):
    link = tmp_path / "models" / handle
    files = [p for p in link.iterdir() if p.name != "edgecore.json"]
    assert len(files) == 1
    return files[0].read_bytes()


def heartbeat_keys(cloud):
    """The access key that signed each heartbeat the cloud accepted, in order."""
    return [hb["access_key_id"] for hb in cloud.heartbeats()]


def calls(cloud, operation, start=0):
    """(access key, error code or None) of each `operation` request since `start`."""
    return [(r["access_key_id"], r["error"]) for r in cloud.requests()[start:]
            if r["operation"] == operation]


def test_expired_iot_credentials_are_refreshed(iot_cloud, tmp_path):
    cloud, iot, clock = iot_cloud
    cert, key = iot.provision(THING)
    runner = make_runner(cloud, iot, clock, tmp_path, cert, key)
    v1, v2 = b"model v1" * 1000, b"model v2" * 1000
    cloud.deploy("cam", "detector", "1.0", data=v1)
    report = runner.cycle()
    assert report["ok"], report
    assert active_bytes(tmp_path, "cam") == v1  # downloaded from S3 with the IoT key
    assert len(iot.minted) == 1
    key1 = iot.minted[0]["access_key_id"]

    # Past the first key's expiry, for the cloud and the device alike.
    clock.advance(iot.minted[0]["expiration"] - clock() + 60)
    record = cloud.db.lookup_key(key1)
    with pytest.raises(ClientError) as info:  # the cloud really refuses it now
        Client(cloud.region, Credentials(key1, record.secret_key, record.session_token),
               endpoint_url=cloud.endpoint_url, transport=runner.http.transport,
               clock=clock).get_device_registration(DeviceName=cloud.device_name,
                                                    DeviceFleetName=cloud.fleet_name)
    assert info.value.code == "ExpiredTokenException"
    mark = len(cloud.requests())

    cloud.deploy("cam", "detector", "2.0", data=v2)
    report = runner.cycle()
    assert report["ok"], report
    assert active_bytes(tmp_path, "cam") == v2  # S3 accepted the second key as well
    assert len(iot.minted) == 2
    key2 = iot.minted[1]["access_key_id"]
    assert key2 != key1
    # Refreshed before use: the agent never sent the expired key.
    assert [r for r in cloud.requests()[mark:] if r["error"] is not None] == []
    assert calls(cloud, "GetDeployments", mark) == [(key2, None)]
    # The cloud accepted heartbeats signed with each key.
    assert heartbeat_keys(cloud) == [key1, key2]
    hb = cloud.heartbeats()
    assert hb[-1]["body"]["DeploymentResult"]["DeploymentStatus"] == "SUCCESS"
    assert runner.credentials.get(clock()).access_key == key2


def test_key_revoked_early_gives_expired_token_then_refresh(iot_cloud, tmp_path):
    cloud, iot, clock = iot_cloud
    cert, key = iot.provision(THING)
    runner = make_runner(cloud, iot, clock, tmp_path, cert, key)
    assert runner.cycle()["ok"]
    key1 = iot.minted[0]["access_key_id"]
    iot.expire(key1)  # the device still believes it valid for an hour
    report = runner.cycle()
    assert report["ok"], report
    assert len(iot.minted) == 2
    key2 = iot.minted[1]["access_key_id"]
    assert calls(cloud, "GetDeployments") == [
        (key1, None), (key1, "ExpiredTokenException"), (key2, None)
    ]
    assert heartbeat_keys(cloud) == [key1, key2]
    assert not any(e == "api.retry" for e, _ in runner.events)  # refreshed, not backed off


# --------------------------------------------------------------------------- CLI


def run_once(run_cli, config, tmp_path):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(config))
    return run_cli(["run", "--config", str(path), "--once"])


def assert_no_secrets(text, cloud, key_path):
    with open(key_path) as f:
        private = f.read()
    assert "PRIVATE KEY" not in text
    assert private.splitlines()[1] not in text
    listing = cloud.db.keys()  # FleetDB's key listing (no secrets), not a dict
    for row in listing:
        record = cloud.db.lookup_key(row["akid"])
        assert record.secret_key not in text
        if record.session_token:
            assert record.session_token not in text


def test_cli_cached_key_revoked_then_refreshed(local_cloud, tmp_path, run_cli):
    """`edgecore run --once` twice with a credentials cache file: the second run starts
    from the cached key, which the cloud has ended meanwhile; it refreshes and succeeds."""
    cloud = local_cloud
    with IotCredentialsEndpoint.start(cloud, tmp_path / "pki") as iot:
        cert, key = iot.provision(THING)
        cache = tmp_path / "iot-credentials.json"
        config = iot.agent_config(tmp_path / "models", tmp_path / "state", THING, cert, key,
                                  iot_extra={"cache_file": str(cache)})
        cloud.deploy("cam", "detector", "1.0", data=b"m" * 5000)
        first = run_once(run_cli, config, tmp_path)
        assert first.returncode == 0, first.stderr
        assert len(iot.minted) == 1 and cache.exists()
        key1 = iot.minted[0]["access_key_id"]
        iot.expire(key1)
        second = run_once(run_cli, config, tmp_path)
        assert second.returncode == 0, second.stderr
        assert len(iot.minted) == 2
        key2 = iot.minted[1]["access_key_id"]
        assert heartbeat_keys(cloud) == [key1, key2]
        assert (key1, "ExpiredTokenException") in calls(cloud, "GetDeployments")
        for out in (first.stderr, second.stderr):
            assert_no_secrets(out, cloud, key)
            for line in out.strip().splitlines():
                json.loads(line)


def test_cli_untrusted_device_certificate_fails_fast_as_a_credentials_error(
        local_cloud, tmp_path, run_cli):
    """A certificate the endpoint refuses is not retried like a network blip: one TLS
    handshake, no backoff (default max_retries/retry_time_budget), and the error says it
    is the credentials."""
    cloud = local_cloud
    with IotCredentialsEndpoint.start(cloud, tmp_path / "pki") as iot:
        iot.provision(THING)  # the thing exists, with a certificate the device lacks
        cert, key = Pki.create(tmp_path / "rogue").device(THING)
        config = iot.agent_config(tmp_path / "models", tmp_path / "state", THING, cert, key)
        assert "max_retries" not in config and "retry_time_budget" not in config
        proc = run_once(run_cli, config, tmp_path)
        assert proc.returncode == 1, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("edgecore: error: credentials: AssumeRoleWithCertificate"), last
        assert "TLS handshake failed" in last and "device certificate" in last
        assert "alert unknown ca" in last.lower()  # the endpoint's reason reaches the user
        assert "role alias %s" % iot.role_alias in last and cert in last
        assert last.count("AssumeRoleWithCertificate") == 1  # said once, not per operation
        assert_no_secrets(proc.stderr, cloud, key)
        events = [json.loads(line)["event"] for line in proc.stderr.strip().splitlines()[:-1]]
        assert "api.retry" not in events and "cycle.skipped" in events
        # Exactly one attempt reached the IoT endpoint, and it was refused in the handshake.
        assert iot.handshake_event.wait(10)
        assert len(iot.handshake_failures) == 1, iot.handshake_failures
        assert "certificate" in iot.handshake_failures[0].lower()
        assert iot.requests == [] and iot.minted == []
        assert cloud.requests() == []  # nothing reached the edge endpoint
