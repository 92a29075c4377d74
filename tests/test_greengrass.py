"""The AWS IoT Greengrass v2 component (firmware/greengrass/): recipe, launcher, build, and
an agent cycle with credentials from a local stand-in of the token exchange service.

The stand-in (tests/fake_aws.FakeContainerEndpoint) answers as Greengrass's TES does: GET
on ``/2016-11-01/credentialprovider/`` with ``Authorization: <token>``; here it hands out
the local cloud's temporary device key, so a cycle succeeds only if the agent took its
credentials from it.
"""

import importlib.util
import json
import os
import subprocess
import sys
import zipfile

import pytest
from fake_aws import FakeContainerEndpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GG = os.path.join(ROOT, "firmware", "greengrass")


def _launcher():
    spec = importlib.util.spec_from_file_location("gg_run", os.path.join(GG, "gg_run.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _recipe():
    with open(os.path.join(GG, "recipe.json")) as f:
        return json.load(f)


def _version():
    with open(os.path.join(ROOT, "setup.cfg")) as f:
        for line in f:
            if line.startswith("version"):
                return line.split("=", 1)[1].strip()
    raise AssertionError("no version in setup.cfg")


def test_recipe_depends_on_tes_and_feeds_the_launcher():
    recipe = _recipe()
    assert recipe["RecipeFormatVersion"] == "2020-01-25"
    assert recipe["ComponentVersion"] == _version()
    assert recipe["ComponentDependencies"]["aws.greengrass.TokenExchangeService"][
        "DependencyType"] == "HARD"
    (manifest,) = recipe["Manifests"]
    lifecycle = manifest["Lifecycle"]
    defaults = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    # Every configuration key reaches the launcher through setEnv, and nothing else does.
    env_of = {v.split(":/", 1)[1].rstrip("}"): k for k, v in lifecycle["setEnv"].items()}
    assert sorted(env_of) == sorted(defaults)
    with open(os.path.join(GG, "gg_run.py")) as f:
        source = f.read()
    for variable in env_of.values():
        assert '"%s"' % variable in source, variable
    assert "gg_run.py" in lifecycle["Run"]["Script"]
    assert "edgecore-*.whl" in lifecycle["Install"]["Script"]
    assert manifest["Artifacts"][0]["Unarchive"] == "ZIP"


def test_launcher_builds_the_agent_config(tmp_path):
    gg = _launcher()
    env = {"AWS_IOT_THING_NAME": "cam-1", "AWS_REGION": "eu-central-1",
           "EDGECORE_FLEET_NAME": "fleet-a", "EDGECORE_DEVICE_NAME": "",
           "EDGECORE_HEARTBEAT_INTERVAL": "30",
           "EDGECORE_EXTRA_CONFIG": '{"endpoint_url": "http://127.0.0.1:1", "proxy": null}',
           "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
    config = gg.agent_config(env, str(tmp_path))
    assert config == {"device_name": "cam-1", "fleet_name": "fleet-a", "region": "eu-central-1",
                      "model_dir": str(tmp_path / "models"), "state_dir": str(tmp_path / "state"),
                      "heartbeat_interval": 30, "endpoint_url": "http://127.0.0.1:1",
                      "proxy": None}
    assert "credentials" not in config and "iot" not in config
    env.update(EDGECORE_DEVICE_NAME="other", EDGECORE_REGION="us-west-2")
    assert gg.agent_config(env, str(tmp_path))["device_name"] == "other"
    for change, words in (({"EDGECORE_FLEET_NAME": ""}, "FleetName"),
                          ({"EDGECORE_EXTRA_CONFIG": "[1]"}, "JSON object"),
                          ({"EDGECORE_EXTRA_CONFIG": '{"credentials": {}}'}, "credentials"),
                          ({"EDGECORE_HEARTBEAT_INTERVAL": "soon"}, "HeartbeatInterval")):
        with pytest.raises(gg.ComponentConfigError) as info:
            gg.agent_config(dict(env, **change), str(tmp_path))
        assert words in str(info.value)


def test_launcher_exits_78_on_a_bad_configuration(tmp_path, agent_env):
    env = dict(agent_env, EDGECORE_FLEET_NAME="f", AWS_REGION="us-west-2")
    proc = subprocess.run([sys.executable, os.path.join(GG, "gg_run.py"), "--once"], env=env,
                          cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 78 and "DeviceName is not set" in proc.stderr
    assert not (tmp_path / "agent.json").exists()


@pytest.fixture
def tes_and_cloud(local_cloud_factory):
    cloud = local_cloud_factory(temporary_key=True)
    tes = FakeContainerEndpoint(token="gg-component-token",
                                keys=(cloud.access_key, cloud.secret_key, cloud.session_token))
    tes.start()
    yield tes, cloud
    tes.stop()


def test_a_cycle_with_credentials_from_the_token_exchange_service(tes_and_cloud, tmp_path,
                                                                  agent_env):
    tes, cloud = tes_and_cloud
    # What the nucleus sets for a component depending on the TES, plus the recipe's setEnv.
    env = dict(agent_env)
    env.update({
        "AWS_CONTAINER_CREDENTIALS_FULL_URI": tes.credentials_url.replace("127.0.0.1",
                                                                          "localhost"),
        "AWS_CONTAINER_AUTHORIZATION_TOKEN": tes.token,
        "AWS_REGION": cloud.region,
        "AWS_IOT_THING_NAME": cloud.device_name,
        "EDGECORE_DEVICE_NAME": "", "EDGECORE_REGION": "", "EDGECORE_MODEL_DIR": "",
        "EDGECORE_STATE_DIR": "", "EDGECORE_HEARTBEAT_INTERVAL": "60",
        "EDGECORE_FLEET_NAME": cloud.fleet_name,
        "EDGECORE_EXTRA_CONFIG": json.dumps({"endpoint_url": cloud.endpoint_url,
                                             "s3_endpoint_url": cloud.s3_endpoint_url,
                                             "s3_addressing_style": "path"}),
    })
    assert not any(k in env for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    cloud.deploy("cam", "detector", "1.0", data=b"model bytes")
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run([sys.executable, os.path.join(GG, "gg_run.py"), "--once"], env=env,
                          cwd=str(work), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert tes.issued >= 1
    assert {c["authorization"] for c in tes.calls} == {tes.token}
    assert cloud.heartbeats(), "no heartbeat reached the cloud"
    assert os.stat(str(work / "agent.json")).st_mode & 0o777 == 0o600
    assert os.path.islink(str(work / "models" / "cam"))
    assert cloud.session_token not in proc.stderr and cloud.secret_key not in proc.stderr


def test_build_component_lays_out_recipe_and_artifact(tmp_path):
    out = tmp_path / "gg"
    proc = subprocess.run(["bash", os.path.join(GG, "build-component.sh"), "--bucket",
                           "my-bucket", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    version = _version()
    with open(str(out / "recipes" / ("edgecore.Agent-%s.json" % version))) as f:
        recipe = json.load(f)
    assert recipe["Manifests"][0]["Artifacts"][0]["URI"] == (
        "s3://my-bucket/edgecore.Agent/%s/edgecore-component.zip" % version)
    zpath = out / "artifacts" / "edgecore.Agent" / version / "edgecore-component.zip"
    names = sorted(zipfile.ZipFile(str(zpath)).namelist())
    assert "edgecore-component/gg_run.py" in names
    assert "edgecore-component/edgecore-%s-py3-none-any.whl" % version in names
