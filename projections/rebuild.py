"""``daybook projections rebuild NAME``: a read model built again from position 0, then swapped in.

The fresh table (``<table>__rebuild``, shaped ``LIKE`` the live one with its indexes,
row-level security policies and grants) is filled from the log under a tracking name
of its own while the live table keeps serving: a page of the log per transaction, the
next page read and decoded in a thread (:mod:`projections.pages`) while the current
one is applied, only the rebuilt aggregate's events, with the cyclic garbage collector
paused. Once it is within a batch of the head, one transaction takes the live
projection's lock (its batches wait), applies the tail,
renames the fresh table into place, drops the old one, moves the tracking position and
gives the indexes their live names back: readers see the old table or the new one,
never neither. Interrupted, a rebuild resumes where its tracking row says; a session
advisory lock allows one rebuild per projection at a time.

Read models are shared by every merchant, so a rebuild is recorded in the operator's
audit log (:data:`domain.audit.OPERATOR_ID`): started once the lock is held, finished
in the transaction of the swap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
from eventsourcing.application import Application
from psycopg import sql

from adapters import audit_log
from domain.audit import OPERATOR_ID
from domain.context import CommandContext
from projections.pages import LogPages, log_head, read_page
from projections.runner import LOCK_STATEMENT, commit_batch, ensure_tracking, lock_key
from projections.state import AggregateStateProjection

BATCH_SIZE = 10_000
FRESH_SUFFIX = "__rebuild"
TRACKING_SUFFIX = "@rebuild"
YOUNG_COLLECTION_PAGES = 50
"""Pages applied between two collections of young objects while the collector is paused (each walks
the cached aggregates made since the last: rarer is cheaper, the cache being bounded)."""

Progress = Callable[[int, int], None]
"""Called with (position reached, head) after each batch."""


class RebuildInProgressError(RuntimeError):
    """Another rebuild of the same projection holds its lock."""


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """How a rebuild went."""

    projection: str
    events: int
    position: int
    seconds: float


_TRY_LOCK = sql.SQL("SELECT pg_try_advisory_lock(%s)")
_UNLOCK = sql.SQL("SELECT pg_advisory_unlock(%s)")
_TABLE_EXISTS = sql.SQL("SELECT to_regclass(%s) IS NOT NULL")
_SECURITY = sql.SQL("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = to_regclass(%s)")
_POLICIES = sql.SQL(
    "SELECT policyname, permissive, roles::text[], cmd, qual, with_check FROM pg_policies "
    "WHERE schemaname = current_schema() AND tablename = %s"
)
_GRANTS = sql.SQL(
    "SELECT grantee, privilege_type FROM information_schema.role_table_grants "
    "WHERE table_schema = current_schema() AND table_name = %s AND grantee <> current_user"
)
_INDEXES = sql.SQL(
    "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
    "WHERE x.indrelid = to_regclass(%s)"
)
_SET_POSITION = sql.SQL("UPDATE projection_tracking SET notification_id = %s, updated_at = now() WHERE projection = %s")
_DROP_TRACKING = sql.SQL("DELETE FROM projection_tracking WHERE projection = %s")
_DROP_QUARANTINE = sql.SQL("DELETE FROM projection_quarantine WHERE projection = %s")
_MOVE_QUARANTINE = sql.SQL("UPDATE projection_quarantine SET projection = %s WHERE projection = %s")


def rebuild_lock_key(projection_name: str) -> int:
    """The session lock held by the one rebuild of a projection."""
    return 0x0DA8_0000_0000 + zlib.crc32(projection_name.encode())


def rebuild(
    app: Application[Any],
    database_url: str,
    live: AggregateStateProjection,
    *,
    context: CommandContext,
    restart: bool = False,
    progress: Progress | None = None,
    batch_size: int = BATCH_SIZE,
) -> RebuildReport:
    """Rebuilds ``live``'s table from position 0 and swaps it in.

    Args:
        app: the application whose log is read.
        database_url: the database (as the read models' owner).
        live: the projection as it runs (its name and live table).
        context: who asked (recorded in the operator's audit log).
        restart: drop a fresh table left by an interrupted rebuild instead of resuming it.
        progress: called after each batch.
        batch_size: events per transaction while catching up.

    Raises:
        RebuildInProgressError: another rebuild of this projection is running.
    """
    started = time.monotonic()
    fresh = type(live)(app, table=live.table + FRESH_SUFFIX, name=live.name + TRACKING_SUFFIX)
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(_TRY_LOCK, (rebuild_lock_key(live.name),)).fetchone()
        if not row or not row[0]:
            raise RebuildInProgressError(f"a rebuild of {live.name} is already running")
        try:
            context = context.stamped()
            with conn.transaction():
                audit_log.record(
                    conn,
                    app,
                    context,
                    {OPERATOR_ID: lambda log: log.projection_rebuild_started(live.name, restart, context)},
                )
            if restart:
                _drop_fresh(conn, fresh)
            _ensure_fresh_table(conn, live.table, fresh.table)
            start = position = ensure_tracking(conn, fresh.name)
            with _collector_paused():
                position = _catch_up(conn, database_url, fresh, position, batch_size=batch_size, progress=progress)
                position = _swap(
                    conn, live, fresh, position=position, batch_size=batch_size, start=start, context=context
                )
            if progress is not None:
                progress(position, position)
        finally:
            conn.execute(_UNLOCK, (rebuild_lock_key(live.name),))
    return RebuildReport(live.name, position - start, position, time.monotonic() - started)


def _catch_up(
    conn: psycopg.Connection[Any],
    database_url: str,
    fresh: AggregateStateProjection,
    position: int,
    *,
    batch_size: int,
    progress: Progress | None,
) -> int:
    """Applies the log after ``position`` a page per transaction, until within a batch of the head."""
    stream_type = fresh.aggregate_class.__name__
    pages = LogPages(fresh.app, database_url, stream_type, start=position, page_size=batch_size, tail_max=batch_size)
    with pages:
        for index, page in enumerate(pages, start=1):
            position = commit_batch(conn, fresh, page.events, position, end=page.end)
            if progress is not None:
                progress(position, page.head)
            if index % YOUNG_COLLECTION_PAGES == 0:
                gc.collect(1)
    return position


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector paused (the catch-up collects the young objects now and then).

    Measured: half of a rebuild's time went to full collections, each walking every
    cached aggregate again. A rebuild's garbage is freed by reference counting (young
    collections between its pages found no cycle); the collector runs again after it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _swap(
    conn: psycopg.Connection[Any],
    live: AggregateStateProjection,
    fresh: AggregateStateProjection,
    *,
    position: int,
    batch_size: int,
    start: int,
    context: CommandContext,
) -> int:
    """Applies the tail and swaps the tables in one transaction; returns the position reached.

    The operator's audit log records the rebuild finished in the same transaction, last:
    it locks the event store until the commit.
    """
    with conn.transaction():
        # The live projection's batches wait from here on: none can be lost by the swap.
        conn.execute(LOCK_STATEMENT, (lock_key(live.name),))
        stream_type = fresh.aggregate_class.__name__
        while (head := log_head(conn)) > position:
            end = min(position + batch_size, head)
            events = read_page(conn, fresh.app, stream_type, position, end)
            position = commit_batch(conn, fresh, events, position, end=end)  # a savepoint of this transaction
        live_indexes = _index_names(conn, live.table)
        conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(live.table)))
        conn.execute(
            sql.SQL("ALTER TABLE {} RENAME TO {}").format(sql.Identifier(fresh.table), sql.Identifier(live.table))
        )
        for fresh_name, live_name in _matching_indexes(_index_names(conn, live.table), live_indexes).items():
            conn.execute(
                sql.SQL("ALTER INDEX {} RENAME TO {}").format(sql.Identifier(fresh_name), sql.Identifier(live_name))
            )
        conn.execute(_SET_POSITION, (position, live.name))
        conn.execute(_DROP_TRACKING, (fresh.name,))
        # What the fresh build set aside replaces what the live one had.
        conn.execute(_DROP_QUARANTINE, (live.name,))
        conn.execute(_MOVE_QUARANTINE, (live.name, fresh.name))
        reached, finished = position, dataclasses.replace(context, occurred_at=None).stamped()
        audit_log.record(
            conn,
            fresh.app,
            finished,
            {OPERATOR_ID: lambda log: log.projection_rebuild_finished(live.name, reached - start, reached, finished)},
        )
    return position


def _ensure_fresh_table(conn: psycopg.Connection[Any], live_table: str, fresh_table: str) -> None:
    """Creates the fresh table like the live one: indexes, row-level security, policies, grants."""
    row = conn.execute(_TABLE_EXISTS, (fresh_table,)).fetchone()
    if row and row[0]:
        return
    fresh, live = sql.Identifier(fresh_table), sql.Identifier(live_table)
    with conn.transaction():
        conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING ALL)").format(fresh, live))
        security = conn.execute(_SECURITY, (live_table,)).fetchone()
        if security and security[0]:
            conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(fresh))
        if security and security[1]:
            conn.execute(sql.SQL("ALTER TABLE {} FORCE ROW LEVEL SECURITY").format(fresh))
        for name, permissive, roles, command, using, check in conn.execute(_POLICIES, (live_table,)).fetchall():
            statement = sql.SQL("CREATE POLICY {} ON {} AS {} FOR {} TO {}").format(
                sql.Identifier(name),
                fresh,
                sql.SQL(permissive),
                sql.SQL(command),
                sql.SQL(", ").join(sql.Identifier(role) if role != "public" else sql.SQL("PUBLIC") for role in roles),
            )
            if using is not None:
                statement += sql.SQL(" USING ({})").format(sql.SQL(using))
            if check is not None:
                statement += sql.SQL(" WITH CHECK ({})").format(sql.SQL(check))
            conn.execute(statement)
        for grantee, privilege in conn.execute(_GRANTS, (live_table,)).fetchall():
            conn.execute(sql.SQL("GRANT {} ON {} TO {}").format(sql.SQL(privilege), fresh, sql.Identifier(grantee)))


def _drop_fresh(conn: psycopg.Connection[Any], fresh: AggregateStateProjection) -> None:
    with conn.transaction():
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(fresh.table)))
        conn.execute(_DROP_TRACKING, (fresh.name,))


_INDEX_DEFINITION = re.compile(r"^CREATE (UNIQUE )?INDEX \S+ ON \S+ (.*)$")


def _index_names(conn: psycopg.Connection[Any], table: str) -> dict[str, str]:
    """Index name → its definition with the index and table names left out."""
    names: dict[str, str] = {}
    for name, definition in conn.execute(_INDEXES, (table,)).fetchall():
        match = _INDEX_DEFINITION.match(definition)
        names[str(name)] = f"{match.group(1) or ''}{match.group(2)}" if match else str(definition)
    return names


def _matching_indexes(fresh: dict[str, str], live: dict[str, str]) -> dict[str, str]:
    """Fresh index name → the live name of the index with the same definition."""
    by_definition = {definition: name for name, definition in live.items()}
    return {
        name: by_definition[definition]
        for name, definition in fresh.items()
        if definition in by_definition and by_definition[definition] != name
    }
