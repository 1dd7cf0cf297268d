"""Domain errors: a command refused by a business rule.

Domain errors know nothing of HTTP. Each carries its ``code``, the contract's stable
snake_case problem code (CONTRACT.md), and the attributes a caller needs to explain the
refusal; one map at the API edge (:mod:`api.problems`) adds the HTTP status. A command
that raises a :class:`DomainError` has triggered no event (commands validate first,
then mutate), so the group-commit runner can fail that one command and still save the
rest of its batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar
from uuid import UUID


class DomainError(Exception):
    """Base class of every error raised by a business rule."""

    code: ClassVar[str] = "domain_error"


@dataclass(frozen=True, slots=True)
class Shortage:
    """One order line that cannot be held.

    Attributes:
        sku: the stock keeping unit.
        requested: units the order asked for (all lines of that SKU together).
        available: units that could have been held (``on_hand - reserved``).
    """

    sku: str
    requested: int
    available: int


class OutOfStockError(DomainError):
    """Not enough available stock for one or more lines; nothing was held."""

    code = "out_of_stock"

    def __init__(self, lines: Sequence[Shortage]) -> None:
        self.lines: tuple[Shortage, ...] = tuple(lines)
        detail = ", ".join(f"{s.sku}: {s.requested} requested, {s.available} available" for s in self.lines)
        super().__init__(f"out of stock ({detail})")


class InsufficientStockError(DomainError):
    """An adjustment would take ``on_hand`` below ``reserved`` (or below zero)."""

    code = "insufficient_stock"

    def __init__(self, sku: str, on_hand: int, reserved: int, delta: int) -> None:
        self.sku = sku
        self.on_hand = on_hand
        self.reserved = reserved
        self.delta = delta
        super().__init__(f"adjusting {sku} by {delta} would leave {on_hand + delta} on hand with {reserved} reserved")


class InvalidStateError(DomainError):
    """The action is not allowed in the aggregate's current status."""

    code = "invalid_state"

    def __init__(self, current_status: str, action: str, aggregate_id: UUID | None = None) -> None:
        self.current_status = current_status
        self.action = action
        self.aggregate_id = aggregate_id
        super().__init__(f"cannot {action} when status is {current_status}")


class CurrencyMismatchError(DomainError):
    """Amounts in different currencies were combined or compared."""

    code = "currency_mismatch"

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"expected currency {expected}, got {actual}")


class OrderNotFoundError(DomainError):
    """No order with this id exists for this merchant."""

    code = "not_found"

    def __init__(self, order_id: UUID) -> None:
        self.order_id = order_id
        super().__init__(f"order {order_id} not found")


class OrderAlreadyExistsError(DomainError):
    """An order with this id was already placed."""

    code = "order_already_exists"

    def __init__(self, order_id: UUID) -> None:
        self.order_id = order_id
        super().__init__(f"order {order_id} already exists")


class InventoryItemNotFoundError(DomainError):
    """The merchant has never stocked this SKU."""

    code = "not_found"

    def __init__(self, sku: str) -> None:
        self.sku = sku
        super().__init__(f"inventory item {sku!r} not found")


class PaymentNotFoundError(DomainError):
    """No payment with this id exists for this merchant."""

    code = "not_found"

    def __init__(self, payment_id: UUID) -> None:
        self.payment_id = payment_id
        super().__init__(f"payment {payment_id} not found")


class InvalidCommandError(DomainError):
    """A command carried a value outside :mod:`domain.limits` (the API rejects it earlier)."""

    code = "invalid_request"

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        self.reason = reason
        super().__init__(f"{field}: {reason}")


class IdempotencyKeyReusedError(DomainError):
    """An Idempotency-Key that already applied one request was sent with another."""

    code = "idempotency_key_reused"

    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was used with a different request")
