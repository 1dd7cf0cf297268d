"""The webhook inbox table (``schema/0006_webhook_inbox.sql``, ``0031``): every statement on it.

The edge inserts verified deliveries (:data:`INSERT`, batched by the API's inbox
writer); the workers claim pending rows under a lease, mark them processed or park
them, and the sweeper re-sends rows whose message went missing; an operator re-drives
parked rows. A row's unique key (merchant, gateway, gateway event id) is the truth for
deduplication; Redis only remembers, under :func:`dedupe_key`, what this table holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Final

from psycopg import Connection, sql
from psycopg.types.json import Jsonb

from domain import limits
from domain.validation import has_control_characters

DEDUPE_KEY_PREFIX: Final = "daybook:webhook:"
PARK_REASON_LENGTH_MAX: Final = 1_000

INSERT: Final = sql.SQL(
    "INSERT INTO webhook_inbox (merchant_id, gateway, event_id, body, headers) "
    "SELECT * FROM unnest(%b::uuid[], %b::text[], %b::text[], %b::bytea[], %b::jsonb[]) "
    "ON CONFLICT (merchant_id, gateway, event_id) DO NOTHING RETURNING inbox_id, merchant_id, gateway, event_id"
)
_CLAIM = sql.SQL(
    "UPDATE webhook_inbox SET attempts = attempts + 1, locked_until = now() + %s, lease_owner = %s "
    "WHERE inbox_id = ANY(%s) AND state = 'pending' AND (locked_until IS NULL OR locked_until < now()) "
    "RETURNING inbox_id, merchant_id, gateway, event_id, body, headers, attempts"
)
_RELEASE = sql.SQL(
    "UPDATE webhook_inbox SET locked_until = NULL, lease_owner = NULL "
    "WHERE inbox_id = ANY(%s) AND state = 'pending' AND lease_owner = %s"
)
_RENEW = sql.SQL(
    "UPDATE webhook_inbox SET locked_until = now() + %s "
    "WHERE inbox_id = ANY(%s) AND state = 'pending' AND lease_owner = %s"
)
_MARK_PROCESSED = sql.SQL(
    "UPDATE webhook_inbox SET state = 'processed', processed_at = now(), locked_until = NULL, lease_owner = NULL "
    "WHERE inbox_id = ANY(%s) AND state = 'pending'"
)
_PARK = sql.SQL(
    "UPDATE webhook_inbox AS w SET state = 'parked', processed_at = now(), park_reason = p.reason, "
    "locked_until = NULL, lease_owner = NULL "
    "FROM unnest(%s::bigint[], %s::text[]) AS p (inbox_id, reason) "
    "WHERE w.inbox_id = p.inbox_id AND w.state = 'pending' "
    "RETURNING w.inbox_id, w.merchant_id"
)
_BACKLOG = sql.SQL(
    "SELECT (SELECT count(*) FROM webhook_inbox WHERE state = 'pending'), "
    "(SELECT count(*) FROM webhook_inbox WHERE state = 'parked')"
)
_SWEEP = sql.SQL(
    "UPDATE webhook_inbox SET enqueued_at = now() WHERE inbox_id IN ("
    "SELECT inbox_id FROM webhook_inbox WHERE state = 'pending' AND enqueued_at <= now() - %s "
    "AND (locked_until IS NULL OR locked_until < now()) "
    "ORDER BY enqueued_at LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING inbox_id"
)
_COUNT_PARKED = sql.SQL(
    "SELECT count(*) FROM webhook_inbox WHERE state = 'parked' AND (%(merchant)s::uuid IS NULL "
    "OR merchant_id = %(merchant)s)"
)
_REDRIVE = sql.SQL(
    "UPDATE webhook_inbox SET state = 'pending', park_reason = NULL, processed_at = NULL, locked_until = NULL, "
    "lease_owner = NULL, "
    "enqueued_at = now(), redrives = redrives + 1, redriven_at = now() WHERE inbox_id IN ("
    "SELECT inbox_id FROM webhook_inbox WHERE state = 'parked' AND (%(merchant)s::uuid IS NULL "
    "OR merchant_id = %(merchant)s) ORDER BY merchant_id, inbox_id LIMIT %(limit)s FOR UPDATE SKIP LOCKED) "
    "RETURNING inbox_id, merchant_id"
)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A verified, parsed webhook delivery, as it is stored.

    Attributes:
        merchant_id: whose gateway sent it.
        gateway: ``"stripe"`` or ``"standard"``.
        event_id: the gateway's id for the event (Stripe ``id``, Standard ``webhook-id``).
        body: the raw body, exactly as received and verified.
        headers: the headers needed to parse the body again (lower-case names).
    """

    merchant_id: uuid.UUID
    gateway: str
    event_id: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> tuple[uuid.UUID, str, str]:
        """The inbox's unique key."""
        return (self.merchant_id, self.gateway, self.event_id)


@dataclass(frozen=True, slots=True)
class InboxRow:
    """A claimed inbox row."""

    inbox_id: int
    merchant_id: uuid.UUID
    gateway: str
    event_id: str
    body: bytes
    headers: dict[str, str]
    attempts: int


class UnstorableDeliveryError(ValueError):
    """A delivery the inbox cannot hold (the edge's parsers refuse such input earlier)."""


