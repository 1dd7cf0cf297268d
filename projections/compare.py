"""Read models against the event streams: is every row what replaying its aggregate gives?

Used by the drift check (a sample of rows, each replayed at the version it shows) and
by the tests (every row against every aggregate). Rows of aggregates the projection
quarantined are left out: they are stale by design, and reads replay those.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.utils import resolve_topic
from psycopg import sql
from psycopg.types.json import Jsonb

from projections import quarantine
from projections.state import AggregateStateProjection

_FIRST_EVENTS = sql.SQL("SELECT originator_id, topic FROM daybook_events WHERE originator_version = 1")
_LAST_POSITIONS = sql.SQL(
    "SELECT originator_id, max(notification_id) FROM daybook_events WHERE originator_id = ANY(%s) "
    "GROUP BY originator_id"
)


@dataclass(frozen=True, slots=True)
class Difference:
    """One column of one row that is not what the events say.

    Attributes:
        projection: the read model.
        key: the aggregate.
        column: the differing column (``"(row)"`` for a missing or extra row).
        expected: from the events.
        actual: in the table.
    """

    projection: str
    key: uuid.UUID
    column: str
    expected: Any
    actual: Any


def plain(value: Any) -> Any:
    """A row value comparable with what psycopg reads back (JSON wrappers unwrapped)."""
    return value.obj if isinstance(value, Jsonb) else value


def table_rows(
    conn: psycopg.Connection[Any], projection: AggregateStateProjection, keys: Iterable[uuid.UUID] | None = None
) -> dict[uuid.UUID, tuple[Any, ...]]:
    """The table's rows by aggregate id (all, or those of ``keys``), columns in the projection's order."""
    statement = sql.SQL("SELECT {key}, {columns} FROM {table}").format(
        key=sql.Identifier(projection.key_column),
        columns=sql.SQL(", ").join(map(sql.Identifier, projection.columns)),
        table=sql.Identifier(projection.table),
    )
    if keys is None:
        rows = conn.execute(statement).fetchall()
    else:
        statement += sql.SQL(" WHERE {} = ANY(%s)").format(sql.Identifier(projection.key_column))
        rows = conn.execute(statement, (list(keys),)).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def expected_rows(
    app: Application[Any], conn: psycopg.Connection[Any], projection: AggregateStateProjection
) -> dict[uuid.UUID, tuple[Any, ...]]:
    """Every row the table should hold, from replaying every aggregate of the projection's class."""
    name = projection.aggregate_class.__name__
    ids = [
        _as_uuid(originator_id)
        for originator_id, topic in conn.execute(_FIRST_EVENTS)
        if resolve_topic(topic).__qualname__.split(".", 1)[0] == name
    ]
    positions = dict(conn.execute(_LAST_POSITIONS, (ids,)).fetchall())
    expected = {}
    for aggregate_id in ids:
        aggregate: Aggregate = app.repository.get(aggregate_id)
        expected[aggregate_id] = tuple(map(plain, projection.row(aggregate, positions[aggregate_id])))
    return expected


def differences(
    app: Application[Any], conn: psycopg.Connection[Any], projection: AggregateStateProjection
) -> list[Difference]:
    """Every difference between the table and the events (quarantined aggregates left out)."""
    held = quarantine.keys(conn, projection.name)
    expected = {key: row for key, row in expected_rows(app, conn, projection).items() if key not in held}
    actual = {key: row for key, row in table_rows(conn, projection).items() if key not in held}
    found: list[Difference] = []
    for key in sorted(expected.keys() | actual.keys(), key=str):
        want, have = expected.get(key), actual.get(key)
        if want is None or have is None:
            found.append(Difference(projection.name, key, "(row)", want, have))
            continue
        found.extend(
            Difference(projection.name, key, column, wanted, got)
            for column, wanted, got in zip(projection.columns, want, have, strict=True)
            if wanted != got
        )
    return found


def sampled_differences(
    app: Application[Any], conn: psycopg.Connection[Any], projection: AggregateStateProjection, sample_size: int
) -> tuple[int, list[Difference]]:
    """Compares up to ``sample_size`` rows, from a random point of the table, with their events.

    Each row is compared with its aggregate replayed at the version the row shows, so a
    row that is merely behind the log is not drift. Returns (rows sampled, differences).
    """
    statement = sql.SQL("SELECT {key}, {columns} FROM {table} WHERE {key} >= %s ORDER BY {key} LIMIT %s").format(
        key=sql.Identifier(projection.key_column),
        columns=sql.SQL(", ").join(map(sql.Identifier, projection.columns)),
        table=sql.Identifier(projection.table),
    )
    start = uuid.uuid4()
    rows = conn.execute(statement, (start, sample_size)).fetchall()
    if len(rows) < sample_size:  # wrap around to the start of the key space
        rows += conn.execute(statement, (uuid.UUID(int=0), sample_size - len(rows))).fetchall()
    held = quarantine.keys(conn, projection.name)
    version_at = projection.columns.index("version")
    position_at = projection.columns.index("position")
    found: list[Difference] = []
    sampled = 0
    for row in {row[0]: row for row in rows}.values():
        key, actual = row[0], tuple(row[1:])
        if key in held:
            continue
        sampled += 1
        aggregate: Aggregate = app.repository.get(key, version=actual[version_at])
        expected = tuple(map(plain, projection.row(aggregate, actual[position_at])))
        found.extend(
            Difference(projection.name, key, column, wanted, got)
            for column, wanted, got in zip(projection.columns, expected, actual, strict=True)
            if wanted != got
        )
    return sampled, found


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
