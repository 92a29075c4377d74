"""Board detection and the Raspberry Pi / Jetson metric readers, fed fixture trees of
real /proc and /sys layouts (tests/fixtures/sysroots/) and canned command output.
CPython only."""

import os
import tempfile

from test_ports_linux import NOW, SYSROOTS, assert_valid, by_key, copy_root, write

import edgecore_ports
from edgecore_ports import cpython, jetson, linux, raspberrypi

RPI4 = os.path.join(SYSROOTS, "rpi4")
ORIN = os.path.join(SYSROOTS, "jetson-orin")
X86 = os.path.join(SYSROOTS, "generic-x86")
NVPMODEL_Q = "NVPM WARN: fan mode is not set!\nNV Power Mode: MAXN\n0\n"


def canned(outputs):
    """A run() that answers argv[0] from ``outputs`` and records the calls."""
    calls = []

    def run(argv):
        calls.append(list(argv))
        return outputs.get(argv[0])

    run.calls = calls
    return run


def test_detect_board_from_fixture_trees(tmp_path):
    assert edgecore_ports.detect_board(RPI4) == "raspberrypi"
    assert edgecore_ports.detect_board(ORIN) == "jetson"
    assert edgecore_ports.detect_board(X86) == "linux"
    assert edgecore_ports.detect_board(tempfile.mkdtemp(dir=tmp_path)) == "linux"
    assert edgecore_ports.detect_board(RPI4 + "/") == "raspberrypi"


def test_detect_board_secondary_sources(tmp_path):
    root = tempfile.mkdtemp(dir=tmp_path)  # no model, only the L4T release file
    write(root, "etc/nv_tegra_release", "# R32 (release), REVISION: 7.1\n")
    assert edgecore_ports.detect_board(root) == "jetson"
    root = tempfile.mkdtemp(dir=tmp_path)  # model unhelpful, compatible says Raspberry Pi
    write(root, "proc/device-tree/model", "Some Carrier Board\x00")
    write(root, "proc/device-tree/compatible", "raspberrypi,5-model-b\x00brcm,bcm2712\x00")
    assert edgecore_ports.detect_board(root) == "raspberrypi"
    write(root, "proc/device-tree/compatible", "nvidia,p3737-0000\x00nvidia,tegra234\x00")
    assert edgecore_ports.detect_board(root) == "jetson"
    write(root, "proc/device-tree/compatible", "pine64,rockpro64\x00rockchip,rk3399\x00")
    assert edgecore_ports.detect_board(root) == "linux"
    write(root, "proc/device-tree/model", "Jetson-AGX\x00")
    assert edgecore_ports.detect_board(root) == "jetson"


def test_load_port():
    assert edgecore_ports.load_port("raspberrypi") is raspberrypi
    assert edgecore_ports.load_port("jetson") is jetson
    assert edgecore_ports.load_port("linux") is cpython
    assert edgecore_ports.load_port("cpython") is cpython
    from edgecore_ports import micropython

    assert edgecore_ports.load_port("micropython") is micropython
    board = edgecore_ports.detect_board()
    expected = {"linux": cpython, "raspberrypi": raspberrypi, "jetson": jetson}[board]
    assert edgecore_ports.load_port() is expected
    assert edgecore_ports.load_port("auto") is expected
    assert edgecore_ports.default_port() is cpython
    assert edgecore_ports.platform_name() == "cpython"
    try:
        edgecore_ports.load_port("beaglebone")
    except ValueError as exc:
        assert "board" in str(exc) and "raspberrypi" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_every_port_module_offers_the_interface():
    from edgecore_ports import micropython

    names = (
        "transport",
        "open",
        "clock",
        "monotonic",
        "atomic_write",
        "free_space",
        "metrics",
        "make_transport",
        "configure",
    )
    for module in (cpython, raspberrypi, jetson, micropython):
        for name in names:
            assert callable(getattr(module, name)), (module.__name__, name)
    # The board modules share the CPython transport and files, not copies of them.
    for module in (raspberrypi, jetson):
        assert module.transport is cpython.transport
        assert module.atomic_write is linux.atomic_write


def test_rpi4_metrics_with_throttling_flags():
    run = canned({"vcgencmd": "throttled=0x50005\n"})
    out = raspberrypi.RaspberryPiMetrics(RPI4, run=run).read("/nonexistent", NOW)
    assert_valid(out)
    got = by_key(out)
    assert run.calls == [["vcgencmd", "get_throttled"]]
    assert got[("soc", "SocTemperatureCelsius")] == 48.686
    assert got[("thermal/cpu-thermal", "TemperatureCelsius")] == 48.686
    # 0x50005: bits 0 and 2 now, 16 and 18 since boot.
    assert {k[1]: v for k, v in got.items() if k[0] == "throttling"} == {
        "UnderVoltage": 1.0,
        "FrequencyCapped": 0.0,
        "Throttled": 1.0,
        "SoftTempLimit": 0.0,
        "UnderVoltageOccurred": 1.0,
        "FrequencyCappedOccurred": 0.0,
        "ThrottledOccurred": 1.0,
        "SoftTempLimitOccurred": 0.0,
    }
    assert got[("cpu", "CpuUtilization")] == 100.0 * (96283 + 512 + 38154 + 1893) / (
        96283 + 512 + 38154 + 3562981 + 5021 + 1893
    )
    assert got[("memory", "MemoryAvailableBytes")] == 3415948 * 1024
    assert got[("system", "UptimeSeconds")] == 36912.08


