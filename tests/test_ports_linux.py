"""Generic Linux port: metrics read from fixture trees of real /proc and /sys layouts
(tests/fixtures/sysroots/<board>/), POSIX file operations, the command runner.
CPython only."""

import logging
import os
import re
import shutil
import stat
import sys
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st

from edgecore_ports import dimension_part, linux

SYSROOTS = os.path.join(os.path.dirname(__file__), "fixtures", "sysroots")
METRIC_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")
DIMENSION_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9\/])*$")
NOW = 1700000000


def by_key(metrics):
    out = {}
    for m in metrics:
        key = (m["Dimension"], m["MetricName"])
        assert key not in out, key
        out[key] = m["Value"]
    return out


def assert_valid(metrics, now=NOW):
    """Every metric obeys the service model's EdgeMetric shape."""
    for m in metrics:
        assert set(m) == {"Dimension", "MetricName", "Value", "Timestamp"}
        assert METRIC_RE.match(m["MetricName"]) and 4 <= len(m["MetricName"]) <= 100, m
        assert DIMENSION_RE.match(m["Dimension"]) and 1 <= len(m["Dimension"]) <= 1000, m
        assert type(m["Value"]) is float
        assert m["Timestamp"] == now


def read(path):
    with open(path, "rb") as f:
        return f.read()


def copy_root(name, tmp_path):
    dst = tempfile.mkdtemp(dir=tmp_path)
    shutil.copytree(os.path.join(SYSROOTS, name), dst, dirs_exist_ok=True)
    return dst


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def test_generic_x86_fixture_exact_values(tmp_path):
    model_dir = tempfile.mkdtemp(dir=tmp_path)
    out = linux.MetricsReader(os.path.join(SYSROOTS, "generic-x86")).read(model_dir, NOW)
    assert_valid(out)
    got = by_key(out)
    # /proc/stat: user nice system idle iowait irq softirq steal = busy 5162 of 22637015.
    assert got.pop(("cpu", "CpuUtilization")) == 100.0 * 5162 / 22637015
    assert got.pop(("cpu", "LoadAverage1m")) == 0.52
    assert got.pop(("cpu", "LoadAverage5m")) == 0.58
    assert got.pop(("cpu", "LoadAverage15m")) == 0.59
    assert got.pop(("memory", "MemoryTotalBytes")) == 16314276 * 1024
    assert got.pop(("memory", "MemoryAvailableBytes")) == 9815096 * 1024
    assert got.pop(("memory", "MemoryUtilization")) == 100.0 * (16314276 - 9815096) / 16314276
    assert got.pop(("system", "UptimeSeconds")) == 350735.47
    # Two zones of type acpitz: the second is told apart by its zone number; the
    # zone without a temp file (iwlwifi_1) is skipped.
    assert got.pop(("thermal/acpitz", "TemperatureCelsius")) == 27.8
    assert got.pop(("thermal/acpitz/zone1", "TemperatureCelsius")) == 29.8
    assert got.pop(("thermal/x86-pkg-temp", "TemperatureCelsius")) == 45.0
    st_ = os.statvfs(model_dir)
    assert got.pop(("disk/model-dir", "DiskTotalBytes")) == st_.f_blocks * st_.f_frsize
    free = got.pop(("disk/model-dir", "DiskFreeBytes"))
    assert 0 <= free <= st_.f_blocks * st_.f_frsize
    assert 0 <= got.pop(("disk/model-dir", "DiskUtilization")) <= 100
    assert got == {}


def test_cpu_utilization_covers_the_interval_between_reads(tmp_path):
    root = copy_root("generic-x86", tmp_path)
    reader = linux.MetricsReader(root)
    reader.read("/nonexistent", NOW)
    # +300 busy jiffies (user 200, system 100), +700 idle (idle 600, iowait 100).
    write(root, "proc/stat", "cpu  2455 34 2390 22626163 6390 127 456 0 0 0\n")
    assert by_key(reader.read("/nonexistent", NOW + 60))[("cpu", "CpuUtilization")] == 30.0
    # Counters that went back (a container restarted, a fixture swapped): since boot.
    write(root, "proc/stat", "cpu  100 0 0 300 0 0 0 0 0 0\n")
    assert by_key(reader.read("/nonexistent", NOW))[("cpu", "CpuUtilization")] == 25.0


def test_module_metrics_keeps_a_reader_per_root(tmp_path):
    root = copy_root("generic-x86", tmp_path)
    linux.metrics("/nonexistent", NOW, root=root)
    write(root, "proc/stat", "cpu  2255 34 2290 22625663 6290 127 456 0 0 0\n")
    got = by_key(linux.metrics("/nonexistent", NOW, root=root))
    assert got[("cpu", "CpuUtilization")] == 0.0


def test_empty_root_and_missing_model_dir_give_no_metrics(tmp_path):
    empty = tempfile.mkdtemp(dir=tmp_path)
    assert linux.MetricsReader(empty).read("/nonexistent/models", NOW) == []


