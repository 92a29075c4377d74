"""Run the edgecore agent as an AWS IoT Greengrass v2 component (the recipe's Run step).

The recipe turns the component configuration into ``EDGECORE_*`` variables (``setEnv``);
this writes ``agent.json`` into the component's work folder (mode 0600) and replaces
itself with ``edgecore run --config agent.json``. Defaults from what the nucleus gives
every component: the device name is ``AWS_IOT_THING_NAME``, the region
``AWS_DEFAULT_REGION`` / ``AWS_REGION``; models and state live under the work folder.
``ExtraConfig`` (a JSON object) adds any other agent.json key (``endpoint_url``,
``s3_endpoint_url``, ``proxy`` ...), but no ``credentials``: the agent takes them from
the token exchange service (``AWS_CONTAINER_CREDENTIALS_FULL_URI`` +
``AWS_CONTAINER_AUTHORIZATION_TOKEN``, which the nucleus sets for a component that
depends on ``aws.greengrass.TokenExchangeService``), the container provider of
edgecore's credential chain.

A configuration the agent cannot start with exits 78 (EX_CONFIG) with a message on
stderr; ``--once`` (tests) runs one cycle. CPython, standard library plus edgecore.
"""

import json
import os
import sys

EX_CONFIG = 78


class ComponentConfigError(Exception):
    """The component configuration cannot make an agent configuration."""


def agent_config(environ, work_dir):
    """The agent config dict for the ``EDGECORE_*`` / Greengrass variables in ``environ``."""
    from edgecore_ports.awsconfig import SharedConfig

    def value(name):
        return (environ.get(name) or "").strip()

    device = value("EDGECORE_DEVICE_NAME") or value("AWS_IOT_THING_NAME")
    fleet = value("EDGECORE_FLEET_NAME")
    region = value("EDGECORE_REGION") or SharedConfig(environ).region()
    for key, got in (("DeviceName", device), ("FleetName", fleet), ("Region", region)):
        if not got:
            raise ComponentConfigError(
                "%s is not set: give it in the component configuration%s" % (
                    key, {"DeviceName": " (default: the thing name, AWS_IOT_THING_NAME)",
                          "Region": " (default: the nucleus's AWS_REGION)"}.get(key, "")))
    try:
        extra = json.loads(value("EDGECORE_EXTRA_CONFIG") or "{}")
    except ValueError:
        extra = None
    if not isinstance(extra, dict):
        raise ComponentConfigError("ExtraConfig must be a JSON object of agent.json keys")
    if "credentials" in extra:
        raise ComponentConfigError(
            "ExtraConfig must not hold credentials: the agent gets them from the token "
            "exchange service (keys in a deployment would be readable by anyone who can "
            "see it)")
    interval = value("EDGECORE_HEARTBEAT_INTERVAL") or "60"
    try:
        interval = float(interval) if "." in interval else int(interval)
    except ValueError:
        raise ComponentConfigError("HeartbeatInterval must be a number of seconds") from None
    config = dict(extra)
    config.update({
        "device_name": device,
        "fleet_name": fleet,
        "region": region,
        "model_dir": os.path.abspath(value("EDGECORE_MODEL_DIR")
                                     or os.path.join(work_dir, "models")),
        "state_dir": os.path.abspath(value("EDGECORE_STATE_DIR")
                                     or os.path.join(work_dir, "state")),
        "heartbeat_interval": interval,
    })
    return config


def write_config(config, path):
    """agent.json, 0600 (it names endpoints and a proxy, maybe with a password), atomically."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    work_dir = os.getcwd()
    try:
        config = agent_config(os.environ, work_dir)
    except ComponentConfigError as exc:
        sys.stderr.write("edgecore component: %s\n" % exc)
        return EX_CONFIG
    path = os.path.join(work_dir, "agent.json")
    write_config(config, path)
    cmd = [sys.executable, "-m", "edgecore_tools.cli", "run", "--config", path]
    if "--once" in argv:
        cmd.append("--once")
    sys.stdout.flush()
    os.execv(sys.executable, cmd)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
