"""Admin CLI of the local cloud: python -m edgecore_tools.localcloud COMMAND --db FILE ...

The fleet server (``edgecore_fleet``) embedded, its state in the SQLite file --db, with
moto's S3 beside it. For a fleet server of your own, see ``edgecore-fleet``.

serve        run the fleet server (device API, control plane, dashboard) + moto S3 until
             interrupted (--iot: and the AWS IoT credentials endpoint, mutual TLS, its PKI
             in <db dir>/iot-pki)
provision-thing  issue a device certificate for an IoT thing mapped to a device
add-device   register a device in a fleet
create-key   create an access key (valid for S3 too while `serve` runs; --admin: for the
             control plane); prints JSON
deploy       upload a model file to the S3 stand-in and create a deployment
deployments  list deployments
heartbeats   list received heartbeats
results      list deployment results received in heartbeats
captures     list the captured data devices uploaded (their capture_s3_uri: the
             bucket's captures/ prefix), batch by batch (needs `serve` running)
"""

import argparse
import json
import os
import signal
import sys
import time

try:
    from edgecore_fleet.store import Store

    from . import admin
    from .iot import DEFAULT_ROLE_ALIAS
except ImportError as _missing:  # a device's venv: the agent without the local cloud
    sys.exit("edgecore-localcloud needs the [localcloud] extra (%s): "
             "pip install 'edgecore[localcloud]'" % _missing)

DEFAULT_BUCKET = "edgecore-models"


def _print(obj, compact=False):
    if compact:
        print(json.dumps(obj, sort_keys=True))
    else:
        print(json.dumps(obj, indent=2, sort_keys=True))


def _attached_s3(db):
    from .s3 import MotoS3

    info = db.get_setting("s3")
    if info is None:
        raise admin.AdminError("no S3 stand-in: start `serve --db %s` first" % _db_path(db))
    return MotoS3.attach(
        info["endpoint_url"], info["region"], info["admin_access_key"], info["admin_secret_key"]
    )


def _db_path(db):
    return db.engine.url.database


def _iot_pki_dir(db):
    return os.path.join(os.path.dirname(os.path.abspath(_db_path(db))), "iot-pki")


def _start_iot(args, db, s3):
    """The IoT credentials endpoint of `serve --iot`; returns it and the lines to print."""
    import types

    from .iot import IotCredentialsEndpoint, Pki

    hosts = tuple(dict.fromkeys([args.host, "127.0.0.1", "localhost"]))
    pki = Pki.open(_iot_pki_dir(db), hosts=hosts)
    # What the endpoint needs of a LocalCloud: things map to devices named explicitly.
    cloud = types.SimpleNamespace(db=db, s3=s3, server=types.SimpleNamespace(clock=time.time),
                                  device_name=None, bucket=args.bucket)
    iot = IotCredentialsEndpoint.start(cloud, pki=pki, role_alias=args.role_alias,
                                       host=args.host, port=args.iot_port)
    info = {"iot_url": iot.url, "iot_ca": pki.ca_path, "iot_role_alias": iot.role_alias}
    db.set_setting("iot", dict(info, iot_host=iot.host, iot_port=iot.port))
    howto = [
        "IoT credentials endpoint: %s (mutual TLS; CA %s, role alias %s)"
        % (iot.url, pki.ca_path, iot.role_alias),
        "provision a thing for a device (prints its certificate, key and the agent's "
        '"iot" config):',
        "  python -m edgecore_tools.localcloud add-device --db %s --device DEV --fleet FLEET"
        % _db_path(db),
        "  python -m edgecore_tools.localcloud provision-thing --db %s --thing THING "
        "--device DEV" % _db_path(db),
    ]
    return iot, info, howto


def cmd_serve(args, db):
    from edgecore_fleet.app import FleetApp
    from edgecore_fleet.embedded import EmbeddedServer

    from .s3 import MotoS3

    def stop_on_term(signum, frame):
        raise KeyboardInterrupt  # SIGTERM (service managers, background jobs): clean stop

    signal.signal(signal.SIGTERM, stop_on_term)
    os.chmod(_db_path(db), 0o600)  # it will hold the S3 stand-in's admin secret
    started = time.monotonic()
    s3 = MotoS3.start(region=args.region, port=args.s3_port)
    server = iot = None
    try:
        app = FleetApp(db, region=args.region, s3=s3.fleet_client())
        server = EmbeddedServer(app, host=args.host, port=args.port).start()
        iot_info, howto = {}, []
        if args.iot:
            iot, iot_info, howto = _start_iot(args, db, s3)
        s3.ensure_bucket(args.bucket)
        db.set_setting("s3", s3.connection_info())
        db.set_setting("bucket", args.bucket)
        db.set_setting("endpoint_url", server.url)
        restored = admin.reupload_blobs(db, s3)
        _print(dict({
            "endpoint_url": server.url,
            "s3_endpoint_url": s3.endpoint_url,
            "region": args.region,
            "bucket": args.bucket,
            "artifacts_restored": restored,
            "startup_seconds": round(time.monotonic() - started, 2),
        }, **iot_info), compact=True)
        for line in howto:
            print(line)
        sys.stdout.flush()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        db.set_setting("s3", None)
        if iot is not None:
            db.set_setting("iot", None)
            iot.stop()
        if server is not None:
            server.stop()
        s3.stop()
    return 0