def test_parse_throttled():
    assert raspberrypi.parse_throttled("throttled=0x0")["UnderVoltage"] == 0.0
    flags = raspberrypi.parse_throttled("throttled=0xF000F\n")
    assert set(flags.values()) == {1.0}
    for bad in ("", "throttled", "temp=48.0'C", "throttled=0xZZ", "throttled="):
        try:
            raspberrypi.parse_throttled(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(bad)


def test_rpi_without_or_with_broken_vcgencmd_skips_flags():
    for output in (None, "VCHI initialization failed\n"):
        out = raspberrypi.RaspberryPiMetrics(RPI4, run=canned({"vcgencmd": output})).read(
            "/nonexistent", NOW
        )
        assert not [m for m in out if m["Dimension"] == "throttling"]
        assert by_key(out)[("soc", "SocTemperatureCelsius")] == 48.686
    # The real runner on this machine: no vcgencmd binary, so no flags and no crash.
    out = raspberrypi.RaspberryPiMetrics(RPI4).read("/nonexistent", NOW)
    assert not [m for m in out if m["Dimension"] == "throttling"]


def test_jetson_orin_metrics():
    run = canned({"nvpmodel": NVPMODEL_Q})
    out = jetson.JetsonMetrics(ORIN, run=run).read("/nonexistent", NOW)
    assert_valid(out)
    got = by_key(out)
    assert run.calls == [["nvpmodel", "-q"]]
    assert got[("gpu", "GpuUtilization")] == 31.2  # 312 per-mille
    assert got[("power/MAXN", "PowerModeId")] == 0.0
    thermal = {k[0]: v for k, v in got.items() if k[0].startswith("thermal/")}
    # cv0-thermal reads -256000, the offline-sensor sentinel: skipped.
    assert thermal == {
        "thermal/cpu-thermal": 45.531,
        "thermal/gpu-thermal": 44.156,
        "thermal/soc0-thermal": 43.843,
        "thermal/tj-thermal": 46.093,
    }
    assert got[("cpu", "LoadAverage1m")] == 1.43


def test_parse_nvpmodel():
    assert jetson.parse_nvpmodel(NVPMODEL_Q) == ("MAXN", 0)
    assert jetson.parse_nvpmodel("NV Power Mode: 15W\n1\n") == ("15W", 1)
    assert jetson.parse_nvpmodel("NV Power Mode: MODE_30W_ALL\n3") == ("MODE_30W_ALL", 3)
    for bad in ("", "NV Power Mode: MAXN\n", "NV Power Mode: MAXN\nzero\n", "NV Power Mode:\n0"):
        try:
            jetson.parse_nvpmodel(bad)
        except ValueError:
            pass
        else:
            raise AssertionError(bad)


def test_jetson_power_mode_name_sanitized_and_absent_tools_skipped():
    run = canned({"nvpmodel": "NV Power Mode: MODE_15W_2CORE\n2\n"})
    got = by_key(jetson.JetsonMetrics(ORIN, run=run).read("/nonexistent", NOW))
    assert got[("power/MODE-15W-2CORE", "PowerModeId")] == 2.0
    for output in (None, "garbage"):
        got = by_key(
            jetson.JetsonMetrics(ORIN, run=canned({"nvpmodel": output})).read("/nonexistent", NOW)
        )
        assert not [k for k in got if k[0].startswith("power/")]
        assert ("gpu", "GpuUtilization") in got


def test_jetson_gpu_load_paths(tmp_path):
    # Older L4T (Xavier/Nano): /sys/devices/gpu.0/load wins over later candidates.
    root = copy_root("jetson-orin", tmp_path)
    write(root, "sys/devices/gpu.0/load", "1000\n")
    got = by_key(jetson.JetsonMetrics(root, run=canned({})).read("/nonexistent", NOW))
    assert got[("gpu", "GpuUtilization")] == 100.0
    # Only a devfreq node (its device/ link target holds load).
    root = tempfile.mkdtemp(dir=tmp_path)
    write(root, "sys/class/devfreq/17000000.ga10b/device/load", "45\n")
    write(root, "sys/class/devfreq/3d00000.nvdec/device/load", "999\n")
    got = by_key(jetson.JetsonMetrics(root, run=canned({})).read("/nonexistent", NOW))
    assert got == {("gpu", "GpuUtilization"): 4.5}
    # No GPU at all, malformed load: skipped.
    empty = tempfile.mkdtemp(dir=tmp_path)
    assert jetson.JetsonMetrics(empty, run=canned({})).read("/x", NOW) == []
    root = tempfile.mkdtemp(dir=tmp_path)
    write(root, "sys/devices/57000000.gpu/load", "n/a\n")
    assert jetson.JetsonMetrics(root, run=canned({})).read("/x", NOW) == []


def test_module_level_board_metrics_run_on_this_machine(tmp_path):
    model_dir = tempfile.mkdtemp(dir=tmp_path)
    for module in (cpython, raspberrypi, jetson):
        out = module.metrics(model_dir, NOW)
        assert_valid(out)
        assert ("disk/model-dir", "DiskFreeBytes") in by_key(out)
