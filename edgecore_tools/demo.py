"""The README's main command: python -m edgecore_tools.demo

On a fresh machine, with no AWS account: start the local cloud (the edgecore fleet
server embedded, SigV4 checked on every request) and the S3 stand-in (moto, signatures checked) in a
temporary directory, register device "demo-device" in fleet "demo-fleet", generate a
small model, deploy it, write the agent's config and run ``edgecore run --once`` until
the model is active on disk and the cloud has received a heartbeat whose
DeploymentResult says SUCCESS. Then print what happened. Then the application's side:
start the agent's service loop, and, as an application on its local API socket would,
list the models, record an inference and capture one input/output pair, wait until the
agent has uploaded it and show it arriving in the cloud's S3 (``captures/...``), then
stop the agent with SIGTERM. Exits non-zero, saying why, if
any step fails; Ctrl-C (or SIGTERM) stops everything it started, removes its temporary
directory and exits 130 without a traceback. Needs no Node.js (only the tests'
MicroPython runner does).
"""

import argparse
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

DEVICE = "demo-device"
FLEET = "demo-fleet"
HANDLE = "demo-model"
MODEL_NAME = "demo-model"
MODEL_VERSION = "1.0"
AGENT_MODULE = "edgecore_tools.cli"
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class DemoFailed(Exception):
    pass


def step(text):
    sys.stderr.write("demo: %s\n" % text)
    sys.stderr.flush()


def generate_model(path, size):
    """A deterministic pseudo-random 'model' of `size` bytes; returns its SHA1."""
    block = hashlib.sha256(b"edgecore demo model").digest()
    out = bytearray(b"EDGECORE-DEMO-MODEL v1\n")
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    data = bytes(out[:size])
    with open(path, "wb") as f:
        f.write(data)
    return hashlib.sha1(data).hexdigest()


def prepare(workdir, model_size=64 * 1024, s3=None):
    """Cloud side of the demo: start, register, deploy, write the agent config.

    Returns (cloud, deployment, config_path). The caller stops the cloud.
    """
    from edgecore_tools.localcloud import LocalCloud

    cloud = LocalCloud.start(os.path.join(workdir, "cloud"), s3=s3, device=DEVICE, fleet=FLEET)
    try:
        model_path = os.path.join(workdir, "model.bin")
        generate_model(model_path, model_size)
        deployment = cloud.deploy(
            handle=HANDLE, model_name=MODEL_NAME, model_version=MODEL_VERSION,
            path=model_path, policy="ROLLBACK_ON_FAILURE",
        )
        config = cloud.agent_config(
            os.path.join(workdir, "device", "models"),
            os.path.join(workdir, "device", "state"),
            heartbeat_interval=5,
            board="linux",
            capture_s3_uri=cloud.capture_s3_uri,
            capture_push_interval=1,
        )
        config_path = os.path.join(workdir, "device", "agent.json")
        os.makedirs(os.path.dirname(config_path), exist_ok=True)
        fd = os.open(config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # has a secret
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, indent=2)
    except BaseException:
        cloud.stop()
        raise
    return cloud, deployment, config_path


def find_active_model(model_dir, handle, sha1):
    """The file under model_dir/<handle>/ whose SHA1 is `sha1`, or None."""
    root = os.path.join(model_dir, handle)
    for dirpath, _, files in os.walk(root):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            h = hashlib.sha1()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 16), b""):
                    h.update(chunk)
            if h.hexdigest() == sha1:
                return path
    return None


def successful_heartbeat(cloud, deployment_name, handle):
    """The first received heartbeat reporting SUCCESS for the deployment, or None."""
    for hb in cloud.heartbeats(DEVICE):
        result = hb["body"].get("DeploymentResult") or {}
        if result.get("DeploymentName") != deployment_name:
            continue
        models = [m for m in result.get("DeploymentModels", []) if m.get("ModelHandle") == handle]
        if result.get("DeploymentStatus") == "SUCCESS" or (
            models and all(m.get("Status") == "SUCCESS" for m in models)
        ):
            return hb
    return None


