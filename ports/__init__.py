"""edgecore's per-platform I/O layer, installed as the package ``edgecore_ports``.

The portable core (``edgecore``) never imports a port at module level; the one
factory below is called lazily when a caller did not inject a transport or clock.

Every platform module (``cpython``, ``raspberrypi``, ``jetson``, ``micropython``)
offers the same names:

- ``transport(method, url, headers, body, timeout=None) -> (status, headers, body)``:
  one HTTP exchange, body read whole (bounded); response header names lower-cased;
  TLS verification on. Raises ``edgecore.errors.TransportError`` on network failure.
  This is the callable ``edgecore.Client`` uses by default.
- ``open(method, url, headers, body=b"", timeout=None) -> Response``: the same
  exchange, streamed. ``Response`` has ``status`` (int), ``headers`` (dict, lower-case
  names), ``readinto(buf) -> int`` (0 at the end), ``read(n=-1) -> bytes``, ``close()``,
  and is a context manager. Used for S3 downloads (``edgecore.checksum`` reads it).
- ``clock() -> int``: epoch seconds. ``monotonic() -> float``: seconds, never going back.
- ``atomic_write(path, data, mode=0o600)``: temp file, fsync, rename, fsync of the dir.
  ``free_space(path) -> int``: bytes available to this user on path's filesystem.
- ``metrics(model_dir, now) -> list`` of ``EdgeMetric`` dicts (``Dimension``,
  ``MetricName``, ``Value``, ``Timestamp``) ready for ``SendHeartbeat.AgentMetrics``.
"""

import sys


def platform_name():
    """The name of the port module for this interpreter and board."""
    if sys.implementation.name == "micropython":
        return "micropython"
    return "cpython"


def default_port():
    """Import and return the port module for this platform."""
    name = platform_name()
    if name == "micropython":
        from edgecore_ports import micropython as port
    else:
        from edgecore_ports import cpython as port
    return port
