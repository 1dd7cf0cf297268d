"""What a snapshot of each aggregate class holds, and which classes are snapshotted.

A snapshot is the library's kind of event (:class:`eventsourcing.domain.Snapshot`): the
state of one aggregate exactly at ``originator_version``, which the repository restores
and then applies the later events to. Daybook's snapshot classes differ in three ways:

- Each snapshotted aggregate class has a snapshot class of its own, whose ``state`` is
  typed (a ``TypedDict`` of the aggregate's attributes), so that the msgspec mapper
  decodes it back to the very types the aggregate holds (UUID keys, ``Hold`` tuples,
  aware datetimes), as it decodes any event by its annotations.
- ``timestamp`` is the latest timestamp among the events up to ``originator_version``
  (not when the snapshot was taken), so that an ``as_of`` read uses a snapshot only if
  every event it reflects occurred at or before ``as_of``.
- The snapshot class carries the ``class_version`` (and the ``upcast_vN_vN+1`` of its
  stored state, if any) like every event. Bump it whenever the aggregate's attributes or
  their meaning change: a stored snapshot of another version that cannot be upcast is
  ignored, and the aggregate is replayed from its events instead (events are the truth;
  a snapshot only saves time).

Orders, payments and idempotency markers are not snapshotted: their histories stay
short (a few events per payment fact), so replaying them costs less than a snapshot
look-up would save.
"""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar, Final, TypedDict
from uuid import UUID

from eventsourcing.domain import Aggregate, Snapshot
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic, resolve_topic

from domain import limits
from domain.inventory import Hold, InventoryItem

# Library bookkeeping that a snapshot keeps in its own fields (id, version) or not at all.
_NOT_STATE = frozenset({"_id", "_version", "_pending_events"})


class SnapshotUnusableError(ValueError):
    """A stored snapshot cannot be restored (another class version, another shape, another class)."""


@dataclass(frozen=True)
class StoredSnapshot(StoredEvent):
    """A stored snapshot, as a recorder returns it at the head of an aggregate's events."""


@dataclass(frozen=True)
class AggregateSnapshot(Snapshot):
    """Base of Daybook's snapshots: one subclass per snapshotted aggregate class.

    Attributes:
        timestamp: the latest timestamp of the events up to ``originator_version``.
        topic: the aggregate class's topic.
        state: the aggregate's attributes, except its id, version and pending events.
    """

    aggregate_class: ClassVar[type[Aggregate]] = Aggregate
    interval_events: ClassVar[int] = 0
    """At least this many events between two snapshots of one aggregate."""

    @classmethod
    def of(cls, aggregate: Aggregate, timestamp_max: datetime) -> AggregateSnapshot:
        """The snapshot of ``aggregate`` as it is now (its committed state, no pending events).

        Raises:
            SnapshotUnusableError: the aggregate's attributes are not the ones the state
                type declares (a new attribute without a new snapshot class version).
        """
        assert type(aggregate) is cls.aggregate_class, (type(aggregate), cls)
        assert not aggregate.pending_events, "a snapshot is taken of committed state"
        state = {name: value for name, value in vars(aggregate).items() if name not in _NOT_STATE}
        expected = cls.state_keys()
        if state.keys() != expected:
            msg = f"{cls.__qualname__} declares {sorted(expected)}, the aggregate has {sorted(state)}"
            raise SnapshotUnusableError(msg)
        return cls(
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=timestamp_max,
            topic=get_topic(type(aggregate)),
            state=state,
        )

    @classmethod
    def state_keys(cls) -> frozenset[str]:
        """The attribute names the state holds (the keys of the subclass's ``state`` type)."""
        return _state_keys(cls)

    def mutate(self, _: None) -> Aggregate:
        """The aggregate exactly as it was at ``originator_version``.

        Raises:
            SnapshotUnusableError: the snapshot names another aggregate class.
        """
        aggregate_class = resolve_topic(self.topic)
        if aggregate_class is not self.aggregate_class:
            msg = f"{type(self).__qualname__} of {self.topic!r}"
            raise SnapshotUnusableError(msg)
        state = dict(self.state)
        state["_id"] = self.originator_id
        state["_version"] = self.originator_version
        state["_pending_events"] = []
        aggregate: Aggregate = object.__new__(aggregate_class)
        object.__setattr__(aggregate, "__dict__", state)
        return aggregate


@functools.cache
def _state_keys(snapshot_class: type[AggregateSnapshot]) -> frozenset[str]:
    state_type = typing.get_type_hints(snapshot_class)["state"]
    return frozenset(state_type.__required_keys__)


class InventoryItemState(TypedDict):
    """The attributes of an :class:`~domain.inventory.InventoryItem`."""

    _created_on: datetime
    _modified_on: datetime
    merchant_id: UUID
    sku: str
    on_hand: int
    reserved: int
    holds: dict[UUID, Hold]


@dataclass(frozen=True)
class InventoryItemSnapshot(AggregateSnapshot):
    """An inventory item at one version: its stock and every hold still running."""

    state: InventoryItemState  # type: ignore[assignment]
    aggregate_class: ClassVar[type[Aggregate]] = InventoryItem
    interval_events: ClassVar[int] = limits.INVENTORY_ITEM_SNAPSHOT_INTERVAL_EVENTS
    class_version: ClassVar[int] = 1


SNAPSHOT_CLASSES: Final[Mapping[type[Aggregate], type[AggregateSnapshot]]] = {
    InventoryItem: InventoryItemSnapshot,
}
"""The snapshot class of each snapshotted aggregate class; others are always replayed."""
