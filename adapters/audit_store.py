"""Reads of the audit chain joined with the stored events (functions of ``schema/0013``).

Every read runs in a transaction that names its merchant (``daybook.merchant_id``): the
functions (like the view ``audit_events``) show that merchant's chained events only,
whoever calls them (the API's read role, or the CLI as the owner). Pages are keyset pages on the
position (or, for one stream, the version), each a short query, so a long export holds
no connection between pages and keeps constant memory.

While a stored event is unchanged since it was chained (its digest is the one the chain
row keeps, ``schema/0014``) and the chain's canonical bytes of it (``shape``) are still
those its stored hash was made of, the functions give that shape instead of the state,
and an exported line is made from it without decoding the event (:func:`exported_line`);
otherwise the event is decoded through the mapper. Either way the line is the stored
event with the stored chain fields: a change to the chain's shapes shows nowhere.

An event the store cannot give back (deleted, or whose state no longer decodes) is
exported as its position, stream, version, chain fields and an ``error``: verifying the
export then names that position.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Final
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent
from psycopg import Connection, sql

from adapters.audit_events import decode_line, line_of_shape, ndjson_line, stored_event_shape, with_hashes
from domain.events import format_time

MISSING: Final = "the chained event is not in the event store (deleted)"

_SCOPE = sql.SQL("SELECT set_config('daybook.merchant_id', %s, true)")
# Functions of schema/0013 (the view audit_events is planned apart from a LIMIT: too slow to page).
_EVENTS = sql.SQL("SELECT * FROM audit_events_after(%s, %s)")
_BY_REQUEST = sql.SQL("SELECT * FROM audit_events_of_request(%s, %s, %s)")
_BY_CAUSATION = sql.SQL("SELECT * FROM audit_events_of_cause(%s, %s, %s)")
_BY_BOTH = sql.SQL("SELECT * FROM audit_events_of_request_and_cause(%s, %s, %s, %s)")
_STREAM = sql.SQL("SELECT * FROM audit_stream_events(%s, %s, %s)")
_STREAM_EXISTS = sql.SQL("SELECT EXISTS (SELECT 1 FROM audit_stream_events(%s, 0, 1))")
_DIGEST = sql.SQL(
    "SELECT merchant_id, position, hash, signed_at, signature, public_key FROM audit_digests "
    "WHERE merchant_id = %s ORDER BY position DESC LIMIT 1"
)
_HEAD = sql.SQL("SELECT position, events FROM audit_chain_heads WHERE merchant_id = %s")

ChainedRow = tuple[int, UUID, int, bytes, bytes, str | None, bytes | None]
"""A chained event and its stored event: position, stream, version, hash, prev hash, topic, state."""
Row = tuple[int, UUID, int, bytes, bytes, str | None, bytes | None, bytes | None]
"""A row of the read functions: a :data:`ChainedRow` and the chain's shape (when the stored event is unchanged)."""


@contextmanager
def merchant_scope(conn: Connection[Any], merchant_id: UUID) -> Iterator[Connection[Any]]:
    """``conn`` in a transaction that sees ``merchant_id``'s chained events only."""
    with conn.transaction():
        conn.execute(_SCOPE, (str(merchant_id),))
        yield conn


def exported_line(mapper: Mapper[Any], row: Row) -> bytes:
    """One row of the read functions as an export line (from the chain's shape while the event is unchanged)."""
    shape = row[7]
    if shape is not None:
        return line_of_shape(bytes(shape), bytes(row[3]).hex(), bytes(row[4]).hex())
    return ndjson_line(exported(mapper, row[:7]))


def exported_event(mapper: Mapper[Any], row: Row) -> dict[str, Any]:
    """One row of the read functions as an exported event (from the chain's shape while the event is unchanged)."""
    shape = row[7]
    if shape is not None:
        event: dict[str, Any] = decode_line(bytes(shape))
        return with_hashes(event, bytes(row[3]).hex(), bytes(row[4]).hex())
    return exported(mapper, row[:7])


def exported(mapper: Mapper[Any], row: ChainedRow) -> dict[str, Any]:
    """A chained event as exported, decoded from its stored state (with its stored chain fields)."""
    position, stream_id, version, chained_hash, prev_hash, topic, state = row
    hashes = bytes(chained_hash).hex(), bytes(prev_hash).hex()
    if state is None or topic is None:
        return _unavailable(position, stream_id, version, hashes, MISSING)
    try:
        shape = stored_event_shape(mapper, position, StoredEvent(stream_id, version, topic, bytes(state)))
    except Exception as error:  # a stored state changed beyond decoding: still exported, as such
        return _unavailable(position, stream_id, version, hashes, f"the stored event cannot be decoded: {error!r}")
    return with_hashes(shape, *hashes)


def _unavailable(position: int, stream_id: UUID, version: int, hashes: tuple[str, str], error: str) -> dict[str, Any]:
    return {
        "position": position,
        "stream_id": str(stream_id),
        "version": version,
        "hash": hashes[0],
        "prev_hash": hashes[1],
        "error": error[:500],
    }


def event_rows(
    conn: Connection[Any],
    after: int,
    limit: int,
    *,
    request_id: str | None = None,
    causation_id: str | None = None,
) -> list[Row]:
    """The scoped merchant's chained events after ``after``, optionally of one request and/or cause."""
    parameters: tuple[str | int, ...]
    if request_id is not None and causation_id is not None:
        query, parameters = _BY_BOTH, (request_id, causation_id, after, limit)
    elif request_id is not None:
        query, parameters = _BY_REQUEST, (request_id, after, limit)
    elif causation_id is not None:
        query, parameters = _BY_CAUSATION, (causation_id, after, limit)
    else:
        query, parameters = _EVENTS, (after, limit)
    # Binary results: bytea comes as it is stored (no hex to parse), about a quarter faster a page.
    return conn.execute(query, parameters, prepare=True, binary=True).fetchall()


def stream_rows(conn: Connection[Any], stream_id: UUID, after_version: int, limit: int) -> list[Row]:
    """One stream's chained events (of the scoped merchant) after ``after_version``."""
    return conn.execute(_STREAM, (stream_id, after_version, limit), prepare=True, binary=True).fetchall()


def stream_exists(conn: Connection[Any], stream_id: UUID) -> bool:
    """Whether the scoped merchant has a chained event of ``stream_id``."""
    row = conn.execute(_STREAM_EXISTS, (stream_id,)).fetchone()
    return bool(row and row[0])


def latest_digest(conn: Connection[Any], merchant_id: UUID) -> dict[str, Any] | None:
    """The merchant's latest signed digest, in the contract's shape."""
    row = conn.execute(_DIGEST, (merchant_id,)).fetchone()
    if row is None:
        return None
    return digest_json(row)


def digest_json(row: tuple[UUID, int, bytes, datetime, bytes, bytes]) -> dict[str, Any]:
    """A digest row (merchant, position, hash, signed at, signature, public key) as the API answers it."""
    merchant_id, position, digest_hash, signed_at, signature, public_key = row
    return {
        "merchant_id": str(merchant_id),
        "position": position,
        "hash": bytes(digest_hash).hex(),
        "signed_at": format_time(signed_at),
        "signature": bytes(signature).hex(),
        "public_key": bytes(public_key).hex(),
    }


def chain_head(conn: Connection[Any], merchant_id: UUID) -> tuple[int, int]:
    """(last chained position, events chained) of the merchant; (0, 0) before any."""
    row = conn.execute(_HEAD, (merchant_id,)).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)
