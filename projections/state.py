"""Projections whose rows are views of aggregates, kept by applying events to them.

The row of an aggregate is whatever its ``view()`` / ``level()`` says, so the read model
cannot drift from the domain's rules: the projection applies each event to a cached copy
of the aggregate (the same ``apply`` the write side uses) and upserts one row per
aggregate touched in the batch. A hot SKU held 200 times in one batch is written once.
Upserts only move a row forward (``WHERE version < EXCLUDED.version``), so writing an
aggregate's current state again, as a retry of a quarantined one does, is always safe.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar
from uuid import UUID

import psycopg
from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, DomainEventProtocol
from psycopg import sql

from projections.source import Positioned, Undecodable

CACHE_SIZE_MAX = 50_000


class PoisonEventError(RuntimeError):
    """An event of this projection that cannot be applied (it is quarantined)."""


class AggregateStateProjection:
    """Base: subclasses name the aggregate class, the table and the row of an aggregate.

    Attributes:
        name: the projection's name (its row in ``projection_tracking``); a rebuild
            tracks itself under a name of its own.
        table: the read-model table written (a rebuild writes a fresh one).
    """

    default_name: ClassVar[str] = "abstract"
    aggregate_class: ClassVar[type[Aggregate]] = Aggregate
    default_table: ClassVar[str] = "abstract"
    columns: ClassVar[tuple[str, ...]] = ()
    """The row's columns, in the order :meth:`row` gives the values."""
    key_column: ClassVar[str] = "abstract"
    """The column holding the aggregate's id."""
    conflict_columns: ClassVar[tuple[str, ...]] = ()
    """The row's unique key."""
    updated_columns: ClassVar[tuple[str, ...]] = ()
    """What a later event of the aggregate may change."""

    def __init__(self, app: Application[Any], *, table: str | None = None, name: str | None = None) -> None:
        """A projection writing ``table`` (default: its live table) and tracked as ``name``.

        A rebuild gives both: a fresh table and a tracking name of its own.
        """
        self.app = app
        self.name = name or type(self).default_name
        self.table = table or self.default_table
        self._statements = UpsertStatements(self.table, self.columns, self.conflict_columns, self.updated_columns)
        self._cache: OrderedDict[UUID, Aggregate] = OrderedDict()

    def quarantine_key(self, event: DomainEventProtocol[Any] | Undecodable) -> UUID | None:
        """The aggregate of an event of this projection (what is set aside if it fails), else ``None``."""
        if isinstance(event, Undecodable):
            return event.originator_id if event.stream_type == self.aggregate_class.__name__ else None
        if type(event).__qualname__.split(".", 1)[0] != self.aggregate_class.__name__:
            return None
        return event.originator_id

    def process(self, cursor: psycopg.Cursor[Any], events: Sequence[Positioned]) -> None:
        """Applies this projection's events, then writes one row per touched aggregate.

        Raises:
            PoisonEventError: an event of this projection could not be decoded.
        """
        touched: dict[UUID, tuple[Aggregate, int]] = {}
        try:
            for position, event in events:
                if self.quarantine_key(event) is None:
                    continue
                if isinstance(event, Undecodable):
                    raise PoisonEventError(event.error)
                aggregate = self._apply(event)
                touched[aggregate.id] = (aggregate, position)
            if touched:
                self._write(cursor, touched.values())
        except BaseException:
            # The transaction rolls back; cached copies may be ahead of the table now.
            self.reset()
            raise

    def reapply(self, cursor: psycopg.Cursor[Any], keys: Iterable[UUID], position: int) -> None:
        """Writes the rows of ``keys`` (released from quarantine) from their stored events.

        ``position`` is where the projection stands; the row reflects the aggregate's
        stored state, which the upsert's version check keeps from going backwards.
        """
        rows: list[tuple[Aggregate, int]] = []
        for key in keys:
            try:
                aggregate: Aggregate = self.app.repository.get(key)
            except AggregateNotFoundError:
                continue
            if isinstance(aggregate, self.aggregate_class):
                rows.append((aggregate, position))
        self._write(cursor, rows)

    def reset(self) -> None:
        """Forgets cached aggregates (after a rollback, or before a rebuild)."""
        self._cache.clear()

    def row(self, aggregate: Aggregate, position: int) -> tuple[Any, ...]:
        """The read-model row of ``aggregate`` whose last event is at ``position``."""
        raise NotImplementedError

    def _write(self, cursor: psycopg.Cursor[Any], aggregates: Iterable[tuple[Aggregate, int]]) -> None:
        rows = [self.row(aggregate, position) for aggregate, position in aggregates]
        if rows:
            self._statements.write(cursor, rows)

    def _apply(self, event: DomainEventProtocol[Any]) -> Aggregate:
        aggregate_id = event.originator_id
        cached = self._cache.get(aggregate_id)
        if cached is not None and cached.version == event.originator_version - 1:
            aggregate = event.mutate(cached)  # type: ignore[attr-defined]
        elif event.originator_version == 1:
            aggregate = event.mutate(None)  # type: ignore[attr-defined]
        else:
            aggregate = self.app.repository.get(aggregate_id, version=event.originator_version)
        assert aggregate is not None
        self._cache[aggregate.id] = aggregate
        self._cache.move_to_end(aggregate.id)
        while len(self._cache) > CACHE_SIZE_MAX:
            self._cache.popitem(last=False)
        return aggregate  # type: ignore[no-any-return]


