"""Raspberry Pi port: the CPython port plus SoC temperature and the firmware's
throttling / under-voltage flags (``vcgencmd get_throttled``).

Extra metrics (Dimension / MetricName, unit):
    soc / SocTemperatureCelsius            /sys/class/thermal/thermal_zone0/temp (the SoC sensor)
    throttling / UnderVoltage, FrequencyCapped, Throttled, SoftTempLimit           1.0 now, else 0.0
    throttling / UnderVoltageOccurred, FrequencyCappedOccurred, ThrottledOccurred,
                 SoftTempLimitOccurred                                 1.0 if it happened since boot
"""

from edgecore_ports import edge_metric
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
from edgecore_ports.linux import BoardMetrics, board_metrics

__all__ = [
    "RaspberryPiMetrics", "atomic_write", "clock", "configure", "free_space", "fsync_dir",
    "make_transport", "metrics", "monotonic", "open", "parse_throttled", "transport",
]

# Bits of get_throttled, from the Raspberry Pi firmware documentation.
THROTTLED_BITS = (
    (0, "UnderVoltage"),
    (1, "FrequencyCapped"),
    (2, "Throttled"),
    (3, "SoftTempLimit"),
    (16, "UnderVoltageOccurred"),
    (17, "FrequencyCappedOccurred"),
    (18, "ThrottledOccurred"),
    (19, "SoftTempLimitOccurred"),
)


def parse_throttled(text):
    """{MetricName: 0.0/1.0} from ``throttled=0x50005``; ValueError if malformed."""
    key, sep, value = text.strip().partition("=")
    if key.strip() != "throttled" or not sep:
        raise ValueError("expected throttled=0x..., got %r" % text[:40])
    bits = int(value.strip(), 16 if value.strip().lower().startswith("0x") else 10)
    return {name: float((bits >> bit) & 1) for bit, name in THROTTLED_BITS}


class RaspberryPiMetrics(BoardMetrics):
    """Generic Linux metrics plus SoC temperature and throttling flags (``run``: see
    BoardMetrics)."""

    def read(self, model_dir, now):
        out = BoardMetrics.read(self, model_dir, now)
        milli = self._parse("/sys/class/thermal/thermal_zone0/temp", lambda t: int(t.strip()))
        if milli is not None:
            out.append(edge_metric("soc", "SocTemperatureCelsius", milli / 1000.0, now))
        flags = self.command(["vcgencmd", "get_throttled"], parse_throttled)
        if flags is not None:
            for _, name in THROTTLED_BITS:
                if name in flags:
                    out.append(edge_metric("throttling", name, flags[name], now))
        return out


metrics = board_metrics(RaspberryPiMetrics)
