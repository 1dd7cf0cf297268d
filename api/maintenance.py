"""Housekeeping the API process does for the tables only it writes."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import anyio
import anyio.to_thread

from adapters import idempotency_keys

log = logging.getLogger(__name__)

PURGE_INTERVAL_S = 300.0
PURGE_BATCH_MAX = 10_000


async def purge_idempotency_keys_forever(state: Any) -> None:
    """Deletes idempotency keys past their TTL, a bounded batch every few minutes.

    Several API processes may run it at once: the deletes are idempotent.
    """
    ttl = timedelta(hours=state.settings.idempotency_ttl_hours)

    def purge() -> int:
        with state.pool.connection() as conn:
            return idempotency_keys.purge(conn, ttl, PURGE_BATCH_MAX)

    while True:
        try:
            purged = await anyio.to_thread.run_sync(purge)
            if purged:
                log.info("purged %d expired idempotency keys", purged)
        except Exception:
            log.exception("purging idempotency keys failed; retrying later")
        await anyio.sleep(PURGE_INTERVAL_S)
