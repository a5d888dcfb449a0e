"""Prometheus metrics of the service, on a registry of its own (so tests can start several services)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Request latencies on a loaded service are milliseconds; the buckets resolve 1–100 ms finely.
_LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5)


class ServiceMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ml_platform_requests", "HTTP requests by endpoint and status", ["endpoint", "status"],
                                registry=r)
        self.request_latency = Histogram("ml_platform_request_latency_seconds", "Request latency by endpoint",
                                         ["endpoint"], buckets=_LATENCY_BUCKETS, registry=r)
        self.predictions = Counter("ml_platform_predictions", "Rows scored by variant and model version",
                                   ["variant", "model_version"], registry=r)
        self.model_errors = Counter("ml_platform_model_errors", "Model calls that raised, by variant", ["variant"],
                                    registry=r)
        self.model_latency = Histogram("ml_platform_model_call_seconds", "Time of one batched model call",
                                       ["variant"], buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_rows = Histogram("ml_platform_batch_rows", "Rows per model call (micro-batching)",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), registry=r)
        self.model_version = Gauge("ml_platform_model_version", "Loaded version per alias (value = version)",
                                   ["alias"], registry=r)
        self.canary_share = Gauge("ml_platform_canary_share_percent", "Share of traffic sent to the challenger",
                                  registry=r)
        self.log_pending = Gauge("ml_platform_prediction_log_pending_rows", "Predictions not yet written",
                                 registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
