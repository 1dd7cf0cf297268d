"""Opaque list cursors: the keyset position after the last row of a page."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Any

import msgspec

from api.problems import ApiError
from domain import limits

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(list[Any])


def check_limit(limit: int | None, maximum: int = limits.PAGE_SIZE_MAX) -> int:
    """The page size asked for, validated (default ``PAGE_SIZE_DEFAULT``)."""
    if limit is None:
        return limits.PAGE_SIZE_DEFAULT
    if not 1 <= limit <= maximum:
        raise ApiError(400, "invalid_request", f"limit must be between 1 and {maximum}.")
    return limit


def encode_cursor(*position: Any) -> str:
    """An opaque cursor for a keyset position."""
    return base64.urlsafe_b64encode(_encoder.encode(list(position))).decode().rstrip("=")


def decode_cursor(cursor: str | None, size: int) -> list[Any] | None:
    """The keyset position of ``cursor`` (``size`` values), or 400 ``invalid_request``."""
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        position = _decoder.decode(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, msgspec.DecodeError) as error:
        raise ApiError(400, "invalid_request", "The cursor is not one this API returned.") from error
    if len(position) != size:
        raise ApiError(400, "invalid_request", "The cursor is not one this API returned.")
    return position


EPOCH = datetime.fromisoformat("0001-01-01T00:00:00+00:00")
NIL = uuid.UUID(int=0)


def decode_time_id_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) keyset position of ``cursor``; the very start without one."""
    position = decode_cursor(cursor, 2)
    if position is None:
        return EPOCH, NIL
    try:
        return datetime.fromisoformat(position[0]), uuid.UUID(position[1])
    except (TypeError, ValueError) as error:
        raise ApiError(400, "invalid_request", "The cursor is not one this API returned.") from error
