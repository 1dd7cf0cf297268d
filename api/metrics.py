"""Daybook's own Prometheus metrics (request metrics come from Litestar's plugin)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram

BATCH_SIZE = Histogram(
    "daybook_batch_size",
    "Commands per group-commit batch",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
BATCH_SECONDS = Histogram(
    "daybook_batch_seconds",
    "Time to run and commit one batch",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
BATCH_CONFLICT_RETRIES = Counter("daybook_batch_conflict_retries_total", "Batches re-run after a version conflict")
QUEUE_DEPTH = Gauge("daybook_command_queue_depth", "Commands waiting for the group committer")
WEBHOOK_OUTCOMES = Counter(
    "daybook_webhooks_total", "Webhook deliveries by gateway and outcome", ["gateway", "outcome"]
)
PROJECTION_LAG = Gauge("daybook_projection_lag_events", "Events not yet reflected by a projection", ["projection"])


def observe_batch(size: int, duration_s: float, conflict_retries: int) -> None:
    """``GroupCommitter(on_batch=...)`` hook."""
    BATCH_SIZE.observe(size)
    BATCH_SECONDS.observe(duration_s)
    if conflict_retries:
        BATCH_CONFLICT_RETRIES.inc(conflict_retries)


def track_queue_depth(queue_depth: Callable[[], int]) -> None:
    """Reports the committer's queue depth on every scrape."""
    QUEUE_DEPTH.set_function(queue_depth)
