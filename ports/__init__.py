"""edgecore's per-platform I/O layer, installed as the package ``edgecore_ports``.

The portable core (``edgecore``) never imports a port at module level; the one
factory below is called lazily when a caller did not inject a transport or clock.

Platform modules and what they build on::

    linux        generic Linux (CPython): metrics from /proc and /sys, POSIX file ops
    cpython      requests transport + clock, re-exports linux's files and metrics
    raspberrypi  cpython + SoC temperature and vcgencmd throttling flags
    jetson       cpython + GPU load, thermal zones by name, nvpmodel power mode
    micropython  socket + ssl/tls HTTP/1.1 client, os files, time clock, gc metrics

Every platform module (``cpython``, ``raspberrypi``, ``jetson``, ``micropython``)
offers the same names:

- ``transport(method, url, headers, body, timeout=None, deadline=None) -> (status,
  headers, body)``: one HTTP exchange, body read whole (bounded: ``TransportError`` past
  the bound); response header names lower-cased; TLS verification on; redirects are
  never followed (a 3xx is returned as it is). Raises ``edgecore.errors.TransportError``
  on network failure. This is the callable ``edgecore.Client`` uses by default.
  ``deadline``: a value of the port's ``monotonic()`` by which the whole exchange
  (connect, TLS, request, response head, body, chunked trailers) must be over, enforced
  by closing the connection: ``TransportError`` ("deadline passed") otherwise.
- ``open(method, url, headers, body=b"", timeout=None, deadline=None) -> Response``: the
  same exchange, streamed. ``Response`` has ``status`` (int), ``headers`` (dict,
  lower-case names), ``readinto(buf) -> int`` (0 at the end), ``read(n=-1) -> bytes``,
  ``close()``, ``deadline`` (assignable while the body is read: a download moves it once
  its length is known), and is a context manager. A body shorter than its
  ``Content-Length`` raises ``TransportError``. Range requests are just a ``Range``
  header the caller sets. Used for S3 downloads (``edgecore.checksum`` reads it).
- ``make_transport(verify=True, ca_bundle=None, proxy=None, timeout=(5, 30), ...)``:
  a configured transport object with ``.transport`` and ``.open`` (the module-level
  functions use a lazily created default one; ``configure(**same)`` replaces it).
- ``clock() -> int``: epoch seconds. ``monotonic() -> float``: seconds, never going back.
- ``atomic_write(path, data, mode=0o600)``: temp file, fsync, rename, fsync of the dir;
  ``data`` is bytes/str or a callable ``fill(write)`` (its result is returned).
  ``free_space(path) -> int``: bytes available to this user on path's filesystem.
- ``metrics(model_dir, now) -> list`` of ``EdgeMetric`` dicts (``Dimension``,
  ``MetricName``, ``Value`` (float), ``Timestamp`` (= now)) ready for
  ``SendHeartbeat.AgentMetrics``. Sources that are missing or unreadable are skipped.

Choosing a port: ``load_port(board=None)`` returns the module; ``board`` is the agent
config's ``board`` key (``"auto"``/None: ``detect_board()``; ``"linux"``,
``"raspberrypi"``, ``"jetson"``, ``"micropython"``). ``detect_board(root="/")`` reads
``/proc/device-tree/model``, ``/etc/nv_tegra_release`` and ``/proc/device-tree/compatible``.

Port-specific ``make_transport`` extras: cpython ``proxy`` (URL; None = HTTP(S)_PROXY
and NO_PROXY from the environment; False = none) and ``max_body``; micropython
``connect`` (the injectable socket layer), ``keep_alive`` and ``max_body`` (no proxy).
Malformed HTTP framing raises ``HttpProtocolError`` (below), a ``TransportError``.

Metric catalog (Dimension / MetricName; Value is a float, units in the name):
    cpu / CpuUtilization (percent since the previous read), LoadAverage1m/5m/15m
    memory / MemoryTotalBytes, MemoryAvailableBytes, MemoryUtilization (percent)
    system / UptimeSeconds
    disk/model-dir / DiskTotalBytes, DiskFreeBytes, DiskUtilization (percent)
    thermal/<zone type> / TemperatureCelsius            (linux, all Linux boards)
    soc / SocTemperatureCelsius; throttling / UnderVoltage, FrequencyCapped, Throttled,
        SoftTempLimit and each ...Occurred (0.0 / 1.0)   (raspberrypi)
    gpu / GpuUtilization (percent); power/<nvpmodel mode> / PowerModeId   (jetson)
    memory / HeapFreeBytes, HeapAllocatedBytes, HeapUtilization; disk/...  (micropython)
"""

import sys

from edgecore.errors import EdgecoreError, TransportError

BOARDS = ("linux", "raspberrypi", "jetson", "micropython")


class HttpProtocolError(TransportError):
    """The peer broke HTTP/1.1 framing: an oversize or malformed status line, header
    or chunk, too many headers, a bad Content-Length. A ``TransportError``, so callers
    that retry network failures treat it the same way."""


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


