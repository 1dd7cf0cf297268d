"""Order commands: place (holding stock on every line), cancel, expire."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

from domain.commands.stock import find_item
from domain.context import CommandContext
from domain.errors import (
    InvalidCommandError,
    OrderAlreadyExistsError,
    OrderNotFoundError,
    OutOfStockError,
    Shortage,
)
from domain.inventory import InventoryItem, check_aware, check_text, inventory_item_id
from domain.money import check_amount
from domain.orders import Order, OrderLine, OrderView, check_order_lines, quantities_by_sku
from domain.unit_of_work import DuplicateAggregateError, UnitOfWork

HOLD_SECONDS_MIN = 60
HOLD_SECONDS_MAX = 86_400
HOLD_SECONDS_DEFAULT = 900


def find_order(uow: UnitOfWork, merchant_id: UUID, order_id: UUID) -> Order | None:
    """The merchant's order, or ``None`` (another merchant's order is not found either)."""
    try:
        order = uow.find(order_id, Order)
    except TypeError:  # the id belongs to another kind of aggregate
        return None
    if order is None or order.merchant_id != merchant_id:
        return None
    return order


def get_order(uow: UnitOfWork, merchant_id: UUID, order_id: UUID) -> Order:
    """The merchant's order.

    Raises:
        OrderNotFoundError: no such order for this merchant.
    """
    order = find_order(uow, merchant_id, order_id)
    if order is None:
        raise OrderNotFoundError(order_id)
    return order


def find_shortages(
    uow: UnitOfWork, merchant_id: UUID, quantities: dict[str, int]
) -> tuple[dict[str, InventoryItem], list[Shortage]]:
    """Loads the items for ``quantities`` (SKU → units) and what each lacks to hold them."""
    items: dict[str, InventoryItem] = {}
    shortages: list[Shortage] = []
    for sku, quantity in quantities.items():
        item = find_item(uow, merchant_id, sku)
        if item is None:
            shortages.append(Shortage(sku=sku, requested=quantity, available=0))
            continue
        items[sku] = item
        shortage = item.shortage(quantity)
        if shortage is not None:
            shortages.append(shortage)
    return items, shortages


def release_holds(uow: UnitOfWork, context: CommandContext, order: Order, reason: str) -> None:
    """Releases whatever the order still holds on its items (a no-op where nothing is)."""
    for sku in quantities_by_sku(order.lines):
        item = find_item(uow, order.merchant_id, sku)
        if item is not None:
            item.release(order.id, reason, context)


def place_order(
    uow: UnitOfWork,
    context: CommandContext,
    merchant_id: UUID,
    *,
    order_id: UUID,
    lines: Sequence[OrderLine],
    currency: str,
    customer_ref: str | None = None,
    hold_seconds: int = HOLD_SECONDS_DEFAULT,
    now: datetime | None = None,
) -> OrderView:
    """Places an order and holds stock for every line, all or nothing.

    Every line is checked before anything is recorded: on failure nothing is held and
    no order exists. Lines of one SKU are held together (merged).

    Raises:
        OutOfStockError: listing every line whose SKU lacks available stock.
        CurrencyMismatchError: a unit price is not in the order's currency.
        OrderAlreadyExistsError: ``order_id`` is taken.
        InvalidCommandError: bad lines, ``hold_seconds`` or ``customer_ref``.
    """
    context = context.stamped()
    merged = check_order_lines(lines, currency)
    check_amount("hold_seconds", hold_seconds, minimum=HOLD_SECONDS_MIN)
    if hold_seconds > HOLD_SECONDS_MAX:
        raise InvalidCommandError("hold_seconds", f"{hold_seconds} is above {HOLD_SECONDS_MAX}")
    check_text("customer_ref", customer_ref, required=False)
    now = check_aware("now", now) if now is not None else context.instant
    quantities = quantities_by_sku(merged)
    items, shortages = find_shortages(uow, merchant_id, quantities)
    if shortages:
        raise OutOfStockError(shortages)
    hold_expires_at = now + timedelta(seconds=hold_seconds)
    order = Order.place(
        order_id=order_id,
        merchant_id=merchant_id,
        lines=merged,
        currency=currency,
        customer_ref=customer_ref,
        hold_expires_at=hold_expires_at,
        context=context,
    )
    try:
        # No lookup first: a taken id is a database fact, reported by the unit of work
        # (at once when it knows, else when the batch is saved and re-run).
        uow.add(order)
    except DuplicateAggregateError as error:
        raise OrderAlreadyExistsError(order_id) from error
    for sku, quantity in quantities.items():
        items[sku].hold(order.id, quantity, hold_expires_at, context)
    return order.view()


def cancel_order(uow: UnitOfWork, context: CommandContext, merchant_id: UUID, *, order_id: UUID) -> OrderView:
    """Cancels a reserved order and releases its stock (a no-op if already cancelled).

    Raises:
        OrderNotFoundError: no such order for this merchant.
        InvalidStateError: the order is paid, expired, refunded…
    """
    context = context.stamped()
    order = get_order(uow, merchant_id, order_id)
    if order.cancel(context):
        release_holds(uow, context, order, reason="cancelled")
    return order.view()


@dataclass(frozen=True, slots=True)
class ExpiryResult:
    """What :func:`expire_order` did."""

    order: OrderView
    expired: bool


def expire_order(
    uow: UnitOfWork,
    context: CommandContext,
    merchant_id: UUID,
    *,
    order_id: UUID,
    now: datetime | None = None,
) -> ExpiryResult:
    """Expires a reserved order whose hold has passed and releases its stock.

    A no-op (``expired=False``) when the order is not reserved or not yet due, so a
    sweeper may run it twice.

    Raises:
        OrderNotFoundError: no such order for this merchant.
    """
    context = context.stamped()
    now = check_aware("now", now) if now is not None else context.instant
    order = get_order(uow, merchant_id, order_id)
    expired = order.expire(now, context)
    if expired:
        release_holds(uow, context, order, reason="expired")
    return ExpiryResult(order=order.view(), expired=expired)


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """:func:`place_order` as a command object for a runner."""

    context: CommandContext
    merchant_id: UUID
    order_id: UUID
    lines: tuple[OrderLine, ...]
    currency: str
    customer_ref: str | None = None
    hold_seconds: int = HOLD_SECONDS_DEFAULT
    now: datetime | None = None

    def aggregate_ids(self) -> list[UUID]:
        """The inventory items of its lines (a prefetch hint; the order itself is new)."""
        return [inventory_item_id(self.merchant_id, sku) for sku in {line.sku for line in self.lines}]

    def __call__(self, uow: UnitOfWork, /) -> OrderView:
        return place_order(
            uow,
            self.context,
            self.merchant_id,
            order_id=self.order_id,
            lines=self.lines,
            currency=self.currency,
            customer_ref=self.customer_ref,
            hold_seconds=self.hold_seconds,
            now=self.now,
        )


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """:func:`cancel_order` as a command object for a runner."""

    context: CommandContext
    merchant_id: UUID
    order_id: UUID

    def aggregate_ids(self) -> list[UUID]:
        """The order (a prefetch hint; its items are known only once it is loaded)."""
        return [self.order_id]

    def __call__(self, uow: UnitOfWork, /) -> OrderView:
        return cancel_order(uow, self.context, self.merchant_id, order_id=self.order_id)


@dataclass(frozen=True, slots=True)
class ExpireOrder:
    """:func:`expire_order` as a command object for a runner."""

    context: CommandContext
    merchant_id: UUID
    order_id: UUID
    now: datetime | None = None

    def aggregate_ids(self) -> list[UUID]:
        """The order (a prefetch hint; its items are known only once it is loaded)."""
        return [self.order_id]

    def __call__(self, uow: UnitOfWork, /) -> ExpiryResult:
        return expire_order(uow, self.context, self.merchant_id, order_id=self.order_id, now=self.now)
