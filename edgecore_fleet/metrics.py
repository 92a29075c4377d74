"""Prometheus metrics of the fleet server (``prometheus_client``).

Per process: requests by API, operation and outcome, and request latency. From the
database at scrape time (so every process reports the fleet's figures, not its own):
registered devices, devices seen, heartbeats and results recorded. Under gunicorn the
per-process figures are summed across workers by prometheus_client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, set by ``serve``).
"""

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class _FleetCollector:
    def __init__(self, store):
        self.store = store

    def collect(self):
        counts = self.store.counts()
        for name, doc in (
                ("devices", "Registered devices"),
                ("devices_seen", "Devices that sent at least one heartbeat"),
                ("heartbeats", "Heartbeats recorded"),
                ("results", "Deployment results recorded")):
            yield GaugeMetricFamily("edgecore_fleet_" + name, doc, value=counts[name])


class Metrics:
    """observe(api, operation, status, seconds); render() -> bytes for /metrics."""

    def __init__(self, store):
        self.store = store
        self.registry = CollectorRegistry()
        self.requests = Counter("edgecore_fleet_requests", "Requests served",
                                ("api", "operation", "status"), registry=self.registry)
        self.latency = Histogram("edgecore_fleet_request_seconds", "Request latency",
                                 ("api",), buckets=BUCKETS, registry=self.registry)
        self.registry.register(_FleetCollector(store))

    def observe(self, api, operation, status, seconds):
        self.requests.labels(api, operation, str(status)).inc()
        self.latency.labels(api).observe(seconds)

    def render(self):
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(_FleetCollector(self.store))
            return generate_latest(registry)
        return generate_latest(self.registry)
