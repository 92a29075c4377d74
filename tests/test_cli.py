"""Tests of edgecore_tools.cli: logs, redaction, progress, config errors, status (CPython).

Full `edgecore run --once` cycles against the local cloud are in tests/test_e2e.py.
"""

import io
import json

import pytest

from edgecore import agentstate
from edgecore_tools import cli


def records(stream):
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_logger_one_object_per_line():
    out = io.StringIO()
    log = cli.JsonLogger(out, clock=lambda: 1700000000.25)
    log("info", "download.start", handle="cam", size=3, nested={"a": [1, 2]})
    log("debug", "hidden")
    log("error", "x", reason="line one\nline two")
    recs = records(out)
    assert len(recs) == 2
    assert recs[0] == {
        "ts": "2023-11-14T22:13:20.250Z",
        "level": "info",
        "event": "download.start",
        "handle": "cam",
        "size": 3,
        "nested": {"a": [1, 2]},
    }
    assert recs[1]["reason"] == "line one\nline two"


def test_json_logger_redacts_secrets():
    out = io.StringIO()
    log = cli.JsonLogger(out, secrets=["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "tok3n-value"])
    log(
        "error",
        "oops",
        secret_access_key="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        headers={
            "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/x, Signature=abc",
            "X-Amz-Security-Token": "tok3n-value",
            "Host": "h",
        },
        reason="failed with Authorization: AWS4-HMAC-SHA256 Credential=AKID, Signature="
        "0123abcd and key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        url="https://h/?X-Amz-Security-Token=tok3n-value&x=1",
        session_token=None,
    )
    text = out.getvalue()
    assert "wJalrXUtnFEMI" not in text and "tok3n" not in text and "0123abcd" not in text
    rec = records(out)[0]
    assert rec["secret_access_key"] == "<redacted>"
    assert rec["headers"]["Authorization"] == "<redacted>"
    assert rec["headers"]["X-Amz-Security-Token"] == "<redacted>"
    assert rec["headers"]["Host"] == "h"
    assert rec["session_token"] is None
    assert rec["url"].startswith("https://h/?X-Amz-Security-Token=<redacted>")


def test_progress_on_a_terminal():
    out = io.StringIO()
    t = [0.0]
    p = cli.Progress(out, clock=lambda: t[0])
    p("cam", 1048576, 4 * 1048576)
    t[0] = 0.05
    p("cam", 2 * 1048576, 4 * 1048576)  # throttled
    t[0] = 0.2
    p("cam", 4 * 1048576, 4 * 1048576)
    text = out.getvalue()
    assert text == ("\r\x1b[Kcam:  25.0% 1.0/4.0 MiB\r\x1b[Kcam: 100.0% 4.0/4.0 MiB\n")
    # A log line first clears a progress line still on screen.
    out2 = io.StringIO()
    p2 = cli.Progress(out2, clock=lambda: 0.0)
    log = cli.JsonLogger(out2)
    log.progress = p2
    p2("gps", 5, None)
    log("info", "after")
    shown, rest = out2.getvalue().rsplit("\r\x1b[K", 1)
    assert shown == "\r\x1b[Kgps: 0.0 MiB"
    assert json.loads(rest)["event"] == "after"


def write_config(tmp_path, **extra):
    config = {
        "device_name": "dev-1",
        "fleet_name": "fleet-1",
        "region": "us-west-2",
        "model_dir": str(tmp_path / "models"),
        "state_dir": str(tmp_path / "state"),
        "credentials": {"access_key_id": "AKID", "secret_access_key": "s3cr3t-value"},
    }
    config.update(extra)
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(config))
    return str(path)


def test_config_errors_exit_78(tmp_path, capsys):
    assert cli.EX_CONFIG == 78
    assert cli.main(["run", "--config", str(tmp_path / "missing.json"), "--once"]) == 78
    err = capsys.readouterr().err
    assert err.startswith("edgecore: error: agent config: invalid file: cannot read")
    path = write_config(tmp_path, region=None)
    assert cli.main(["status", "--config", path]) == 78
    assert "invalid region: required" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert cli.main(["run", "--config", str(tmp_path / "bad.json")]) == 78
    assert "is not JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["run"])


