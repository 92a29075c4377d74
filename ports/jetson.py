"""NVIDIA Jetson port: the CPython port plus GPU load and the nvpmodel power mode.

Thermal zones come by name from the generic reader (Jetson zone types are
``CPU-therm``, ``GPU-therm``, ``cpu-thermal``, ``tj-thermal`` ...).

Extra metrics (Dimension / MetricName, unit):
    gpu / GpuUtilization             percent; the sysfs ``load`` file is in per-mille
    power/<mode name> / PowerModeId  the ``nvpmodel -q`` mode id (e.g. power/MAXN = 0)
"""

import os

from edgecore_ports import dimension_part, edge_metric
from edgecore_ports.cpython import (
    atomic_write,
    clock,
    configure,
    free_space,
    fsync_dir,
    make_transport,
    monotonic,
    open,
    transport,
)
from edgecore_ports.linux import BoardMetrics, board_metrics, run_command

__all__ = [
    "JetsonMetrics", "atomic_write", "clock", "configure", "free_space", "fsync_dir",
    "make_transport", "metrics", "monotonic", "open", "parse_nvpmodel", "transport",
]

# Where the integrated GPU's load (0..1000) lives across L4T releases: gpu.0 on
# Nano/TX2/Xavier kernels, the platform bus path on newer ones, and the device
# node names of Orin (ga10b), Xavier (gv11b), TX2 (gp10b) and Nano/TX1 (57000000.gpu).
GPU_LOAD_PATHS = (
    "/sys/devices/gpu.0/load",
    "/sys/devices/platform/gpu.0/load",
    "/sys/devices/platform/bus@0/17000000.gpu/load",
    "/sys/devices/platform/17000000.ga10b/load",
    "/sys/devices/17000000.ga10b/load",
    "/sys/devices/platform/17000000.gv11b/load",
    "/sys/devices/17000000.gv11b/load",
    "/sys/devices/17000000.gp10b/load",
    "/sys/devices/57000000.gpu/load",
)


def parse_nvpmodel(text):
    """(mode name, mode id) from ``nvpmodel -q`` output; ValueError if malformed."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if line.startswith("NV Power Mode:"):
            name = line[len("NV Power Mode:"):].strip()
            if not name or i + 1 >= len(lines):
                break
            return name, int(lines[i + 1])
    raise ValueError("no 'NV Power Mode:' line followed by an id")


class JetsonMetrics(BoardMetrics):
    """Generic Linux metrics plus GPU load and power mode (``run``: see BoardMetrics)."""

    def __init__(self, root="/", run=run_command):
        BoardMetrics.__init__(self, root, run)
        self._gpu_path = None

    def gpu_load_path(self):
        """The first existing GPU load file (remembered once found)."""
        if self._gpu_path is None or not os.path.exists(self._gpu_path):
            self._gpu_path = None
            for candidate in GPU_LOAD_PATHS:
                if os.path.exists(self.path(candidate)):
                    self._gpu_path = self.path(candidate)
                    break
            else:
                self._gpu_path = self._devfreq_gpu_load()
        return self._gpu_path

    def _devfreq_gpu_load(self):
        """Newer L4T releases: /sys/class/devfreq/<gpu>/device/load."""
        base = self.path("/sys/class/devfreq")
        try:
            names = sorted(os.listdir(base))
        except OSError:
            return None
        for name in names:
            if "gpu" in name or name.endswith(("ga10b", "gv11b", "gp10b")):
                candidate = "%s/%s/device/load" % (base, name)
                if os.path.exists(candidate):
                    return candidate
        return None

    def read(self, model_dir, now):
        out = BoardMetrics.read(self, model_dir, now)
        path = self.gpu_load_path()
        if path is not None:
            permille = self._parse(path[len(self.root):], lambda t: int(t.strip()))
            if permille is not None:
                out.append(edge_metric("gpu", "GpuUtilization", permille / 10.0, now))
        power = self.command(["nvpmodel", "-q"], parse_nvpmodel)
        if power is not None:
            name, mode = power
            dimension = "power/" + dimension_part(name, "mode%d" % mode)
            out.append(edge_metric(dimension, "PowerModeId", mode, now))
        return out


metrics = board_metrics(JetsonMetrics)
