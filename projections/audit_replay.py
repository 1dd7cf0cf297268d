"""``daybook audit replay --merchant ID``: every aggregate of a merchant against every read-model row.

The drift check (:mod:`workers.drift`) samples rows of all merchants; this goes through
all of one merchant's, in two passes of bounded pages, so memory stays flat however
many aggregates the merchant has:

1. **From the events.** The first event of each of the merchant's orders, inventory
   items and payments is found through the audit chain's index on the merchant (up to
   the chain's position), then by scanning the rest of the notification log in ranges
   of positions; those aggregates are replayed and compared, a page at a time, with
   their rows. A row is compared with the
   aggregate as of the projection's own tracking position, read in the same snapshot as
   the rows (a projection commits rows and position together): a projection that is
   merely behind the log is not reported, a row that is wrong, missing or stale is.
2. **From the rows.** The merchant's rows are read in key order; a row whose aggregate
   is not the merchant's (or does not exist) is reported as extra.

Another merchant's rows are never read: the first pass looks rows up by the keys of the
merchant's aggregates, the second by the merchant's id. Aggregates a projection set
aside in its quarantine are counted apart, not compared: their rows are stale by
design, and reads replay them (see README, "Read models").
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from psycopg import sql

from projections.audit_chain import AuditChainProjection
from projections.compare import Difference, plain
from projections.registry import all_projections
from projections.state import AggregateStateProjection

SCAN_EVENTS: Final = 50_000
"""Positions of the notification log scanned per query for first events (and chained ones read)."""
PAGE_SIZE: Final = 500
"""Aggregates replayed and rows compared per page."""
DIFFERENCES_KEPT_MAX: Final = 1_000
"""Differences kept for the report; past this they are only counted."""

Progress = Callable[[int, int], None]
"""Called with (position scanned, head) as the first pass goes."""

_HEAD = sql.SQL("SELECT coalesce(max(notification_id), 0) FROM daybook_events")
_CHAINED_FIRST_EVENTS = sql.SQL(
    "SELECT c.position, e.originator_id, e.originator_version, e.topic, e.state "
    "FROM audit_chain c LEFT JOIN daybook_events e ON e.notification_id = c.position "
    "WHERE c.merchant_id = %(merchant)s AND c.version = 1 AND c.position > %(after)s AND c.position <= %(until)s "
    "ORDER BY c.position LIMIT %(limit)s"
)
_FIRST_EVENTS = sql.SQL(
    "SELECT originator_id, originator_version, topic, state FROM daybook_events "
    "WHERE notification_id > %(after)s AND notification_id <= %(until)s AND originator_version = 1 "
    "AND topic = ANY(%(topics)s) AND (position(%(dashed)s IN state) > 0 OR position(%(hex)s IN state) > 0) "
    "ORDER BY notification_id"
)
_TRACKING = sql.SQL("SELECT notification_id FROM projection_tracking WHERE projection = %s")
_AS_OF = sql.SQL(
    "SELECT originator_id, max(originator_version), max(notification_id) FROM daybook_events "
    "WHERE originator_id = ANY(%s) AND notification_id <= %s GROUP BY originator_id"
)
_QUARANTINED = sql.SQL(
    "SELECT quarantine_key FROM projection_quarantine WHERE projection = %s AND quarantine_key = ANY(%s)"
)
_CREATED_OF = sql.SQL(
    "SELECT originator_id, originator_version, topic, state FROM daybook_events "
    "WHERE originator_id = ANY(%s) AND originator_version = 1"
)


@dataclass(slots=True)
class ReplayReport:
    """What a replay compared and found.

    Attributes:
        merchant_id: whose aggregates.
        aggregates: aggregates replayed, per read model.
        quarantined: aggregates left out because their projection set them aside.
        differences: the first ``DIFFERENCES_KEPT_MAX`` differences.
        differences_total: every difference found.
    """

    merchant_id: uuid.UUID
    aggregates: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)
    differences: list[Difference] = field(default_factory=list)
    differences_total: int = 0

    @property
    def consistent(self) -> bool:
        """True when every row is what the events say."""
        return self.differences_total == 0

    def add(self, found: Sequence[Difference]) -> None:
        """Counts ``found``, keeping the first ``DIFFERENCES_KEPT_MAX``."""
        self.differences_total += len(found)
        room = DIFFERENCES_KEPT_MAX - len(self.differences)
        self.differences.extend(found[: max(room, 0)])


def replay_merchant(
    app: Application[Any],
    conn: psycopg.Connection[Any],
    merchant_id: uuid.UUID,
    *,
    progress: Progress | None = None,
    scan_events: int = SCAN_EVENTS,
    page_size: int = PAGE_SIZE,
) -> ReplayReport:
    """Compares every order, inventory level and payment row of ``merchant_id`` with its events.

    ``conn`` reads as the read models' owner (row-level security does not hide rows
    from it); it must be in autocommit mode: each page is one repeatable-read
    transaction of its own.
    """
    projections = [p for p in all_projections(app) if isinstance(p, AggregateStateProjection)]
    by_topic = {topic: projection for projection in projections for topic in created_topics(projection)}
    report = ReplayReport(merchant_id, {p.name: 0 for p in projections}, {p.name: 0 for p in projections})
    pending: dict[str, list[uuid.UUID]] = {p.name: [] for p in projections}
    named = {p.name: p for p in projections}
    for stored in _merchant_first_events(
        app, conn, merchant_id, list(by_topic), scan_events=scan_events, progress=progress
    ):
        projection = by_topic[stored.topic]
        pending[projection.name].append(uuid.UUID(str(stored.originator_id)))
        if len(pending[projection.name]) >= page_size:
            _compare_page(app, conn, projection, pending[projection.name], report)
            pending[projection.name] = []
    for name, keys in pending.items():
        if keys:
            _compare_page(app, conn, named[name], keys, report)
    for projection in projections:
        _extra_rows(app, conn, projection, merchant_id, page_size=page_size, report=report)
    return report


def created_topics(projection: AggregateStateProjection) -> list[str]:
    """Topics of the first events of the projection's aggregate class (e.g. ``Order.Placed``)."""
    aggregate_class = projection.aggregate_class
    return [
        get_topic(value)
        for value in vars(aggregate_class).values()
        if isinstance(value, type) and issubclass(value, Aggregate.Created)
    ]


