"""Where snapshots are kept: the recorder protocol, an in-memory recorder, the writer thread.

Snapshots are written after the events they reflect have committed, by a thread of
their own: the group committer only encodes the state it already holds (microseconds
for a small state) and hands the bytes over, so a slow or failing snapshot write never
delays or fails a batch. A snapshot that is never written costs one interval of replay
more at the next cold load, nothing else.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable
from uuid import UUID

from eventsourcing.persistence import ApplicationRecorder, StoredEvent

from domain import limits
from domain.snapshots.classes import StoredSnapshot

log = logging.getLogger(__name__)

IDLE_WAIT_SECONDS = 1.0
"""The writer re-checks for a close at least this often while nothing is queued."""


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """A snapshot to store: its encoded form and the latest timestamp it reflects."""

    stored: StoredEvent
    timestamp_max: datetime


@runtime_checkable
class SnapshotRecorder(Protocol):
    """A recorder that keeps snapshots beside the events and reads both at once."""

    def insert_snapshots(self, records: Sequence[SnapshotRecord]) -> None:
        """Stores snapshots; one already stored at the same version is left as it is."""

    def select_events_of(
        self,
        originator_ids: Sequence[UUID],
        *,
        snapshots: bool = False,
        version_max: int | None = None,
        timestamp_max: datetime | None = None,
    ) -> dict[UUID, list[StoredEvent]]:
        """The stored events of many aggregates, in version order per aggregate.

        With ``snapshots``, each list starts with the aggregate's latest
        :class:`StoredSnapshot` at or before ``version_max`` whose events all occurred
        at or before ``timestamp_max`` (when there is one), followed by the events
        after it only. Events are read up to ``version_max`` (default: all).
        """


class InMemorySnapshotRecorder:
    """Snapshots in memory, beside an in-memory (or any) application recorder.

    For the in-memory event store of tests and tools; PostgreSQL keeps them in a table.
    """

    def __init__(self, events: ApplicationRecorder) -> None:
        self._events = events
        self._lock = threading.Lock()
        self._snapshots: dict[UUID, list[tuple[int, SnapshotRecord]]] = {}

    def insert_snapshots(self, records: Sequence[SnapshotRecord]) -> None:
        """Stores snapshots, ordered by version per aggregate (same version: kept once)."""
        with self._lock:
            for record in records:
                kept = self._snapshots.setdefault(_uuid(record.stored.originator_id), [])
                version = record.stored.originator_version
                index = bisect.bisect_left(kept, version, key=lambda item: item[0])
                if index == len(kept) or kept[index][0] != version:
                    kept.insert(index, (version, record))

    def select_events_of(
        self,
        originator_ids: Sequence[UUID],
        *,
        snapshots: bool = False,
        version_max: int | None = None,
        timestamp_max: datetime | None = None,
    ) -> dict[UUID, list[StoredEvent]]:
        """See :meth:`SnapshotRecorder.select_events_of`."""
        found: dict[UUID, list[StoredEvent]] = {}
        for originator_id in dict.fromkeys(originator_ids):
            head, stop = self._around(originator_id, version_max, timestamp_max) if snapshots else (None, None)
            after = head.originator_version if head is not None else None
            last = min((version for version in (stop, version_max) if version is not None), default=None)
            events = list(self._events.select_events(originator_id, gt=after, lte=last))
            if head is not None:
                events.insert(0, head)
            if events:
                found[originator_id] = events
        return found

    def _around(
        self, originator_id: UUID, version_max: int | None, timestamp_max: datetime | None
    ) -> tuple[StoredSnapshot | None, int | None]:
        """The snapshot to start from, and (``as_of`` only) the version no read needs to pass."""
        with self._lock:
            kept = list(self._snapshots.get(originator_id, ()))
        head: StoredSnapshot | None = None
        stop: int | None = None
        for version, record in kept:
            if version_max is not None and version > version_max:
                break
            if timestamp_max is not None and record.timestamp_max > timestamp_max:
                stop = version  # the history had not passed this version by then
                break
            stored = record.stored
            head = StoredSnapshot(stored.originator_id, stored.originator_version, stored.topic, stored.state)
        return head, stop


@dataclass(slots=True)
class SnapshotWriterMetrics:
    """Counters since construction (written by the writer, readable from any thread)."""

    written_total: int = 0
    failed_total: int = 0
    dropped_total: int = 0
    replaced_total: int = 0
    """Replaced by a newer snapshot of the same aggregate before they were written."""


class SnapshotWriter:
    """Writes queued snapshots from a thread of its own, a batch per statement.

    The queue keeps one snapshot per aggregate (a newer one replaces a waiting older
    one) and at most ``queue_size_max``; past that a new snapshot is dropped. The thread
    starts with the first snapshot, so an application that never snapshots has none.
    """

    def __init__(
        self,
        recorder: SnapshotRecorder,
        *,
        queue_size_max: int = limits.SNAPSHOT_WRITE_QUEUE_SIZE_MAX,
        batch_size_max: int = limits.SNAPSHOT_WRITE_BATCH_SIZE_MAX,
    ) -> None:
        self.metrics = SnapshotWriterMetrics()
        self._recorder = recorder
        self._queue_size_max = queue_size_max
        self._batch_size_max = batch_size_max
        self._condition = threading.Condition()
        self._pending: OrderedDict[UUID, SnapshotRecord] = OrderedDict()
        self._writing = 0
        self._closed = False
        self._thread: threading.Thread | None = None

    def put(self, record: SnapshotRecord) -> bool:
        """Queues a snapshot; ``False`` when it was dropped (queue full, or closed)."""
        aggregate_id = _uuid(record.stored.originator_id)
        with self._condition:
            if self._closed or (aggregate_id not in self._pending and len(self._pending) >= self._queue_size_max):
                self.metrics.dropped_total += 1
                return False
            if aggregate_id in self._pending:
                self.metrics.replaced_total += 1
            self._pending[aggregate_id] = record
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="snapshot-writer", daemon=True)
                self._thread.start()
            self._condition.notify()
        return True

    def flush(self, timeout_seconds: float) -> bool:
        """Waits until every queued snapshot was written (or failed); ``False`` on timeout."""
        deadline = time.monotonic() + timeout_seconds
        with self._condition:
            while self._pending or self._writing:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(remaining)
        return True

    def close(self, timeout_seconds: float = limits.SNAPSHOT_CLOSE_TIMEOUT_SECONDS) -> None:
        """Writes what is queued (waiting at most ``timeout_seconds``), then stops the thread."""
        self.flush(timeout_seconds)
        with self._condition:
            self._closed = True
            self._condition.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_seconds)

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._recorder.insert_snapshots(batch)
            except Exception:  # a snapshot is an optimisation: log it, never retry forever
                log.warning("snapshots: %d could not be written", len(batch), exc_info=True)
                self.metrics.failed_total += len(batch)
            else:
                self.metrics.written_total += len(batch)
            with self._condition:
                self._writing = 0
                self._condition.notify_all()

    def _next_batch(self) -> list[SnapshotRecord] | None:
        with self._condition:
            while not self._pending:
                if self._closed:
                    return None
                self._condition.wait(IDLE_WAIT_SECONDS)
            batch: list[SnapshotRecord] = []
            while self._pending and len(batch) < self._batch_size_max:
                batch.append(self._pending.popitem(last=False)[1])
            self._writing = len(batch)
            return batch


def _uuid(originator_id: UUID | str) -> UUID:
    return originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
