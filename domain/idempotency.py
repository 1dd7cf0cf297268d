"""Idempotency markers: what a command sent with an ``Idempotency-Key`` did, kept with its events.

The API remembers keys in a table of its own, written after the command committed; a
crash between the two, an answer lost in a 503, or a first run outliving its lock used
to let a retry apply the change again. A marker closes that gap at the depth where it
belongs: one aggregate per (merchant, key), id ``uuid5(merchant, key)``, created in the
same batch as the command's events. A re-run meets the marker (or, racing another
process, its duplicate id) instead of applying twice, and answers with the result the
first run recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID, uuid5

from domain.context import CommandContext
from domain.events import DaybookAggregate, DaybookCreated

IDEMPOTENCY_NAMESPACE = UUID("4d3c2b1a-9e8f-4a7b-8c6d-5e4f3a2b1c0d")


def marker_id(merchant_id: UUID, key: str) -> UUID:
    """The id of the merchant's marker for ``key``: one per (merchant, key)."""
    return uuid5(IDEMPOTENCY_NAMESPACE, f"{merchant_id}:{key}")


class IdempotencyMarker(DaybookAggregate):
    """The first run of a keyed command: which request it was and what it answered."""

    class Recorded(DaybookCreated):
        """A keyed command committed; ``result`` is its answer as plain values."""

        request_sha256: str
        result: dict[str, Any]

    def __init__(self, merchant_id: UUID, request_sha256: str, result: dict[str, Any]) -> None:
        self.merchant_id = merchant_id
        self.request_sha256 = request_sha256
        self.result = result

    @classmethod
    def record(
        cls, merchant_id: UUID, key: str, request_sha256: str, result: Mapping[str, Any], context: CommandContext
    ) -> IdempotencyMarker:
        """The marker of the command that ``context`` stamped, answering ``result``."""
        return cls._create(
            cls.Recorded,
            id=marker_id(merchant_id, key),
            merchant_id=merchant_id,
            metadata=context.metadata(),
            timestamp=context.occurred_at,
            request_sha256=request_sha256,
            result=dict(result),
        )
