"""The projection quarantine (``schema/0040_projection_quarantine.sql``): every statement on it.

A projection that cannot apply an event sets the event's key (its aggregate, for the
row-per-aggregate read models) aside here and goes on; later events with that key are
skipped and counted. Reads of a quarantined aggregate replay it from the event store.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from psycopg import Connection, Cursor, sql

ERROR_LENGTH_MAX: Final = 2_000
LIST_LIMIT_MAX: Final = 1_000

_INSERT = sql.SQL(
    "INSERT INTO projection_quarantine (projection, quarantine_key, merchant_id, position, error) "
    "VALUES (%s, %s, %s, %s, %s) ON CONFLICT (projection, quarantine_key) DO NOTHING"
)
_COUNT_SKIPPED = sql.SQL(
    "UPDATE projection_quarantine SET events_skipped = events_skipped + %s "
    "WHERE projection = %s AND quarantine_key = %s"
)
_KEYS = sql.SQL("SELECT quarantine_key FROM projection_quarantine WHERE projection = %s")
_ENTRIES = sql.SQL(
    "SELECT projection, quarantine_key, merchant_id, position, error, events_skipped, quarantined_at "
    "FROM projection_quarantine WHERE projection = %s AND position >= %s ORDER BY position LIMIT %s"
)
_OF_MERCHANT = sql.SQL(
    "SELECT quarantine_key FROM projection_quarantine WHERE projection = %s AND merchant_id = %s "
    "ORDER BY position LIMIT %s"
)
_RELEASE = sql.SQL("DELETE FROM projection_quarantine WHERE projection = %s AND quarantine_key = ANY(%s)")
_COUNTS = sql.SQL("SELECT projection, count(*) FROM projection_quarantine GROUP BY projection")


@dataclass(frozen=True, slots=True)
class QuarantineEntry:
    """One key a projection set aside, and why."""

    projection: str
    quarantine_key: UUID
    merchant_id: UUID | None
    position: int
    error: str
    events_skipped: int
    quarantined_at: datetime


def add(
    cursor: Cursor[Any], projection: str, key: UUID, *, merchant_id: UUID | None, position: int, error: str
) -> None:
    """Sets ``key`` aside from ``position`` on (in the caller's transaction)."""
    cursor.execute(_INSERT, (projection, key, merchant_id, position, error[:ERROR_LENGTH_MAX]))


def count_skipped(cursor: Cursor[Any], projection: str, skipped: dict[UUID, int]) -> None:
    """Adds the events skipped in a batch to each key's count."""
    if skipped:
        cursor.executemany(_COUNT_SKIPPED, [(count, projection, key) for key, count in skipped.items()])


def keys(conn: Connection[Any], projection: str) -> set[UUID]:
    """Every key the projection has set aside."""
    return {row[0] for row in conn.execute(_KEYS, (projection,))}


def entries(conn: Connection[Any], projection: str, from_position: int = 0, limit: int = 100) -> list[QuarantineEntry]:
    """The projection's entries from ``from_position`` on, oldest first."""
    rows = conn.execute(_ENTRIES, (projection, from_position, min(limit, LIST_LIMIT_MAX)))
    return [QuarantineEntry(*row) for row in rows]


def of_merchant(conn: Connection[Any], projection: str, merchant_id: UUID, limit: int = LIST_LIMIT_MAX) -> list[UUID]:
    """The keys the projection set aside for one merchant (at most ``limit``)."""
    return [row[0] for row in conn.execute(_OF_MERCHANT, (projection, merchant_id, limit))]


def release(cursor: Cursor[Any], projection: str, keys: list[UUID]) -> None:
    """Forgets the entries of ``keys`` (the projection applies their events again)."""
    cursor.execute(_RELEASE, (projection, keys))


def counts(conn: Connection[Any]) -> dict[str, int]:
    """How many keys each projection has set aside."""
    return {str(name): int(count) for name, count in conn.execute(_COUNTS)}
