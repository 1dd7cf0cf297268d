"""The shape every read endpoint shares: read models first, the event streams as truth.

A single resource comes from its read model once projections reached the position the
caller asked for (``X-Daybook-Min-Position``); a resource not projected yet, or asked
``?as_of=`` a past instant, is replayed from its events (a domain "not found" error
answers 404). Lists page through a read model with a keyset cursor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import anyio.to_thread
from litestar import Request
from psycopg import Connection

from api.commands import check_as_of
from api.consistency import HEADER, parse_min_position, wait_for_position

T = TypeVar("T")


async def read_one(
    request: Request[Any, Any, Any],
    projections: Sequence[str],
    as_of: datetime | None,
    from_read_model: Callable[[Connection[Any]], T | None],
    replay: Callable[[datetime | None], T],
) -> T:
    """The resource from its read model, else replayed from its events (as of ``as_of``)."""
    state = request.app.state
    parse_min_position(request.headers.get(HEADER))  # refused even where ?as_of= makes it moot
    if as_of is None:
        await wait_for_position(state, request.headers.get(HEADER), projections)

        def read() -> T | None:
            with state.pool.connection() as conn:
                return from_read_model(conn)

        found = await anyio.to_thread.run_sync(read)
        if found is not None:
            return found
    when = check_as_of(as_of)
    return await anyio.to_thread.run_sync(lambda: replay(when))


async def read_page(
    request: Request[Any, Any, Any],
    projections: Sequence[str],
    page_size: int,
    fetch: Callable[[Connection[Any], int], list[T]],
    cursor_of: Callable[[T], str],
) -> tuple[list[T], str | None]:
    """One page (``fetch`` is asked for one row more, to know whether another page follows)."""
    state = request.app.state
    await wait_for_position(state, request.headers.get(HEADER), projections)

    def read() -> list[T]:
        with state.pool.connection() as conn:
            return fetch(conn, page_size + 1)

    rows = await anyio.to_thread.run_sync(read)
    if len(rows) <= page_size:
        return rows, None
    rows = rows[:page_size]
    return rows, cursor_of(rows[-1])
