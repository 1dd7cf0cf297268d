"""``GET /metrics``: what every process counted, and what the database says at scrape time.

Two sources, one exposition:

- counters, histograms and gauges the processes keep (requests, batches, projection
  batches, dramatiq messages, hold expiry). With several processes — ``daybook serve``
  runs the API, the worker and the projections; ``DAYBOOK_API_PROCESSES`` > 1 runs
  several API processes — they share ``PROMETHEUS_MULTIPROC_DIR`` and any API process
  answers for all of them (Prometheus multiprocess mode);
- the state kept in PostgreSQL, read when scraped so that every process, and every
  machine, reports the same: each projection's lag in events and in seconds of no
  progress, its quarantined aggregates, the last drift check, the webhook inbox backlog.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

import psycopg
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from psycopg_pool import ConnectionPool

from adapters import webhook_inbox
from api.readiness import drifted_rows, projection_states

log = logging.getLogger(__name__)

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


class DatabaseCollector(Collector):
    """Metrics read from the database once per scrape."""

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self.pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The database's metrics; none when it does not answer (``/readyz`` says so)."""
        lag = GaugeMetricFamily(
            "daybook_projection_lag_events", "Events not yet reflected by a projection", labels=["projection"]
        )
        idle = GaugeMetricFamily(
            "daybook_projection_stalled_seconds",
            "Seconds a projection that is behind has gone without advancing (0 when caught up)",
            labels=["projection"],
        )
        held = GaugeMetricFamily(
            "daybook_projection_quarantined",
            "Aggregates a projection set aside after failing to apply them",
            labels=["projection"],
        )
        drift = GaugeMetricFamily(
            "daybook_read_model_drift_rows",
            "Rows the last drift check found different from their events",
            labels=["projection"],
        )
        inbox = GaugeMetricFamily("daybook_webhook_inbox_rows", "Webhook inbox rows by state", labels=["state"])
        try:
            with self.pool.connection(timeout=2.0) as conn:
                for name, state in projection_states(conn).items():
                    lag.add_metric([name], state.lag)
                    stalled = state.idle_seconds if state.lag > 0 and state.idle_seconds is not None else 0.0
                    idle.add_metric([name], stalled)
                    held.add_metric([name], state.quarantined)
                for name, rows in drifted_rows(conn).items():
                    drift.add_metric([name], rows)
                pending, parked = webhook_inbox.backlog(conn)
                inbox.add_metric(["pending"], pending)
                inbox.add_metric(["parked"], parked)
        except (psycopg.Error, OSError) as error:
            log.warning("metrics: the database did not answer: %s", error)
            return
        yield from (lag, idle, held, drift, inbox)


def exposition(pool: ConnectionPool[Any]) -> bytes:
    """The Prometheus text of every process's metrics and of the database's."""
    directory = os.environ.get(MULTIPROCESS_DIR_VARIABLE)
    if directory:
        processes = CollectorRegistry()
        multiprocess.MultiProcessCollector(processes, path=directory)  # type: ignore[no-untyped-call]
        counted = generate_latest(processes)
    else:
        counted = generate_latest(REGISTRY)
    database = CollectorRegistry()
    database.register(DatabaseCollector(pool))
    return counted + generate_latest(database)
