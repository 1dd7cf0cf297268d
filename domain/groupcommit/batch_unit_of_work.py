"""The unit of work a batch of commands shares, over the cache of aggregates."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate

from domain.groupcommit.cache import AggregateCache
from domain.unit_of_work import TrackingUnitOfWork

EventKey = tuple[UUID, int]
"""An event's identity in the store: ``(originator_id, originator_version)``."""


class BatchUnitOfWork(TrackingUnitOfWork):
    """Implements :class:`domain.unit_of_work.UnitOfWork` for one pass over a batch.

    Commands run one after the other against the same aggregate objects, so each sees
    the effects of the earlier ones. Between :meth:`begin_command` and
    :meth:`end_command` it notes how many events each aggregate had pending when the
    command first touched it, which gives the events that command triggered.
    """

    def __init__(
        self,
        app: Application[UUID],
        cache: AggregateCache,
        *,
        check_store_on_add: bool,
        known_missing: frozenset[UUID] = frozenset(),
    ) -> None:
        """Starts an empty pass.

        Args:
            app: the application whose repository loads aggregates missing from the cache.
            cache: the committer's aggregate cache.
            check_store_on_add: look up added ids in the event store too. Costs a read
                per added aggregate, so only done after a version conflict, which is
                how an id that exists in the store but not in the cache shows up.
            known_missing: ids the batch's prefetch found absent from the store.
        """
        super().__init__()
        self._app = app
        self._cache = cache
        self._check_store_on_add = check_store_on_add
        self._known_missing = known_missing
        # Per aggregate the command touched: it, and how many events it had pending then.
        self._pending_counts_at_touch: dict[UUID, tuple[Aggregate, int]] = {}

    def begin_command(self) -> None:
        """Starts recording what the next command touches."""
        self._pending_counts_at_touch = {}

    def end_command(self) -> list[Any]:
        """Returns the events the current command triggered, in order per aggregate."""
        events: list[Any] = []
        for aggregate, pending_count in self._pending_counts_at_touch.values():
            events += aggregate.pending_events[pending_count:]
        self._pending_counts_at_touch = {}
        return events

    def _load(self, aggregate_id: UUID) -> Aggregate | None:
        aggregate = self._cache.get(aggregate_id)
        if aggregate is not None or aggregate_id in self._known_missing:
            return aggregate
        try:
            return self._app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def _touch(self, aggregate: Aggregate) -> None:
        self._pending_counts_at_touch.setdefault(aggregate.id, (aggregate, len(aggregate.pending_events)))

    def _added(self, aggregate: Aggregate) -> None:
        # All its pending events, the creation included, belong to the current command.
        self._pending_counts_at_touch[aggregate.id] = (aggregate, 0)

    def _exists(self, aggregate_id: UUID) -> bool:
        if self._cache.get(aggregate_id) is not None:
            return True
        if not self._check_store_on_add:
            return False
        return bool(self._app.recorder.select_events(aggregate_id, limit=1))
