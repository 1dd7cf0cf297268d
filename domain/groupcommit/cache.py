"""The committer's cache of aggregates, kept fresh through the notification log."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ApplicationRecorder


class AggregateCache:
    """Least-recently-used aggregates, in their last committed state.

    Used by the worker thread only, so it takes no lock. Other writers (other
    processes, or ``Application.save`` called directly) make entries stale:
    :meth:`catch_up` reads the notification log since the last batch and evicts what
    they changed. A write between that check and the save still fails with a version
    conflict, which evicts too.
    """

    def __init__(self, size_max: int, *, catch_up_notifications_max: int = 10_000) -> None:
        """Creates an empty cache.

        Args:
            size_max: how many aggregates it holds at most.
            catch_up_notifications_max: how many notifications :meth:`catch_up` reads at
                most; when more were written since the last batch, it clears the cache.
        """
        if size_max < 1 or catch_up_notifications_max < 1:
            msg = f"cache limits must be at least 1, not {size_max}, {catch_up_notifications_max}"
            raise ValueError(msg)
        self.size_max = size_max
        self.catch_up_notifications_max = catch_up_notifications_max
        self.stale_evictions_total = 0
        self._aggregates: OrderedDict[UUID, Aggregate] = OrderedDict()
        # Every event up to this notification id is reflected in the cached aggregates
        # (-1: not known yet, as 0 means an empty store).
        self._position = -1

    def __len__(self) -> int:
        return len(self._aggregates)

    def get(self, aggregate_id: UUID) -> Aggregate | None:
        """Returns the cached aggregate (marking it recently used), or ``None``."""
        aggregate = self._aggregates.get(aggregate_id)
        if aggregate is not None:
            self._aggregates.move_to_end(aggregate_id)
        return aggregate

    def contains(self, aggregate_id: UUID) -> bool:
        """Whether the aggregate is cached (without marking it used)."""
        return aggregate_id in self._aggregates

    def put(self, aggregates: Iterable[Aggregate]) -> None:
        """Caches committed aggregates, evicting the least recently used past the bound."""
        for aggregate in aggregates:
            self._aggregates[aggregate.id] = aggregate
            self._aggregates.move_to_end(aggregate.id)
        while len(self._aggregates) > self.size_max:
            self._aggregates.popitem(last=False)

    def evict(self, aggregate_ids: Iterable[UUID]) -> None:
        """Forgets aggregates whose cached state may differ from the stored one."""
        for aggregate_id in aggregate_ids:
            self._aggregates.pop(aggregate_id, None)

    def clear(self) -> None:
        """Forgets every aggregate."""
        self._aggregates.clear()

    def catch_up(self, recorder: ApplicationRecorder) -> None:
        """Evicts the aggregates that others changed since the last call.

        One cheap query when nobody else wrote (the usual case with one writer per
        aggregate); otherwise one more to read at most ``catch_up_notifications_max``
        notifications.
        """
        latest = recorder.max_notification_id() or 0
        if latest == self._position:
            return
        if self._position < 0 or latest - self._position > self.catch_up_notifications_max:
            self.clear()
        else:
            notifications = recorder.select_notifications(
                start=self._position,
                stop=latest,
                limit=latest - self._position,
                inclusive_of_start=False,
            )
            for notification in notifications:
                aggregate_id = _as_uuid(notification.originator_id)
                cached = self._aggregates.get(aggregate_id)
                if cached is not None and notification.originator_version > cached.version:
                    del self._aggregates[aggregate_id]
                    self.stale_evictions_total += 1
        self._position = latest

    def saved(self, notification_ids: Sequence[int]) -> None:
        """Notes this committer's own save, so :meth:`catch_up` need not read it back.

        Only when it directly follows the last known position: otherwise another
        writer's events may lie in between, and the next catch-up reads them.
        """
        if notification_ids and min(notification_ids) == self._position + 1:
            self._position = max(notification_ids)


def _as_uuid(originator_id: UUID | str) -> UUID:
    return originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
