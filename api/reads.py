"""The shape every read endpoint shares: read models first, the event streams as truth.

A single resource comes from its read model once projections reached the position the
caller asked for (``X-Daybook-Min-Position``); a resource not projected yet, one its
projection quarantined, or one asked ``?as_of=`` a past instant, is replayed from its
events (a domain "not found" error answers 404). Lists page through a read model with a
keyset cursor; the merchant's quarantined aggregates, left out of the table's rows, are
replayed and merged into the page in keyset order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import anyio.to_thread
from litestar import Request
from psycopg import Connection, sql
from psycopg_pool import ConnectionPool

from api.commands import check_as_of, merchant_of
from api.consistency import HEADER, parse_min_position, wait_for_position
from projections import quarantine

T = TypeVar("T")

_SCOPE = sql.SQL("SELECT set_config('daybook.merchant_id', %s, true)")


@contextmanager
def merchant_rows(pool: ConnectionPool[Any], merchant_id: UUID) -> Iterator[Connection[Any]]:
    """A read-model connection, in a transaction that sees only ``merchant_id``'s rows.

    ``pool`` is the API's read pool (role ``daybook_reader``): row-level security on
    every read-model table keeps other merchants' rows out, whatever the SQL.
    """
    with pool.connection() as conn, conn.transaction():
        conn.execute(_SCOPE, (str(merchant_id),))
        yield conn


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
        merchant_id = merchant_of(request)

        def read() -> T | None:
            with merchant_rows(state.read_pool, merchant_id) as conn:
                return from_read_model(conn)

        found = await anyio.to_thread.run_sync(read)
        if found is not None:
            return found
    when = check_as_of(as_of)
    return await anyio.to_thread.run_sync(lambda: replay(when))


@dataclass(frozen=True, slots=True)
class Quarantined(Generic[T]):
    """How a list brings in the merchant's aggregates its projection set aside.

    Attributes:
        projection: the projection whose quarantine to read.
        load: the list rows of one set-aside aggregate, replayed from its events (none
            when it does not belong in this list: another merchant, a status filter,
            before the cursor).
        sort_key: the list's keyset order (the same order as the SQL ``ORDER BY``).
    """

    projection: str
    load: Callable[[UUID], list[T]]
    sort_key: Callable[[T], Any]


async def read_page(
    request: Request[Any, Any, Any],
    projections: Sequence[str],
    page_size: int,
    fetch: Callable[[Connection[Any], int], list[T]],
    cursor_of: Callable[[T], str],
    *,
    quarantined: Sequence[Quarantined[T]] = (),
) -> tuple[list[T], str | None]:
    """One page (``fetch`` is asked for one row more, to know whether another page follows)."""
    state = request.app.state
    await wait_for_position(state, request.headers.get(HEADER), projections)
    merchant_id: UUID = merchant_of(request)

    def read() -> list[T]:
        with merchant_rows(state.read_pool, merchant_id) as conn:
            rows = fetch(conn, page_size + 1)
            if not quarantined:
                return rows
            set_aside = [
                (source, quarantine.of_merchant(conn, source.projection, merchant_id)) for source in quarantined
            ]
        extra = [row for source, keys in set_aside for key in keys for row in source.load(key)]
        if not extra:
            return rows
        return sorted(rows + extra, key=quarantined[0].sort_key)[: page_size + 1]

    rows = await anyio.to_thread.run_sync(read)
    if len(rows) <= page_size:
        return rows, None
    rows = rows[:page_size]
    return rows, cursor_of(rows[-1])
