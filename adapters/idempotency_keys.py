"""Persistence of idempotency keys (table of 0020_idempotency_keys_by_day).

The table is range-partitioned by day (UTC) of ``created_at``: a key is live for the TTL
after it was claimed, and a day whose every key expired is dropped as a whole
partition. A unique index of a partitioned table must hold ``created_at``, so a claim
takes a transaction-scoped advisory lock on (merchant, key) and looks for a live row
before it inserts: two claims of one key never both win. Every statement names the
``created_at`` window (or the exact ``created_at`` of the claim), so PostgreSQL only
reads the partitions that can hold the row, each through its primary-key index.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
from psycopg import Connection, sql
from psycopg.types.json import Jsonb

# A running request that crashed leaves its key locked; after this long a retry with
# the same body may take the key over and run again.
LOCK_DURATION = timedelta(seconds=60)
PARTITION_DAYS_AHEAD = 7
"""Partitions exist this many days ahead, so inserts never wait for the maintenance job."""
PARTITION_DAYS_MARGIN = 1
"""Whole days a partition is kept after its last key expired (a just-expired key stays inspectable)."""
PARTITION_PREFIX = "idempotency_keys_p"
_CREATE_LOCK_KEY = 0x1DE4B07E
_DROP_LOCK_KEY = 0x1DE4B07F

_LOCK_KEY = sql.SQL("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))")
_LIVE = sql.SQL(
    "SELECT request_sha256, state, status_code, headers, body, created_at, locked_until < now() "
    "FROM idempotency_keys WHERE merchant_id = %s AND idempotency_key = %s AND created_at > now() - %s "
    "ORDER BY created_at DESC LIMIT 1"
)
_INSERT = sql.SQL(
    "INSERT INTO idempotency_keys (merchant_id, idempotency_key, request_sha256, state, locked_until) "
    "VALUES (%s, %s, %s, 'running', now() + %s) RETURNING created_at"
)
_TAKE_OVER = sql.SQL(
    "UPDATE idempotency_keys SET created_at = now(), locked_until = now() + %s "
    "WHERE merchant_id = %s AND idempotency_key = %s AND created_at = %s AND state = 'running' "
    "RETURNING created_at"
)
_COMPLETE = sql.SQL(
    "UPDATE idempotency_keys SET state = 'done', status_code = %s, headers = %s, body = %s "
    "WHERE merchant_id = %s AND idempotency_key = %s AND created_at = %s AND state = 'running'"
)
_RELEASE = sql.SQL(
    "DELETE FROM idempotency_keys "
    "WHERE merchant_id = %s AND idempotency_key = %s AND created_at = %s AND state = 'running'"
)
_TODAY = sql.SQL("SELECT (now() AT TIME ZONE 'UTC')::date")
_PARTITIONS = sql.SQL(
    "SELECT c.relname, i.inhdetachpending FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = 'idempotency_keys'::regclass ORDER BY c.relname LIMIT 10000"
)
_CREATE_PARTITION = sql.SQL(
    "CREATE TABLE IF NOT EXISTS {name} PARTITION OF idempotency_keys FOR VALUES FROM ({start}) TO ({end})"
)
_DETACH = sql.SQL("ALTER TABLE idempotency_keys DETACH PARTITION {name} CONCURRENTLY")
_FINALIZE = sql.SQL("ALTER TABLE idempotency_keys DETACH PARTITION {name} FINALIZE")
_DROP = sql.SQL("DROP TABLE IF EXISTS {name}")
_TRY_LOCK = sql.SQL("SELECT pg_try_advisory_lock(%s)")
_UNLOCK = sql.SQL("SELECT pg_advisory_unlock(%s)")
_XACT_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(%s)")
_EXISTS = sql.SQL("SELECT to_regclass(%s) IS NOT NULL")


@dataclass(frozen=True, slots=True)
class StoredRequest:
    """What is known of an earlier request with the same key."""

    request_sha256: bytes
    state: str
    status_code: int | None
    headers: dict[str, str] | None
    body: bytes | None


def claim_or_find(
    conn: Connection[Any],
    merchant_id: uuid.UUID,
    key: str,
    request_sha256: bytes,
    ttl: timedelta,
    *,
    lock: timedelta = LOCK_DURATION,
) -> datetime | StoredRequest:
    """Takes the key for a new run (returns the claim's ``created_at``), or returns the request holding it.

    A key is taken when no live request holds it, or when the one holding it crashed
    (still running past ``lock``) and this request has the same body.
    """
    try:
        return _claim_or_find(conn, merchant_id, key, request_sha256, ttl, lock=lock)
    except psycopg.errors.CheckViolation as error:
        if "no partition" not in str(error):
            raise
        # Today's partition is missing (the maintenance job did not run for a week): make it now.
        maintain_partitions(conn, ttl)
        return _claim_or_find(conn, merchant_id, key, request_sha256, ttl, lock=lock)


def _claim_or_find(
    conn: Connection[Any], merchant_id: uuid.UUID, key: str, request_sha256: bytes, ttl: timedelta, *, lock: timedelta
) -> datetime | StoredRequest:
    with conn.transaction():
        conn.execute(_LOCK_KEY, (f"{merchant_id}:{key}",))
        row = conn.execute(_LIVE, (merchant_id, key, ttl)).fetchone()
        if row is None:
            inserted = conn.execute(_INSERT, (merchant_id, key, request_sha256, lock)).fetchone()
            assert inserted is not None
            return inserted[0]  # type: ignore[no-any-return]
        stored_sha256, state, status_code, headers, body, created_at, lock_expired = row
        if state == "running" and lock_expired and bytes(stored_sha256) == request_sha256:
            taken = conn.execute(_TAKE_OVER, (lock, merchant_id, key, created_at)).fetchone()
            assert taken is not None
            return taken[0]  # type: ignore[no-any-return]
        return StoredRequest(bytes(stored_sha256), str(state), status_code, headers, bytes(body) if body else None)


def claim(
    conn: Connection[Any],
    merchant_id: uuid.UUID,
    key: str,
    request_sha256: bytes,
    ttl: timedelta,
    *,
    lock: timedelta = LOCK_DURATION,
) -> datetime | None:
    """Takes the key for a new run (its ``created_at``); ``None`` when an earlier request holds it."""
    claimed = claim_or_find(conn, merchant_id, key, request_sha256, ttl, lock=lock)
    return claimed if isinstance(claimed, datetime) else None


def complete(
    conn: Connection[Any],
    merchant_id: uuid.UUID,
    key: str,
    created_at: datetime,
    *,
    status_code: int,
    headers: dict[str, str],
    body: bytes,
) -> None:
    """Stores the answer to replay for the claim made at ``created_at``."""
    conn.execute(_COMPLETE, (status_code, Jsonb(headers), body, merchant_id, key, created_at))


def release(conn: Connection[Any], merchant_id: uuid.UUID, key: str, created_at: datetime) -> None:
    """Forgets a run that failed without an answer worth replaying (a 5xx)."""
    conn.execute(_RELEASE, (merchant_id, key, created_at))


@dataclass(frozen=True, slots=True)
class PartitionChanges:
    """What one maintenance run did."""

    created: list[str]
    dropped: list[str]


def partition_name(day: date) -> str:
    """The partition that holds the keys claimed on ``day`` (UTC)."""
    return f"{PARTITION_PREFIX}{day:%Y%m%d}"


def create_partition(conn: Connection[Any], day: date) -> bool:
    """Creates the partition of ``day`` unless it exists; whether it was created."""
    with conn.transaction():
        # Serialized: two processes creating one partition at once would collide in the catalog.
        conn.execute(_XACT_LOCK, (_CREATE_LOCK_KEY,))
        if conn.execute(_EXISTS, (partition_name(day),)).fetchone() == (True,):
            return False
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1)
        statement = _CREATE_PARTITION.format(
            name=sql.Identifier(partition_name(day)), start=sql.Literal(start), end=sql.Literal(end)
        )
        conn.execute(statement)
    return True


def maintain_partitions(conn: Connection[Any], ttl: timedelta) -> PartitionChanges:
    """Creates the partitions of the coming days and drops those whose keys all expired.

    A partition of day D is dropped once D + 1 day + ``ttl`` + :data:`PARTITION_DAYS_MARGIN`
    days have passed. Detaching is ``CONCURRENTLY`` (inserts and lookups go on); ``conn``
    must be in autocommit mode. Several processes may run this at once: one does the work.
    """
    row = conn.execute(_TODAY).fetchone()
    assert row is not None
    today: date = row[0]
    ttl_days = -(-ttl // timedelta(days=1))  # whole days, rounded up
    oldest_kept = today - timedelta(days=ttl_days + PARTITION_DAYS_MARGIN)
    created = [
        partition_name(day)
        for offset in range((today - oldest_kept).days + PARTITION_DAYS_AHEAD + 1)
        if create_partition(conn, day := oldest_kept + timedelta(days=offset))
    ]
    expired = [
        (name, pending)
        for name, pending in conn.execute(_PARTITIONS)
        if name.startswith(PARTITION_PREFIX) and name < partition_name(oldest_kept)
    ]
    if not expired or conn.execute(_TRY_LOCK, (_DROP_LOCK_KEY,)).fetchone() != (True,):
        return PartitionChanges(created, [])
    try:
        for name, pending in expired:
            identifier = sql.Identifier(name)
            conn.execute((_FINALIZE if pending else _DETACH).format(name=identifier))
            conn.execute(_DROP.format(name=identifier))
    finally:
        conn.execute(_UNLOCK, (_DROP_LOCK_KEY,))
    return PartitionChanges(created, [name for name, _ in expired])
