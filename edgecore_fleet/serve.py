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


def build_iot_app(config):
    from .iot import IotApp

    store = Store.open(config["database"], pool_size=config["threads"])
    return IotApp(store, config["iot_role_aliases"])


class _Gunicorn(BaseApplication):
    def __init__(self, config, options, build=build_app):
        self.fleet_config = config
        self.options = options
        self.build = build
        BaseApplication.__init__(self)

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        return self.build(self.fleet_config)


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


def _prepare(config):
    """JSON logs, and the schema migrated before any worker starts."""
    logs.configure(config["log_level"])
    store = Store.open(config["database"])
    try:
        store.migrate()
    finally:
        store.close()


def serve_iot(config):
    """The IoT credentials endpoint under gunicorn, mutual TLS: a client certificate
    chaining to ``iot_ca`` is required in the handshake. Until SIGTERM/SIGINT."""
    import ssl

    from .config import ConfigError

    if not (config["tls_cert"] and config["iot_ca"]):
        raise ConfigError("serve-iot: tls_cert/tls_key (the server's) and iot_ca (the "
                          "device CA) are required")
    _prepare(config)
    options = gunicorn_options(dict(config, bind=config["iot_bind"]), "")
    del options["raw_env"], options["child_exit"]
    options.update(cert_reqs=ssl.CERT_REQUIRED, ca_certs=config["iot_ca"],
                   proc_name="edgecore-fleet-iot")
    _Gunicorn(config, options, build_iot_app).run()
    return 0


def serve(config):
    """Migrate, then run gunicorn until SIGTERM/SIGINT. Returns its exit status."""
    _prepare(config)
    metrics_dir = tempfile.mkdtemp(prefix="edgecore-fleet-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        _Gunicorn(config, gunicorn_options(config, metrics_dir)).run()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0
