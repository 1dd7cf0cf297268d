"""Order commands: place (holding stock on every line), cancel, expire."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from domain import limits
from domain.commands.stock import find_item
from domain.context import CommandContext
from domain.errors import OrderAlreadyExistsError, OrderNotFoundError, OutOfStockError, Shortage
from domain.inventory import InventoryItem, inventory_item_id
from domain.orders import Order, OrderLine, OrderView, quantities_by_sku
from domain.unit_of_work import DuplicateAggregateError, UnitOfWork
from domain.validation import check_aware


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


@dataclass(frozen=True, slots=True)
class PlaceOrder:
    """Places an order and holds stock for every line, all or nothing.

    Every line is checked before anything is recorded: on failure nothing is held and
    no order exists. Lines of one SKU are held together (merged). ``now`` defaults to
    the instant the command runs.

    ``may_exist`` says the id may be placed already: it was derived from an idempotency
    key, or the command is being sent again after its answer was lost. Only then is the
    order looked up when stock is short, so that such a retry meets the order it placed
    (whose hold may since have been released) instead of ``out_of_stock``; fresh ids
    skip the lookup.

    Raises (when called):
        OutOfStockError: listing every line whose SKU lacks available stock.
        CurrencyMismatchError: a unit price is not in the order's currency.
        OrderAlreadyExistsError: ``order_id`` is taken.
        InvalidCommandError: bad lines, ``hold_seconds`` or ``customer_ref``.
    """

    context: CommandContext
    merchant_id: UUID
    order_id: UUID
    lines: Sequence[OrderLine]
    currency: str
    customer_ref: str | None = None
    hold_seconds: int = limits.HOLD_SECONDS_DEFAULT
    now: datetime | None = None
    may_exist: bool = False

    def aggregate_ids(self) -> list[UUID]:
        """The inventory items of its lines, and the order when it may exist (a prefetch hint)."""
        merchant_id = self.merchant_id
        ids: list[UUID] = []
        for line in self.lines:  # one line mostly: no set built for it
            item_id = inventory_item_id(merchant_id, line.sku)
            if item_id not in ids:
                ids.append(item_id)
        if self.may_exist:
            ids.append(self.order_id)
        return ids

    def __call__(self, uow: UnitOfWork, /) -> OrderView:
        """Runs the command; returns the placed order."""
        context = self.context.stamped()
        now = check_aware("now", self.now) if self.now is not None else context.instant
        order = Order.place(
            order_id=self.order_id,
            merchant_id=self.merchant_id,
            lines=self.lines,
            currency=self.currency,
            customer_ref=self.customer_ref,
            hold_seconds=self.hold_seconds,
            now=now,
            context=context,
        )
        quantities = quantities_by_sku(order.lines)
        items, shortages = find_shortages(uow, self.merchant_id, quantities)
        for item in items.values():  # a loop, not any() over a generator: once per order placed
            if self.order_id in item.holds:
                # Its holds are recorded, so it was placed: a second run of the same command
                # (a retry whose first answer was lost) before the store reports the id.
                raise OrderAlreadyExistsError(self.order_id)
        if shortages:
            if self.may_exist and uow.find(self.order_id, Order) is not None:
                # Placed by an earlier run whose hold was released since (cancelled, expired).
                raise OrderAlreadyExistsError(self.order_id)
            raise OutOfStockError(shortages)  # the new order was never added: nothing is saved
        try:
            # No lookup first: a taken id is a database fact, reported by the unit of work
            # (at once when it knows, else when the batch is saved and re-run).
            uow.add(order)
        except DuplicateAggregateError as error:
            raise OrderAlreadyExistsError(self.order_id) from error
        for sku, quantity in quantities.items():
            items[sku].hold(order.id, quantity, order.hold_expires_at, context)
        return order.view()


@dataclass(frozen=True, slots=True)
class CancelOrder:
    """Cancels a reserved order and releases its stock (a no-op if already cancelled).

    Raises (when called):
        OrderNotFoundError: no such order for this merchant.
        InvalidStateError: the order is paid, expired, refunded…
    """

    context: CommandContext
    merchant_id: UUID
    order_id: UUID

    def aggregate_ids(self) -> list[UUID]:
        """The order (a prefetch hint; its items are known only once it is loaded)."""
        return [self.order_id]

    def __call__(self, uow: UnitOfWork, /) -> OrderView:
        """Runs the command; returns the order."""
        context = self.context.stamped()
        order = get_order(uow, self.merchant_id, self.order_id)
        if order.cancel(context):
            release_holds(uow, context, order, reason="cancelled")
        return order.view()


@dataclass(frozen=True, slots=True)
class ExpiryResult:
    """What :class:`ExpireOrder` did."""

    order: OrderView
    expired: bool


@dataclass(frozen=True, slots=True)
class ExpireOrder:
    """Expires a reserved order whose hold has passed and releases its stock.

    A no-op (``expired=False``) when the order is not reserved or not yet due, so a
    sweeper may run it twice. ``now`` defaults to the instant the command runs.

    Raises (when called):
        OrderNotFoundError: no such order for this merchant.
    """

    context: CommandContext
    merchant_id: UUID
    order_id: UUID
    now: datetime | None = None

    def aggregate_ids(self) -> list[UUID]:
        """The order (a prefetch hint; its items are known only once it is loaded)."""
        return [self.order_id]

    def __call__(self, uow: UnitOfWork, /) -> ExpiryResult:
        """Runs the command; says whether the order expired."""
        context = self.context.stamped()
        now = check_aware("now", self.now) if self.now is not None else context.instant
        order = get_order(uow, self.merchant_id, self.order_id)
        expired = order.expire(now, context)
        if expired:
            release_holds(uow, context, order, reason="expired")
        return ExpiryResult(order=order.view(), expired=expired)