def test_run_once_unreachable_endpoint_is_one_clear_line(tmp_path, capsys):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    path = write_config(tmp_path, endpoint_url="http://127.0.0.1:%d" % port, max_retries=0)
    assert cli.main(["run", "--config", path, "--once", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("edgecore: error: GetDeployments: ")
    assert "127.0.0.1:%d" % port in err[-1]
    for line in err[:-1]:
        json.loads(line)
    assert "s3cr3t-value" not in "\n".join(err)


def test_corrupt_state_is_a_clear_error(tmp_path, capsys):
    path = write_config(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.json").write_bytes(b'{"schema": 7}')
    assert cli.main(["run", "--config", path, "--once"]) == 1
    err = capsys.readouterr().err
    assert "load agent state: invalid schema: version 7 is not supported" in err
    assert cli.main(["status", "--config", path]) == 1


def test_status_of_a_saved_state(tmp_path, capsys):
    path = write_config(tmp_path)
    assert cli.main(["status", "--config", path]) == 0
    out = capsys.readouterr().out
    assert "active models: none" in out and "last heartbeat: never" in out
    state = agentstate.new_state(1700000000)
    state["active"]["cam"] = {
        "name": "detector",
        "version": "1.0",
        "sha1": "a" * 40,
        "s3url": "s3://b/k",
        "deployment": "d1",
        "path": "/m/cam",
        "size": 5,
        "activated": 1700000000,
    }
    state["last_result"] = {
        "DeploymentName": "d2",
        "DeploymentStatus": "FAIL",
        "DeploymentStatusMessage": "1 of 1 models failed",
        "DeploymentStartTime": 1700000100,
        "DeploymentEndTime": 1700000200,
        "DeploymentModels": [
            {
                "ModelHandle": "cam",
                "DesiredState": "DEPLOY",
                "Status": "FAIL",
                "StatusReason": "download failed: 404",
                "RollbackFailureReason": "gone",
            }
        ],
    }
    state["pending"] = [state["last_result"]]
    state["last_heartbeat"] = 1700000300
    state["heartbeat_failures"] = 2
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.json").write_bytes(agentstate.dumps(state))
    assert cli.main(["status", "--config", path]) == 0
    out = capsys.readouterr().out
    assert "cam" in out and "detector 1.0" in out and "sha1 aaaaaaaaaaaa" in out
    assert "last deployment: d2 FAIL at 2023-11-14 22:16:40 UTC: 1 of 1 models failed" in out
    assert "cam DEPLOY -> FAIL: download failed: 404 (rollback failed: gone)" in out
    assert "results waiting for a heartbeat: d2" in out
    assert "last heartbeat: 2023-11-14 22:18:20 UTC (2 failed since)" in out
    assert cli.main(["status", "--config", path, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["device"] == "dev-1" and doc["pending_results"] == ["d2"]
    assert doc["active_models"][0]["sha1"] == "a" * 40


def test_sd_notify_and_watchdog_talk_to_a_notify_socket(tmp_path):
    import os
    import socket
    import threading

    from edgecore_tools.cli import sd_notify, start_watchdog

    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5)
    try:
        env = {"NOTIFY_SOCKET": path}
        assert sd_notify("READY=1", env) is True
        assert sock.recv(64) == b"READY=1"
        stop = threading.Event()
        env = dict(env, WATCHDOG_USEC="20000", WATCHDOG_PID=str(os.getpid()))
        thread = start_watchdog(stop, env)
        assert thread is not None
        assert sock.recv(64) == b"WATCHDOG=1"
        assert sock.recv(64) == b"WATCHDOG=1"
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
    finally:
        sock.close()
    # Not under systemd, or a watchdog meant for another process: nothing sent, no error.
    assert sd_notify("READY=1", {}) is False
    assert sd_notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}) is False
    assert start_watchdog(threading.Event(), {"WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}) is None
    assert start_watchdog(threading.Event(), {}) is None


def test_missing_credentials_exit_78_and_say_not_set(tmp_path, capsys, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    path = write_config(tmp_path)
    config = json.loads((tmp_path / "agent.json").read_text())
    del config["credentials"]
    (tmp_path / "agent.json").write_text(json.dumps(config))
    assert cli.main(["run", "--config", path, "--once"]) == 78
    err = capsys.readouterr().err
    assert "no AWS credentials found" in err
    assert "<redacted> set" not in err and "AWS_SECRET_ACCESS_KEY" in err


def test_redaction_keeps_descriptions_of_a_key():
    log = cli.JsonLogger(io.StringIO())
    for text in (
        "environment (AWS_SECRET_ACCESS_KEY: not set)",
        "aws_secret_access_key = missing",
        "aws_secret_access_key: <redacted>",
    ):
        assert log.redact(text) == text
    assert (
        log.redact("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
        == "aws_secret_access_key = <redacted>"
    )
    text = "AWS_SECRET_ACCESS_KEY: nothing-here-x"
    assert log.redact(text) == "AWS_SECRET_ACCESS_KEY: <redacted>"


BIDI_AND_C1 = "s3://b/\u202eevil\u2066\u0085\u009b31m\u2028x\ud800"


def test_log_lines_escape_c1_bidi_and_separators():
    out = io.StringIO()
    log = cli.JsonLogger(out)
    log("info", "download.start", url=BIDI_AND_C1, name="caf\u00e9 \u4e2d")
    line = out.getvalue()
    for c in "\u202e\u2066\u0085\u009b\u2028\ud800":
        assert c not in line
    assert "caf\u00e9 \u4e2d" in line  # ordinary letters stay readable
    assert records(out)[0]["url"] == BIDI_AND_C1  # the JSON still says exactly what it was
    line.encode("utf-8")  # a lone surrogate can no longer make the write fail


def test_status_escapes_cloud_strings_and_survives_bad_numbers(tmp_path, capsys):
    path = write_config(tmp_path)
    state = agentstate.new_state(1700000000)
    state["active"]["cam"] = dict(
        name="detector", version="1.0", sha1="a" * 40, s3url=BIDI_AND_C1,
        deployment="d1", path="/m/cam", size=5, activated=1700000000,
    )
    state["last_result"] = {
        "DeploymentName": "d\u202e1",
        "DeploymentStatus": "FAIL",
        "DeploymentStatusMessage": "bad \u009b2J url " + BIDI_AND_C1 + "\nsecond line",
        "DeploymentEndTime": 1700000200,
        "DeploymentModels": [{"ModelHandle": "cam", "Status": "FAIL", "StatusReason": "\u202e"}],
    }
    state["clock_offset"] = 253402300799  # learnt from "Date: 31 Dec 9999" before the fix
    state["last_heartbeat"] = 1e300
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.json").write_bytes(agentstate.dumps(state))
    assert cli.main(["status", "--config", path]) == 0
    out = capsys.readouterr().out
    for c in "\u202e\u2066\u0085\u009b\u2028\ud800":
        assert c not in out
    assert "\\u202e" in out and "\\u000asecond line" in out
    assert "last heartbeat: never" in out
    assert "reset on load" in out and "clock_offset" in out and "last_heartbeat" in out
    assert cli.main(["status", "--config", path, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["repaired"] == ["clock_offset", "last_heartbeat"]


def test_status_into_a_closed_pipe_is_quiet(tmp_path):
    import subprocess
    import sys

    path = write_config(tmp_path)
    state = agentstate.new_state(1700000000)
    state["pending"] = [
        {"DeploymentName": "d%d" % i, "DeploymentModels": []} for i in range(20000)
    ]
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.json").write_bytes(agentstate.dumps(state))
    for extra in ([], ["--json"]):
        proc = subprocess.run(
            "%s -m edgecore_tools.cli status --config %s %s | head -c 10"
            % (sys.executable, path, " ".join(extra)),
            shell=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert len(proc.stdout) == 10
        assert "BrokenPipeError" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_version(capsys):
    import edgecore

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == "edgecore " + edgecore.__version__


def test_ctrl_c_outside_the_service_loop_exits_130(tmp_path, capsys, monkeypatch):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_status", interrupted)
    assert cli.main(["status", "--config", write_config(tmp_path)]) == 130
    assert capsys.readouterr().err == "edgecore: interrupted\n"
