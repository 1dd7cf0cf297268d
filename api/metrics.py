"""The API process's Prometheus metrics (``api/scrape.py`` exposes them with everyone else's).

Gauges say how they add up across processes in multiprocess mode (``livesum``: each
live process's value, summed). What PostgreSQL knows — projection lag, quarantine,
drift, the inbox backlog — is read at scrape time instead (``api/scrape.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
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


def route_observer() -> Callable[[str], None]:
    """A ``CommandRouter(on_route=...)`` hook counting where commands ran."""
    children = {route: COMMANDS_ROUTED.labels(route) for route in ("local", "forwarded", "moved", "resent")}
    return lambda route: children[route].inc()


REQUEST_SECONDS = Histogram(
    "daybook_request_duration_seconds",
    "HTTP request latency by method, route and status",
    ["method", "path", "status_code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
REQUESTS_IN_PROGRESS = Gauge("daybook_requests_in_progress", "HTTP requests being served", multiprocess_mode="livesum")


class RequestMetricsMiddleware:
    """Request count and latency per route template and the status actually sent.

    Litestar's Prometheus middleware measured at ~20 % of the API's CPU under load (four
    labelled metrics resolved per request); this one observes one histogram (its
    ``_count`` is the request counter) through a cache of label children. It wraps the
    whole application (``Litestar.asgi_handler``), outside routing and the exception
    handlers, so it sees every answer as sent: 401s raised by authentication, 404s and
    405s of the router, problems of every kind. Should nothing be sent at all, the server
    answers 500, which is what is counted.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._children: dict[tuple[str, str, int], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        REQUESTS_IN_PROGRESS.inc()
        try:
            await self.app(scope, receive, send_and_note_status)
        finally:
            REQUESTS_IN_PROGRESS.dec()
            key = (scope["method"], scope.get("path_template") or "unmatched", status)
            child = self._children.get(key)
            if child is None:
                child = self._children.setdefault(key, REQUEST_SECONDS.labels(*key))
            child.observe(time.perf_counter() - started)
