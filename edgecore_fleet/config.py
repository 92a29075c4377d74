"""The fleet server's settings: defaults, then a JSON config file, then the environment.

Keys (file) / variables (environment, which wins):

=================  ==============================  =======================================
database           EDGECORE_FLEET_DATABASE         SQLite path or postgresql://user@host/db
bind               EDGECORE_FLEET_BIND             host:port, or a list (default
                                                   127.0.0.1:8080)
workers            EDGECORE_FLEET_WORKERS          gunicorn worker processes (default 2)
threads            EDGECORE_FLEET_THREADS          threads per worker (default 8)
tls_cert/tls_key   EDGECORE_FLEET_TLS_CERT/_KEY    PEM files: serve HTTPS (default: HTTP,
                                                   e.g. behind a TLS-terminating balancer)
region, account    EDGECORE_FLEET_REGION/ACCOUNT   what ARNs and signatures are scoped to
s3                 EDGECORE_FLEET_S3_ENDPOINT_URL, the store holding the artifacts: {"region",
                   _S3_REGION, _S3_ACCESS_KEY_ID,  "endpoint_url" (null: AWS),
                   _S3_SECRET_ACCESS_KEY           "access_key_id", "secret_access_key",
                                                   "addressing_style"}
max_skew           EDGECORE_FLEET_MAX_SKEW         seconds a signature's time may be off (900)
dashboard          EDGECORE_FLEET_DASHBOARD        serve the read-only dashboard (true)
log_level          EDGECORE_FLEET_LOG_LEVEL        debug/info/warning (info: a JSON line per
                                                   request)
iot_bind           EDGECORE_FLEET_IOT_BIND         ``serve-iot``: the credentials endpoint's
                                                   host:port (default 127.0.0.1:8443)
iot_ca             EDGECORE_FLEET_IOT_CA           PEM CA file the device certificates
                                                   chain to (required by ``serve-iot``)
iot_role_aliases   (file only)                     {"alias": seconds}, default
                                                   {"edgecore-device-role-alias": 3600}
=================  ==============================  =======================================
"""

import json
import os

DEFAULTS = {
    "database": "fleet.db",
    "bind": ["127.0.0.1:8080"],
    "workers": 2,
    "threads": 8,
    "tls_cert": None,
    "tls_key": None,
    "region": "us-west-2",
    "account": "000000000000",
    "s3": None,
    "max_skew": 900,
    "cache_ttl": "3600",
    "dashboard": True,
    "log_level": "info",
    "iot_bind": ["127.0.0.1:8443"],
    "iot_ca": None,
    "iot_role_aliases": {"edgecore-device-role-alias": 3600},
}
_INTS = ("workers", "threads", "max_skew")
_ENV_S3 = {"S3_ENDPOINT_URL": "endpoint_url", "S3_REGION": "region",
           "S3_ACCESS_KEY_ID": "access_key_id", "S3_SECRET_ACCESS_KEY": "secret_access_key",
           "S3_ADDRESSING_STYLE": "addressing_style"}


class ConfigError(Exception):
    """A setting that cannot be used (names the key and what it expects)."""


def load(path=None, environ=None, overrides=None):
    """The effective settings (a dict)."""
    environ = os.environ if environ is None else environ
    config = dict(DEFAULTS)
    if path:
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise ConfigError("config file %s: %s" % (path, exc)) from None
        if not isinstance(data, dict):
            raise ConfigError("config file %s: expected a JSON object" % path)
        unknown = sorted(set(data) - set(DEFAULTS))
        if unknown:
            raise ConfigError("config file %s: unknown key(s) %s; known: %s"
                              % (path, ", ".join(unknown), ", ".join(sorted(DEFAULTS))))
        config.update(data)
    for key in DEFAULTS:
        value = environ.get("EDGECORE_FLEET_" + key.upper())
        if value is not None and key not in ("s3", "iot_role_aliases"):
            config[key] = value
    s3 = dict(config["s3"] or {})
    for suffix, key in _ENV_S3.items():
        if environ.get("EDGECORE_FLEET_" + suffix) is not None:
            s3[key] = environ["EDGECORE_FLEET_" + suffix]
    config["s3"] = s3 or None
    config.update(dict((k, v) for k, v in (overrides or {}).items() if v is not None))
    return _check(config)


def _check(config):
    for key in _INTS:
        try:
            config[key] = int(config[key])
        except (TypeError, ValueError):
            raise ConfigError("%s: expected an integer, got %r" % (key, config[key])) from None
        if config[key] < 1:
            raise ConfigError("%s: must be at least 1" % key)
    for key in ("bind", "iot_bind"):
        if isinstance(config[key], str):
            config[key] = [b.strip() for b in config[key].split(",") if b.strip()]
    if isinstance(config["dashboard"], str):
        config["dashboard"] = config["dashboard"].lower() in ("1", "true", "yes", "on")
    if bool(config["tls_cert"]) != bool(config["tls_key"]):
        raise ConfigError("tls_cert and tls_key: give both or neither")
    s3 = config["s3"]
    if s3 is not None and not (s3.get("access_key_id") and s3.get("secret_access_key")):
        raise ConfigError("s3: access_key_id and secret_access_key are required")
    return config


def redacted(config):
    """The settings with secrets hidden (for logs)."""
    out = dict(config)
    if out.get("s3"):
        out["s3"] = dict(out["s3"], secret_access_key="<redacted>")
    if "://" in str(out.get("database")):
        from sqlalchemy.engine import make_url

        out["database"] = make_url(str(out["database"])).render_as_string(hide_password=True)
    return out
