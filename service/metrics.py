"""Prometheus metrics of one app (its own registry, so several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self, max_steps: int = 32) -> None:
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "adafocus_request_seconds",
            "POST /v1/classify (and /classify) latency",
            ["status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_seconds = Histogram(
            "adafocus_stage_seconds",
            "time per request in each stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.exit_step = Histogram(
            "adafocus_exit_step",
            "step at which a video exited (0-based)",
            buckets=tuple(range(max_steps)),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "adafocus_batch_size",
            "frames per batched step (each graph of the step runs once on them)",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "adafocus_requests_in_flight", "classify requests being served", registry=self.registry
        )
        self.errors = Counter("adafocus_errors_total", "answered errors by kind", ["kind"], registry=self.registry)

        self.in_flight = 0

    def enter(self) -> None:
        self.in_flight += 1
        self.queue_depth.set(self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1
        self.queue_depth.set(self.in_flight)

    def render(self) -> bytes:
        return generate_latest(self.registry)
