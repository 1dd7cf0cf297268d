"""The dramatiq workers' Prometheus metrics (exposed by the API's ``/metrics``).

dramatiq's own Prometheus middleware runs an exposition server of its own and sets its
own multiprocess directory; these few series join the API's exposition instead.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter("daybook_worker_messages_total", "Messages processed by actor and outcome", ["actor", "outcome"])
MESSAGE_SECONDS = Histogram(
    "daybook_worker_message_seconds",
    "Time to process one message, by actor",
    ["actor"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
HOLDS_EXPIRED = Counter("daybook_holds_expired_total", "Reserved orders the hold-expiry sweep expired")
HOLD_SWEEP_LAST = Gauge(
    "daybook_hold_expiry_last_sweep_timestamp_seconds",
    "When the hold-expiry sweep last finished (Unix time)",
    multiprocess_mode="max",
)
HOLD_SWEEP_DUE = Gauge(
    "daybook_hold_expiry_due_orders", "Due orders the last sweep found", multiprocess_mode="mostrecent"
)

_STARTED = "daybook_started_at"


class MessageMetrics(dramatiq.Middleware):
    """Counts each message's outcome (done, failed, skipped) and time, per actor."""

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        """Notes when the message started."""
        message.options[_STARTED] = time.perf_counter()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        """Counts the outcome and the time."""
        outcome = "failed" if exception is not None else "done"
        MESSAGES.labels(actor=message.actor_name, outcome=outcome).inc()
        started = message.options.pop(_STARTED, None)
        if started is not None:
            MESSAGE_SECONDS.labels(actor=message.actor_name).observe(time.perf_counter() - started)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        """Counts a message skipped (too old, cancelled)."""
        MESSAGES.labels(actor=message.actor_name, outcome="skipped").inc()


def observe_sweep(due: int, expired: int) -> None:
    """Counts one hold-expiry sweep."""
    HOLD_SWEEP_DUE.set(due)
    HOLDS_EXPIRED.inc(expired)
    HOLD_SWEEP_LAST.set(time.time())