def client_defaults(service, missing, region=None):
    """What an ``edgecore.Client`` was not given, as the AWS SDKs would resolve it here.

    ``missing``: names among ``region``, ``credentials``, ``endpoint_url``,
    ``use_fips_endpoint``, ``use_dualstack_endpoint``; ``region``: the one given, if any
    (STS for assume-role credentials uses it). Returns a dict of what could be found.
    On CPython: the environment and ``~/.aws`` files (``edgecore_ports.awsconfig``) and
    botocore's credential chain; a board running MicroPython has neither, so nothing.
    """
    if platform_name() == "micropython":
        return {}
    from edgecore_ports import awsconfig

    return awsconfig.client_defaults(service, missing, region)


def _read_bytes(path, limit=4096):
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError:
        return None


def detect_board(root="/"):
    """``"raspberrypi"``, ``"jetson"`` or ``"linux"`` from the device tree and release files.

    ``root`` is the filesystem root to look under (tests pass a fixture tree).
    """
    root = root.rstrip("/")
    model = _read_bytes(root + "/proc/device-tree/model") or b""
    # The device tree strings are NUL-terminated.
    model = model.replace(b"\x00", b"").strip()
    if model.startswith(b"Raspberry Pi"):
        return "raspberrypi"
    if b"Jetson" in model:
        return "jetson"
    if _read_bytes(root + "/etc/nv_tegra_release") is not None:
        return "jetson"
    compatible = _read_bytes(root + "/proc/device-tree/compatible") or b""
    # "compatible" is a NUL-separated list, most specific first.
    for entry in compatible.split(b"\x00"):
        if entry.startswith(b"raspberrypi,"):
            return "raspberrypi"
        if entry.startswith(b"nvidia,tegra") or entry.startswith(b"nvidia,p3"):
            return "jetson"
    return "linux"


def load_port(board=None):
    """The port module for ``board`` (config's ``board``; None or ``"auto"`` detects it)."""
    if board is None or board == "auto":
        board = "micropython" if platform_name() == "micropython" else detect_board()
    if board == "micropython":
        from edgecore_ports import micropython as port
    elif board == "raspberrypi":
        from edgecore_ports import raspberrypi as port
    elif board == "jetson":
        from edgecore_ports import jetson as port
    elif board in ("linux", "cpython"):
        from edgecore_ports import cpython as port
    else:
        raise ValueError(
            "load_port: invalid board %r: expected one of auto, %s" % (board, ", ".join(BOARDS))
        )
    return port


def edge_metric(dimension, name, value, now):
    """One ``EdgeMetric`` dict. ``name`` must match ``^[a-zA-Z0-9](-*[a-zA-Z0-9])*$``
    (4..100 chars); ``dimension`` ``^[a-zA-Z0-9](-*[a-zA-Z0-9/])*$``."""
    return {"Dimension": dimension, "MetricName": name, "Value": float(value), "Timestamp": now}


def disk_metrics(out, model_dir, now):
    """Append total, free and used percent of ``model_dir``'s filesystem to ``out``
    (nothing when it does not exist). Index form of statvfs: works on MicroPython too."""
    import os

    try:
        st = os.statvfs(model_dir)
    except (OSError, AttributeError):
        return
    frsize = st[1] or st[0]
    total = st[2] * frsize
    out.append(edge_metric("disk/model-dir", "DiskTotalBytes", total, now))
    out.append(edge_metric("disk/model-dir", "DiskFreeBytes", st[4] * frsize, now))
    if total:
        used = 100.0 * (st[2] - st[3]) * frsize / total
        out.append(edge_metric("disk/model-dir", "DiskUtilization", used, now))


def dimension_part(text, fallback):
    """``text`` made safe for a ``Dimension`` segment: runs of other characters become
    one hyphen, no leading or trailing hyphen; ``fallback`` when nothing is left."""
    out = []
    pending = False
    for ch in text:
        if ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9"):
            if pending and out:
                out.append("-")
            pending = False
            out.append(ch)
        else:
            pending = True
    return "".join(out)[:200] or fallback


def ascii_digits(text):
    """True for a non-empty run of 0-9 only: ``str.isdigit`` also accepts other scripts'
    digits and superscripts on CPython (not on MicroPython), so network numbers use this."""
    return bool(text) and all("0" <= c <= "9" for c in text)



def content_range_total(value, start):
    """``<total>`` of ``Content-Range: bytes <start>-<total - 1>/<total>`` (the rest of an
    object from ``start``, as a resumed download asks for), else None."""
    if not value or not value.startswith("bytes "):
        return None
    span, _, total = value[6:].partition("/")
    first, _, last = span.partition("-")
    if not (ascii_digits(first) and ascii_digits(last) and ascii_digits(total)):
        return None
    if int(first) != start or int(last) < start or int(last) + 1 != int(total):
        return None
    return int(total)

class NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def new_lock():
    """A re-entrant lock where threads exist (CPython), else one that does nothing."""
    try:
        import threading
    except ImportError:
        return NoLock()
    return threading.RLock()


# -- agent config (edgecore_ports.agentconfig validates it) -------------------------------


class ConfigError(EdgecoreError):
    """The agent config is missing a key or has one of the wrong form."""

    def __init__(self, field, detail):
        self.field = field
        super().__init__("agent config: invalid %s: %s" % (field, detail))
