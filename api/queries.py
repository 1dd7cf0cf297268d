"""Query parameters, read strictly.

Litestar reads ``?limit=null`` as "no limit" and keeps one of ``?limit=1&limit=2``; the
document promises an integer, so anything else is 400 ``invalid_request``, a repeated
parameter included. Instants are RFC 3339 (``as_of``): any the grammar allows is
accepted, a leap second read as the end of its minute and an instant outside the
years 1-9999 as the earliest or latest one.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar import Request

from api.pagination import check_limit
from api.problems import ApiError
from domain import limits

_INTEGER = re.compile(r"[0-9]{1,19}")
_RFC3339 = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[Tt](?P<hour>\d{2}):(?P<minute>\d{2}):(?P<second>\d{2})"
    r"(?:\.(?P<fraction>\d+))?(?P<offset>[Zz]|[+-]\d{2}:\d{2})"
)
EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


def query_value(request: Request[Any, Any, Any], name: str) -> str | None:
    """The one value of query parameter ``name``, or ``None``; 400 when it is repeated."""
    values = request.query_params.getall(name, [])
    if len(values) > 1:
        raise ApiError(400, "invalid_request", f"Send {name} once.")
    return str(values[0]) if values else None


def limit_of(request: Request[Any, Any, Any], maximum: int = limits.PAGE_SIZE_MAX) -> int:
    """``?limit=``: an integer from 1 to ``maximum`` (default ``PAGE_SIZE_DEFAULT``)."""
    raw = query_value(request, "limit")
    if raw is None:
        return check_limit(None, maximum)
    if _INTEGER.fullmatch(raw) is None:
        raise ApiError(400, "invalid_request", f"limit must be between 1 and {maximum}.")
    return check_limit(int(raw), maximum)


def uuid_of(request: Request[Any, Any, Any], name: str) -> uuid.UUID | None:
    """A UUID query parameter."""
    raw = query_value(request, name)
    if raw is None:
        return None
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise ApiError(400, "invalid_request", f"{name} must be a UUID.") from None


def choice_of(request: Request[Any, Any, Any], name: str, choices: tuple[str, ...]) -> str | None:
    """A query parameter that is one of ``choices``."""
    raw = query_value(request, name)
    if raw is not None and raw not in choices:
        raise ApiError(400, "invalid_request", f"{name} must be one of: {', '.join(choices)}.")
    return raw


def as_of_of(request: Request[Any, Any, Any]) -> datetime | None:
    """``?as_of=``: an RFC 3339 instant, in UTC."""
    raw = query_value(request, "as_of")
    return None if raw is None else parse_instant(raw)


def parse_instant(text: str) -> datetime:
    """An RFC 3339 ``date-time`` as an aware UTC datetime; 400 ``invalid_request`` otherwise."""
    found = _RFC3339.fullmatch(text)
    if found is None:
        raise ApiError(400, "invalid_request", "as_of must be an RFC 3339 time with an offset, e.g. ...Z.")
    year, month, day, hour, minute, second = (
        int(found[name]) for name in ("year", "month", "day", "hour", "minute", "second")
    )
    leap_second = second == 60
    micros = 999_999 if leap_second else int(((found["fraction"] or "") + "000000")[:6])
    try:
        # Year 0 is valid RFC 3339; it is checked as year 4 (both leap years), then read as the earliest instant.
        naive = datetime(year or 4, month, day, hour, minute, 59 if leap_second else second, micros)  # noqa: DTZ001
    except ValueError:
        raise ApiError(400, "invalid_request", "as_of is not a valid date and time.") from None
    offset = found["offset"].upper()
    shift = timedelta(0)
    if offset != "Z":
        hours, minutes = int(offset[1:3]), int(offset[4:6])
        if hours > 23 or minutes > 59:
            raise ApiError(400, "invalid_request", "as_of has an offset out of range.")
        shift = timedelta(hours=hours, minutes=minutes) * (1 if offset[0] == "+" else -1)
    if year == 0:
        return EARLIEST
    try:
        return (naive - shift).replace(tzinfo=UTC)
    except OverflowError:
        return EARLIEST if shift > timedelta(0) else LATEST
