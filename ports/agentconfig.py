"""The agent's config (``agent.json``): one table of keys, validated at load on every runtime.

``load_config(doc)`` checks every key of the document against ``KEYS`` (type, range,
form) and returns a new dict with the defaults filled in; anything wrong raises
``ConfigError`` naming the key and the expected form. An unknown key is refused with
the closest valid one (``heartbeat_intervall`` -> ``heartbeat_interval``); keys that
start with ``_`` are comments. Defaults differ where a board (MicroPython) has less
room than a Linux device; a few keys need what only CPython has (a command to run, the
credentials chain, a proxy, signature crypto) and are refused on a board at load, not
when first used.

Endpoints are resolved as the AWS SDKs do (CPython: ``edgecore_ports.awsconfig``): the
config's ``endpoint_url`` / ``s3_endpoint_url`` / ``use_fips_endpoint`` /
``use_dualstack_endpoint`` win; otherwise ``AWS_ENDPOINT_URL_SAGEMAKER_EDGE`` /
``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, ``AWS_USE_FIPS_ENDPOINT`` /
``AWS_USE_DUALSTACK_ENDPOINT`` and the shared config file decide. A board uses the
config's values alone.
"""

import sys

from edgecore.shapes import check_device_name
from edgecore_ports import ConfigError, ascii_digits

MICROPYTHON = sys.implementation.name == "micropython"
MAX_CONFIG_BYTES = 1024 * 1024


def _device_name(v):
    if isinstance(v, str) and len(v) <= 63 and check_device_name(v):
        return None
    return "expected 1-63 letters, digits, '-' or '_' (starting and ending alphanumeric)"


def _region(v):
    # botocore's rule (validate_region_name): a host label, not all digits.
    ok = isinstance(v, str) and 0 < len(v) <= 63 and v[0] != "-" and v[-1] != "-"
    if ok:
        for c in v:
            if not (c == "-" or ("0" <= c <= "9") or ("a" <= c <= "z") or ("A" <= c <= "Z")):
                ok = False
                break
    if ok and not ascii_digits(v):
        return None
    return "expected an AWS region name such as us-west-2 (letters, digits, hyphens)"


def _abs_path(v):
    if isinstance(v, str) and v.startswith("/"):
        return None
    return "expected an absolute path (starting with /)"


def _path(v):
    return None if isinstance(v, str) and v else "expected a file path"


def _url(v):
    if isinstance(v, str) and (v.startswith("http://") or v.startswith("https://")) \
            and len(v.split("://", 1)[1]) > 0:
        return None
    return "expected an http:// or https:// URL"


def _number(v):
    return not isinstance(v, bool) and isinstance(v, (int, float))


def _seconds(v):
    return None if _number(v) and v > 0 else "expected a number of seconds > 0"


def _count(v):
    if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        return None
    return "expected an integer >= 0"


def _rate(v):
    return None if _number(v) and v >= 0 else "expected a number of bytes/s >= 0 (0: no minimum)"


def _bool(v):
    return None if isinstance(v, bool) else "expected true or false"


def _timeout(v):
    if _number(v) and v > 0:
        return None
    if isinstance(v, list) and len(v) == 2 and _number(v[0]) and _number(v[1]) \
            and v[0] > 0 and v[1] > 0:
        return None
    return "expected seconds > 0, or [connect, read] seconds"


def _argv(v):
    if isinstance(v, list) and v and all(isinstance(a, str) and a for a in v):
        return None
    return "expected a non-empty list of strings (argv)"


def _object(v):
    return None if isinstance(v, dict) else "expected a JSON object"


def _one_of(*choices):
    def check(v):
        if v in choices:
            return None
        return "expected one of " + ", ".join(choices)

    return check


