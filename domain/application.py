"""The Daybook event-sourced application: commands one transaction each, and replays.

``Daybook`` runs one command at a time (:meth:`Daybook.execute`): it loads the
aggregates the command asks for from the repository, runs the command, and saves every
aggregate the command changed in one ``save`` call, so a command is atomic. The
group committer runs the same command objects against cached aggregates, many per
transaction; production writes go through it, while tools and tests use ``execute``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from itertools import takewhile
from typing import Any, Generic, TypeVar, cast
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent, Repository
from eventsourcing.domain import Aggregate, BaseAggregate
from eventsourcing.persistence import EventStore, Recording
from eventsourcing.popo import POPOApplicationRecorder
from eventsourcing.utils import strtobool

from domain.errors import InventoryItemNotFoundError, OrderNotFoundError, PaymentNotFoundError
from domain.events import DaybookAggregate, DaybookEvent
from domain.inventory import InventoryItem, InventoryLevel, inventory_item_id
from domain.orders import Order, OrderView
from domain.payments import Payment, PaymentView
from domain.recording import RecordingEventStore
from domain.snapshots import InMemorySnapshotRecorder, SnapshotRecorder, Snapshotting, SnapshottingRepository
from domain.unit_of_work import Command, TrackingUnitOfWork

log = logging.getLogger(__name__)

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

    With ``SNAPSHOTS`` true in its environment (``DAYBOOK_SNAPSHOTS``; on in every
    process that :func:`adapters.database.eventsourcing_env` configures, off by
    default), every load starts from the latest snapshot and every save snapshots the
    aggregates that are due (:mod:`domain.snapshots`). Snapshots need a mapper that
    decodes typed state: the msgspec mapper. ``SNAPSHOT_INTERVAL_EVENTS`` replaces the
    intervals of ``domain/limits.py``.
    """

    name = "Daybook"
    SNAPSHOTS = "SNAPSHOTS"
    SNAPSHOT_INTERVAL_EVENTS = "SNAPSHOT_INTERVAL_EVENTS"
    """Replaces every class's snapshot interval (``domain/limits.py``): for tests and benchmarks."""
    snapshotting: Snapshotting | None = None

    def construct_event_store(self) -> EventStore[UUID]:
        """The library's event store, answering saves with less work (:class:`RecordingEventStore`)."""
        return RecordingEventStore(mapper=self.mapper, recorder=self.recorder)

    def construct_repository(self) -> Repository[UUID]:
        """The repository, over snapshots when they are on (the library's otherwise)."""
        self.snapshotting = self._construct_snapshotting()
        cache_maxsize = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        return SnapshottingRepository(
            self.events,
            snapshotting=self.snapshotting,
            cache_maxsize=int(cache_maxsize) if cache_maxsize else None,
            fastforward=strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD, "y")),
            fastforward_skipping=strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD_SKIPPING, "n")),
            deepcopy_from_cache=strtobool(self.env.get(self.DEEPCOPY_FROM_AGGREGATE_CACHE, "y")),
        )

    def _construct_snapshotting(self) -> Snapshotting | None:
        if not strtobool(self.env.get(self.SNAPSHOTS, "n")):
            return None
        recorder: SnapshotRecorder
        if isinstance(self.recorder, SnapshotRecorder):
            recorder = self.recorder
        elif isinstance(self.recorder, POPOApplicationRecorder):
            recorder = InMemorySnapshotRecorder(self.recorder)
        else:
            msg = f"{type(self.recorder).__name__} keeps no snapshots; set {self.SNAPSHOTS}=n"
            raise ValueError(msg)
        interval = self.env.get(self.SNAPSHOT_INTERVAL_EVENTS)
        return Snapshotting(self.mapper, recorder, self.recorder, interval_events=int(interval) if interval else None)

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[UUID]]:
        """The library's ``save``, collecting an aggregate's events without its Protocol checks.

        ``ProcessingEvent.collect_events`` asks ``isinstance`` of two runtime-checkable
        Protocols for every object; those checks walk the Protocol's members each time
        and were 3.4 % of the API process's GIL time on the order path (the committer
        saves a batch's aggregates in one call). An aggregate is recognised by its
        class instead; anything else (a bare event) goes through the library.
        """
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        for obj in objs:
            if isinstance(obj, BaseAggregate):
                processing_event.events.extend(obj.collect_events())
                processing_event.aggregates[obj.id] = obj
            elif obj is not None:
                processing_event.collect_events(obj)
        processing_event.saved_kwargs.update(kwargs)
        recordings = self._record(processing_event)
        self._take_snapshots(processing_event)
        self._notify(recordings)
        self.notify(processing_event.events)  # the library's deprecated hook, as its save calls it
        return recordings

    def _take_snapshots(self, processing_event: ProcessingEvent[UUID]) -> None:
        # Called by Application.save once the events are committed: the aggregates hold
        # exactly the committed state. A snapshot never fails a save that committed.
        if self.snapshotting is None:
            return
        try:
            self.snapshotting.after_save(processing_event.aggregates, processing_event.events)
        except Exception:
            log.exception("snapshots after a save failed; the save itself committed")

    def close(self) -> None:
        """Writes the queued snapshots (bounded wait), then closes the event store."""
        if self.snapshotting is not None:
            self.snapshotting.close()
        super().close()

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

        Uses the events up to the first one whose timestamp is after ``as_of``; ``None``
        when the aggregate did not exist yet (or at all). With snapshots, starts from
        the latest snapshot whose events all occurred at or before ``as_of``.
        """
        if self.snapshotting is not None:
            stored = self.snapshotting.read([aggregate_id], as_of=as_of).get(aggregate_id, [])
            return self.snapshotting.restore(aggregate_id, stored, as_of=as_of)
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
