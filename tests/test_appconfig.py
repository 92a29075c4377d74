# Runs under MicroPython too
"""edgecore_ports.appconfig: defaults and the checks of the application-serving keys."""

from edgecore_ports import ConfigError
from edgecore_ports.appconfig import APP_DEFAULTS, api_socket_path, check_app_config


def _config(**kw):
    c = dict(APP_DEFAULTS)
    c["state_dir"] = "/var/lib/edgecore/state/"
    c.update(kw)
    return c


def test_defaults_pass_and_socket_path():
    check_app_config(_config())
    assert api_socket_path(_config()) == "/var/lib/edgecore/state/api.sock"
    assert api_socket_path(_config(api_socket="/run/edgecore.sock")) == "/run/edgecore.sock"
    check_app_config(_config(capture_s3_uri="s3://bucket/captures/", capture_push_interval=0.5))


def test_bad_values_name_the_key():
    bad = [
        ("unpack_archives", "yes"), ("unpack_max_bytes", 0), ("unpack_max_entries", True),
        ("api_max_connections", 0), ("capture_buffer_bytes", 10), ("capture_batch_size", 0),
        ("capture_push_interval", 0), ("capture_push_interval", "4"), ("api_socket", "rel.sock"),
        ("api_socket", "/" + "x" * 120), ("capture_s3_uri", "https://bucket/x"),
        ("capture_s3_uri", "s3://b/../x"),
    ]
    for key, value in bad:
        try:
            check_app_config(_config(**{key: value}))
        except ConfigError as exc:
            assert exc.field == key and key in str(exc), (key, str(exc))
        else:
            raise AssertionError("accepted %s=%r" % (key, value))