def _merchant_first_events(
    app: Application[Any],
    conn: psycopg.Connection[Any],
    merchant_id: uuid.UUID,
    topics: list[str],
    *,
    scan_events: int,
    progress: Progress | None,
) -> Iterator[StoredEvent]:
    """The first events of the merchant's aggregates of ``topics``, in position order.

    Up to the audit chain's position they are read through its index on the merchant,
    a page at a time; after it the notification log is scanned a range of positions at
    a time, the database keeping only events whose state mentions the merchant's id (as
    the msgspec mapper writes a UUID, or as the library's transcoder did). Each is
    decoded to check that it is the merchant's own.
    """
    row = conn.execute(_HEAD).fetchone()
    head = int(row[0]) if row else 0
    row = conn.execute(_TRACKING, (AuditChainProjection.default_name,)).fetchone()
    chained = min(int(row[0]) if row else 0, head)
    wanted = set(topics)
    after = 0
    while after < chained:
        page = {"merchant": merchant_id, "after": after, "until": chained, "limit": scan_events}
        rows = conn.execute(_CHAINED_FIRST_EVENTS, page).fetchall()
        for _, *stored_row in rows:
            # A chained event missing from the store is the chain verifier's to report.
            if stored_row[2] in wanted and (stored := _owned(app, merchant_id, stored_row)):
                yield stored
        after = int(rows[-1][0]) if len(rows) == scan_events else chained
        if progress is not None:
            progress(after, head)
    parameters: dict[str, Any] = {
        "topics": topics,
        "dashed": str(merchant_id).encode(),
        "hex": merchant_id.hex.encode(),
    }
    while after < head:
        until = min(after + scan_events, head)
        rows = conn.execute(_FIRST_EVENTS, {**parameters, "after": after, "until": until}).fetchall()
        for stored_row in rows:
            if stored := _owned(app, merchant_id, stored_row):
                yield stored
        after = until
        if progress is not None:
            progress(after, head)


def _owned(app: Application[Any], merchant_id: uuid.UUID, row: Sequence[Any]) -> StoredEvent | None:
    """The stored event of ``row`` (id, version, topic, state) if it is the merchant's, else ``None``."""
    originator_id, version, topic, state = row
    stored = StoredEvent(originator_id, version, topic, bytes(state))
    return stored if getattr(app.mapper.to_domain_event(stored), "merchant_id", None) == merchant_id else None


