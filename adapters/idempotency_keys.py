"""Persistence of idempotency keys (table of 0005_idempotency_keys)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from psycopg import Connection, sql
from psycopg.types.json import Jsonb

# A running request that crashed leaves its key locked; after this long a retry with
# the same body may take the key over and run again.
LOCK_DURATION = timedelta(seconds=60)

_CLAIM = sql.SQL(
    "INSERT INTO idempotency_keys AS k (merchant_id, idempotency_key, request_sha256, state, locked_until) "
    "VALUES (%(merchant)s, %(key)s, %(hash)s, 'running', now() + %(lock)s) "
    "ON CONFLICT (merchant_id, idempotency_key) DO UPDATE SET "
    "request_sha256 = EXCLUDED.request_sha256, state = 'running', status_code = NULL, headers = NULL, "
    "body = NULL, created_at = now(), locked_until = EXCLUDED.locked_until "
    "WHERE k.created_at < now() - %(ttl)s "
    "OR (k.state = 'running' AND k.locked_until < now() AND k.request_sha256 = EXCLUDED.request_sha256) "
    "RETURNING 1"
)
_SELECT = sql.SQL(
    "SELECT request_sha256, state, status_code, headers, body FROM idempotency_keys "
    "WHERE merchant_id = %s AND idempotency_key = %s"
)
_COMPLETE = sql.SQL(
    "UPDATE idempotency_keys SET state = 'done', status_code = %s, headers = %s, body = %s "
    "WHERE merchant_id = %s AND idempotency_key = %s AND state = 'running'"
)
_RELEASE = sql.SQL("DELETE FROM idempotency_keys WHERE merchant_id = %s AND idempotency_key = %s AND state = 'running'")
_PURGE = sql.SQL(
    "DELETE FROM idempotency_keys WHERE ctid IN ("
    "SELECT ctid FROM idempotency_keys WHERE created_at < now() - %s ORDER BY created_at LIMIT %s)"
)


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """What is known of an earlier request with the same key."""

    request_sha256: bytes
    state: str
    status_code: int | None
    headers: dict[str, str] | None
    body: bytes | None


def claim(
    conn: Connection[Any],
    merchant_id: uuid.UUID,
    key: str,
    request_sha256: bytes,
    ttl: timedelta,
    *,
    lock: timedelta = LOCK_DURATION,
) -> bool:
    """Takes the key for a new run, locked for ``lock``; ``False`` when an earlier request holds it."""
    params = {
        "merchant": merchant_id,
        "key": key,
        "hash": request_sha256,
        "lock": lock,
        "ttl": ttl,
    }
    return conn.execute(_CLAIM, params).fetchone() is not None


def find(conn: Connection[Any], merchant_id: uuid.UUID, key: str) -> StoredRequest | None:
    """The earlier request with this key, if any."""
    row = conn.execute(_SELECT, (merchant_id, key)).fetchone()
    if row is None:
        return None
    request_sha256, state, status_code, headers, body = row
    return StoredRequest(bytes(request_sha256), str(state), status_code, headers, bytes(body) if body else None)


def complete(
    conn: Connection[Any],
    merchant_id: uuid.UUID,
    key: str,
    *,
    status_code: int,
    headers: dict[str, str],
    body: bytes,
) -> None:
    """Stores the answer to replay."""
    conn.execute(_COMPLETE, (status_code, Jsonb(headers), body, merchant_id, key))


def release(conn: Connection[Any], merchant_id: uuid.UUID, key: str) -> None:
    """Forgets a run that failed without an answer worth replaying (a 5xx)."""
    conn.execute(_RELEASE, (merchant_id, key))


def purge(conn: Connection[Any], ttl: timedelta, limit: int = 10_000) -> int:
    """Deletes up to ``limit`` keys older than ``ttl``; returns how many."""
    return conn.execute(_PURGE, (ttl, limit)).rowcount
