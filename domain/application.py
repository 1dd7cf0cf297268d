"""The Daybook event-sourced application: commands one transaction each, and replays.

``Daybook`` runs one command at a time (:meth:`Daybook.execute`): it loads the
aggregates the command asks for from the repository, runs the command, and saves every
aggregate the command changed in one ``save`` call, so a command is atomic. The
group committer runs the same command objects against cached aggregates, many per
transaction; production writes go through it, while tools and tests use ``execute``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from itertools import takewhile
from typing import Any, Generic, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, Repository
from eventsourcing.domain import Aggregate

from domain.errors import InventoryItemNotFoundError, OrderNotFoundError, PaymentNotFoundError
from domain.events import DaybookAggregate, DaybookEvent
from domain.inventory import InventoryItem, InventoryLevel, inventory_item_id
from domain.orders import Order, OrderView
from domain.payments import Payment, PaymentView
from domain.unit_of_work import Command, TrackingUnitOfWork

R = TypeVar("R")
D = TypeVar("D", bound=DaybookAggregate)


class RepositoryUnitOfWork(TrackingUnitOfWork):
    """A unit of work over a repository, for one command."""

    def __init__(self, repository: Repository[UUID]) -> None:
        super().__init__()
        self._repository = repository

    def _load(self, aggregate_id: UUID) -> Aggregate | None:
        try:
            return cast(Aggregate, self._repository.get(aggregate_id))
        except AggregateNotFoundError:
            return None

    def _exists(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self._repository


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

    # Queries (from the event streams; read models answer the API's lists).

    def get_order(self, merchant_id: UUID, order_id: UUID, as_of: datetime | None = None) -> OrderView:
        """The merchant's order, now or as it was at ``as_of``.

        Raises:
            OrderNotFoundError: no such order (at that instant) for this merchant.
        """
        order = self.replay_owned(order_id, Order, merchant_id, as_of)
        if order is None:
            raise OrderNotFoundError(order_id)
        return order.view()

    def get_inventory_level(self, merchant_id: UUID, sku: str, as_of: datetime | None = None) -> InventoryLevel:
        """The merchant's level of ``sku``, now or as it was at ``as_of``.

        Raises:
            InventoryItemNotFoundError: the SKU was not stocked (at that instant).
        """
        item = self.replay_owned(inventory_item_id(merchant_id, sku), InventoryItem, merchant_id, as_of)
        if item is None:
            raise InventoryItemNotFoundError(sku)
        return item.level()

    def get_payment(self, merchant_id: UUID, payment_id: UUID, as_of: datetime | None = None) -> PaymentView:
        """The merchant's payment, now or as it was at ``as_of``.

        Raises:
            PaymentNotFoundError: no such payment (at that instant) for this merchant.
        """
        payment = self.replay_owned(payment_id, Payment, merchant_id, as_of)
        if payment is None:
            raise PaymentNotFoundError(payment_id)
        return payment.view()

    def replay_owned(
        self, aggregate_id: UUID, aggregate_class: type[D], merchant_id: UUID, as_of: datetime | None = None
    ) -> D | None:
        """The merchant's aggregate of ``aggregate_class`` replayed (see :meth:`replay`), else ``None``.

        Another merchant's aggregate, or one of another class, is ``None`` too: it is
        never revealed that such an id exists.
        """
        aggregate = self.replay(aggregate_id, as_of)
        if not isinstance(aggregate, aggregate_class) or aggregate.merchant_id != merchant_id:
            return None
        return aggregate

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
