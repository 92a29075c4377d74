"""Generic Linux (CPython): device metrics from /proc and /sys, and POSIX file operations.

Board modules (raspberrypi, jetson) subclass ``MetricsReader`` to add their sources.
Every reader takes ``root`` (the filesystem root, a fixture tree in tests) and never
raises on a missing, unreadable or malformed file: that source is skipped (malformed
content is logged at debug level). Metric names and dimensions obey the service
model's patterns (letters, digits, hyphens; dimensions may also hold ``/``).

Metrics (Dimension / MetricName, unit):
    cpu / CpuUtilization            percent busy since the previous read (since boot on the first)
    cpu / LoadAverage1m, LoadAverage5m, LoadAverage15m
    memory / MemoryTotalBytes, MemoryAvailableBytes, MemoryUtilization (percent)
    system / UptimeSeconds
    disk/model-dir / DiskTotalBytes, DiskFreeBytes, DiskUtilization (percent)
    thermal/<zone type> / TemperatureCelsius     one per /sys/class/thermal/thermal_zone*
"""

import errno
import logging
import os

# subprocess and tempfile (with shutil and random behind it) are imported where used:
# an idle cycle runs no command on generic Linux and rewrites no unchanged state.
from edgecore_ports import dimension_part, disk_metrics, edge_metric

log = logging.getLogger("edgecore")


# -- files -------------------------------------------------------------------------------


