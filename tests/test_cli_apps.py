"""``edgecore models`` and ``edgecore capture`` (edgecore_tools/cli_apps.py) as processes,
against a local API server with a fake backend."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_localapi import Rig  # noqa: E402

from edgecore_tools.cli_apps import parse_tensor  # noqa: E402


@pytest.fixture
def rig(tmp_path):
    r = Rig(tmp_path)
    yield r
    r.server.stop()


def test_models_table_and_json(rig, run_cli, tmp_path):
    out = run_cli(["models", "--socket", rig.path])
    assert out.returncode == 0, out.stderr
    assert "model-a" in out.stdout and "cccccccccccc" in out.stdout and "/m/model-a" in out.stdout
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"state_dir": str(tmp_path), "device_name": "d"}))
    out = run_cli(["models", "--json", "--config", str(config)])  # <state_dir>/api.sock
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Models"][0]["Sha1"] == "c" * 40


def test_capture_send_and_status(rig, run_cli, tmp_path):
    raw = tmp_path / "x.bin"
    raw.write_bytes(b"\x00\x00\x80?" * 6)
    out = run_cli(["capture", "send", "--socket", rig.path, "--model", "model-a", "--id", "c-7",
                   "--input", "x=file:%s:float32:2x3" % raw, "--output", 'y=json:{"p": 0.5}',
                   "--aux", "note=csv:1,2", "--inference-time", "1700000000"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "c-7 IN_PROGRESS"
    with open(rig.store.dir + "/q/" + rig.store.ids["c-7"], "rb") as f:
        doc = json.loads(f.read())
    assert doc["captureData"]["inputs"][0]["shape"] == [2, 3]
    assert doc["captureData"]["outputs"][0]["data"] == {"p": 0.5}
    out = run_cli(["capture", "status", "--socket", rig.path, "--json", "c-7"])
    assert json.loads(out.stdout) == {"CaptureId": "c-7", "Status": "IN_PROGRESS"}
    out = run_cli(["capture", "send", "--socket", rig.path, "--model", "model-a", "--id", "c-7",
                   "--input", "x=csv:1"])
    assert out.returncode == 1 and "CaptureIdInUse" in out.stderr


def test_errors(rig, run_cli, tmp_path):
    out = run_cli(["models", "--socket", str(tmp_path / "missing.sock")])
    assert out.returncode == 1 and "cannot reach the agent's API" in out.stderr
    out = run_cli(["capture", "send", "--socket", rig.path, "--model", "m", "--id", "c",
                   "--input", "x=pickle:1"])
    assert out.returncode == 2 and "expected NAME=json:JSON" in out.stderr


def test_parse_tensor():
    assert parse_tensor("a=json:[1, 2]") == {"name": "a", "json": [1, 2]}
    assert parse_tensor("a=csv:1,2:3") == {"name": "a", "csv": "1,2:3"}
    with pytest.raises(ValueError):
        parse_tensor("a=json:{bad")
    with pytest.raises(ValueError):
        parse_tensor("noequals")
