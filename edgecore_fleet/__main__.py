"""edgecore-fleet: run and administer a fleet server.

    edgecore-fleet serve [--config FILE] [--database URL] [--bind HOST:PORT] [--workers N]
    edgecore-fleet migrate [--config FILE]           # schema to the newest revision
    edgecore-fleet create-key --admin                # a control-plane key (boto3 sagemaker)
    edgecore-fleet create-key --device NAME          # a key scoped to one device
    edgecore-fleet import-key --device NAME --access-key-id ID   (secret on stdin)
    edgecore-fleet keys                              # list keys (no secrets)
    edgecore-fleet delete-key ACCESS_KEY_ID
    edgecore-fleet config [--config FILE]            # the effective settings, secrets hidden
    edgecore-fleet prune --keep-days N               # delete older heartbeats (e.g. daily)
    edgecore-fleet serve-iot [--config FILE]         # the IoT credentials endpoint (mTLS)
    edgecore-fleet iot-attach --thing T --device D --cert cert.pem   # (iot-detach: undo)

Fleets, devices, registered models and rollouts are managed through the control plane
(``boto3.client("sagemaker", endpoint_url=...)`` with an admin key). ``import-key``
records an existing key pair for a device, e.g. the MinIO or IAM user whose key also
reads the artifacts, so one key signs both APIs as on AWS. Settings: ``config`` module.
"""

import argparse
import json
import os
import secrets
import sys

from . import config as fleet_config
from .errors import ApiError

try:
    import gunicorn  # noqa: F401
    import psycopg  # noqa: F401
    import sqlalchemy  # noqa: F401
except ImportError as _missing:  # installed without the server's dependencies
    sys.exit("edgecore-fleet needs the [fleet] extra (%s): pip install 'edgecore[fleet]'"
             % _missing)


def _store(config):
    from .store import Store

    return Store.open(config["database"]).migrate()


def cmd_serve(args, config):
    from .serve import serve

    return serve(config)


def cmd_migrate(args, config):
    store = _store(config)
    print(json.dumps({"database": store.url, "revision": store.revision()}))
    store.close()
    return 0


def cmd_create_key(args, config):
    if args.admin == bool(args.device):
        raise fleet_config.ConfigError("create-key: give exactly one of --admin, --device")
    akid = ("AKIA" if args.admin else "AKID") + secrets.token_hex(8).upper()
    secret = secrets.token_urlsafe(30)[:40]
    _add_key(config, args, akid, secret)
    print(json.dumps({"access_key_id": akid, "secret_access_key": secret,
                      "role": "admin" if args.admin else "device", "device": args.device}))
    return 0


def cmd_import_key(args, config):
    secret = sys.stdin.readline().strip()
    if not secret:
        raise fleet_config.ConfigError("import-key: give the secret access key on stdin")
    _add_key(config, args, args.access_key_id, secret)
    print(json.dumps({"access_key_id": args.access_key_id, "device": args.device}))
    return 0


def _add_key(config, args, akid, secret):
    from .validate import check_name

    if args.device:
        check_name(args.device, "--device", "DeviceName")
    store = _store(config)
    try:
        store.add_key(akid, secret, device=args.device or None,
                      role="admin" if getattr(args, "admin", False) else "device")
    finally:
        store.close()


def cmd_keys(args, config):
    store = _store(config)
    print(json.dumps(store.keys(), indent=2))
    store.close()
    return 0


def cmd_delete_key(args, config):
    store = _store(config)
    n = store.delete_key(args.access_key_id)
    store.close()
    if not n:
        raise fleet_config.ConfigError("delete-key: no such key %s" % args.access_key_id)
    return 0


def cmd_serve_iot(args, config):
    from .serve import serve_iot

    return serve_iot(config)


def _cert_fingerprint(path):
    import ssl

    from .iot import fingerprint

    try:
        with open(path) as f:
            return fingerprint(ssl.PEM_cert_to_DER_cert(f.read()))
    except (OSError, ValueError) as exc:
        raise fleet_config.ConfigError("--cert %s: not a PEM certificate (%s)"
                                       % (path, exc)) from None


def cmd_iot_attach(args, config):
    from .iot import THING
    from .validate import check_name

    if not THING.fullmatch(args.thing):
        raise fleet_config.ConfigError("--thing: expected 1-128 of [a-zA-Z0-9:_-]")
    check_name(args.device, "--device", "DeviceName")
    fp = _cert_fingerprint(args.cert)
    store = _store(config)
    try:
        store.attach_certificate(args.thing, fp, args.device)
    finally:
        store.close()
    print(json.dumps({"thing": args.thing, "device": args.device, "fingerprint": fp}))
    return 0


def cmd_iot_detach(args, config):
    fp = _cert_fingerprint(args.cert)
    store = _store(config)
    try:
        store.detach_certificate(args.thing, fp)
    finally:
        store.close()
    return 0


def cmd_prune(args, config):
    import time

    store = _store(config)
    try:
        n = store.prune_heartbeats(time.time() - args.keep_days * 86400)
    finally:
        store.close()
    print(json.dumps({"heartbeats_deleted": n}))
    return 0


def cmd_config(args, config):
    print(json.dumps(fleet_config.redacted(config), indent=2, sort_keys=True))
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="edgecore-fleet",
                                description="A self-hosted SageMaker Edge Manager control "
                                            "plane.")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name, func, help_):
        c = sub.add_parser(name, help=help_)
        c.add_argument("--config", help="JSON settings file (see edgecore_fleet.config)")
        c.add_argument("--database", help="SQLite path or postgresql:// URL")
        c.set_defaults(func=func)
        return c

    c = command("serve", cmd_serve, "run the server (gunicorn)")
    c.add_argument("--bind", help="host:port[,host:port]")
    c.add_argument("--workers", type=int)
    c.add_argument("--threads", type=int)
    command("migrate", cmd_migrate, "migrate the schema to the newest revision")
    c = command("create-key", cmd_create_key, "create an access key (prints the secret)")
    c.add_argument("--admin", action="store_true", help="for the control plane")
    c.add_argument("--device", help="the device the key acts for")
    c = command("import-key", cmd_import_key, "record an existing key pair for a device")
    c.add_argument("--device", required=True)
    c.add_argument("--access-key-id", required=True)
    command("keys", cmd_keys, "list access keys (no secrets)")
    c = command("delete-key", cmd_delete_key, "delete an access key")
    c.add_argument("access_key_id")
    command("config", cmd_config, "print the effective settings (secrets hidden)")
    c = command("prune", cmd_prune, "delete heartbeats older than --keep-days (results, "
                "devices' latest state and rollout progress are kept)")
    c.add_argument("--keep-days", type=float, required=True)
    command("serve-iot", cmd_serve_iot, "run the IoT credentials endpoint (mutual TLS)")
    for name, func, help_ in (("iot-attach", cmd_iot_attach, "attach a device certificate "
                               "to a thing mapped to a device"),
                              ("iot-detach", cmd_iot_detach, "detach a certificate")):
        c = command(name, func, help_)
        c.add_argument("--thing", required=True)
        c.add_argument("--cert", required=True, help="the device's PEM certificate")
        if name == "iot-attach":
            c.add_argument("--device", required=True)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    overrides = {"database": args.database}
    for name in ("bind", "workers", "threads"):
        overrides[name] = getattr(args, name, None)
    try:
        config = fleet_config.load(args.config, overrides=overrides)
        return args.func(args, config)
    except fleet_config.ConfigError as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    except ApiError as exc:  # a name the model does not allow
        print("error: %s" % exc.message, file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `keys | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
