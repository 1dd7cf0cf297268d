"""The audit hash chain (``audit_chain``, ``schema/0010``): each merchant's events, chained in position order.

A batch hashes its events merchant by merchant, each from the hash of the merchant's
previous event (kept across batches; read from the table after a restart or a rollback),
COPYs the rows (with the canonical bytes each hash was made of and the digest of the
stored event they were made from, ``schema/0014``: what an export reads while the stored
event is unchanged), moves each merchant's head (``audit_chain_heads``), signs the
digests that fell due (``projections/audit_digests.py``) and, in the same transaction as
the rows and the tracking position, notifies ``daybook_audit_chain`` with the batch's
last position, so that a live feed wakes when a batch is visible. The chain never skips
an event: an event that cannot be decoded is not set aside (it has no key here) and
stops the chain at it until it is fixed, which ``/readyz`` reports as lag.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, ClassVar, Final
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import DomainEventProtocol
from psycopg import sql

from adapters.audit_events import canonical, event_shape, stored_digest
from domain.audit import GENESIS_HASH
from domain.events import DaybookEvent
from projections.audit_digests import DigestSigner, Head
from projections.source import Positioned, Undecodable
from projections.state import PoisonEventError

NOTIFY_CHANNEL: Final = "daybook_audit_chain"
GENESIS: Final = bytes.fromhex(GENESIS_HASH)
LAST_HASHES_MAX: Final = 100_000
"""Merchants whose last hash is remembered between batches (the others are read again)."""

_COLUMNS = (
    "position",
    "merchant_id",
    "stream_id",
    "version",
    "hash",
    "prev_hash",
    "request_id",
    "causation_id",
    "shape",
    "stored_digest",
)
_TYPES = ("int8", "uuid", "uuid", "int8", "bytea", "bytea", "text", "text", "bytea", "bytea")
_LAST_HASHES = sql.SQL("SELECT merchant_id, hash FROM audit_chain_heads WHERE merchant_id = ANY(%s)")
_ADVANCE_HEADS = sql.SQL(
    "INSERT INTO audit_chain_heads AS h (merchant_id, position, hash, events) "
    "SELECT * FROM unnest(%s::uuid[], %s::int8[], %s::bytea[], %s::int8[]) "
    "ON CONFLICT (merchant_id) DO UPDATE SET position = EXCLUDED.position, hash = EXCLUDED.hash, "
    "events = h.events + EXCLUDED.events "
    "RETURNING merchant_id, position, hash, events, digest_events, digest_at"
)
_NOTIFY = sql.SQL("SELECT pg_notify({}, %s)").format(sql.Literal(NOTIFY_CHANNEL))

Row = tuple[int, UUID, UUID, int, bytes, bytes, str | None, str | None, bytes, bytes]
"""One chain row, in the order of ``_COLUMNS``."""


class AuditChainProjection:
    """Chains every Daybook event into ``audit_chain``.

    Attributes:
        name: its row in ``projection_tracking``.
    """

    default_name: ClassVar[str] = "audit_chain"

    def __init__(
        self,
        app: Application[Any],
        *,
        name: str | None = None,
        table: str = "audit_chain",
        signer: DigestSigner | None = None,
    ) -> None:
        """A chain projection; ``signer`` signs the digests each batch makes due (none without it)."""
        self.app = app
        self.name = name or self.default_name
        self.table = table
        self.signer = signer
        self._last: OrderedDict[UUID, bytes] = OrderedDict()
        self._copy = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, _COLUMNS))
        )

    def quarantine_key(self, event: DomainEventProtocol[Any] | Undecodable) -> UUID | None:
        """Nothing is ever set aside: a chain with a gap would not be a chain."""
        return None

    def process(self, cursor: psycopg.Cursor[Any], events: Sequence[Positioned]) -> None:
        """Chains ``events`` and writes their rows in ``cursor``'s transaction.

        Raises:
            PoisonEventError: an event could not be decoded (the batch is rolled back).
        """
        try:
            self._load_last_hashes(cursor, events)
            rows, chained = self._rows(events)
            if not rows:
                return
            with cursor.copy(self._copy) as copy:
                copy.set_types(list(_TYPES))
                for row in rows:
                    copy.write_row(row)
            heads = self._advance_heads(cursor, chained)
            if self.signer is not None:
                self.signer.sign_due(cursor, heads)
            cursor.execute(_NOTIFY, (str(rows[-1][0]),))
        except BaseException:
            self.reset()
            raise

    def reapply(self, cursor: psycopg.Cursor[Any], keys: Sequence[UUID], position: int) -> None:
        """Nothing to re-apply: the chain quarantines nothing."""

    def reset(self) -> None:
        """Forgets the remembered hashes (the transaction was rolled back)."""
        self._last.clear()

    def _advance_heads(self, cursor: psycopg.Cursor[Any], chained: dict[UUID, tuple[int, bytes, int]]) -> list[Head]:
        merchants = list(chained)
        columns = (
            merchants,
            [chained[m][0] for m in merchants],
            [chained[m][1] for m in merchants],
            [chained[m][2] for m in merchants],
        )
        rows = cursor.execute(_ADVANCE_HEADS, columns).fetchall()
        return [Head(row[0], row[1], bytes(row[2]), row[3], row[4], row[5]) for row in rows]

    def _load_last_hashes(self, cursor: psycopg.Cursor[Any], events: Sequence[Positioned]) -> None:
        unknown = {
            event.merchant_id
            for _, event in events
            if isinstance(event, DaybookEvent) and event.merchant_id not in self._last
        }
        if unknown:
            known = dict(cursor.execute(_LAST_HASHES, (list(unknown),)).fetchall())
            for merchant_id in unknown:
                self._last[merchant_id] = bytes(known[merchant_id]) if merchant_id in known else GENESIS

    def _rows(self, events: Sequence[Positioned]) -> tuple[list[Row], dict[UUID, tuple[int, bytes, int]]]:
        rows: list[Row] = []
        chained: dict[UUID, tuple[int, bytes, int]] = {}
        last = self._last
        to_stored_event = self.app.mapper.to_stored_event
        for position, event in events:
            if isinstance(event, Undecodable):
                raise PoisonEventError(f"position {position}: {event.error}")
            if not isinstance(event, DaybookEvent):
                continue  # not a merchant's event (none are today): nothing to chain it into
            merchant_id = event.merchant_id
            prev_hash = last[merchant_id]
            shape = canonical(event_shape(position, event))
            event_hash = hashlib.sha256(prev_hash + shape).digest()
            last[merchant_id] = event_hash
            last.move_to_end(merchant_id)
            metadata = event.metadata
            rows.append(
                (
                    position,
                    merchant_id,
                    event.originator_id,
                    event.originator_version,
                    event_hash,
                    prev_hash,
                    metadata.get("request_id"),
                    metadata.get("causation_id"),
                    shape,
                    stored_digest(to_stored_event(event)),
                )
            )
            count = chained[merchant_id][2] if merchant_id in chained else 0
            chained[merchant_id] = (position, event_hash, count + 1)
        while len(last) > LAST_HASHES_MAX:
            last.popitem(last=False)
        return rows, chained
