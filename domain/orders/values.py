"""Order values: statuses, lines and the frozen order view."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TypedDict
from uuid import UUID

from domain import limits
from domain.errors import CurrencyMismatchError, InvalidCommandError
from domain.money import Money, check_currency
from domain.validation import check_amount, check_sku


class OrderStatus(StrEnum):
    """Where an order is in its life (the contract's status strings)."""

    RESERVED = "reserved"
    PAID = "paid"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    DISPUTED = "disputed"
    PAID_UNFULFILLABLE = "paid_unfulfillable"


# A capture for an order in one of these statuses makes it paid (re-holding stock when
# the hold had ended).
PAYABLE = frozenset({OrderStatus.RESERVED, OrderStatus.EXPIRED, OrderStatus.CANCELLED})
DISPUTABLE = frozenset(
    {
        OrderStatus.PAID,
        OrderStatus.PARTIALLY_REFUNDED,
        OrderStatus.REFUNDED,
        OrderStatus.PAID_UNFULFILLABLE,
    }
)


@dataclass(frozen=True, slots=True)
class OrderLine:
    """One line of an order: ``quantity`` units of ``sku`` at ``unit_price`` each."""

    sku: str
    quantity: int
    unit_price: Money

    @property
    def amount(self) -> Money:
        """The line total: ``unit_price * quantity``."""
        return self.unit_price * self.quantity


class LineData(TypedDict):
    """An order line as stored in ``Order.Placed`` (the price in the order's currency)."""

    sku: str
    quantity: int
    unit_price: int


class ShortageData(TypedDict):
    """A line that could not be re-held, as stored in ``Order.MarkedUnfulfillable``."""

    sku: str
    requested: int
    available: int


def check_order_lines(lines: Sequence[OrderLine], currency: str) -> list[OrderLine]:
    """Validates the lines of a new order and merges lines of equal SKU and price.

    Raises:
        InvalidCommandError: no lines, too many, or a bad SKU or quantity.
        CurrencyMismatchError: a unit price is not in ``currency``.
    """
    check_currency(currency)
    if not limits.LINES_MIN <= len(lines) <= limits.LINES_MAX:
        raise InvalidCommandError("lines", f"an order has {limits.LINES_MIN} to {limits.LINES_MAX} lines")
    for line in lines:
        check_sku(line.sku)
        check_amount("quantity", line.quantity, minimum=limits.LINE_QUANTITY_MIN, maximum=limits.LINE_QUANTITY_MAX)
        if not isinstance(line.unit_price, Money):
            raise InvalidCommandError("unit_price", "must be Money")
        if line.unit_price.currency != currency:
            raise CurrencyMismatchError(expected=currency, actual=line.unit_price.currency)
        check_amount("unit_price", line.unit_price.amount, maximum=limits.UNIT_PRICE_MAX)
    if len(lines) == 1 and type(lines[0]) is OrderLine:
        return list(lines)  # one line has nothing to merge with (and hashing Money costs)
    merged: dict[tuple[str, Money], int] = {}
    for line in lines:
        key = (line.sku, line.unit_price)
        merged[key] = merged.get(key, 0) + line.quantity
    if len(merged) == len(lines) and all(type(line) is OrderLine for line in lines):
        return list(lines)  # nothing to merge: the (frozen) lines as given
    return [OrderLine(sku, quantity, price) for (sku, price), quantity in merged.items()]


def quantities_by_sku(lines: Sequence[OrderLine]) -> dict[str, int]:
    """Units per SKU over all lines (what the order holds on each inventory item)."""
    quantities: dict[str, int] = {}
    for line in lines:
        quantities[line.sku] = quantities.get(line.sku, 0) + line.quantity
    return quantities


@dataclass(frozen=True, slots=True)
class OrderView:
    """A frozen view of an order (the contract's order shape, plus ids and version)."""

    id: UUID
    merchant_id: UUID
    status: OrderStatus
    lines: tuple[OrderLine, ...]
    currency: str
    customer_ref: str | None
    total: Money
    amount_captured: Money
    amount_refunded: Money
    payment_ids: tuple[UUID, ...]
    hold_expires_at: datetime
    created_at: datetime
    updated_at: datetime
    version: int
