"""End to end: the agent with ``config["iot"]`` against the local AWS IoT credentials
provider (mutual TLS), the local Edge Manager endpoint (signatures checked by
botocore) and moto's S3. Expired IoT credentials are refreshed. CPython only.

Time: the cloud and the device share one fake clock (real time + an offset the test
advances), so credentials expire without sleeping and without any clock skew between
them. The "revoked early" cases leave the clock alone and let the cloud end the key.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from edgecore.client import Client
from edgecore.credentials import Credentials
from edgecore.errors import ClientError
from edgecore_ports import load_port
from edgecore_ports.runner import Runner, load_config
from edgecore_tools.localcloud import sigcheck
from edgecore_tools.localcloud.iot import IotCredentialsEndpoint, Pki

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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
def signers(monkeypatch):
    """Every request the edge endpoint authenticated: (path, access key id, error code
    or None), in order. Taken at sigcheck.verify, the endpoint's only gate."""
    seen = []
    real = sigcheck.verify

    def spy(method, raw_path, headers, *args, **kwargs):
        auth = sigcheck._header(headers, "authorization") or ""
        akid = auth.partition("Credential=")[2].partition("/")[0] or None
        try:
            verified = real(method, raw_path, headers, *args, **kwargs)
        except sigcheck.AuthError as exc:
            seen.append((raw_path, akid, exc.code))
            raise
        seen.append((raw_path, verified.key.access_key, None))
        return verified

    monkeypatch.setattr(sigcheck, "verify", spy)
    return seen


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


def keys_used(signers, operation, ok=True):
    return [akid for path, akid, err in signers
            if path == "/" + operation and (err is None) == ok]


def test_expired_iot_credentials_are_refreshed(iot_cloud, tmp_path, signers):
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
    mark = len(signers)

    cloud.deploy("cam", "detector", "2.0", data=v2)
    report = runner.cycle()
    assert report["ok"], report
    assert active_bytes(tmp_path, "cam") == v2  # S3 accepted the second key as well
    assert len(iot.minted) == 2
    key2 = iot.minted[1]["access_key_id"]
    assert key2 != key1
    # Refreshed before use: the agent never sent the expired key.
    assert [s for s in signers[mark:] if s[2] is not None] == []
    assert set(keys_used(signers[mark:], "GetDeployments")) == {key2}
    # The cloud accepted heartbeats signed with each key.
    assert keys_used(signers, "SendHeartbeat") == [key1, key2]
    hb = cloud.heartbeats()
    assert hb[-1]["body"]["DeploymentResult"]["DeploymentStatus"] == "SUCCESS"
    assert runner.credentials.get(clock()).access_key == key2


def test_key_revoked_early_gives_expired_token_then_refresh(iot_cloud, tmp_path, signers):
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
    polls = [(akid, err) for path, akid, err in signers if path == "/GetDeployments"]
    assert polls == [(key1, None), (key1, "ExpiredTokenException"), (key2, None)]
    assert keys_used(signers, "SendHeartbeat") == [key1, key2]
    assert not any(e == "api.retry" for e, _ in runner.events)  # refreshed, not backed off


# --------------------------------------------------------------------------- CLI


def agent_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
    return env


def run_once(config, tmp_path):
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(config))
    return subprocess.run(
        [sys.executable, "-m", "edgecore_tools.cli", "run", "--config", str(path), "--once"],
        capture_output=True, text=True, env=agent_env(), timeout=120,
    )


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


def test_cli_cached_key_revoked_then_refreshed(local_cloud, tmp_path, signers):
    """`edgecore run --once` twice with a credentials cache file: the second run starts
    from the cached key, which the cloud has ended meanwhile; it refreshes and succeeds."""
    cloud = local_cloud
    with IotCredentialsEndpoint.start(cloud, tmp_path / "pki") as iot:
        cert, key = iot.provision(THING)
        cache = tmp_path / "iot-credentials.json"
        config = iot.agent_config(tmp_path / "models", tmp_path / "state", THING, cert, key,
                                  iot_extra={"cache_file": str(cache)})
        cloud.deploy("cam", "detector", "1.0", data=b"m" * 5000)
        first = run_once(config, tmp_path)
        assert first.returncode == 0, first.stderr
        assert len(iot.minted) == 1 and cache.exists()
        key1 = iot.minted[0]["access_key_id"]
        iot.expire(key1)
        second = run_once(config, tmp_path)
        assert second.returncode == 0, second.stderr
        assert len(iot.minted) == 2
        key2 = iot.minted[1]["access_key_id"]
        assert keys_used(signers, "SendHeartbeat") == [key1, key2]
        assert (key1, "ExpiredTokenException") in [(a, e) for _, a, e in signers]
        for out in (first.stderr, second.stderr):
            assert_no_secrets(out, cloud, key)
            for line in out.strip().splitlines():
                json.loads(line)


def test_cli_untrusted_device_certificate_is_a_clear_error(local_cloud, tmp_path, signers):
    cloud = local_cloud
    with IotCredentialsEndpoint.start(cloud, tmp_path / "pki") as iot:
        iot.provision(THING)  # the thing exists, with a certificate the device lacks
        cert, key = Pki.create(tmp_path / "rogue").device(THING)
        config = iot.agent_config(tmp_path / "models", tmp_path / "state", THING, cert, key,
                                  max_retries=1, retry_time_budget=5)
        proc = run_once(config, tmp_path)
        assert proc.returncode == 1, proc.stderr
        last = proc.stderr.strip().splitlines()[-1]
        assert last.startswith("edgecore: error: GetDeployments: AssumeRoleWithCertificate"), last
        assert "TLS handshake failed" in last and "client certificate" in last
        assert "alert unknown ca" in last.lower()  # the endpoint's reason reaches the user
        assert "role alias %s" % iot.role_alias in last
        assert "SendHeartbeat: AssumeRoleWithCertificate" in last
        assert_no_secrets(proc.stderr, cloud, key)
        assert iot.handshake_event.is_set() and iot.minted == []
        assert signers == []  # nothing reached the edge endpoint
