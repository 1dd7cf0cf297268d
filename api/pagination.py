"""Opaque list cursors: the keyset position after the last row of a page."""

from __future__ import annotations

import base64
import binascii
from typing import Any

import msgspec

from api.problems import ApiError

LIMIT_DEFAULT = 50
LIMIT_MAX = 100

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(list[Any])


def check_limit(limit: int | None, maximum: int = LIMIT_MAX) -> int:
    """The page size asked for, validated (default 50)."""
    if limit is None:
        return LIMIT_DEFAULT
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
