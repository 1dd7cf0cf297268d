"""Hold expiry: releases the stock of reserved orders whose hold has passed, in batches.

The read model says which orders look due; the Order aggregate decides (``expire`` is
a no-op unless the order is still reserved and due), so running the sweep twice, or
on two workers at once, is safe: version conflicts are retried by the group committer.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import Future, wait
from datetime import UTC, datetime
from typing import Any

from psycopg_pool import ConnectionPool

from domain.commands import ExpireOrder, ExpiryResult
from domain.context import CommandContext
from domain.groupcommit import CommandOutcome, GroupCommitter
from projections.orders import due_holds
from workers import metrics

log = logging.getLogger(__name__)

SWEEP_BATCH_MAX = 1_000
SWEEP_WAIT_S = 30.0


def expire_due_holds(pool: ConnectionPool[Any], committer: GroupCommitter, now: datetime | None = None) -> int:
    """Expires up to ``SWEEP_BATCH_MAX`` due orders; returns how many expired."""
    now = now or datetime.now(UTC)
    with pool.connection() as conn:
        due = due_holds(conn, now, SWEEP_BATCH_MAX)
    if not due:
        metrics.observe_sweep(0, 0)
        return 0
    context = CommandContext(actor="system:hold-expiry", request_id=f"sweep-{uuid.uuid4().hex}")
    futures: list[Future[CommandOutcome[ExpiryResult]]] = [
        committer.submit(ExpireOrder(context, merchant_id, order_id, now)) for merchant_id, order_id in due
    ]
    wait(futures, timeout=SWEEP_WAIT_S)
    expired = 0
    for future in futures:
        if not future.done():
            continue
        error = future.exception()
        if error is not None:
            log.warning("hold expiry failed for one order: %s", error)
        elif future.result().value.expired:
            expired += 1
    log.info("hold expiry: %d of %d due orders expired", expired, len(due))
    metrics.observe_sweep(len(due), expired)
    return expired
