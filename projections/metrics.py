"""The projections process's Prometheus metrics (exposed by the API's ``/metrics``)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

BATCH_EVENTS = Histogram(
    "daybook_projection_batch_events",
    "Events covered by one committed projection batch",
    ["projection"],
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
EVENTS = Counter("daybook_projection_events_total", "Events a projection has processed", ["projection"])
QUARANTINES = Counter(
    "daybook_projection_quarantines_total",
    "Aggregates a projection set aside after failing to apply them",
    ["projection"],
)


def observe_batch(projection: str, events: int) -> None:
    """Counts one committed batch of ``events``."""
    BATCH_EVENTS.labels(projection=projection).observe(events)
    EVENTS.labels(projection=projection).inc(events)


def observe_quarantine(projection: str) -> None:
    """Counts one aggregate set aside."""
    QUARANTINES.labels(projection=projection).inc()
