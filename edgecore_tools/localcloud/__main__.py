"""Admin CLI of the local cloud: python -m edgecore_tools.localcloud COMMAND --db FILE ...

serve        run the Edge Manager endpoint + moto S3 until interrupted
add-device   register a device in a fleet
create-key   create an access key (valid for S3 too while `serve` runs); prints JSON
deploy       upload a model file to the S3 stand-in and create a deployment
deployments  list deployments
heartbeats   list received heartbeats
results      list deployment results received in heartbeats
"""

import argparse
import json
import os
import signal
import sys
import time

from . import admin
from .db import FleetDB

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
        raise admin.AdminError("no S3 stand-in: start `serve --db %s` first" % db.path)
    return MotoS3.attach(
        info["endpoint_url"], info["region"], info["admin_access_key"], info["admin_secret_key"]
    )


def cmd_serve(args, db):
    from .s3 import MotoS3
    from .server import EdgeServer

    def stop_on_term(signum, frame):
        raise KeyboardInterrupt  # SIGTERM (service managers, background jobs): clean stop

    signal.signal(signal.SIGTERM, stop_on_term)
    os.chmod(db.path, 0o600)  # it will hold the S3 stand-in's admin secret
    started = time.monotonic()
    s3 = MotoS3.start(region=args.region, port=args.s3_port)
    server = None
    try:
        server = EdgeServer(db, host=args.host, port=args.port).start_background()
        s3.ensure_bucket(args.bucket)
        db.set_setting("s3", s3.connection_info())
        db.set_setting("bucket", args.bucket)
        db.set_setting("endpoint_url", server.url)
        restored = admin.reupload_blobs(db, s3)
        _print({
            "endpoint_url": server.url,
            "s3_endpoint_url": s3.endpoint_url,
            "region": args.region,
            "bucket": args.bucket,
            "artifacts_restored": restored,
            "startup_seconds": round(time.monotonic() - started, 2),
        }, compact=True)
        sys.stdout.flush()
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        db.set_setting("s3", None)
        if server is not None:
            server.stop()
        s3.stop()
    return 0


def cmd_add_device(args, db):
    _print(admin.add_device(db, args.device, args.fleet))
    return 0


def cmd_create_key(args, db):
    s3 = None if args.edge_only else _attached_s3(db)
    _print(admin.create_key(db, s3, device=args.device, temporary=args.temporary,
                            expires_in=args.expires_in))
    return 0


def cmd_deploy(args, db):
    if not args.undeploy and not args.file:
        raise admin.AdminError("deploy: --file is required unless --undeploy")
    s3 = None if args.undeploy else _attached_s3(db)
    bucket = db.get_setting("bucket", DEFAULT_BUCKET)
    blob_dir = os.path.join(os.path.dirname(os.path.abspath(db.path)), "blobs")
    _print(admin.deploy(
        db, s3, bucket, args.handle, args.model_name, args.model_version, path=args.file,
        device=args.device, fleet=args.fleet, policy=args.policy, undeploy=args.undeploy,
        name=args.name, blob_dir=blob_dir,
    ))
    return 0


def cmd_deployments(args, db):
    _print(db.deployments(active_only=not args.all))
    return 0


def cmd_heartbeats(args, db):
    _print(admin.heartbeats(db, args.device))
    return 0


def cmd_results(args, db):
    _print(admin.results(db, args.device))
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

    c = command("add-device", cmd_add_device, "register a device")
    c.add_argument("--device", required=True)
    c.add_argument("--fleet", required=True)

    c = command("create-key", cmd_create_key, "create an access key (prints the secret)")
    c.add_argument("--device")
    c.add_argument("--temporary", action="store_true", help="with a session token")
    c.add_argument("--expires-in", type=float, help="seconds until ExpiredTokenException")
    c.add_argument("--edge-only", action="store_true", help="not valid for S3; no serve needed")

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

    c = command("deployments", cmd_deployments, "list deployments")
    c.add_argument("--all", action="store_true", help="include superseded/cancelled")
    for name, func in (("heartbeats", cmd_heartbeats), ("results", cmd_results)):
        c = command(name, func, "list " + name)
        c.add_argument("--device")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    db = FleetDB(args.db)
    try:
        return args.func(args, db)
    except admin.AdminError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    finally:
        db.close()


if __name__ == "__main__":
    sys.exit(main())
