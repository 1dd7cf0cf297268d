"""The audit event shape: one definition for the chain projection, the API and the CLI.

An event of the store becomes ``{"position", "stream_id", "stream_type", "version",
"type", "occurred_at", "data", "metadata"}`` (:func:`event_shape`); the chain adds
``hash`` and ``prev_hash`` (:func:`chained`). :func:`canonical` is the chain's canonical
JSON (``domain.audit.canonical_json``) written by msgspec: the same bytes (sorted keys,
no spaces, UTF-8 as itself, the same escapes; checked by a property test), several times
faster. Exported NDJSON lines are the canonical JSON of the whole event, so that a line
can be hashed again without guessing how it was written.

The chain keeps the canonical bytes it hashed (its ``shape``) and the digest of the
stored event they were made from (:func:`stored_digest`, ``schema/0014``): while the
stored event is unchanged, an exported line is that shape with the hash fields put in
(:func:`line_of_shape`), without decoding the event again.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final
from uuid import UUID

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


def stored_digest(stored: StoredEvent) -> bytes:
    """The digest of a stored event that its chain row keeps (the SQL of ``schema/0014`` computes the same).

    ``sha256(originator id (16 bytes) ‖ version (8 bytes, big-endian, signed) ‖ topic (UTF-8) ‖ 0x00 ‖ state)``.
    """
    originator_id = stored.originator_id
    if not isinstance(originator_id, UUID):
        originator_id = UUID(str(originator_id))
    prefix = originator_id.bytes + stored.originator_version.to_bytes(8, "big", signed=True)
    return hashlib.sha256(prefix + stored.topic.encode() + b"\0" + stored.state).digest()


_METADATA_KEY: Final = b',"metadata":{'
_STREAM_ID_KEY: Final = b',"stream_id":"'


def line_of_shape(shape: bytes, hash_hex: str, prev_hash: str) -> bytes:
    """The export line of a chained ``shape`` (canonical JSON without hash fields) and its hash fields.

    The same bytes as ``ndjson_line(with_hashes(decode(shape), hash_hex, prev_hash))``
    (a property test checks it), written by putting ``"hash"`` before the top-level
    ``"metadata"`` and ``"prev_hash"`` before ``"stream_id"``, the keys that follow them in
    sorted order. The top-level keys are the last of their name: after ``metadata``
    (strings only) come only strings and numbers. A shape not of that form (changed
    in the table) is decoded and written whole.
    """
    metadata_at = shape.rfind(_METADATA_KEY)
    stream_id_at = shape.rfind(_STREAM_ID_KEY)
    if not 0 < metadata_at < stream_id_at or not shape.startswith(b'{"data":'):
        return ndjson_line(with_hashes(_DECODER.decode(shape), hash_hex, prev_hash))
    return b"".join(
        (
            shape[:metadata_at],
            b',"hash":"',
            hash_hex.encode(),
            b'"',
            shape[metadata_at:stream_id_at],
            b',"prev_hash":"',
            prev_hash.encode(),
            b'"',
            shape[stream_id_at:],
            b"\n",
        )
    )


def ndjson_line(event: dict[str, Any]) -> bytes:
    """One export line: the whole event's canonical JSON and a newline."""
    return _ENCODER.encode(event) + b"\n"


def decode_line(line: bytes) -> Any:
    """One NDJSON line decoded (raises ``msgspec.DecodeError`` for anything but one JSON value)."""
    return _DECODER.decode(line)
