"""The audit event shape: one definition for the chain projection, the API and the CLI.

An event of the store becomes ``{"position", "stream_id", "stream_type", "version",
"type", "occurred_at", "data", "metadata"}`` (:func:`event_shape`); the chain adds
``hash`` and ``prev_hash`` (:func:`chained`). :func:`canonical` is the chain's canonical
JSON (``domain.audit.canonical_json``) written by msgspec: the same bytes (sorted keys,
no spaces, UTF-8 as itself, the same escapes; checked by a property test), several times
faster. Exported NDJSON lines are the canonical JSON of the whole event, so that a line
can be hashed again without guessing how it was written.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
from eventsourcing.persistence import Mapper, StoredEvent

from domain.audit import chain_hash
from domain.events import DaybookEvent, event_data, event_metadata, event_type, format_time, stream_type

_ENCODER: Final = msgspec.json.Encoder(order="sorted")
_DECODER: Final = msgspec.json.Decoder()

canonical = _ENCODER.encode
"""Canonical JSON bytes of a JSON-ready value (sorted keys, no spaces, UTF-8)."""


def event_shape(position: int, event: DaybookEvent) -> dict[str, Any]:
    """The event in the audit shape, without the chain fields."""
    return {
        "position": position,
        "stream_id": str(event.originator_id),
        "stream_type": stream_type(event),
        "version": event.originator_version,
        "type": event_type(event),
        "occurred_at": format_time(event.timestamp),
        "data": event_data(event),
        "metadata": event_metadata(event),
    }


def stored_event_shape(mapper: Mapper[Any], position: int, stored: StoredEvent) -> dict[str, Any]:
    """The audit shape of a stored event (decoded with the application's mapper, upcast)."""
    event = mapper.to_domain_event(stored)
    assert isinstance(event, DaybookEvent), f"{stored.topic} is not a Daybook event"
    return event_shape(position, event)


def chained(shape: dict[str, Any], prev_hash: str) -> dict[str, Any]:
    """``shape`` with its chain fields, given the hash of the merchant's event before it."""
    event = dict(shape)
    event["prev_hash"] = prev_hash
    event["hash"] = chain_hash(prev_hash, canonical(shape))
    return event


def with_hashes(shape: dict[str, Any], hash_hex: str, prev_hash: str) -> dict[str, Any]:
    """``shape`` with stored chain fields (not recomputed: an export shows what was chained)."""
    event = dict(shape)
    event["hash"] = hash_hex
    event["prev_hash"] = prev_hash
    return event


def ndjson_line(event: dict[str, Any]) -> bytes:
    """One export line: the whole event's canonical JSON and a newline."""
    return _ENCODER.encode(event) + b"\n"


def decode_line(line: bytes) -> Any:
    """One NDJSON line decoded (raises ``msgspec.DecodeError`` for anything but one JSON value)."""
    return _DECODER.decode(line)
