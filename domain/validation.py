"""Checks of command inputs against :mod:`domain.limits`; each raises ``InvalidCommandError``.

Aggregates call these before they trigger an event, so a refused command records
nothing. The API edge rejects the same values earlier (its schemas are built from the
same limits); these checks keep the event store clean whoever calls the domain.
"""

from __future__ import annotations

import re
from datetime import datetime

from domain import limits
from domain.errors import InvalidCommandError

_SKU = re.compile(limits.SKU_PATTERN)
_TEXT = re.compile(limits.TEXT_PATTERN)


def check_sku(sku: object) -> str:
    """Returns ``sku`` when the whole string matches :data:`~domain.limits.SKU_PATTERN`."""
    if not isinstance(sku, str) or _SKU.fullmatch(sku) is None:
        raise InvalidCommandError("sku", f"{sku!r} is not 1-64 characters of [A-Za-z0-9._-]")
    return sku


def has_control_characters(text: str) -> bool:
    """Whether ``text`` holds a C0 or C1 control character or DEL."""
    return _TEXT.fullmatch(text) is None


def check_text(name: str, text: object, *, required: bool, length_max: int = limits.TEXT_LENGTH_MAX) -> str | None:
    """Returns ``text`` when it is 1 to ``length_max`` characters with no control character.

    ``None`` passes when the field is optional.
    """
    if text is None and not required:
        return None
    if not isinstance(text, str) or not 1 <= len(text) <= length_max:
        raise InvalidCommandError(name, f"must be a string of 1 to {length_max} characters")
    if has_control_characters(text):
        raise InvalidCommandError(name, "must not contain control characters")
    return text


def check_amount(name: str, amount: object, minimum: int | None = 0, maximum: int = limits.AMOUNT_MAX) -> int:
    """Returns ``amount`` when it is an ``int`` (not a bool) from ``minimum`` to ``maximum``.

    ``minimum=None`` accepts any integer down to ``-maximum`` (signed deltas).
    """
    if type(amount) is not int:
        raise InvalidCommandError(name, f"{amount!r} is not an integer")
    lowest = -maximum if minimum is None else minimum
    if amount < lowest:
        raise InvalidCommandError(name, f"{amount} is below {lowest}")
    if amount > maximum:
        raise InvalidCommandError(name, f"{amount} is above {maximum}")
    return amount


def check_aware(name: str, moment: object) -> datetime:
    """Returns ``moment`` when it is a timezone-aware datetime."""
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise InvalidCommandError(name, "must be a timezone-aware datetime")
    return moment