COPY_ROWS_MIN = 64
"""From this many rows a batch is copied into a staging table and upserted from there."""


_COLUMN_TYPES = sql.SQL(
    "SELECT a.atttypid FROM unnest(%s::text[]) WITH ORDINALITY AS c (name, number) "
    "JOIN pg_attribute a ON a.attrelid = to_regclass(%s) AND a.attname = c.name ORDER BY c.number"
)


class UpsertStatements:
    """The statements that write a read model's rows, built once.

    A row is written only if its ``version`` is newer than the stored one, so writing an
    aggregate again, or late, never takes its row back. Small batches are sent as one
    pipelined statement per row; large ones (rebuilds, bursts) are COPYed into a
    temporary staging table and upserted in one statement (measured: 60 µs a row against
    90 µs pipelined, and 105-170 µs for one statement of column arrays). The COPY is
    binary, typed by the table's columns (looked up once): a third of the client's time
    per row of the text format's (measured: 3-6 µs against 10-17 µs an order row).
    """

    def __init__(self, table: str, columns: Sequence[str], conflict: Sequence[str], updated: Sequence[str]) -> None:
        names = sql.SQL(", ").join(map(sql.Identifier, columns))
        stage = sql.Identifier(f"stage_{table}")
        on_conflict = sql.SQL(
            "ON CONFLICT ({conflict}) DO UPDATE SET {updates} WHERE t.version < EXCLUDED.version"
        ).format(
            conflict=sql.SQL(", ").join(map(sql.Identifier, conflict)),
            updates=sql.SQL(", ").join(
                sql.SQL("{} = EXCLUDED.{}").format(sql.Identifier(column), sql.Identifier(column)) for column in updated
            ),
        )
        target = sql.Identifier(table)
        self.table = table
        self.columns = tuple(columns)
        self._types: list[int] | None = None
        self.one = sql.SQL("INSERT INTO {} AS t ({}) VALUES ({}) {}").format(
            target, names, sql.SQL(", ").join(sql.Placeholder() * len(columns)), on_conflict
        )
        self.stage = sql.SQL(
            "CREATE TEMPORARY TABLE IF NOT EXISTS {} (LIKE {} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
        ).format(stage, target)
        self.copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(stage, names)
        self.from_stage = sql.SQL("INSERT INTO {} AS t ({}) SELECT {} FROM {} {}").format(
            target, names, names, stage, on_conflict
        )
        self.clear_stage = sql.SQL("TRUNCATE {}").format(stage)

    def write(self, cursor: psycopg.Cursor[Any], rows: Sequence[Sequence[Any]]) -> None:
        """Upserts ``rows`` (one per aggregate) in the cursor's transaction."""
        if len(rows) < COPY_ROWS_MIN:
            cursor.executemany(self.one, rows)
            return
        cursor.execute(self.stage)
        types = self._types or self._column_types(cursor)
        with cursor.copy(self.copy) as copy:
            copy.set_types(types)
            for row in rows:
                copy.write_row(row)
        cursor.execute(self.from_stage)
        cursor.execute(self.clear_stage)

    def _column_types(self, cursor: psycopg.Cursor[Any]) -> list[int]:
        """The type of each column, in order (what a binary COPY must be told)."""
        types = [int(row[0]) for row in cursor.execute(_COLUMN_TYPES, (list(self.columns), self.table)).fetchall()]
        if len(types) != len(self.columns):
            msg = f"{self.table} has not every column of {self.columns}"
            raise RuntimeError(msg)
        self._types = types
        return types
