"""The Daybook event-sourced application: the commands, one transaction each.

``Daybook`` runs one command at a time (:meth:`Daybook.execute`): it loads the
aggregates the command asks for from the repository, runs the command, and saves every
aggregate the command changed in one ``save`` call, so a command is atomic. The
group committer runs the same command objects against cached aggregates, many per
transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from itertools import takewhile
from typing import Any, Generic, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, Repository
from eventsourcing.domain import Aggregate

from domain.commands import (
    HOLD_SECONDS_DEFAULT,
    AdjustStock,
    ApplyGatewayEvent,
    CancelOrder,
    ExpireOrder,
    ExpiryResult,
    GatewayEventOutcome,
    PlaceOrder,
    ReceiveStock,
)
from domain.context import CommandContext
from domain.errors import InventoryItemNotFoundError, OrderNotFoundError, PaymentNotFoundError
from domain.events import DaybookEvent
from domain.gateway import GatewayEvent
from domain.inventory import InventoryItem, InventoryLevel, inventory_item_id
from domain.orders import Order, OrderLine, OrderView
from domain.payments import Payment, PaymentView
from domain.unit_of_work import A, AggregateMissingError, Command, DuplicateAggregateError, check_class

R = TypeVar("R")


class RepositoryUnitOfWork:
    """A unit of work over a repository, for one command.

    Remembers every aggregate it handed out or was given, in first-touch order, so
    that the runner can save them all together; a second ``find`` of the same id
    returns the same object.
    """

    def __init__(self, repository: Repository[UUID]) -> None:
        self._repository = repository
        self._touched: dict[UUID, Aggregate] = {}

    def find(self, aggregate_id: UUID, aggregate_class: type[A]) -> A | None:
        """Returns the aggregate, or ``None`` when no such aggregate exists.

        Raises:
            TypeError: the stored aggregate is of another class.
        """
        aggregate = self._touched.get(aggregate_id)
        if aggregate is None:
            try:
                aggregate = cast(Aggregate, self._repository.get(aggregate_id))
            except AggregateNotFoundError:
                return None
            self._touched[aggregate_id] = aggregate
        return check_class(aggregate, aggregate_class, aggregate_id)

    def get(self, aggregate_id: UUID, aggregate_class: type[A]) -> A:
        """Returns the aggregate or raises :class:`AggregateMissingError`."""
        aggregate = self.find(aggregate_id, aggregate_class)
        if aggregate is None:
            raise AggregateMissingError(aggregate_id)
        return aggregate

    def add(self, aggregate: Aggregate) -> None:
        """Registers a newly created aggregate so that it is saved with the others.

        Raises:
            DuplicateAggregateError: an aggregate with this id exists already.
        """
        if self._touched.get(aggregate.id) is aggregate:
            return
        if aggregate.id in self._touched or aggregate.id in self._repository:
            raise DuplicateAggregateError(aggregate.id)
        self._touched[aggregate.id] = aggregate

    @property
    def touched(self) -> list[Aggregate]:
        """Every aggregate found or added, in first-touch order."""
        return list(self._touched.values())

    @property
    def changed(self) -> list[Aggregate]:
        """The touched aggregates that have events to save, in first-touch order."""
        return [aggregate for aggregate in self._touched.values() if aggregate.pending_events]


@dataclass(frozen=True, slots=True)
class Executed(Generic[R]):
    """A command's result and the notification id of its last stored event."""

    result: R
    position: int | None


