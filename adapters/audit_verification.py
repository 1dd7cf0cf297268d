"""``GET /v1/audit/verify``: the stored chain recomputed from the stored events, a bounded part per call.

Each call, for one merchant, under a lock of its own (``audit_verification``, ``schema/0012``):

1. a mismatch found by an earlier call is checked again first (it stays reported until
   the stored events and chain agree again);
2. **forward**: the chain after the verified checkpoint, from the checkpoint's hash, up
   to half the budget: every event's hash is recomputed from its stored state, every
   ``prev_hash`` must be the hash before it; the checkpoint moves to the last good event;
3. **sweep**: with the rest of the budget, the events before the checkpoint again, from
   where the last sweep stopped (wrapping to the genesis at the checkpoint), so a change
   made *before* the checkpoint is still found within chain length / budget calls.

Digests met on the way are checked too: their hash must be the chain's at their position
and their signature must hold. The earliest mismatch found is answered and kept.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Final
from uuid import UUID

from eventsourcing.persistence import Mapper
from psycopg import Connection, sql

from adapters.audit_signing import signature_holds
from adapters.audit_store import exported
from domain.audit import GENESIS_HASH, ChainVerifier, Mismatch

GENESIS: Final = bytes.fromhex(GENESIS_HASH)
REASON_LENGTH_MAX: Final = 2_000

_LOCK = sql.SQL("SELECT pg_advisory_xact_lock(%s)")
_STATE = sql.SQL(
    "SELECT position, hash, sweep_position, sweep_hash, mismatch_position, mismatch_reason "
    "FROM audit_verification WHERE merchant_id = %s"
)
_SAVE = sql.SQL(
    "INSERT INTO audit_verification AS v (merchant_id, position, hash, sweep_position, sweep_hash, "
    "mismatch_position, mismatch_reason) VALUES (%s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (merchant_id) DO UPDATE SET position = EXCLUDED.position, hash = EXCLUDED.hash, "
    "sweep_position = EXCLUDED.sweep_position, sweep_hash = EXCLUDED.sweep_hash, "
    "mismatch_position = EXCLUDED.mismatch_position, mismatch_reason = EXCLUDED.mismatch_reason, verified_at = now()"
)
# Rows of the merchant's chain in a window, each with its stored event and any digest at it.
_WINDOW = sql.SQL(
    "SELECT c.position, c.stream_id, c.version, c.hash, c.prev_hash, e.topic, e.state, d.hash, d.signature, "
    "d.public_key FROM audit_chain c "
    "LEFT JOIN daybook_events e ON e.notification_id = c.position "
    "LEFT JOIN audit_digests d ON d.merchant_id = c.merchant_id AND d.position = c.position "
    "WHERE c.merchant_id = %s AND c.position > %s AND c.position <= %s ORDER BY c.position LIMIT %s"
)
_HASH_BEFORE = sql.SQL(
    "SELECT hash FROM audit_chain WHERE merchant_id = %s AND position < %s ORDER BY position DESC LIMIT 1"
)
_POSITION_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Verification:
    """What one call found: the contract's ``{"ok", "events_checked", "first_mismatch"}``."""

    ok: bool
    events_checked: int
    first_mismatch: Mismatch | None


@dataclass(slots=True)
class _State:
    position: int = 0
    hash: bytes = GENESIS
    sweep_position: int = 0
    sweep_hash: bytes = GENESIS
    mismatch: Mismatch | None = None


@dataclass(slots=True)
class _Window:
    checked: int
    last_position: int
    last_hash: bytes
    mismatch: Mismatch | None
    exhausted: bool


def verify_lock_key(merchant_id: UUID) -> int:
    """The transaction lock one verification of a merchant holds."""
    return 0x0DA9_0000_0000 + zlib.crc32(merchant_id.bytes)