def _credentials(v):
    if not isinstance(v, dict):
        return "expected {access_key_id, secret_access_key[, session_token]}"
    for k in v:
        if k not in ("access_key_id", "secret_access_key", "session_token"):
            return "unknown member %r; expected access_key_id, secret_access_key, session_token" \
                % (k[:40],)
    for k in ("access_key_id", "secret_access_key"):
        if not isinstance(v.get(k), str) or not v[k]:
            return "%s is required, a non-empty string" % k
    if v.get("session_token") is not None and not isinstance(v["session_token"], str):
        return "session_token must be a string"
    return None


REQUIRED = ("device_name", "fleet_name", "region", "model_dir", "state_dir")
ON_LINUX = "linux"  # the key needs CPython (a process to run, crypto, the SDK chain)

# name, check (None or the expected form), default on Linux, default on a board, where
KEYS = (
    ("device_name", _device_name, None, None, None),
    ("fleet_name", _device_name, None, None, None),
    ("region", _region, None, None, None),
    ("model_dir", _abs_path, None, None, None),
    ("state_dir", _abs_path, None, None, None),
    ("credentials", _credentials, None, None, None),
    ("iot", _object, None, None, None),
    ("profile", _path, None, None, ON_LINUX),
    ("endpoint_url", _url, None, None, None),
    ("s3_endpoint_url", _url, None, None, None),
    ("use_fips_endpoint", _bool, None, None, None),
    ("use_dualstack_endpoint", _bool, None, None, None),
    ("s3_use_dualstack_endpoint", _bool, None, None, None),
    ("s3_addressing_style", _one_of("auto", "path", "virtual"), "auto", "auto", None),
    ("heartbeat_interval", _seconds, 60, 60, None),
    ("board", _one_of("auto", "linux", "raspberrypi", "jetson", "micropython"), "auto", "auto",
     None),
    ("ca_bundle", _path, None, None, None),
    ("proxy", _url, None, None, ON_LINUX),
    ("verify_tls", _bool, True, True, None),
    ("timeout", _timeout, [5, 30], 30, None),
    ("request_timeout", _seconds, 120, 120, None),
    ("min_download_rate", _rate, 1024, 1024, None),
    ("free_space_reserve_bytes", _count, 16 * 1024 * 1024, 16 * 1024, None),
    ("max_retries", _count, 5, 3, None),
    ("retry_time_budget", _seconds, 300, 60, None),
    ("reload_command", _argv, None, None, ON_LINUX),
    ("reload_timeout", _seconds, 120, 120, None),
    ("artifact_signing_key", _path, None, None, None),
    ("require_artifact_signature", _bool, False, False, None),
)


def _distance(a, b):
    """Levenshtein distance (small strings: key names)."""
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        prev, row[0] = row[0], i
        for j in range(1, len(b) + 1):
            cur = min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] != b[j - 1]))
            prev, row[j] = row[j], cur
    return row[len(b)]


def keys():
    """The whole table: the agent's KEYS, then application serving's keys
    (``edgecore_ports.appconfig``: checked together by its ``check_app_config``)."""
    from edgecore_ports.appconfig import APP_DEFAULTS

    return KEYS + tuple((k, None, APP_DEFAULTS[k], APP_DEFAULTS[k], None)
                        for k in sorted(APP_DEFAULTS))


def closest_key(name):
    """The valid key nearest to ``name`` (the first of the table on a tie)."""
    best = None
    for key in keys():
        d = _distance(name, key[0])
        if best is None or d < best[0]:
            best = (d, key[0])
    return best[1]


