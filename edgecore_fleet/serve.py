"""``edgecore-fleet serve``: the fleet server under gunicorn (worker processes, threads,
keep-alive, optional TLS), its schema migrated first, metrics shared by the workers.

Each worker builds its own ``FleetApp`` and database pool after the fork (nothing is
shared between processes but the database), so several servers on several machines can
sit behind one load balancer. A worker that dies (even SIGKILL) is replaced by gunicorn.
"""

import os
import shutil
import tempfile

from gunicorn.app.base import BaseApplication

from . import logs
from .store import Store


def build_app(config):
    # Imported here: prometheus_client picks its multiprocess mode when first imported,
    # which must come after serve() has set PROMETHEUS_MULTIPROC_DIR.
    from .app import FleetApp
    from .s3 import S3Client

    s3 = None
    if config.get("s3"):
        c = config["s3"]
        s3 = S3Client(c.get("region") or config["region"], c["access_key_id"],
                      c["secret_access_key"], c.get("session_token"),
                      endpoint_url=c.get("endpoint_url"),
                      style=c.get("addressing_style") or "auto")
    store = Store.open(config["database"], pool_size=config["threads"])
    return FleetApp(store, region=config["region"], account=config["account"], s3=s3,
                    max_skew=config["max_skew"], cache_ttl=str(config["cache_ttl"]),
                    dashboard=config["dashboard"])


class _Gunicorn(BaseApplication):
    def __init__(self, config, options):
        self.fleet_config = config
        self.options = options
        BaseApplication.__init__(self)

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return build_app(self.fleet_config)


def _child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def gunicorn_options(config, metrics_dir):
    options = {
        "bind": config["bind"],
        "workers": config["workers"],
        "threads": config["threads"],
        "worker_class": "gthread",
        "keepalive": 75,  # longer than a load balancer's idle timeout
        "timeout": 60,
        "graceful_timeout": 20,
        "logconfig_dict": logs.logconfig_dict(config["log_level"]),
        "accesslog": None,
        "child_exit": _child_exit,
        "raw_env": ["PROMETHEUS_MULTIPROC_DIR=%s" % metrics_dir],
        "proc_name": "edgecore-fleet",
        # gunicorn's runtime control socket is one per user: several servers would clash.
        "control_socket_disable": True,
    }
    if config["tls_cert"]:
        options["certfile"] = config["tls_cert"]
        options["keyfile"] = config["tls_key"]
    return options


def serve(config):
    """Migrate, then run gunicorn until SIGTERM/SIGINT. Returns its exit status."""
    logs.configure(config["log_level"])
    store = Store.open(config["database"])
    try:
        store.migrate()
    finally:
        store.close()
    metrics_dir = tempfile.mkdtemp(prefix="edgecore-fleet-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        _Gunicorn(config, gunicorn_options(config, metrics_dir)).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
