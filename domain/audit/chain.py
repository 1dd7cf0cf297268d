"""The audit hash chain, exactly as the contract defines it.

Each merchant's events, in position order, are chained::

    hash = sha256_hex(bytes.fromhex(prev_hash) || canonical_json(event without hash, prev_hash))

the first ``prev_hash`` being 64 zeros. Canonical JSON is sorted keys, no spaces, UTF-8,
non-ASCII written as itself (never ``\\u`` escapes). This module is the definition; the
faster encoder the projection and the CLI use (``adapters/audit_events.py``) is tested
to give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

GENESIS_HASH: Final = "0" * 64
HASH_FIELDS: Final = frozenset({"hash", "prev_hash"})
_HASH_HEX_LENGTH: Final = 64
_HEX_DIGITS: Final = frozenset("0123456789abcdef")
REQUIRED_FIELDS: Final = (
    "position",
    "stream_id",
    "stream_type",
    "version",
    "type",
    "occurred_at",
    "data",
    "metadata",
    "hash",
    "prev_hash",
)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8 with non-ASCII characters as themselves."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def event_body(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event without its chain fields: what is hashed."""
    return {name: value for name, value in event.items() if name not in HASH_FIELDS}


def chain_hash(prev_hash: str, canonical_body: bytes) -> str:
    """The hash of an event whose canonical body (without chain fields) is ``canonical_body``."""
    return hashlib.sha256(bytes.fromhex(prev_hash) + canonical_body).hexdigest()


def digest_message(merchant_id: str, position: int, hash_hex: str) -> bytes:
    """The bytes a digest signs: UTF-8 of ``"{merchant_id}:{position}:{hash}"``."""
    return f"{merchant_id}:{position}:{hash_hex}".encode()


def is_hash(value: object) -> bool:
    """Whether ``value`` is a lower-case hex SHA-256."""
    return isinstance(value, str) and len(value) == _HASH_HEX_LENGTH and set(value) <= _HEX_DIGITS


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Where a chain first fails, and why.

    Attributes:
        position: the position of the first event that does not hold (for an
            unreadable line, the position after the last good event, or 0).
        reason: what is wrong, in words.
    """

    position: int
    reason: str


class ChainVerifier:
    """Checks events one at a time, in order, as a chain (an export, a window of the store).

    Each event is a mapping in the audit event shape, hash fields included (or, where the
    store could not give the event, its position, chain fields and an ``error``). The verifier
    recomputes each hash from the event's content and checks it against the event's own
    ``hash``, and each ``prev_hash`` against the hash before it (``start_hash`` for the
    first). It stops at the first failure: later events cannot be trusted once the chain
    broke.

    Attributes:
        last_position: the position of the last event that held (0 before any).
        last_hash: the hash of the last event that held (``start_hash`` before any).
        events_checked: how many events held.
        mismatch: the first failure, once one was met.
    """

    def __init__(self, start_hash: str = GENESIS_HASH, start_position: int = 0) -> None:
        self.last_position = start_position
        self.last_hash = start_hash
        self._last_bytes = bytes.fromhex(start_hash)
        self.events_checked = 0
        self.mismatch: Mismatch | None = None

    @property
    def ok(self) -> bool:
        """No failure met so far."""
        return self.mismatch is None

    def fail(self, position: int, reason: str) -> Mismatch:
        """Records a failure found outside the verifier (an unreadable line) unless one came first."""
        if self.mismatch is None:
            self.mismatch = Mismatch(position, reason)
        return self.mismatch

    def check(self, event: Mapping[str, Any], canonical_body: bytes | None = None) -> Mismatch | None:
        """Checks the next event; returns the first failure (this one or an earlier one), if any.

        Args:
            event: the event, hash fields included.
            canonical_body: its canonical JSON without hash fields, when the caller has it
                already (a faster encoder); computed with :func:`canonical_json` otherwise.
        """
        if self.mismatch is not None:
            return self.mismatch
        stated_error = event.get("error")
        problem = stated_error if isinstance(stated_error, str) else _shape_problem(event)
        if problem is not None:
            stated = event.get("position")
            where = stated if isinstance(stated, int) and _is_position(stated) else self.last_position
            return self.fail(where, problem)
        body = canonical_body if canonical_body is not None else canonical_json(event_body(event))
        return self.check_parts(event["position"], event["prev_hash"], event["hash"], body)

    def check_parts(
        self, position: int, prev_hash: object, stated_hash: object, canonical_body: bytes
    ) -> Mismatch | None:
        """:meth:`check` for an event already taken apart: its position, chain fields and canonical body.

        ``position`` must be an ``int``; the chain fields may be anything (a value that is
        not the expected hash is a mismatch like any other).
        """
        if self.mismatch is not None:
            return self.mismatch
        if position <= self.last_position:
            return self.fail(position, f"position {position} does not come after position {self.last_position}")
        if prev_hash != self.last_hash:
            return self.fail(
                position,
                "prev_hash is not the hash of the event before it (an event is missing, added, moved or changed)",
            )
        digest = hashlib.sha256(self._last_bytes + canonical_body).digest()
        if digest.hex() != stated_hash:
            return self.fail(position, "hash does not match the event's content (the event was changed)")
        self.last_position = position
        self.last_hash = stated_hash
        self._last_bytes = digest
        self.events_checked += 1
        return None


_REQUIRED: Final = frozenset(REQUIRED_FIELDS)


def _is_position(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _shape_problem(event: Mapping[str, Any]) -> str | None:
    # The chain fields need no format check: anything but the expected hash is a mismatch.
    if not event.keys() >= _REQUIRED:
        return f"missing field(s): {', '.join(name for name in REQUIRED_FIELDS if name not in event)}"
    if not _is_position(event["position"]):
        return "position is not a positive integer"
    return None