def test_malformed_and_unreadable_files_are_skipped_with_debug_log(tmp_path):
    root = tempfile.mkdtemp(dir=tmp_path)
    write(root, "proc/stat", "cpu  a b c d\n")
    write(root, "proc/loadavg", "0.1 x\n")
    write(root, "proc/meminfo", "MemTotal: lots kB\nMemFree:\n")
    write(root, "proc/uptime", "\n")
    write(root, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
    write(root, "sys/class/thermal/thermal_zone0/temp", "hot\n")
    write(root, "sys/class/thermal/thermal_zone1/type", "gpu-thermal\n")
    os.makedirs(os.path.join(root, "sys/class/thermal/thermal_zone1/temp"))  # EISDIR
    write(root, "sys/class/thermal/thermal_zone2/type", "\n")
    write(root, "sys/class/thermal/thermal_zone2/temp", "41000\n")
    write(root, "sys/class/thermal/thermal_zoneX/temp", "41000\n")
    records = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = records.append
    logger = logging.getLogger("edgecore")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        out = linux.MetricsReader(root).read("/nonexistent", NOW)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    # Only the zone with an empty type survives, named by its number.
    assert by_key(out) == {("thermal/zone2", "TemperatureCelsius"): 41.0}
    logged = " ".join(r.getMessage() for r in records)
    for name in ("/proc/stat", "/proc/loadavg", "/proc/uptime", "thermal_zone0/temp"):
        assert name in logged, name


def test_meminfo_without_memavailable_reports_total_only(tmp_path):
    root = tempfile.mkdtemp(dir=tmp_path)
    write(root, "proc/meminfo", "MemTotal:  1000 kB\nMemFree:  10 kB\n")
    assert by_key(linux.MetricsReader(root).read("/nonexistent", NOW)) == {
        ("memory", "MemoryTotalBytes"): 1024000.0
    }


def test_dimension_part():
    assert dimension_part("x86_pkg_temp", "z") == "x86-pkg-temp"
    assert dimension_part("CPU-therm", "z") == "CPU-therm"
    assert dimension_part("__a__b..", "z") == "a-b"
    assert dimension_part("", "zone3") == "zone3"
    assert dimension_part("_-_", "zone3") == "zone3"


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_dimension_part_always_valid(text):
    out = "thermal/" + dimension_part(text, "zone0")
    assert DIMENSION_RE.match(out) and len(out) <= 1000


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_proc_parsers_raise_only_value_errors(text):
    linux.parse_meminfo(text)  # never raises: bad lines are skipped
    try:
        result = linux.parse_cpu_times(text)
    except ValueError:
        return
    if result is not None:
        busy, total = result
        assert 0 <= busy <= total


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 10**12), min_size=8, max_size=10))
def test_parse_cpu_times_matches_definition(values):
    busy, total = linux.parse_cpu_times("cpu  " + " ".join(map(str, values)) + "\ncpu0 1 2 3 4\n")
    assert total == sum(values[:8])
    assert busy == total - values[3] - values[4]


def test_atomic_write_creates_replaces_and_sets_mode(tmp_path):
    d = tempfile.mkdtemp(dir=tmp_path)
    path = os.path.join(d, "state.json")
    linux.atomic_write(path, b"one")
    assert read(path) == b"one"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    linux.atomic_write(path, "two\u00e9", mode=0o644)
    assert read(path) == "two\u00e9".encode()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert os.listdir(d) == ["state.json"]


def test_atomic_write_failure_keeps_old_content_and_no_temp(tmp_path):
    d = tempfile.mkdtemp(dir=tmp_path)
    path = os.path.join(d, "state.json")
    linux.atomic_write(path, b"old")
    try:
        linux.atomic_write(path, 12345)  # not bytes: fails after the temp file exists
    except TypeError:
        pass
    else:
        raise AssertionError("expected TypeError")
    assert read(path) == b"old"
    assert os.listdir(d) == ["state.json"]


def test_atomic_write_from_a_fill_callable(tmp_path):
    d = tempfile.mkdtemp(dir=tmp_path)
    path = os.path.join(d, "state.json")

    def fill(write):
        write(b"par")
        write(b"ts")
        return "digest"

    assert linux.atomic_write(path, fill) == "digest"
    assert read(path) == b"parts"

    def broken(write):
        write(b"half")
        raise ValueError("too big")

    try:
        linux.atomic_write(path, broken)
    except ValueError:
        pass
    else:
        raise AssertionError("expected the fill's error")
    assert read(path) == b"parts" and os.listdir(d) == ["state.json"]


def test_free_space_and_fsync_dir(tmp_path):
    d = tempfile.mkdtemp(dir=tmp_path)
    st_ = os.statvfs(d)
    # Other processes may write meanwhile: equal within 64 MiB.
    assert abs(linux.free_space(d) - st_.f_bavail * st_.f_frsize) < 64 << 20
    linux.fsync_dir(d)
    try:
        linux.free_space(os.path.join(d, "missing"))
    except OSError:
        pass
    else:
        raise AssertionError("expected OSError")


def test_run_command():
    # A generous timeout: starting an interpreter under emulation (QEMU legs) takes seconds.
    out = linux.run_command([sys.executable, "-c", "print('throttled=0x0')"], timeout=60)
    assert out == "throttled=0x0\n"
    assert linux.run_command(["/nonexistent/vcgencmd", "get_throttled"]) is None
    assert linux.run_command([sys.executable, "-c", "raise SystemExit(3)"]) is None
    code = "import time; time.sleep(30)"
    assert linux.run_command([sys.executable, "-c", code], timeout=0.5) is None


def test_import_does_not_load_subprocess_or_tempfile():
    """An idle cycle needs neither: they are imported inside run_command / atomic_write.
    Only what importing linux adds over its package is checked (others may load them)."""
    import subprocess

    code = (
        "import sys, edgecore_ports; before = set(sys.modules); "
        "import edgecore_ports.linux; print(' '.join(sorted(set(sys.modules) - before)))"
    )
    added = subprocess.run(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, check=True
    ).stdout.decode().split()
    assert "edgecore_ports.linux" in added
    assert "subprocess" not in added and "tempfile" not in added, added
