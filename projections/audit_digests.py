"""Signed digests of each merchant's chain (``audit_digests``, ``schema/0011``).

A digest states a merchant's chain position and hash, signed with Ed25519 (see
``adapters/audit_signing.py``). One is signed in the chain batch that makes it due: the
merchant's first chained events, then once ``interval_events`` more events were chained
or ``interval_seconds`` passed since its latest digest, whichever comes first. A
merchant that goes quiet gets its last events signed by :meth:`DigestSigner.sweep`,
which the projection process runs every few seconds. Every digest is kept.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from uuid import UUID

import psycopg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from psycopg import sql

from adapters.audit_signing import public_key_bytes, sign_digest
from projections.runner import LOCK_STATEMENT, lock_key

SWEEP_MERCHANTS_MAX: Final = 1_000

_INSERT = sql.SQL(
    "INSERT INTO audit_digests (merchant_id, position, hash, signed_at, signature, public_key) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (merchant_id, position) DO NOTHING"
)
_MARK = sql.SQL(
    "UPDATE audit_chain_heads SET digest_position = %s, digest_events = %s, digest_at = %s WHERE merchant_id = %s"
)
_QUIET = sql.SQL(
    "SELECT merchant_id, position, hash, events, digest_events, digest_at FROM audit_chain_heads "
    "WHERE position > digest_position AND digest_at <= %s ORDER BY digest_at LIMIT %s"
)


@dataclass(frozen=True, slots=True)
class Head:
    """Where a merchant's chain stands (a row of ``audit_chain_heads``)."""

    merchant_id: UUID
    position: int
    hash: bytes
    events: int
    digest_events: int
    digest_at: datetime | None


class DigestSigner:
    """Signs the digests that are due, in the caller's transaction."""

    def __init__(self, key: Ed25519PrivateKey, *, interval_seconds: float, interval_events: int) -> None:
        self.key = key
        self.public_key = public_key_bytes(key)
        self.interval = timedelta(seconds=interval_seconds)
        self.interval_events = interval_events

    def due(self, head: Head, now: datetime) -> bool:
        """Whether ``head`` needs a new digest at ``now``."""
        if head.digest_at is None:
            return True
        return head.events - head.digest_events >= self.interval_events or now - head.digest_at >= self.interval

    def sign_due(self, cursor: psycopg.Cursor[Any], heads: Sequence[Head]) -> int:
        """Signs a digest of every head that is due; returns how many."""
        now = datetime.now(UTC)
        signed = [head for head in heads if self.due(head, now)]
        if not signed:
            return 0
        digests, marks = [], []
        for head in signed:
            signature = sign_digest(self.key, str(head.merchant_id), head.position, head.hash.hex())
            digests.append((head.merchant_id, head.position, head.hash, now, signature, self.public_key))
            marks.append((head.position, head.events, now, head.merchant_id))
        cursor.executemany(_INSERT, digests)
        cursor.executemany(_MARK, marks)
        return len(signed)

    def sweep(self, conn: psycopg.Connection[Any], projection_name: str) -> int:
        """Signs the last events of merchants quiet for the interval; returns how many digests.

        Takes the chain projection's lock, so it never interleaves with a batch.
        """
        with conn.transaction(), conn.cursor() as cursor:
            cursor.execute(LOCK_STATEMENT, (lock_key(projection_name),))
            rows = cursor.execute(_QUIET, (datetime.now(UTC) - self.interval, SWEEP_MERCHANTS_MAX)).fetchall()
            return self.sign_due(cursor, [Head(row[0], row[1], bytes(row[2]), row[3], row[4], row[5]) for row in rows])
