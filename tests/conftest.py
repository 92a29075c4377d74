"""Shared pytest fixtures (CPython only; the MicroPython runner never loads this file).

- moto_s3 (session): one moto S3 server with signature checking, shared by all tests
  (each LocalCloud gets its own bucket and IAM user, so tests stay isolated).
- local_cloud (function): a LocalCloud (the fleet server embedded) in tmp_path with device
  "test-device" in fleet "test-fleet", its key valid for both the edge endpoint and S3;
  every request's signature also checked by botocore (fleet_botocheck); stopped after.
- local_cloud_factory (function): start(**kwargs) -> LocalCloud for tests that need
  options (temporary_key=True, clock=..., another device...); all stopped after the test.
- fleet_postgres (session): a PostgreSQL server started for the fleet server's tests
  (tests/fleet_pg.py); skipped where PostgreSQL is not installed, except under CI.
- fleet_db (function, parametrized by the test with "sqlite"/"postgresql"): a fresh
  database URL of that backend.
- agent_config_file (function): (path, dict) of an agent config JSON for local_cloud.
- agent_env (function): the environment for an agent subprocess (credentials from its
  config only, this source tree importable); see edgecore_tools.demo.agent_env.
- run_cli (function): run(args, timeout=120) -> CompletedProcess of
  ``python -m edgecore_tools.cli ARGS`` in agent_env (text output captured).
"""

import os
import subprocess
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
try:
    import edgecore_tools  # noqa: F401
except ImportError:  # not installed as a package yet: use the source tree
    sys.path.insert(0, _ROOT)


@pytest.fixture(scope="session")
def moto_s3():
    from edgecore_tools.localcloud import MotoS3

    s3 = MotoS3.start(region="us-west-2")
    yield s3
    s3.stop()


@pytest.fixture(scope="session")
def fleet_postgres():
    import fleet_pg

    if not fleet_pg.available():
        if os.environ.get("CI"):
            pytest.fail("PostgreSQL is not installed (.ci/run installs it)")
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    server = fleet_pg.PostgresServer.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def fleet_db(request, tmp_path):
    """A fresh database URL: SQLite file or a new PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "fleet.db")
    return request.getfixturevalue("fleet_postgres").new_database()


@pytest.fixture
def local_cloud_factory(tmp_path, moto_s3):
    from edgecore_tools.localcloud import LocalCloud

    started = []

    import fleet_botocheck

    def start(**kwargs):
        kwargs.setdefault("s3", moto_s3)
        kwargs.setdefault("cross_check", fleet_botocheck.verify)
        cloud = LocalCloud.start(tmp_path / ("cloud-%d" % len(started)), **kwargs)
        started.append(cloud)
        return cloud

    yield start
    for cloud in started:
        cloud.stop()


@pytest.fixture
def local_cloud(local_cloud_factory):
    return local_cloud_factory()


@pytest.fixture
def agent_config_file(local_cloud, tmp_path):
    """(path, config dict) of an agent config for local_cloud's device, with model_dir and
    state_dir under tmp_path/device; the file is mode 0600 (it holds the secret)."""
    import json

    device_dir = tmp_path / "device"
    config = local_cloud.agent_config(device_dir / "models", device_dir / "state")
    device_dir.mkdir(exist_ok=True)
    path = device_dir / "agent.json"
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)
    return str(path), config


@pytest.fixture
def agent_env():
    from edgecore_tools.demo import agent_env

    return agent_env()


@pytest.fixture
def run_cli(agent_env):
    def run(args, timeout=120):
        return subprocess.run(
            [sys.executable, "-m", "edgecore_tools.cli"] + list(args),
            capture_output=True,
            text=True,
            env=agent_env,
            timeout=timeout,
        )

    return run
