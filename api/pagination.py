"""List cursors: the keyset position after the last row of a page, as short text.

A cursor is opaque to clients, but each list's cursors have a documented pattern, and
every string of that pattern is a position the API accepts (a page starting there):
the OpenAPI document describes exactly the cursors that are not refused with 400.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from api.problems import ApiError
from domain import limits

LEVEL_CURSOR_PATTERN = r"^l\.[A-Za-z0-9._-]{1,64}$"
"""After a SKU: ``l.`` and the SKU."""
TIME_ID_CURSOR_PATTERN = r"^[0-9]{1,17}\.[0-9a-f]{32}$"
"""After a row created at an instant (µs since 1970, UTC) with an id (hex)."""
ISSUE_CURSOR_PATTERN = r"^[0-9]{1,17}\.[0-9a-f]{32}\.[a-z_]{1,64}$"
"""After a reconciliation issue: its instant, the id it sorts by, its kind."""
VERSION_CURSOR_PATTERN = r"^[0-9]{1,18}$"
"""After an event of a stream: its version."""

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
EPOCH = datetime.fromisoformat("0001-01-01T00:00:00+00:00")
NIL = uuid.UUID(int=0)
_MICROSECOND = timedelta(microseconds=1)
_PATTERNS = {
    pattern: re.compile(pattern.removeprefix("^").removesuffix("$"))
    for pattern in (LEVEL_CURSOR_PATTERN, TIME_ID_CURSOR_PATTERN, ISSUE_CURSOR_PATTERN, VERSION_CURSOR_PATTERN)
}


def check_limit(limit: int | None, maximum: int = limits.PAGE_SIZE_MAX) -> int:
    """The page size asked for, validated (default ``PAGE_SIZE_DEFAULT``)."""
    if limit is None:
        return limits.PAGE_SIZE_DEFAULT
    if not 1 <= limit <= maximum:
        raise ApiError(400, "invalid_request", f"limit must be between 1 and {maximum}.")
    return limit


def _parts(cursor: str, pattern: str) -> list[str]:
    if _PATTERNS[pattern].fullmatch(cursor) is None:
        raise ApiError(400, "invalid_request", "The cursor is not one this API returned.")
    return cursor.split(".", 2) if pattern != LEVEL_CURSOR_PATTERN else ["l", cursor[2:]]


def _micros(moment: datetime) -> str:
    return str((moment - UNIX_EPOCH) // _MICROSECOND)


def _moment(micros: str) -> datetime:
    return UNIX_EPOCH + int(micros) * _MICROSECOND


def level_cursor(sku: str) -> str:
    """The cursor after the level of ``sku``."""
    return f"l.{sku}"


def decode_level_cursor(cursor: str | None) -> str:
    """The SKU a levels page starts after; ``""`` for the first page."""
    return "" if cursor is None else _parts(cursor, LEVEL_CURSOR_PATTERN)[1]


def time_id_cursor(created_at: datetime, row_id: uuid.UUID) -> str:
    """The cursor after a row created at ``created_at`` with id ``row_id``."""
    return f"{_micros(created_at)}.{row_id.hex}"


def decode_time_id_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) keyset position of ``cursor``; the very start without one."""
    if cursor is None:
        return EPOCH, NIL
    micros, hex_id = _parts(cursor, TIME_ID_CURSOR_PATTERN)
    return _moment(micros), uuid.UUID(hex_id)


def issue_cursor(created_at: datetime, sort_id: uuid.UUID, kind: str) -> str:
    """The cursor after one reconciliation issue."""
    return f"{_micros(created_at)}.{sort_id.hex}.{kind}"


def decode_issue_cursor(cursor: str | None) -> tuple[datetime, uuid.UUID, str]:
    """The (created_at, sort id, kind) position of ``cursor``; the very start without one."""
    if cursor is None:
        return EPOCH, NIL, ""
    micros, hex_id, kind = _parts(cursor, ISSUE_CURSOR_PATTERN)
    return _moment(micros), uuid.UUID(hex_id), kind


def version_cursor(version: int) -> str:
    """The cursor after the event of a stream at ``version``."""
    return str(version)


def decode_version_cursor(cursor: str | None) -> int:
    """The version an events page starts after; 0 for the first page."""
    return 0 if cursor is None else int(_parts(cursor, VERSION_CURSOR_PATTERN)[0])
