"""Audit logs for merchants created before audit logs were kept, opened with what their rows say.

Run by :func:`adapters.migrate.migrate` after the SQL files. A merchant whose audit log
does not exist yet gets one whose first event, :class:`domain.audit.AuditLog.Opened`,
records the merchants tables' history of it (name, creation time, key ids with roles,
issue and revocation times, webhook secrets' gateways and times; never a secret), so
that history lives in events and those columns can later be dropped. Each merchant in a
transaction of its own, under its log's lock; a merchant whose log exists is skipped,
so running it again records nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from psycopg import sql

from adapters import audit_log
from adapters.database import eventsourcing_env
from adapters.settings import Settings
from domain.application import Daybook
from domain.audit import AuditLog, ExistingMerchant, audit_log_id
from domain.context import CommandContext
from domain.events import format_time

PAGE_SIZE = 500
BACKFILL_ACTOR = "system:migrate"

_MERCHANTS = sql.SQL("SELECT merchant_id FROM merchants WHERE merchant_id > %s ORDER BY merchant_id LIMIT %s")
_LOGS = sql.SQL("SELECT originator_id FROM daybook_events WHERE originator_id = ANY(%s) AND originator_version = 1")
_MERCHANT = sql.SQL("SELECT name, created_at FROM merchants WHERE merchant_id = %s")
_KEYS = sql.SQL(
    "SELECT key_id, role, created_at, revoked_at FROM api_keys WHERE merchant_id = %s ORDER BY created_at, key_id"
)
_SECRETS = sql.SQL(
    "SELECT gateway, created_at, expires_at FROM webhook_secrets WHERE merchant_id = %s ORDER BY created_at, gateway"
)


def open_missing_logs(database_url: str) -> int:
    """Opens the audit log of every merchant that has none; returns how many were opened."""
    opened = 0
    with psycopg.connect(database_url, autocommit=True) as conn, _application(database_url) as app:
        after = UUID(int=0)
        while page := [row[0] for row in conn.execute(_MERCHANTS, (after, PAGE_SIZE))]:
            after = page[-1]
            logged = {row[0] for row in conn.execute(_LOGS, ([audit_log_id(m) for m in page],))}
            for merchant_id in page:
                if audit_log_id(merchant_id) not in logged:
                    opened += _open(conn, app(), merchant_id)
    return opened


def _open(conn: psycopg.Connection[Any], app: Application[UUID], merchant_id: UUID) -> int:
    context = CommandContext(actor=BACKFILL_ACTOR, request_id=f"backfill:{merchant_id}").stamped()
    with conn.transaction():
        conn.execute(audit_log.LOCK, (audit_log.lock_key(audit_log_id(merchant_id)),))
        if audit_log.history(app, merchant_id):
            return 0
        row = conn.execute(_MERCHANT, (merchant_id,)).fetchone()
        assert row is not None
        facts = ExistingMerchant(
            name=str(row[0]),
            created_at=format_time(row[1]),
            keys=[
                {"key_id": key_id, "role": role, "created_at": _time(created), "revoked_at": _time(revoked)}
                for key_id, role, created, revoked in conn.execute(_KEYS, (merchant_id,))
            ],
            webhook_secrets=[
                {"gateway": gateway, "created_at": _time(created), "expires_at": _time(expires)}
                for gateway, created, expires in conn.execute(_SECRETS, (merchant_id,))
            ],
        )
        audit_log.insert(conn, app, [AuditLog.opened(merchant_id, context, facts)])
    return 1


def _time(moment: Any) -> str | None:
    return None if moment is None else format_time(moment)


@contextmanager
def _application(database_url: str) -> Iterator[Any]:
    """A callable giving the application, created on first call only (most runs need none)."""
    made: list[Any] = []

    def app() -> Any:
        if not made:
            made.append(_daybook(database_url))
        return made[0]

    try:
        yield app
    finally:
        for each in made:
            each.close()


def _daybook(database_url: str) -> Application[UUID]:
    return Daybook(env=eventsourcing_env(database_url, Settings(), pool_size=1))
