"""Restoring aggregates from a snapshot and the events after it; deciding when to take one.

**Restoring.** A read returns an aggregate's latest usable snapshot followed by the
events after it (:meth:`SnapshotRecorder.select_events_of`); :meth:`Snapshotting.restore`
restores the snapshot and applies those events, so a load costs one snapshot and at
most about an interval of events, whatever the history. A snapshot that cannot be
restored (another class version with no upcaster, a state of another shape) is ignored:
the aggregate is replayed from all its events instead, and is snapshotted again at its
next save.

**Taking.** Snapshots are taken of the state a writer already holds, right after it was
committed (:meth:`Snapshotting.after_save`), never by replaying. For that the process
keeps, per aggregate of a snapshotted class it loaded or saved, a short *history*: the
version it is known at, the latest timestamp of its events up to there (which the
snapshot must carry for ``as_of`` reads, and which the state alone does not tell when
clocks step back), and the version and size of its last snapshot. A save that
continues a known history extends it; once enough events passed since the last
snapshot, the state is encoded on the spot (it is mutated by the next batch) and queued
for the writer thread. An aggregate whose history is not known (forgotten past the
bound, or saved by a stranger in between) is not snapshotted until it is loaded again.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast
from uuid import UUID

from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import ApplicationRecorder, Mapper, StoredEvent

from domain import limits
from domain.snapshots.classes import SNAPSHOT_CLASSES, AggregateSnapshot, SnapshotUnusableError, StoredSnapshot
from domain.snapshots.store import SnapshotRecord, SnapshotRecorder, SnapshotWriter

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _History:
    version: int
    timestamp_max: datetime
    snapshot_version: int
    snapshot_bytes: int


@dataclass(slots=True)
class SnapshottingMetrics:
    """Counters since construction, readable from any thread.

    Attributes:
        taken_total: snapshots encoded and queued for writing.
        restored_total: loads that started from a snapshot.
        ignored_total: stored snapshots that could not be restored (replayed instead).
        failed_total: snapshots that could not be taken (an undeclared attribute).
    """

    taken_total: int = 0
    restored_total: int = 0
    ignored_total: int = 0
    failed_total: int = 0


class Snapshotting:
    """An application's snapshots: restores aggregates from them and takes new ones."""

    def __init__(
        self,
        mapper: Mapper[UUID],
        recorder: SnapshotRecorder,
        events: ApplicationRecorder,
        *,
        classes: Mapping[type[Aggregate], type[AggregateSnapshot]] = SNAPSHOT_CLASSES,
        interval_events: int | None = None,
        tracked_max: int = limits.SNAPSHOT_TRACKED_AGGREGATES_MAX,
    ) -> None:
        """Snapshots kept by ``recorder``, encoded by ``mapper``; ``events`` is the event store's recorder.

        ``interval_events`` replaces every class's own interval (tests, benchmarks).

        Raises:
            ValueError: ``interval_events`` below 1.
        """
        if interval_events is not None and interval_events < 1:
            msg = f"snapshot interval must be at least 1 event, not {interval_events}"
            raise ValueError(msg)
        self.mapper = mapper
        self.recorder = recorder
        self.writer = SnapshotWriter(recorder)
        self.metrics = SnapshottingMetrics()
        self._events = events
        self._classes = dict(classes)
        self._intervals = {
            aggregate_class: interval_events or snapshot_class.interval_events
            for aggregate_class, snapshot_class in self._classes.items()
        }
        self._tracked_max = tracked_max
        self._lock = threading.Lock()
        self._histories: OrderedDict[UUID, _History] = OrderedDict()

    def read(
        self, aggregate_ids: Sequence[UUID], *, version_max: int | None = None, as_of: datetime | None = None
    ) -> dict[UUID, list[StoredEvent]]:
        """Each aggregate's latest usable snapshot (if any) and the events after it, in one read."""
        return self.recorder.select_events_of(
            aggregate_ids, snapshots=True, version_max=version_max, timestamp_max=as_of
        )

    def restore(
        self,
        aggregate_id: UUID,
        stored: Sequence[StoredEvent],
        *,
        version_max: int | None = None,
        as_of: datetime | None = None,
    ) -> Aggregate | None:
        """The aggregate from what :meth:`read` returned for it, else ``None`` (no events).

        Applies the events up to ``version_max`` and, with ``as_of``, up to the first
        event after ``as_of`` (the prefix of the history that had occurred by then).
        """
        aggregate: Any = None
        timestamp_max: datetime | None = None
        snapshot_version = snapshot_bytes = 0
        ignored = False
        events: Sequence[StoredEvent] = stored
        if stored and isinstance(stored[0], StoredSnapshot):
            restored = self._restore_snapshot(stored[0])
            if restored is None:  # read what the snapshot stood for; the later events are here
                events = [*self._events.select_events(aggregate_id, lte=stored[0].originator_version), *stored[1:]]
                ignored = True
            else:
                aggregate, timestamp_max = restored
                snapshot_version, snapshot_bytes = aggregate.version, len(stored[0].state)
                events = stored[1:]
        for stored_event in events:
            event: Any = self.mapper.to_domain_event(stored_event)
            if as_of is not None and event.timestamp > as_of:
                break
            aggregate = event.mutate(aggregate)
            timestamp_max = event.timestamp if timestamp_max is None else max(timestamp_max, event.timestamp)
        if aggregate is not None and timestamp_max is not None and version_max is None and as_of is None:
            history = _History(aggregate.version, timestamp_max, snapshot_version, snapshot_bytes)
            self._remember(aggregate, history, snapshot_ignored=ignored)
        return aggregate  # type: ignore[no-any-return]

    def after_save(
        self, aggregates: Mapping[UUID, Any], events: Sequence[DomainEventProtocol[UUID]]
    ) -> list[AggregateSnapshot]:
        """Takes the snapshots that are due, of the just committed ``aggregates``; returns them.

        ``events`` are the events that were saved, in order. Only the caller's thread may
        be mutating these aggregates (it is the writer that holds them).
        """
        watched = {aggregate_id for aggregate_id, aggregate in aggregates.items() if type(aggregate) in self._classes}
        if not watched:
            return []
        saved: defaultdict[UUID, list[DomainEventProtocol[UUID]]] = defaultdict(list)
        for event in events:
            if event.originator_id in watched:
                saved[event.originator_id].append(event)
        taken: list[AggregateSnapshot] = []
        with self._lock:
            for aggregate_id, new_events in saved.items():
                aggregate = aggregates[aggregate_id]
                history = self._extend(aggregate, new_events)
                if history is not None and self._due(history, self._intervals[type(aggregate)]):
                    snapshot = self._take(aggregate, history)
                    if snapshot is not None:
                        taken.append(snapshot)
        return taken

    def take(self, aggregate: Aggregate) -> AggregateSnapshot | None:
        """Snapshots ``aggregate`` now, due or not, if its history is known at its version.

        For an aggregate just loaded or saved by this application, and not changed
        since (no pending events). ``None`` when its class is not snapshotted or its
        history is not known (the latest timestamp a snapshot must carry).
        """
        if type(aggregate) not in self._classes or aggregate.pending_events:
            return None
        with self._lock:
            history = self._histories.get(aggregate.id)
            if history is None or history.version != aggregate.version:
                return None
            return self._take(aggregate, history)

    def close(self) -> None:
        """Writes the queued snapshots (bounded wait) and stops the writer."""
        self.writer.close()

    def _restore_snapshot(self, stored: StoredSnapshot) -> tuple[Aggregate, datetime] | None:
        """The aggregate a stored snapshot holds and the latest timestamp it reflects, else ``None``."""
        try:
            snapshot = self.mapper.to_domain_event(stored)
            if not isinstance(snapshot, AggregateSnapshot):
                msg = f"{stored.topic} is not a snapshot class"
                raise SnapshotUnusableError(msg)
            aggregate = snapshot.mutate(None)
        except Exception as error:  # events are the truth: replay them instead
            log.warning(
                "snapshot of %s at version %d ignored: %s", stored.originator_id, stored.originator_version, error
            )
            self.metrics.ignored_total += 1
            return None
        self.metrics.restored_total += 1
        return aggregate, snapshot.timestamp

    def _remember(self, aggregate: Aggregate, history: _History, *, snapshot_ignored: bool) -> None:
        if type(aggregate) not in self._classes:
            return
        with self._lock:
            known = self._histories.get(aggregate.id)
            if known is not None and known.version > history.version:
                return  # a concurrent reader saw an older version: keep the newer knowledge
            if known is not None and known.snapshot_version > history.snapshot_version and not snapshot_ignored:
                # Taken here but not written yet (the read did not see it): still the latest.
                history.snapshot_version, history.snapshot_bytes = known.snapshot_version, known.snapshot_bytes
            self._keep(aggregate.id, history)

    def _extend(self, aggregate: Aggregate, new_events: Sequence[DomainEventProtocol[UUID]]) -> _History | None:
        first_version = new_events[0].originator_version
        timestamp_max: datetime = max(cast(Any, event).timestamp for event in new_events)
        known = self._histories.get(aggregate.id)
        if first_version == 1:  # created by this save: its whole history is here
            known = _History(0, timestamp_max, 0, 0)
        elif known is None or known.version != first_version - 1:
            self._histories.pop(aggregate.id, None)  # what happened in between is unknown
            return None
        known.version = aggregate.version
        known.timestamp_max = max(known.timestamp_max, timestamp_max)
        self._keep(aggregate.id, known)
        return known

    def _keep(self, aggregate_id: UUID, history: _History) -> None:
        self._histories[aggregate_id] = history
        self._histories.move_to_end(aggregate_id)
        while len(self._histories) > self._tracked_max:
            self._histories.popitem(last=False)

    @staticmethod
    def _due(history: _History, interval_events: int) -> bool:
        spacing = max(interval_events, history.snapshot_bytes // limits.SNAPSHOT_STATE_BYTES_PER_EVENT)
        return history.version - history.snapshot_version >= spacing

    def _take(self, aggregate: Aggregate, history: _History) -> AggregateSnapshot | None:
        snapshot_class = self._classes[type(aggregate)]
        # Due again only an interval later, whether this one is written, dropped or fails.
        history.snapshot_version = history.version
        try:
            snapshot = snapshot_class.of(aggregate, history.timestamp_max)
            stored = self.mapper.to_stored_event(snapshot)
        except Exception:  # a programming error (an undeclared attribute): never fail the save
            log.exception("snapshot of %s at version %d could not be taken", aggregate.id, aggregate.version)
            self.metrics.failed_total += 1
            return None
        history.snapshot_bytes = len(stored.state)
        self.writer.put(SnapshotRecord(stored, history.timestamp_max))
        self.metrics.taken_total += 1
        return snapshot
