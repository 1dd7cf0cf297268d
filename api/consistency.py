"""Read-your-writes: ``X-Daybook-Min-Position`` waits until read models reach a position."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

import anyio
import anyio.to_thread
from psycopg import sql
from psycopg_pool import ConnectionPool

from api.problems import ApiError
from domain import limits

HEADER = "x-daybook-min-position"
POLL_INTERVAL_S = 0.01
# ASCII digits only: str.isdigit() and int() also take "²", "٣" or full-width digits.
_DIGITS = re.compile(f"[0-9]{{1,{len(str(limits.POSITION_MAX))}}}")

_POSITION = sql.SQL("SELECT coalesce(min(notification_id), 0) FROM projection_tracking WHERE projection = ANY(%s)")


def parse_min_position(value: str | None) -> int | None:
    """The position asked for, or ``None``.

    Raises:
        ApiError: 400 for anything but ASCII digits of a position up to ``POSITION_MAX``.
    """
    if value is None:
        return None
    if _DIGITS.fullmatch(value) is None or int(value) > limits.POSITION_MAX:
        detail = f"X-Daybook-Min-Position must be an integer from 0 to {limits.POSITION_MAX} in ASCII digits."
        raise ApiError(400, "invalid_request", detail)
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
