"""The dramatiq broker on Redis, with explicit retry, time-limit and dead-letter policy.

Redis is a transport, never the source of truth: work that must not be lost is
recorded in PostgreSQL first and re-enqueued by a sweeper if a message goes missing.

The actors' names are the contract between whoever sends work (the API, the
scheduler) and the workers that declare the actors (:mod:`workers.tasks`); senders use
:func:`send` with a name from here and never import the workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware import (
    AgeLimit,
    Callbacks,
    CurrentMessage,
    Pipelines,
    Retries,
    ShutdownNotifications,
    TimeLimit,
)

PROCESS_INBOX_ACTOR: Final = "process_inbox"
SWEEP_INBOX_ACTOR: Final = "sweep_inbox"
EXPIRE_HOLDS_ACTOR: Final = "expire_holds"
CHECK_DRIFT_ACTOR: Final = "check_drift"
PING_ACTOR: Final = "ping"
INBOX_MESSAGE_ROWS_MAX: Final = 100
"""Inbox rows named by one ``process_inbox`` message."""

NAMESPACE = "daybook"
QUEUE = "default"
DEAD_MESSAGE_TTL_MS = 7 * 24 * 3600 * 1000
MAX_RETRIES = 10
TIME_LIMIT_MS = 60_000
MIN_BACKOFF_MS = 200
MAX_BACKOFF_MS = 60_000
MAX_AGE_MS = 24 * 3600 * 1000


def make_broker(redis_url: str, *, namespace: str = NAMESPACE) -> RedisBroker:
    """A Redis broker whose middleware has Daybook's limits set explicitly.

    A message that fails ``MAX_RETRIES`` times is parked in the dead-letter queue
    (``<namespace>:<queue>.XQ``) for ``DEAD_MESSAGE_TTL_MS``.
    """
    middleware = [
        AgeLimit(max_age=MAX_AGE_MS),
        TimeLimit(time_limit=TIME_LIMIT_MS),
        ShutdownNotifications(),
        Callbacks(),
        Pipelines(),
        Retries(max_retries=MAX_RETRIES, min_backoff=MIN_BACKOFF_MS, max_backoff=MAX_BACKOFF_MS),
        CurrentMessage(),
    ]
    return RedisBroker(  # type: ignore[no-untyped-call]
        url=redis_url,
        namespace=namespace,
        middleware=middleware,
        dead_message_ttl=DEAD_MESSAGE_TTL_MS,
        socket_timeout=10.0,
    )


def send(broker: dramatiq.Broker, actor_name: str, *args: object, queue_name: str = QUEUE) -> dramatiq.Message[object]:
    """Enqueues a message for ``actor_name`` without importing the worker module."""
    message: dramatiq.Message[object] = dramatiq.Message(
        queue_name=queue_name, actor_name=actor_name, args=args, kwargs={}, options={}
    )
    return broker.enqueue(message)


def enqueue_inbox_rows(broker: dramatiq.Broker, inbox_ids: Sequence[int]) -> int:
    """Sends ``process_inbox`` messages for the rows, ``INBOX_MESSAGE_ROWS_MAX`` each; returns how many."""
    ids = list(inbox_ids)
    messages = 0
    for start in range(0, len(ids), INBOX_MESSAGE_ROWS_MAX):
        send(broker, PROCESS_INBOX_ACTOR, ids[start : start + INBOX_MESSAGE_ROWS_MAX])
        messages += 1
    return messages
