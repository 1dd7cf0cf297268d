"""ISO 4217 currencies and their minor units, from the standard's own list.

The list is the maintenance agency's XML table as shipped by the ``iso4217`` package
(its version carries the table's publication date, :data:`PUBLISHED`); upgrading the
package is how a new or withdrawn currency reaches Daybook. Only codes with a
minor-unit exponent are currencies money can be counted in: the X codes without one
(gold ``XAU``, SDR ``XDR``, testing ``XTS``, "no currency" ``XXX``) are not.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import iso4217

PUBLISHED: Final[datetime.date] = iso4217.__published__
"""Publication date of the ISO 4217 table in use."""

MINOR_UNIT_EXPONENTS: Final[Mapping[str, int]] = MappingProxyType(
    {
        currency.code: currency.exponent
        for currency in sorted(iso4217.Currency, key=lambda currency: currency.code)
        if currency.exponent is not None
    }
)
"""Each currency code and the power of ten of its minor unit (EUR 2: cents; JPY 0; KWD 3)."""

CODES: Final[tuple[str, ...]] = tuple(MINOR_UNIT_EXPONENTS)
"""Every accepted code, in alphabetical order."""


def minor_unit_exponent(code: str) -> int:
    """How many decimal places the currency's minor unit has (``KeyError`` for an unknown code)."""
    return MINOR_UNIT_EXPONENTS[code]


assert MINOR_UNIT_EXPONENTS["EUR"] == 2
assert MINOR_UNIT_EXPONENTS["JPY"] == 0
assert MINOR_UNIT_EXPONENTS["KWD"] == 3
assert all(len(code) == 3 and code.isascii() and code.isupper() for code in CODES)
