"""Prometheus metrics of one app (its own registry, so several apps can live in one process).

The request latency, stage times, exit step and errors come in two forms: the totals
(``adafocus_request_seconds{status}``, ``adafocus_stage_seconds{stage}``, ``adafocus_exit_step``,
``adafocus_errors_total{kind}``, as before) and the same by served model
(``adafocus_model_*``, with ``model`` and ``version`` labels). Those labels only ever take a
served model's name and version, or ``none`` for a request that failed before a model was
chosen (an unknown model, overload, a bad path), so their cardinality is bounded by the
model repository, never by what clients send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

ModelLabels = tuple[str, str]  # (model, version) as the metrics label them
NO_MODEL: ModelLabels = ("none", "none")
# Where a request keeps the labels of the model it was given (request.state / scope["state"]).
MODEL_LABELS_KEY = "model_labels"


def model_labels(name: str, version: int) -> ModelLabels:
    return name, str(version)


def labels_of(state: Mapping[str, Any] | None) -> ModelLabels:
    """The model labels a request's state holds, ``NO_MODEL`` before a model was chosen."""
    return (state or {}).get(MODEL_LABELS_KEY, NO_MODEL)


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
        self.uploads_in_progress = Gauge(
            "adafocus_uploads_in_progress", "classify uploads still being received", registry=self.registry
        )
        self.upload_bytes_held = Gauge(
            "adafocus_upload_bytes_held",
            "bytes of uploads held in memory (received or being decoded)",
            registry=self.registry,
        )
        self.decoder_rss_bytes = Gauge(
            "adafocus_decoder_rss_bytes", "resident memory of each decoder process", ["worker"], registry=self.registry
        )
        self.decoder_restarts = Counter(
            "adafocus_decoder_restarts_total",
            "decoder processes replaced, by cause (crash, timeout, recycled)",
            ["cause"],
            registry=self.registry,
        )

        # The same by model and version (see the module's docstring).
        self.model_request_seconds = Histogram(
            "adafocus_model_request_seconds",
            "POST /v1/classify (and /classify) latency by model",
            ["model", "version", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_stage_seconds = Histogram(
            "adafocus_model_stage_seconds",
            "time per request in each stage, by model",
            ["model", "version", "stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.model_exit_step = Histogram(
            "adafocus_model_exit_step",
            "step at which a video exited (0-based), by model",
            ["model", "version"],
            buckets=tuple(range(max_steps)),
            registry=self.registry,
        )
        self.model_errors = Counter(
            "adafocus_model_errors_total",
            "answered errors by kind and model",
            ["model", "version", "kind"],
            registry=self.registry,
        )

        self.in_flight = 0

    def observe_request(self, model: ModelLabels, status: int, seconds: float) -> None:
        self.request_seconds.labels(str(status)).observe(seconds)
        self.model_request_seconds.labels(*model, str(status)).observe(seconds)

    def observe_stages(self, model: ModelLabels, seconds: Mapping[str, float]) -> None:
        for stage, spent in seconds.items():
            self.stage_seconds.labels(stage).observe(spent)
            self.model_stage_seconds.labels(*model, stage).observe(spent)

    def observe_exit(self, model: ModelLabels, step: int) -> None:
        self.exit_step.observe(step)
        self.model_exit_step.labels(*model).observe(step)

    def count_error(self, model: ModelLabels, kind: str) -> None:
        self.errors.labels(kind).inc()
        self.model_errors.labels(*model, kind).inc()

    def enter(self) -> None:
        self.in_flight += 1
        self.queue_depth.set(self.in_flight)

    def leave(self) -> None:
        self.in_flight -= 1
        self.queue_depth.set(self.in_flight)

    def render(self) -> bytes:
        return generate_latest(self.registry)