def fsync_dir(path):
    """fsync a directory so a rename inside it survives power loss."""
    fd = os.open(path or ".", os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems (and FUSE mounts) refuse fsync on a directory; the rename
        # is then as durable as that filesystem makes it.
        if exc.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def atomic_write(path, data, mode=0o600):
    """Replace ``path`` with ``data`` (bytes, or str as UTF-8) so that a crash at any
    point leaves either the old or the new content: temp file in the same directory,
    write, flush, fsync, rename over, fsync the directory. ``data`` may also be a callable
    ``fill(write)`` that writes the content in pieces through ``write(bytes)``; its return
    value is returned, and an exception from it leaves ``path`` as it was."""
    import tempfile

    if isinstance(data, str):
        data = data.encode("utf-8")
    result = None
    directory = os.path.dirname(os.path.abspath(path))
    prefix = "." + os.path.basename(path) + "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=prefix, suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            fd = None
            if callable(data):
                result = data(f.write)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_dir(directory)
    finally:
        if fd is not None:
            os.close(fd)
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return result


def free_space(path):
    """Bytes available to an unprivileged user on ``path``'s filesystem."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


# -- commands ----------------------------------------------------------------------------


def run_command(argv, timeout=2):
    """stdout of ``argv`` as text, or None when the tool is absent, fails or hangs."""
    import subprocess

    try:
        proc = subprocess.run(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=timeout, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("metrics: %s not usable: %s", argv[0], exc.__class__.__name__)
        return None
    if proc.returncode != 0:
        log.debug("metrics: %s exited with %d", argv[0], proc.returncode)
        return None
    return proc.stdout.decode("utf-8", "replace")


# Variables a reload command must not inherit: the agent's own secrets.
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
              "AWS_CONTAINER_AUTHORIZATION_TOKEN")


def run_reload_command(argv, extra_env, timeout):
    """Run the agent's ``reload_command``; None on success, else why it failed. It gets
    the agent's environment without its secrets, plus ``extra_env``."""
    import subprocess

    env = dict((k, v) for k, v in os.environ.items() if k not in SECRET_ENV)
    env.update(extra_env)
    try:
        proc = subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "reload_command %s: %s" % (argv[0], exc)
    if proc.returncode != 0:
        tail = proc.stderr[-300:].decode("utf-8", "replace").strip()
        return "reload_command %s exited with %d%s" % (argv[0], proc.returncode,
                                                       (": " + tail) if tail else "")
    return None


# -- metrics -----------------------------------------------------------------------------


def read_text(path, limit=65536):
    """The file's text, or None when it is missing or unreadable."""
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", "replace")
    except (OSError, ValueError):
        return None


def parse_cpu_times(text):
    """(busy, total) jiffies from the aggregate ``cpu`` line of /proc/stat, or None."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            # user nice system idle iowait irq softirq steal [guest guest_nice]; guest
            # time is already counted in user/nice, so only the first eight are summed.
            values = [int(v) for v in fields[1:9]]
            if len(values) < 4 or min(values) < 0:
                raise ValueError("too few cpu fields")
            idle = values[3] + (values[4] if len(values) > 4 else 0)
            total = sum(values)
            return total - idle, total
    return None


def parse_meminfo(text):
    """{key: bytes} from /proc/meminfo (values there are in kB)."""
    out = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        fields = rest.split()
        if not sep or not fields:
            continue
        try:
            value = int(fields[0])
        except ValueError:
            continue
        if len(fields) > 1 and fields[1] == "kB":
            value *= 1024
        out[key.strip()] = value
    return out


class MetricsReader:
    """Reads the generic Linux metrics; keeps the previous /proc/stat sample so CPU
    utilization covers the interval between two reads."""

    def __init__(self, root="/"):
        self.root = root.rstrip("/")
        self._cpu = None  # (busy, total) of the previous read

    def path(self, relative):
        return self.root + relative

    def _parse(self, relative, parser):
        """parser(text) for the file, or None when missing or malformed."""
        text = read_text(self.path(relative))
        if text is None:
            return None
        try:
            return parser(text)
        except (ValueError, IndexError, KeyError) as exc:
            log.debug("metrics: malformed %s: %s", relative, exc)
            return None

    def read(self, model_dir, now):
        """A list of EdgeMetric dicts stamped ``now`` (epoch seconds)."""
        out = []
        self.cpu(out, now)
        self.load(out, now)
        self.memory(out, now)
        self.uptime(out, now)
        self.disk(out, model_dir, now)
        self.thermal(out, now)
        return out

    def cpu(self, out, now):
        sample = self._parse("/proc/stat", parse_cpu_times)
        if sample is None:
            return
        busy, total = sample
        if self._cpu is not None and total > self._cpu[1] and busy >= self._cpu[0]:
            busy, total = busy - self._cpu[0], total - self._cpu[1]
        self._cpu = sample
        if total > 0:
            out.append(edge_metric("cpu", "CpuUtilization", 100.0 * busy / total, now))

    def load(self, out, now):
        loads = self._parse("/proc/loadavg", lambda t: [float(v) for v in t.split()[:3]])
        if loads is None or len(loads) != 3:
            return
        for name, value in zip(("LoadAverage1m", "LoadAverage5m", "LoadAverage15m"), loads):
            out.append(edge_metric("cpu", name, value, now))

    def memory(self, out, now):
        info = self._parse("/proc/meminfo", parse_meminfo)
        if not info or not info.get("MemTotal"):
            return
        total = info["MemTotal"]
        out.append(edge_metric("memory", "MemoryTotalBytes", total, now))
        available = info.get("MemAvailable")
        if available is None:
            return  # kernels before 3.14 lack it; free+cache guesses are misleading
        out.append(edge_metric("memory", "MemoryAvailableBytes", available, now))
        used = 100.0 * (total - available) / total
        out.append(edge_metric("memory", "MemoryUtilization", used, now))

    def uptime(self, out, now):
        up = self._parse("/proc/uptime", lambda t: float(t.split()[0]))
        if up is not None:
            out.append(edge_metric("system", "UptimeSeconds", up, now))

    def disk(self, out, model_dir, now):
        disk_metrics(out, model_dir, now)

    def thermal(self, out, now):
        for dimension, celsius in self.thermal_zones():
            out.append(edge_metric(dimension, "TemperatureCelsius", celsius, now))

    def thermal_zones(self):
        """[(dimension, celsius)] for every readable thermal zone, by zone type."""
        base = self.path("/sys/class/thermal")
        try:
            names = os.listdir(base)
        except OSError:
            return []
        zones = []
        for name in names:
            if name.startswith("thermal_zone") and name[12:].isdigit():
                zones.append((int(name[12:]), name))
        zones.sort()
        seen = set()
        result = []
        for index, name in zones:
            milli = self._parse("/sys/class/thermal/%s/temp" % name, lambda t: int(t.strip()))
            if milli is None or milli <= -200000:
                continue  # unreadable, or an offline sensor's sentinel (Jetson: -256000)
            kind = (read_text("%s/%s/type" % (base, name)) or "").strip()
            dimension = "thermal/" + dimension_part(kind, "zone%d" % index)
            if dimension in seen:  # several zones of one type (e.g. acpitz)
                dimension = "%s/zone%d" % (dimension, index)
            seen.add(dimension)
            result.append((dimension, milli / 1000.0))
        return result


class BoardMetrics(MetricsReader):
    """Base of the board readers (raspberrypi, jetson): generic metrics plus what a
    board tool prints. ``run(argv) -> stdout text or None`` runs a command; tests
    inject canned output."""

    def __init__(self, root="/", run=run_command):
        MetricsReader.__init__(self, root)
        self.run = run

    def command(self, argv, parser):
        """parser(stdout of argv), or None when the tool is absent or fails, or its
        output is malformed (ValueError from parser, logged at debug level)."""
        text = self.run(argv)
        if text is None:
            return None
        try:
            return parser(text)
        except ValueError as exc:
            log.debug("metrics: malformed %s output: %s", " ".join(argv), exc)
            return None


def board_metrics(reader_class):
    """A module-level ``metrics(model_dir, now)`` over one ``reader_class()``, made on
    first use and kept for the CPU interval."""
    readers = []

    def metrics(model_dir, now):
        if not readers:
            readers.append(reader_class())
        return readers[0].read(model_dir, now)

    return metrics


_readers = {}


def metrics(model_dir, now, root="/"):
    """Generic Linux metrics; one reader per root is kept for the CPU interval."""
    reader = _readers.get(root)
    if reader is None:
        reader = _readers[root] = MetricsReader(root)
    return reader.read(model_dir, now)