class Daybook(Application[UUID]):
    """Orders, payments and inventory of every merchant, as event streams.

    The application name makes the PostgreSQL events table ``daybook_events``.
    """

    name = "Daybook"

    def execute(self, command: Command[R]) -> R:
        """Runs ``command`` and saves everything it changed in one transaction."""
        return self.execute_recorded(command).result

    def execute_recorded(self, command: Command[R]) -> Executed[R]:
        """Like :meth:`execute`, also returning the position of the last stored event.

        A command that raises saves nothing: commands validate before they record.
        """
        uow = RepositoryUnitOfWork(self.repository)
        result = command(uow)
        changed = uow.changed
        if not changed:
            return Executed(result, None)
        recordings = self.save(*changed)
        return Executed(result, recordings[-1].notification.id if recordings else None)

    # Commands.

    def receive_stock(
        self,
        context: CommandContext,
        merchant_id: UUID,
        sku: str,
        quantity: int,
        reference: str | None = None,
    ) -> InventoryLevel:
        """See :func:`domain.commands.receive_stock`."""
        return self.execute(ReceiveStock(context, merchant_id, sku, quantity, reference))

    def adjust_stock(
        self, context: CommandContext, merchant_id: UUID, sku: str, delta: int, reason: str
    ) -> InventoryLevel:
        """See :func:`domain.commands.adjust_stock`."""
        return self.execute(AdjustStock(context, merchant_id, sku, delta, reason))

    def place_order(
        self,
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
        """See :func:`domain.commands.place_order`."""
        command = PlaceOrder(context, merchant_id, order_id, tuple(lines), currency, customer_ref, hold_seconds, now)
        return self.execute(command)

    def cancel_order(self, context: CommandContext, merchant_id: UUID, order_id: UUID) -> OrderView:
        """See :func:`domain.commands.cancel_order`."""
        return self.execute(CancelOrder(context, merchant_id, order_id))

    def expire_order(
        self,
        context: CommandContext,
        merchant_id: UUID,
        order_id: UUID,
        now: datetime | None = None,
    ) -> ExpiryResult:
        """See :func:`domain.commands.expire_order`."""
        return self.execute(ExpireOrder(context, merchant_id, order_id, now))

    def apply_gateway_event(
        self,
        context: CommandContext,
        merchant_id: UUID,
        fact: GatewayEvent,
        now: datetime | None = None,
    ) -> GatewayEventOutcome:
        """See :func:`domain.commands.apply_gateway_event`."""
        return self.execute(ApplyGatewayEvent(context, merchant_id, fact, now))

    # Queries (from the event streams; read models answer the API's lists).

    def get_order(self, merchant_id: UUID, order_id: UUID, as_of: datetime | None = None) -> OrderView:
        """The merchant's order, now or as it was at ``as_of``.

        Raises:
            OrderNotFoundError: no such order (at that instant) for this merchant.
        """
        order = self.replay(order_id, as_of)
        if not isinstance(order, Order) or order.merchant_id != merchant_id:
            raise OrderNotFoundError(order_id)
        return order.view()

    def get_inventory_level(self, merchant_id: UUID, sku: str, as_of: datetime | None = None) -> InventoryLevel:
        """The merchant's level of ``sku``, now or as it was at ``as_of``.

        Raises:
            InventoryItemNotFoundError: the SKU was not stocked (at that instant).
        """
        item = self.replay(inventory_item_id(merchant_id, sku), as_of)
        if not isinstance(item, InventoryItem):
            raise InventoryItemNotFoundError(sku)
        return item.level()

    def get_payment(self, merchant_id: UUID, payment_id: UUID, as_of: datetime | None = None) -> PaymentView:
        """The merchant's payment, now or as it was at ``as_of``.

        Raises:
            PaymentNotFoundError: no such payment (at that instant) for this merchant.
        """
        payment = self.replay(payment_id, as_of)
        if not isinstance(payment, Payment) or payment.merchant_id != merchant_id:
            raise PaymentNotFoundError(payment_id)
        return payment.view()

    def replay(self, aggregate_id: UUID, as_of: datetime | None = None) -> Aggregate | None:
        """Rebuilds an aggregate from its events, as it was at ``as_of`` (default: now).

        Uses the events whose timestamp is at or before ``as_of``; ``None`` when the
        aggregate did not exist yet (or at all).
        """
        events: Any = self.events.get(aggregate_id)
        if as_of is not None:
            events = takewhile(lambda event: event.timestamp <= as_of, events)
        aggregate: Aggregate | None = None
        for event in events:
            aggregate = event.mutate(aggregate)
        return aggregate

    def history(self, aggregate_id: UUID) -> list[DaybookEvent]:
        """The aggregate's stored events, in version order."""
        return [cast(DaybookEvent, event) for event in self.events.get(aggregate_id)]