def verify(conn: Connection[Any], mapper: Mapper[Any], merchant_id: UUID, events_max: int) -> Verification:
    """Verifies up to ``events_max`` of the merchant's chained events (see the module's doc)."""
    with conn.transaction():
        conn.execute(_LOCK, (verify_lock_key(merchant_id),))
        state = _load(conn, merchant_id)
        checked = 0
        if state.mismatch is not None:
            recheck = _recheck(conn, mapper, merchant_id, state.mismatch)
            checked += recheck.checked
            if recheck.mismatch is not None:
                state.mismatch = recheck.mismatch
                _save(conn, merchant_id, state)
                return Verification(False, checked, state.mismatch)
            state.mismatch = None
        verified_before = state.position  # the sweep re-checks what earlier calls verified
        forward_budget = max(1, events_max // 2)
        forward = _window(
            conn,
            mapper,
            merchant_id,
            after=state.position,
            start_hash=state.hash,
            up_to=_POSITION_MAX,
            limit=forward_budget,
        )
        checked += forward.checked
        state.position, state.hash = forward.last_position, forward.last_hash
        found = [forward.mismatch] if forward.mismatch else []
        sweep_budget = events_max - checked
        if sweep_budget > 0 and state.sweep_position < verified_before:
            sweep = _window(
                conn,
                mapper,
                merchant_id,
                after=state.sweep_position,
                start_hash=state.sweep_hash,
                up_to=state.position,
                limit=sweep_budget,
            )
            checked += sweep.checked
            if sweep.mismatch is not None:
                found.append(sweep.mismatch)
                state.sweep_position, state.sweep_hash = 0, GENESIS
            elif sweep.exhausted or sweep.last_position >= verified_before:
                state.sweep_position, state.sweep_hash = 0, GENESIS  # once round: start again from the genesis
            else:
                state.sweep_position, state.sweep_hash = sweep.last_position, sweep.last_hash
        state.mismatch = min(found, key=lambda mismatch: mismatch.position) if found else None
        _save(conn, merchant_id, state)
    return Verification(state.mismatch is None, checked, state.mismatch)


def _load(conn: Connection[Any], merchant_id: UUID) -> _State:
    row = conn.execute(_STATE, (merchant_id,)).fetchone()
    if row is None:
        return _State()
    position, last_hash, sweep_position, sweep_hash, mismatch_position, reason = row
    mismatch = Mismatch(mismatch_position, reason) if mismatch_position is not None else None
    return _State(position, bytes(last_hash), sweep_position, bytes(sweep_hash), mismatch)


def _save(conn: Connection[Any], merchant_id: UUID, state: _State) -> None:
    mismatch = state.mismatch
    conn.execute(
        _SAVE,
        (
            merchant_id,
            state.position,
            state.hash,
            state.sweep_position,
            state.sweep_hash,
            mismatch.position if mismatch else None,
            mismatch.reason[:REASON_LENGTH_MAX] if mismatch else None,
        ),
    )


def _recheck(conn: Connection[Any], mapper: Mapper[Any], merchant_id: UUID, mismatch: Mismatch) -> _Window:
    """The window of the event an earlier call found wrong: that event alone, from the hash before it."""
    row = conn.execute(_HASH_BEFORE, (merchant_id, mismatch.position)).fetchone()
    before = bytes(row[0]) if row else GENESIS
    # From just before it: the event at the mismatch (or the next one, if that row is gone).
    return _window(
        conn,
        mapper,
        merchant_id,
        after=mismatch.position - 1,
        start_hash=before,
        up_to=_POSITION_MAX,
        limit=1,
        start_position=0,
    )


def _window(
    conn: Connection[Any],
    mapper: Mapper[Any],
    merchant_id: UUID,
    *,
    after: int,
    start_hash: bytes,
    up_to: int,
    limit: int,
    start_position: int | None = None,
) -> _Window:
    rows = conn.execute(_WINDOW, (merchant_id, after, up_to, limit)).fetchall()
    verifier = ChainVerifier(start_hash.hex(), after if start_position is None else start_position)
    for row in rows:
        event = exported(mapper, row[:7])
        if verifier.check(event) is not None:
            break
        digest_hash, signature, public_key = row[7:]
        if digest_hash is not None and not _digest_holds(merchant_id, event, digest_hash, signature, public_key):
            verifier.fail(event["position"], "the signed digest at this position does not match the chain")
            break
    return _Window(
        verifier.events_checked + (0 if verifier.ok else 1),
        verifier.last_position,
        bytes.fromhex(verifier.last_hash),
        verifier.mismatch,
        len(rows) < limit,
    )


def _digest_holds(
    merchant_id: UUID, event: dict[str, Any], digest_hash: bytes, signature: bytes, public_key: bytes
) -> bool:
    chained_hash = str(event["hash"])
    return bytes(digest_hash).hex() == chained_hash and signature_holds(
        bytes(public_key).hex(), bytes(signature).hex(), str(merchant_id), int(event["position"]), chained_hash
    )