def load_config(doc, environ=None, micropython=MICROPYTHON):
    """Validate an agent config document; a new dict with defaults and env overrides.

    ``micropython``: validate for a board (its defaults, CPython-only keys refused)."""
    if environ is None:
        import os

        environ = getattr(os, "environ", {})
    if not isinstance(doc, dict):
        raise ConfigError("document", "expected a JSON object")
    table = keys()
    known = {}
    for key in table:
        known[key[0]] = key
    for name in doc:
        if not isinstance(name, str):
            raise ConfigError("document", "keys must be strings")
        if name not in known and not name.startswith("_"):
            raise ConfigError(name[:60], "unknown key; the closest valid key is %s"
                              % closest_key(name))
    config = {}
    for name, check, linux, board, where in table:
        value = doc.get(name)
        default = board if micropython else linux
        if value is None:
            if name in REQUIRED:
                raise ConfigError(name, "required; %s" % check(None))
            if name in doc and default is not None:  # null only where "not set" is
                raise ConfigError(name, check(None) if check else "null is not a value here")
            config[name] = list(default) if isinstance(default, list) else default
            continue
        problem = check(value) if check else None
        if problem is not None:
            raise ConfigError(name, problem)
        if micropython and where == ON_LINUX:
            raise ConfigError(name, "not supported by the MicroPython agent (CPython only)")
        config[name] = value
    if not (micropython or MICROPYTHON):  # a board has no environment or ~/.aws to read
        _resolve_endpoints(config, environ)
    _check_together(config, micropython)
    return config


def _resolve_endpoints(config, environ):
    """The SDKs' endpoint precedence (the config first); see the module docstring."""
    from edgecore_ports.awsconfig import AwsConfigError, agent_endpoints

    try:
        found = agent_endpoints(config, environ)
    except AwsConfigError as exc:
        raise ConfigError("profile", str(exc)) from None
    for key in ("endpoint_url", "s3_endpoint_url"):
        if found[key] is not None and found[key] != config[key]:
            problem = _url(found[key])
            if problem is not None:  # from the environment or the shared config file
                raise ConfigError(key, "%s (from the environment or ~/.aws/config)" % problem)
    if config["s3_use_dualstack_endpoint"] is None:
        config["s3_use_dualstack_endpoint"] = found["s3_use_dualstack_endpoint"]
    for key in ("endpoint_url", "s3_endpoint_url", "use_fips_endpoint",
                "use_dualstack_endpoint"):
        config[key] = found[key]


def _check_together(config, micropython):
    """The rules that involve more than one key, or what this runtime can do."""
    from edgecore_ports.appconfig import check_app_config

    check_app_config(config)
    a, b = config["model_dir"].rstrip("/") + "/", config["state_dir"].rstrip("/") + "/"
    if a.startswith(b) or b.startswith(a):
        raise ConfigError("state_dir", "must be outside model_dir (and model_dir outside it)")
    if config["credentials"] is not None and config["iot"] is not None:
        raise ConfigError("iot", "give credentials or iot, not both")
    if micropython and config["credentials"] is None and config["iot"] is None:
        raise ConfigError("credentials", "required on a board (or iot): "
                          "{access_key_id, secret_access_key[, session_token]}")
    if micropython and config["iot"] is not None:
        from edgecore_ports.mp_iot import provider_from_config

        provider_from_config(config, None)  # every iot key and file checked, nothing sent
    if config["artifact_signing_key"] is not None:
        try:
            from edgecore_ports.signing import load_public_key
        except ImportError:  # a runtime without the signing module (a board)
            raise ConfigError("artifact_signing_key", "this runtime cannot verify signatures "
                              "(it needs CPython with the 'cryptography' package)") from None
        load_public_key(config["artifact_signing_key"])  # at start-up, not per download
    elif config["require_artifact_signature"]:
        raise ConfigError("require_artifact_signature",
                          "true needs artifact_signing_key (a PEM public key)")


def read_config_file(path, environ=None, micropython=MICROPYTHON):
    """Read and validate a JSON config file."""
    import json

    from edgecore_ports.store import file_size, read_small

    try:
        data = read_small(path, MAX_CONFIG_BYTES)
    except OSError as exc:
        raise ConfigError("file", "cannot read %s (%s)" % (path, exc)) from None
    if data is None:
        size = file_size(path)
        raise ConfigError("file", "cannot read %s (%s)" % (
            path, "no such file" if size is None else "larger than %d bytes" % MAX_CONFIG_BYTES))
    try:
        doc = json.loads(data.decode("utf-8"))
    except (ValueError, UnicodeError) as exc:
        raise ConfigError("file", "%s is not JSON (%s)" % (path, exc)) from None
    return load_config(doc, environ, micropython)