def check(delivery: Delivery) -> None:
    """Refuses a delivery that would fail its insert, and with it every delivery batched with it.

    Raises:
        UnstorableDeliveryError: an event id that is empty, too long, holds control
            characters or is not UTF-8 text; a header that is not.
    """
    if not 1 <= len(delivery.event_id) <= limits.GATEWAY_ID_LENGTH_MAX:
        raise UnstorableDeliveryError(f"an event id is 1 to {limits.GATEWAY_ID_LENGTH_MAX} characters")
    texts = [delivery.gateway, delivery.event_id, *delivery.headers, *delivery.headers.values()]
    if has_control_characters(delivery.event_id) or any("\x00" in text for text in texts):
        raise UnstorableDeliveryError("the event id or a header holds control characters")
    try:
        for text in texts:
            text.encode()
    except UnicodeEncodeError as error:
        raise UnstorableDeliveryError("the event id or a header is not UTF-8 text") from error


def dedupe_key(delivery: Delivery) -> str:
    """The Redis key that says "this delivery is already in the inbox"."""
    return f"{DEDUPE_KEY_PREFIX}{delivery.merchant_id}:{delivery.gateway}:{delivery.event_id}"


def insert_parameters(deliveries: Sequence[Delivery]) -> tuple[list[Any], ...]:
    """The column arrays :data:`INSERT` takes for ``deliveries``."""
    return (
        [delivery.merchant_id for delivery in deliveries],
        [delivery.gateway for delivery in deliveries],
        [delivery.event_id for delivery in deliveries],
        [delivery.body for delivery in deliveries],
        [Jsonb(delivery.headers) for delivery in deliveries],
    )


def store(conn: Connection[Any], delivery: Delivery) -> int | None:
    """Inserts one delivery (committed on return); ``None`` when it was already stored."""
    rows = conn.execute(INSERT, insert_parameters([delivery])).fetchall()
    return int(rows[0][0]) if rows else None


def claim(conn: Connection[Any], inbox_ids: Sequence[int], lease: timedelta, owner: uuid.UUID) -> list[InboxRow]:
    """The rows among ``inbox_ids`` still pending and not leased, now leased to ``owner`` for ``lease``.

    Each claimed row has one more attempt counted. A row another worker holds is left to
    it (concurrent claims wait for each other's row locks, then see the lease).
    """
    return [InboxRow(*row) for row in conn.execute(_CLAIM, (lease, owner, list(inbox_ids)))]


def release(conn: Connection[Any], inbox_ids: Sequence[int], owner: uuid.UUID) -> None:
    """Ends ``owner``'s lease of rows left pending (a retry may claim them at once)."""
    if inbox_ids:
        conn.execute(_RELEASE, (list(inbox_ids), owner))


def renew(conn: Connection[Any], inbox_ids: Sequence[int], lease: timedelta, owner: uuid.UUID) -> None:
    """Extends ``owner``'s lease of rows it is still processing."""
    if inbox_ids:
        conn.execute(_RENEW, (lease, list(inbox_ids), owner))


def mark_processed(conn: Connection[Any], inbox_ids: Sequence[int]) -> None:
    """Marks pending rows processed."""
    if inbox_ids:
        conn.execute(_MARK_PROCESSED, (list(inbox_ids),))


def park(conn: Connection[Any], reasons: Mapping[int, str]) -> list[tuple[int, uuid.UUID]]:
    """Parks pending rows, each with its reason (cut to ``PARK_REASON_LENGTH_MAX``).

    Returns ``(inbox_id, merchant_id)`` of the rows parked (those still pending).
    """
    if not reasons:
        return []
    ids = list(reasons)
    texts = [reasons[inbox_id][:PARK_REASON_LENGTH_MAX] for inbox_id in ids]
    rows = conn.execute(_PARK, (ids, texts)).fetchall()
    return sorted((int(row[0]), row[1]) for row in rows)


def overdue(conn: Connection[Any], delay: timedelta, limit: int) -> list[int]:
    """Takes up to ``limit`` pending rows, not leased, whose last message is older than ``delay``.

    Their ``enqueued_at`` moves to now (the caller sends them again), so a backlog is
    not re-sent on every sweep. Concurrent sweepers skip each other's rows.
    """
    return sorted(int(row[0]) for row in conn.execute(_SWEEP, (delay, limit)))


def backlog(conn: Connection[Any]) -> tuple[int, int]:
    """(rows pending, rows parked) over every merchant, each counted through its partial index."""
    row = conn.execute(_BACKLOG).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def count_parked(conn: Connection[Any], merchant_id: uuid.UUID | None) -> int:
    """How many rows are parked (of one merchant, or all)."""
    row = conn.execute(_COUNT_PARKED, {"merchant": merchant_id}).fetchone()
    return int(row[0]) if row else 0


def redrive(conn: Connection[Any], merchant_id: uuid.UUID | None, limit: int) -> list[tuple[int, uuid.UUID]]:
    """Makes up to ``limit`` parked rows (of one merchant, or all) pending again.

    Returns ``(inbox_id, merchant_id)`` of each; the caller sends them to the workers
    (or the sweeper does, if that fails). Their park reason is cleared, their re-drives
    counted.
    """
    rows = conn.execute(_REDRIVE, {"merchant": merchant_id, "limit": limit}).fetchall()
    return sorted((int(row[0]), row[1]) for row in rows)
