"""The agent-config keys of application serving (model packages, local API, capture):
defaults and checks, for the executor's one table of keys. Portable (MicroPython too).

    config = dict(APP_DEFAULTS); config.update(doc); check_app_config(config)
    api_socket_path(config)   # api_socket, or <state_dir>/api.sock
"""

from edgecore_ports import ConfigError

APP_DEFAULTS = {
    "unpack_archives": True,  # .tar/.tar.gz/.zip artifacts become directories
    "unpack_max_bytes": 4 * 1024 * 1024 * 1024,
    "unpack_max_entries": 10000,
    "api_socket": None,  # default <state_dir>/api.sock
    "api_max_connections": 128,
    "capture_s3_uri": None,  # s3://bucket/prefix/ (None: CaptureData is refused)
    "capture_buffer_bytes": 64 * 1024 * 1024,
    "capture_batch_size": 10,
    "capture_push_interval": 4,
}


def _int(config, key, lo, hi=None):
    v = config[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < lo or (hi is not None and v > hi):
        raise ConfigError(key, "expected an integer >= %d%s" % (lo, "" if hi is None
                                                                else " and <= %d" % hi))


def check_app_config(config):
    """ConfigError naming the key unless every key of APP_DEFAULTS is well formed."""
    if not isinstance(config["unpack_archives"], bool):
        raise ConfigError("unpack_archives", "expected true or false")
    _int(config, "unpack_max_bytes", 1)
    _int(config, "unpack_max_entries", 1)
    _int(config, "api_max_connections", 1, 10000)
    _int(config, "capture_buffer_bytes", 4096)
    _int(config, "capture_batch_size", 1, 10000)
    v = config["capture_push_interval"]
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 86400:
        raise ConfigError("capture_push_interval", "expected a number of seconds > 0")
    sock = config["api_socket"]
    if sock is not None and (not isinstance(sock, str) or not sock.startswith("/")
                             or len(sock) > 100):
        # sun_path holds 108 bytes: a longer path cannot be bound.
        raise ConfigError("api_socket", "expected an absolute path of at most 100 characters")
    uri = config["capture_s3_uri"]
    if uri is not None:
        from edgecore_ports.capture import parse_s3_uri

        try:
            parse_s3_uri(uri)
        except ValueError as exc:
            raise ConfigError("capture_s3_uri", "expected s3://bucket/prefix/ (%s)" % exc) \
                from None


def api_socket_path(config):
    return config.get("api_socket") or config["state_dir"].rstrip("/") + "/api.sock"
