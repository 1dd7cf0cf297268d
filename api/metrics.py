"""The API process's Prometheus metrics (``api/scrape.py`` exposes them with everyone else's).

Gauges say how they add up across processes in multiprocess mode (``livesum``: each
live process's value, summed). What PostgreSQL knows — projection lag, quarantine,
drift, the inbox backlog — is read at scrape time instead (``api/scrape.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

from prometheus_client import Counter, Gauge, Histogram
from psycopg_pool import ConnectionPool

from api.tally import TALLY

log = logging.getLogger(__name__)

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
QUEUE_DEPTH = Gauge(
    "daybook_command_queue_depth", "Commands waiting for the group committer", multiprocess_mode="livesum"
)
COMMANDS_ROUTED = Counter(
    "daybook_commands_routed_total",
    "Commands by where they ran: local (this process owns the partition), forwarded (to its owner), "
    "moved (an owner refused a stale epoch), resent (sent again after a lost answer)",
    ["route"],
)
PARTITIONS_OWNED = Gauge(
    "daybook_committer_partitions_owned", "Committer partitions this process owns", multiprocess_mode="livesum"
)
WEBHOOK_OUTCOMES = Counter(
    "daybook_webhooks_total", "Webhook deliveries by gateway and outcome", ["gateway", "outcome"]
)


def batch_observer(queue_depth: Callable[[], int]) -> Callable[[int, float, int], None]:
    """A ``GroupCommitter(on_batch=...)`` hook: batch size and time, retries, the queue left behind.

    The queue depth is set after each batch (a callback gauge cannot be read across
    processes): it is what waited when the last batch was answered.
    """

    def observe(size: int, duration_s: float, conflict_retries: int) -> None:
        BATCH_SIZE.observe(size)
        BATCH_SECONDS.observe(duration_s)
        if conflict_retries:
            BATCH_CONFLICT_RETRIES.inc(conflict_retries)
        QUEUE_DEPTH.set(queue_depth())

    return observe


POOL_CONNECTIONS = Gauge(
    "daybook_database_pool_connections",
    "Connections of an API database pool: open (held by the pool), in_use (lent out), size_max",
    ["pool", "state"],
    multiprocess_mode="livesum",
)
POOL_REQUESTS_WAITING = Gauge(
    "daybook_database_pool_requests_waiting",
    "Requests waiting for a connection of an API database pool",
    ["pool"],
    multiprocess_mode="livesum",
)
POOL_OBSERVE_INTERVAL_S = 1.0


def observe_pools(pools: Mapping[str, ConnectionPool]) -> None:
    """Sets the pool gauges from each pool's statistics (kept by psycopg_pool, cheap to read)."""
    for name, pool in pools.items():
        stats = pool.get_stats()
        size, available = stats.get("pool_size", 0), stats.get("pool_available", 0)
        POOL_CONNECTIONS.labels(name, "open").set(size)
        POOL_CONNECTIONS.labels(name, "in_use").set(size - available)
        POOL_CONNECTIONS.labels(name, "size_max").set(pool.max_size)
        POOL_REQUESTS_WAITING.labels(name).set(stats.get("requests_waiting", 0))


async def observe_pools_forever(pools: Mapping[str, ConnectionPool]) -> None:
    """:func:`observe_pools` every second (a gauge set in one process is summed across processes)."""
    while True:
        try:
            observe_pools(pools)
        except Exception:
            log.exception("observing the database pools failed")
        await asyncio.sleep(POOL_OBSERVE_INTERVAL_S)


def route_observer() -> Callable[[str], None]:
    """A ``CommandRouter(on_route=...)`` hook counting where commands ran."""
    children = {route: COMMANDS_ROUTED.labels(route) for route in ("local", "forwarded", "moved", "resent")}
    return lambda route: TALLY.inc(children[route])


REQUEST_SECONDS = Histogram(
    "daybook_request_duration_seconds",
    "HTTP request latency by method, route and status",
    ["method", "path", "status_code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
REQUESTS_IN_PROGRESS = Gauge("daybook_requests_in_progress", "HTTP requests being served", multiprocess_mode="livesum")
