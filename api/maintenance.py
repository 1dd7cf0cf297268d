"""Housekeeping the API process does for the tables only it writes."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import anyio
import anyio.to_thread

from adapters import idempotency_keys

log = logging.getLogger(__name__)

MAINTENANCE_INTERVAL_S = 300.0


async def maintain_idempotency_partitions_forever(state: Any) -> None:
    """Keeps the idempotency keys' day partitions: the coming days created, expired days dropped.

    Every few minutes (a look at the catalog when there is nothing to do). Several API
    processes may run it at once: creating and dropping are serialized in PostgreSQL.
    """
    ttl = timedelta(hours=state.settings.idempotency_ttl_hours)

    def maintain() -> idempotency_keys.PartitionChanges:
        with state.pool.connection() as conn:
            return idempotency_keys.maintain_partitions(conn, ttl)

    while True:
        try:
            changes = await anyio.to_thread.run_sync(maintain)
            if changes.created or changes.dropped:
                log.info(
                    "idempotency key partitions: created %s, dropped %s",
                    changes.created or "none",
                    changes.dropped or "none",
                )
        except Exception:
            log.exception("maintaining idempotency key partitions failed; retrying later")
        await anyio.sleep(MAINTENANCE_INTERVAL_S)