def cmd_provision_thing(args, db):
    from .iot import Pki, cert_fingerprint

    info = db.get_setting("iot")
    if info is None:
        raise admin.AdminError("no IoT endpoint: start `serve --iot --db %s` first"
                               % _db_path(db))
    if db.device(args.device) is None:
        raise admin.AdminError("provision-thing: unknown device %r (add-device first)"
                               % args.device)
    try:
        cert, key = Pki.load(_iot_pki_dir(db)).device(args.thing)
    except ValueError as exc:
        raise admin.AdminError("provision-thing: %s" % exc) from None
    db.attach_certificate(args.thing, cert_fingerprint(cert), args.device)
    _print({
        "thing": args.thing,
        "device": args.device,
        "cert": cert,
        "key": key,
        "iot": {
            "endpoint": info["iot_host"],
            "port": info["iot_port"],
            "role_alias": info["iot_role_alias"],
            "thing_name": args.thing,
            "cert": cert,
            "key": key,
            "ca": info["iot_ca"],
        },
    })
    return 0


def cmd_add_device(args, db):
    _print(admin.add_device(db, args.device, args.fleet))
    return 0


def cmd_create_key(args, db):
    if args.admin and args.device:
        raise admin.AdminError("create-key: --admin keys belong to no device")
    s3 = None if args.edge_only or args.admin else _attached_s3(db)
    _print(admin.create_key(db, s3, device=args.device, temporary=args.temporary,
                            expires_in=args.expires_in, admin=args.admin,
                            capture_bucket=db.get_setting("bucket", DEFAULT_BUCKET)))
    return 0


def cmd_deploy(args, db):
    if not args.undeploy and not args.file:
        raise admin.AdminError("deploy: --file is required unless --undeploy")
    s3 = None if args.undeploy else _attached_s3(db)
    bucket = db.get_setting("bucket", DEFAULT_BUCKET)
    blob_dir = os.path.join(os.path.dirname(os.path.abspath(_db_path(db))), "blobs")
    _print(admin.deploy(
        db, s3, bucket, args.handle, args.model_name, args.model_version, path=args.file,
        device=args.device, fleet=args.fleet, policy=args.policy, undeploy=args.undeploy,
        name=args.name, blob_dir=blob_dir, signing_key=args.signing_key,
    ))
    return 0


def cmd_deployments(args, db):
    _print(db.deployments(active_only=not args.all))
    return 0


def cmd_heartbeats(args, db):
    _print(db.heartbeats(args.device))
    return 0


def cmd_results(args, db):
    _print(db.results(args.device))
    return 0


def cmd_captures(args, db):
    s3 = _attached_s3(db)
    _print(s3.captures(db.get_setting("bucket", DEFAULT_BUCKET), args.device, args.data))
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="python -m edgecore_tools.localcloud",
                                description="Local SageMaker Edge Manager stand-in.")
    sub = p.add_subparsers(dest="command", required=True)

    def command(name, func, help_):
        c = sub.add_parser(name, help=help_)
        c.add_argument("--db", required=True, help="SQLite file with the fleet state")
        c.set_defaults(func=func)
        return c

    c = command("serve", cmd_serve, "run the endpoint and the S3 stand-in")
    c.add_argument("--host", default="127.0.0.1")
    c.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    c.add_argument("--s3-port", type=int, default=0, help="port of the S3 stand-in")
    c.add_argument("--region", default="us-west-2")
    c.add_argument("--bucket", default=DEFAULT_BUCKET)
    c.add_argument("--iot", action="store_true",
                   help="also serve the AWS IoT credentials endpoint (mutual TLS)")
    c.add_argument("--iot-port", type=int, default=0, help="0: any free port (printed)")
    c.add_argument("--role-alias", default=DEFAULT_ROLE_ALIAS)

    c = command("provision-thing", cmd_provision_thing,
                "issue a device certificate for a thing (needs `serve --iot`)")
    c.add_argument("--thing", required=True, help="IoT thing name (x-amzn-iot-thingname)")
    c.add_argument("--device", required=True, help="the Edge Manager device it acts as")

    c = command("add-device", cmd_add_device, "register a device")
    c.add_argument("--device", required=True)
    c.add_argument("--fleet", required=True)

    c = command("create-key", cmd_create_key, "create an access key (prints the secret)")
    c.add_argument("--device")
    c.add_argument("--temporary", action="store_true", help="with a session token")
    c.add_argument("--expires-in", type=float, help="seconds until ExpiredTokenException")
    c.add_argument("--edge-only", action="store_true", help="not valid for S3; no serve needed")
    c.add_argument("--admin", action="store_true",
                   help="a control-plane key (boto3's sagemaker client), no device")

    c = command("deploy", cmd_deploy, "deploy a model file to a device or a fleet")
    target = c.add_mutually_exclusive_group(required=True)
    target.add_argument("--device")
    target.add_argument("--fleet")
    c.add_argument("--handle", required=True)
    c.add_argument("--model-name", required=True)
    c.add_argument("--model-version", required=True)
    c.add_argument("--file")
    c.add_argument("--policy", default="ROLLBACK_ON_FAILURE", choices=admin.POLICIES)
    c.add_argument("--undeploy", action="store_true")
    c.add_argument("--name", help="deployment name (default: generated)")
    c.add_argument("--signing-key", help="PEM private key (Ed25519 or ECDSA P-256): also "
                   "upload the artifact's detached signature as <key>.sig")

    # Listing commands (deployments, heartbeats, results; captured data goes here too).
    c = command("deployments", cmd_deployments, "list deployments")
    c.add_argument("--all", action="store_true", help="include superseded/cancelled")
    for name, func in (("heartbeats", cmd_heartbeats), ("results", cmd_results)):
        c = command(name, func, "list " + name)
        c.add_argument("--device")
    c = command("captures", cmd_captures, "list uploaded captures (needs `serve` running)")
    c.add_argument("--device")
    c.add_argument("--data", action="store_true", help="each record's captureData too")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    db = Store.open(args.db).migrate()
    try:
        return args.func(args, db)
    except admin.AdminError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `heartbeats | head`: the reader had enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(main())
