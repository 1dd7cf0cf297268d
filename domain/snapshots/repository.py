"""The application's repository: every load starts from the latest usable snapshot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, ProjectorFunction, Repository, project_aggregate
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import EventStore, StoredEvent

from domain.snapshots.snapshotting import Snapshotting


@runtime_checkable
class BulkEventReader(Protocol):
    """A recorder that reads the events of many aggregates in one query."""

    def select_events_of(self, originator_ids: Sequence[UUID]) -> dict[UUID, list[StoredEvent]]: ...


class SnapshottingRepository(Repository[UUID]):
    """A library repository whose loads go through :class:`Snapshotting` when it is on.

    ``get(id)`` and ``get(id, version=v)`` read the latest snapshot at or before the
    version asked for and the events after it, in one query, so a committer's load, a
    projection's catch-up load and an API replay cost about an interval of events
    whatever the aggregate's history. :meth:`get_many` does the same for many ids.
    Without snapshotting it behaves as the library's repository.
    """

    def __init__(self, event_store: EventStore[UUID], *, snapshotting: Snapshotting | None, **options: Any) -> None:
        """The repository over ``event_store``; ``options`` are the library repository's."""
        super().__init__(event_store, **options)
        self.snapshotting = snapshotting

    def get_many(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Aggregate]:
        """The latest state of each aggregate that exists, in one read when the store allows.

        Raises:
            TypeError: the store cannot read many aggregates at once (the in-memory one
                can, through snapshotting).
        """
        if self.snapshotting is not None:
            stored = self.snapshotting.read(aggregate_ids)
            loaded = {
                aggregate_id: self.snapshotting.restore(aggregate_id, events) for aggregate_id, events in stored.items()
            }
            return {aggregate_id: aggregate for aggregate_id, aggregate in loaded.items() if aggregate is not None}
        recorder = self.event_store.recorder
        if not isinstance(recorder, BulkEventReader):
            msg = f"{type(recorder).__name__} cannot read many aggregates at once"
            raise TypeError(msg)
        aggregates: dict[UUID, Aggregate] = {}
        for aggregate_id, events in recorder.select_events_of(aggregate_ids).items():
            aggregate: Any = None
            for stored_event in events:
                aggregate = self.event_store.mapper.to_domain_event(stored_event).mutate(aggregate)  # type: ignore[attr-defined]
            aggregates[aggregate_id] = aggregate
        return aggregates

    def _reconstruct_aggregate(
        self, aggregate_id: UUID, version: int | None, projector_func: ProjectorFunction[Any, Any]
    ) -> Any:
        if self.snapshotting is None or projector_func is not project_aggregate:
            return super()._reconstruct_aggregate(aggregate_id, version, projector_func)
        stored = self.snapshotting.read([aggregate_id], version_max=version).get(aggregate_id, [])
        aggregate = self.snapshotting.restore(aggregate_id, stored, version_max=version)
        if aggregate is None:
            msg = f"Aggregate {aggregate_id!r} version {version!r} not found."
            raise AggregateNotFoundError(msg)
        return aggregate