def agent_env():
    """The agent gets its credentials from the config only: no stray AWS settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    env["AWS_CONFIG_FILE"] = os.devnull
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, os.environ.get("PYTHONPATH")) if p)
    return env


def run_agent(config_path, max_runs, is_done, agent_cmd=None, timeout=300):
    """Run `edgecore run --config FILE --once` until is_done() or max_runs; returns
    (runs, last CompletedProcess)."""
    cmd = list(agent_cmd or [sys.executable, "-m", AGENT_MODULE])
    cmd += ["run", "--config", config_path, "--once"]
    last = None
    for run in range(1, max_runs + 1):
        step("agent run %d/%d: %s" % (run, max_runs, " ".join(cmd[-5:])))
        try:
            last = subprocess.run(cmd, env=agent_env(), capture_output=True, text=True,
                                  timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise DemoFailed("the agent did not finish a cycle within %ss" % timeout) from e
        if last.returncode != 0:
            step("agent exited %d; last log lines:\n%s" % (last.returncode, _tail(last.stderr)))
        if is_done():
            return run, last
    return max_runs, last


def _tail(text, lines=15):
    return "\n".join("    " + line for line in (text or "").strip().splitlines()[-lines:])


def report(cloud, deployment, model_path, heartbeat, runs):
    definition = deployment["Definitions"][0]
    with open(model_path, "rb") as f:
        size = len(f.read())
    lines = [
        "",
        "edgecore demo: SUCCESS -- the model is active and the cloud saw the result",
        "  device:       %s (fleet %s)" % (DEVICE, FLEET),
        "  endpoint:     %s  (edgecore fleet server, every request's SigV4 checked)"
        % cloud.endpoint_url,
        "  S3 stand-in:  %s  (moto, signatures checked)" % cloud.s3_endpoint_url,
        "  deployment:   %s, %s" % (deployment["DeploymentName"],
                                   deployment["FailureHandlingPolicy"]),
        "  model:        handle %s, name %s, version %s" % (
            definition["ModelHandle"], definition["ModelName"], definition["ModelVersion"]),
        "  reported:     %s" % reported_model(heartbeat["body"], definition),
        "  artifact:     %s (%d bytes)" % (definition["S3Url"], size),
        "  checksum:     %s %s (verified on disk)" % (
            definition["Checksum"]["Type"], definition["Checksum"]["Sum"]),
        "  active model: %s" % model_path,
        "  agent runs:   %d x `edgecore run --once`" % runs,
        "  heartbeat received at %s UTC:" % time.strftime(
            "%Y-%m-%d %H:%M:%S", time.gmtime(heartbeat["received"])),
    ]
    body = heartbeat["body"]
    lines.append("    AgentVersion %s, device %s, fleet %s" % (
        body.get("AgentVersion"), body.get("DeviceName"), body.get("DeviceFleetName")))
    for metric in body.get("AgentMetrics") or []:
        lines.append("    metric %s/%s = %s" % (
            metric.get("Dimension"), metric.get("MetricName"), _number(metric.get("Value"))))
    for model in body.get("Models") or []:
        lines.append("    model %s" % json.dumps(model, sort_keys=True))
    lines.append("    DeploymentResult:")
    result = json.dumps(body.get("DeploymentResult"), indent=2, sort_keys=True)
    lines += ["      " + line for line in result.splitlines()]
    print("\n".join(lines))


CAPTURE_ID = "demo-capture-0001"


def run_application(cloud, config_path, timeout=60):
    """The application's side (see the module doc); prints what arrived in S3."""
    from edgecore_ports.app import AppClient, tensor
    from edgecore_ports.appconfig import api_socket_path

    with open(config_path) as f:
        sock = api_socket_path(json.load(f))
    cmd = [sys.executable, "-m", AGENT_MODULE, "run", "--config", config_path]
    step("the application's side: `edgecore run` serves the local API on %s" % sock)
    agent = subprocess.Popen(cmd, env=agent_env(), stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        api = AppClient(sock, timeout=10)
        end = time.monotonic() + timeout
        models = None
        while models is None:
            try:
                models = api.list_models()["Models"]
            except OSError:
                if agent.poll() is not None or time.monotonic() > end:
                    raise DemoFailed("the agent's local API did not answer on %s" % sock) from None
                time.sleep(0.1)
        step("ListModels: %s" % ", ".join("%s at %s" % (m["ModelHandle"], m["Path"])
                                          for m in models))
        api.record_inference(HANDLE, latency_ms=12.5)
        frame = bytes(range(16))
        api.capture_data(HANDLE, CAPTURE_ID, inputs=[tensor("frame", frame, "uint8", [4, 4])],
                         outputs=[{"name": "scores", "json": {"class": 3, "p": 0.91}}])
        step("RecordInference and CaptureData sent; waiting for the upload")
        while api.get_capture_data_status(CAPTURE_ID)["Status"] != "SUCCESS":
            if time.monotonic() > end:
                raise DemoFailed("capture %s not uploaded within %ss" % (CAPTURE_ID, timeout))
            time.sleep(0.2)
        api.close()
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
        try:
            _, err = agent.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            agent.kill()
            _, err = agent.communicate()
    if agent.returncode != 0:
        raise DemoFailed("the agent exited %d after SIGTERM:\n%s" % (agent.returncode,
                                                                     _tail(err)))
    (obj,) = [o for o in cloud.captures(DEVICE) if any(
        r.get("captureId") == CAPTURE_ID for r in o["records"])]
    (record,) = obj["records"]
    print("\n".join([
        "",
        "edgecore demo: the application's capture arrived in S3",
        "  object:       s3://%s/%s (%d bytes, JSON Lines)" % (cloud.bucket, obj["key"],
                                                              obj["bytes"]),
        "  record:       %s" % json.dumps(record, sort_keys=True),
    ]))


def reported_model(body, definition):
    """What the cloud recorded from the device's heartbeat for the deployed model: its
    name and version there (the agent reads them from the artifact's S3 metadata, which
    the cloud's deploy sets), compared with what was deployed."""
    for model in body.get("Models") or []:
        if model.get("ModelName") == definition["ModelName"]:
            version = model.get("ModelVersion")
            same = version == definition["ModelVersion"]
            return "name %s, version %s (heartbeat Models%s)" % (
                model["ModelName"], version, "" if same else "; NOT the deployed version")
    return "the heartbeat lists no model named %s" % definition["ModelName"]


def _number(value):
    if isinstance(value, float):
        return "%d" % value if value.is_integer() else "%.2f" % value
    return str(value)


def check_agent_installed():
    if importlib.util.find_spec(AGENT_MODULE) is None:
        raise DemoFailed("the agent CLI (%s) is not installed" % AGENT_MODULE)


def run_demo(workdir, max_runs=5, model_size=64 * 1024, agent_cmd=None, s3=None):
    """The whole demo; raises DemoFailed. s3: a running MotoS3 to reuse (tests)."""
    if agent_cmd is None:
        check_agent_installed()
    step("starting the local cloud and the S3 stand-in in %s" % workdir)
    cloud, deployment, config_path = prepare(workdir, model_size, s3=s3)
    try:
        definition = deployment["Definitions"][0]
        sha1 = definition["Checksum"]["Sum"]
        with open(config_path) as f:
            model_dir = json.load(f)["model_dir"]
        step("deployed %s v%s as %s (%s)" % (definition["ModelName"], definition["ModelVersion"],
                                             deployment["DeploymentName"], definition["S3Url"]))

        def is_done():
            return (find_active_model(model_dir, HANDLE, sha1) is not None
                    and successful_heartbeat(cloud, deployment["DeploymentName"], HANDLE)
                    is not None)

        runs, last = run_agent(config_path, max_runs, is_done, agent_cmd)
        model_path = find_active_model(model_dir, HANDLE, sha1)
        heartbeat = successful_heartbeat(cloud, deployment["DeploymentName"], HANDLE)
        if model_path is None or heartbeat is None:
            missing = []
            if model_path is None:
                missing.append("no file with SHA1 %s under %s" % (
                    sha1, os.path.join(model_dir, HANDLE)))
            if heartbeat is None:
                got = [hb["body"].get("DeploymentResult") for hb in cloud.heartbeats(DEVICE)]
                missing.append("no heartbeat with a SUCCESS DeploymentResult for %s "
                               "(results received: %s)" % (deployment["DeploymentName"],
                                                          json.dumps(got)))
            detail = ""
            if last is not None:
                detail = "\nlast agent exit code %d, log tail:\n%s" % (
                    last.returncode, _tail(last.stderr))
            raise DemoFailed("after %d agent runs: %s%s" % (runs, "; ".join(missing), detail))
        report(cloud, deployment, model_path, heartbeat, runs)
        if agent_cmd is None:  # the real agent: its local API too
            run_application(cloud, config_path)
    finally:
        cloud.stop()


def start_s3():
    """The S3 stand-in (a child process), started with SIGINT blocked: a child inherits
    the mask, so a Ctrl-C in the terminal reaches only the demo, which then stops the
    child itself (instead of the child dying with a traceback of its own)."""
    from edgecore_tools.localcloud import MotoS3

    old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])
    try:
        return MotoS3.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)  # a Ctrl-C meanwhile arrives now