def _compare_page(
    app: Application[Any],
    conn: psycopg.Connection[Any],
    projection: AggregateStateProjection,
    keys: Sequence[uuid.UUID],
    report: ReplayReport,
) -> None:
    """Compares the rows of ``keys`` (the merchant's aggregates) with the aggregates as the projection stands."""
    with _snapshot(conn):
        row = conn.execute(_TRACKING, (projection.name,)).fetchone()
        tracked = int(row[0]) if row else 0
        held = {row[0] for row in conn.execute(_QUARANTINED, (projection.name, list(keys)))}
        as_of = {
            key: (int(version), int(position)) for key, version, position in conn.execute(_AS_OF, (list(keys), tracked))
        }
        actual = _rows_of(conn, projection, [key for key in keys if key not in held])
    report.aggregates[projection.name] += len(keys) - len(held)
    report.quarantined[projection.name] += len(held)
    found: list[Difference] = []
    for key in keys:
        if key in held:
            continue
        expected = _expected_row(app, projection, key, as_of.get(key))
        found.extend(_row_differences(projection, key, expected, actual.get(key)))
    report.add(found)


def _expected_row(
    app: Application[Any], projection: AggregateStateProjection, key: uuid.UUID, as_of: tuple[int, int] | None
) -> tuple[Any, ...] | None:
    """The row the events give at the projection's position; ``None`` before the aggregate's first event."""
    if as_of is None:
        return None
    version, position = as_of
    aggregate: Aggregate = app.repository.get(key, version=version)
    return tuple(map(plain, projection.row(aggregate, position)))


def _extra_rows(
    app: Application[Any],
    conn: psycopg.Connection[Any],
    projection: AggregateStateProjection,
    merchant_id: uuid.UUID,
    *,
    page_size: int,
    report: ReplayReport,
) -> None:
    """Reports the merchant's rows whose aggregate is not one of the merchant's."""
    statement = sql.SQL(
        "SELECT {key}, {columns} FROM {table} WHERE merchant_id = %s AND {key} > %s ORDER BY {key} LIMIT %s"
    ).format(
        key=sql.Identifier(projection.key_column),
        columns=sql.SQL(", ").join(map(sql.Identifier, projection.columns)),
        table=sql.Identifier(projection.table),
    )
    after = uuid.UUID(int=0)
    while True:
        rows = conn.execute(statement, (merchant_id, after, page_size)).fetchall()
        if not rows:
            return
        owners = _owners(app, conn, [row[0] for row in rows], set(created_topics(projection)))
        report.add(
            [
                Difference(projection.name, row[0], "(row)", None, tuple(row[1:]))
                for row in rows
                if owners.get(row[0]) != merchant_id
            ]
        )
        after = rows[-1][0]


def _owners(
    app: Application[Any], conn: psycopg.Connection[Any], keys: list[uuid.UUID], topics: set[str]
) -> dict[uuid.UUID, Any]:
    """The merchant of each aggregate among ``keys`` that exists and is of the projection's class."""
    owners: dict[uuid.UUID, Any] = {}
    for originator_id, version, topic, state in conn.execute(_CREATED_OF, (keys,)):
        if topic not in topics:
            continue
        event = app.mapper.to_domain_event(StoredEvent(originator_id, version, topic, bytes(state)))
        owners[originator_id] = getattr(event, "merchant_id", None)
    return owners


def _rows_of(
    conn: psycopg.Connection[Any], projection: AggregateStateProjection, keys: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[Any, ...]]:
    statement = sql.SQL("SELECT {key}, {columns} FROM {table} WHERE {key} = ANY(%s)").format(
        key=sql.Identifier(projection.key_column),
        columns=sql.SQL(", ").join(map(sql.Identifier, projection.columns)),
        table=sql.Identifier(projection.table),
    )
    return {row[0]: tuple(row[1:]) for row in conn.execute(statement, (keys,))}


def _row_differences(
    projection: AggregateStateProjection,
    key: uuid.UUID,
    expected: tuple[Any, ...] | None,
    actual: tuple[Any, ...] | None,
) -> list[Difference]:
    if expected is None and actual is None:
        return []
    if expected is None or actual is None:
        return [Difference(projection.name, key, "(row)", expected, actual)]
    return [
        Difference(projection.name, key, column, wanted, got)
        for column, wanted, got in zip(projection.columns, expected, actual, strict=True)
        if wanted != got
    ]


@contextmanager
def _snapshot(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """One repeatable-read transaction: tracking position, quarantine and rows from one snapshot."""
    level = conn.isolation_level
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    try:
        with conn.transaction():
            yield
    finally:
        conn.isolation_level = level
