"""Money: integer minor units and an ISO 4217 currency. Never floats."""

from __future__ import annotations

from dataclasses import dataclass, field

from domain import limits
from domain.currencies import MINOR_UNIT_EXPONENTS
from domain.errors import CurrencyMismatchError, InvalidCommandError
from domain.validation import check_amount

# Looked up on every Money built (several per event applied): a frozenset answers faster
# than the read-only mapping.
_CURRENCIES = frozenset(MINOR_UNIT_EXPONENTS)


def check_currency(currency: object) -> str:
    """Returns ``currency`` when it is an ISO 4217 code, upper case, with a minor unit.

    Raises:
        InvalidCommandError: for anything else (lower case, ``"AAA"``, ``"XAU"``, not a str).
    """
    if not isinstance(currency, str) or currency not in MINOR_UNIT_EXPONENTS:
        raise InvalidCommandError("currency", f"{currency!r} is not an upper-case ISO 4217 currency code")
    return currency


@dataclass(frozen=True, slots=True)
class Money:
    """An amount of money in integer minor units (cents for EUR/USD, yen for JPY).

    An ordinary amount is never negative. A *delta* (a signed difference, built with
    :meth:`delta` or :meth:`difference`) may be. Arithmetic and comparison refuse to mix
    currencies with :class:`CurrencyMismatchError`.

    Attributes:
        amount: minor units.
        currency: ISO 4217 code, upper case.
        is_delta: whether a negative amount is allowed. Not part of equality.
    """

    amount: int
    currency: str
    is_delta: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        amount, currency = self.amount, self.currency
        # The valid case inline (the checks below, without their calls): Money is built
        # for every amount of every event applied, replay included.
        if (
            type(amount) is int
            and type(currency) is str
            and currency in _CURRENCIES
            and (-limits.AMOUNT_MAX if self.is_delta else 0) <= amount <= limits.AMOUNT_MAX
        ):
            return
        check_currency(currency)
        check_amount("amount", amount, minimum=None if self.is_delta else 0)

    @classmethod
    def zero(cls, currency: str) -> Money:
        """No money in ``currency`` (one shared instance per currency: Money is immutable)."""
        if cls is not Money or type(currency) is not str:
            return cls(0, currency)
        zero = _ZEROS.get(currency)
        if zero is None:
            zero = _ZEROS[currency] = cls(0, currency)  # validates the currency once
        return zero

    @classmethod
    def delta(cls, amount: int, currency: str) -> Money:
        """A signed amount (may be negative)."""
        return cls(amount, currency, is_delta=True)

    def __add__(self, other: Money) -> Money:
        self._check_same_currency(other)
        return Money(self.amount + other.amount, self.currency, self.is_delta or other.is_delta)

    def __sub__(self, other: Money) -> Money:
        """The difference; refuses to go below zero unless either side is a delta."""
        self._check_same_currency(other)
        return Money(self.amount - other.amount, self.currency, self.is_delta or other.is_delta)

    def difference(self, other: Money) -> Money:
        """``self - other`` as a signed delta."""
        self._check_same_currency(other)
        return Money.delta(self.amount - other.amount, self.currency)

    def __mul__(self, factor: int) -> Money:
        check_amount("factor", factor, minimum=None if self.is_delta else 0)
        return Money(self.amount * factor, self.currency, self.is_delta)

    def __lt__(self, other: Money) -> bool:
        self._check_same_currency(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._check_same_currency(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._check_same_currency(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._check_same_currency(other)
        return self.amount >= other.amount

    def as_dict(self) -> dict[str, int | str]:
        """The contract's JSON shape: ``{"amount": int, "currency": str}``."""
        return {"amount": self.amount, "currency": self.currency}

    def _check_same_currency(self, other: Money) -> None:
        if not isinstance(other, Money):
            msg = f"cannot combine Money with {type(other).__name__}"
            raise TypeError(msg)
        if other.currency != self.currency:
            raise CurrencyMismatchError(expected=self.currency, actual=other.currency)


_ZEROS: dict[str, Money] = {}
"""``Money.zero`` per currency, built on first use (at most one per ISO 4217 code)."""