def _interrupt(signum, frame):
    raise KeyboardInterrupt  # SIGTERM: the same clean stop as Ctrl-C


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m edgecore_tools.demo",
        description="Deploy a generated model to a local device through a local cloud.")
    ap.add_argument("--workdir", help="keep everything here (default: a temp dir, removed)")
    ap.add_argument("--max-runs", type=int, default=5, help="agent --once runs to try")
    ap.add_argument("--model-size", type=int, default=64 * 1024)
    args = ap.parse_args(argv)
    try:
        check_agent_installed()
    except DemoFailed as e:
        sys.stderr.write("demo FAILED: %s\n" % e)
        return 1
    signal.signal(signal.SIGTERM, _interrupt)
    workdir = None
    s3 = None
    try:
        workdir = args.workdir or tempfile.mkdtemp(prefix="edgecore-demo-")
        s3 = start_s3()
        run_demo(workdir, args.max_runs, args.model_size, s3=s3)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C: cleanup goes on
        sys.stderr.write("demo: interrupted; stopped the local cloud\n")
        if args.workdir is None and workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)  # it holds the device's agent.json
        return 130
    except DemoFailed as e:
        sys.stderr.write("demo FAILED: %s\n" % e)
        if args.workdir is None:
            sys.stderr.write("(files kept in %s)\n" % workdir)
        return 1
    except Exception as e:
        sys.stderr.write("demo FAILED: %s: %s\n" % (type(e).__name__, e))
        return 1
    finally:
        if s3 is not None:
            s3.stop()
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
