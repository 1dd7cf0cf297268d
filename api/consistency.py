"""Read-your-writes: ``X-Daybook-Min-Position`` waits until read models reach a position."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.to_thread
from psycopg import sql
from psycopg_pool import ConnectionPool

from api.problems import ApiError

HEADER = "x-daybook-min-position"
POLL_INTERVAL_S = 0.01

_POSITION = sql.SQL("SELECT coalesce(min(notification_id), 0) FROM projection_tracking WHERE projection = ANY(%s)")


def parse_min_position(value: str | None) -> int | None:
    """The position asked for, or ``None``; 400 for anything but a non-negative integer."""
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or len(value) > 19:  # "²".isdigit() is true
        raise ApiError(400, "invalid_request", "X-Daybook-Min-Position must be a non-negative integer.")
    return int(value)


def projected_position(pool: ConnectionPool, projections: Sequence[str]) -> int:
    """The lowest position the named projections have reached."""
    with pool.connection() as conn:
        row = conn.execute(_POSITION, (list(projections),)).fetchone()
    return int(row[0]) if row else 0


async def wait_for_position(state: Any, header_value: str | None, projections: Sequence[str]) -> None:
    """Returns once ``projections`` reached the asked position; 503 ``projection_lagging`` after the limit."""
    wanted = parse_min_position(header_value)
    if wanted is None:
        return
    deadline = time.monotonic() + state.settings.read_wait_max_seconds
    while True:
        reached = await anyio.to_thread.run_sync(projected_position, state.pool, projections)
        if reached >= wanted:
            return
        if time.monotonic() >= deadline:
            raise ApiError(
                503,
                "projection_lagging",
                f"Read models are at position {reached}, not yet {wanted}; retry shortly.",
                headers={"Retry-After": "1"},
            )
        await anyio.sleep(POLL_INTERVAL_S)
