"""The audit log written in the transaction of the action it records.

Operator and security actions change tables that are not event-sourced (merchants, API
keys, webhook secrets, the webhook inbox). Each is written here together with its audit
event (:mod:`domain.audit`) in **one** PostgreSQL transaction on the caller's
connection: the event store's insert takes part in it
(:meth:`~adapters.event_store.ColumnarApplicationRecorder.insert_events_within`). A
crash leaves both or neither, never an action without its record, and a retry after a
crash finds the action done (its rows changed) and records nothing twice.

Writers of one merchant's log take a transaction-level advisory lock on it before they
read it, so they never conflict on its version: the lock is released by the commit
that made the new version visible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any
from uuid import UUID

from eventsourcing.application import Application
from psycopg import Connection, pq, sql

from adapters.event_store import ColumnarApplicationRecorder
from domain.audit import AuditLog, audit_log_id
from domain.context import CommandContext

Action = Callable[[AuditLog], None]
"""Records one action on a merchant's log (calls one of :class:`AuditLog`'s methods)."""

LOCK = sql.SQL("SELECT pg_advisory_xact_lock(%s)")
"""Takes the lock of one audit log (:func:`lock_key`) until the transaction ends."""


def lock_key(log_id: UUID) -> int:
    """The advisory lock of one audit log (a signed 64-bit key from its id)."""
    return int.from_bytes(log_id.bytes[:8], "big", signed=True)


def record(
    conn: Connection[Any], app: Application[UUID], context: CommandContext, actions: Mapping[UUID, Action]
) -> list[int]:
    """Records ``actions`` (merchant id → action) in ``conn``'s open transaction.

    Each merchant's log is locked (in merchant id order, so writers never deadlock),
    read, opened if it does not exist yet (:meth:`AuditLog.opened`), and given its
    action; then every new event is inserted at once. Returns their positions.
    """
    _check_in_transaction(conn)
    context = context.stamped()
    logs: list[AuditLog] = []
    for merchant_id in sorted(actions, key=str):
        log_id = audit_log_id(merchant_id)
        conn.execute(LOCK, (lock_key(log_id),))
        log = _load(app, log_id) or AuditLog.opened(merchant_id, context)
        actions[merchant_id](log)
        logs.append(log)
    return insert(conn, app, logs)


def insert(conn: Connection[Any], app: Application[UUID], logs: Iterable[AuditLog]) -> list[int]:
    """Inserts the pending events of ``logs`` in ``conn``'s open transaction; returns their positions."""
    _check_in_transaction(conn)
    recorder = app.recorder
    if not isinstance(recorder, ColumnarApplicationRecorder):
        msg = f"the audit log is written in PostgreSQL transactions, not with {type(recorder).__name__}"
        raise TypeError(msg)
    stored = [app.mapper.to_stored_event(event) for log in logs for event in log.collect_events()]
    with conn.cursor() as cursor:
        return recorder.insert_events_within(cursor, stored)


def history(app: Application[UUID], merchant_id: UUID) -> list[Any]:
    """The merchant's audit log events, oldest first (empty if it has none yet)."""
    return list(app.events.get(audit_log_id(merchant_id)))


def _load(app: Application[UUID], log_id: UUID) -> AuditLog | None:
    events = list(app.events.get(log_id))
    log: Any = None
    for event in events:
        log = event.mutate(log)  # type: ignore[attr-defined]
    if log is not None and not isinstance(log, AuditLog):
        msg = f"stream {log_id} is a {type(log).__name__}, not an audit log"
        raise TypeError(msg)
    return log


def _check_in_transaction(conn: Connection[Any]) -> None:
    if conn.info.transaction_status != pq.TransactionStatus.INTRANS:
        msg = "the audit log is written inside the transaction of its action (with conn.transaction())"
        raise RuntimeError(msg)
