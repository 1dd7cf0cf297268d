"""Snapshots: the load time of an aggregate is bounded whatever the length of its history.

See :mod:`domain.snapshots.classes` (what a snapshot holds, which classes have one),
:mod:`domain.snapshots.snapshotting` (restoring, and when to take one) and
:mod:`domain.snapshots.store` (where they are kept, the writer thread).
"""

from domain.snapshots.classes import (
    SNAPSHOT_CLASSES,
    AggregateSnapshot,
    InventoryItemSnapshot,
    InventoryItemState,
    SnapshotUnusableError,
    StoredSnapshot,
)
from domain.snapshots.repository import BulkEventReader, SnapshottingRepository
from domain.snapshots.snapshotting import Snapshotting, SnapshottingMetrics
from domain.snapshots.store import (
    InMemorySnapshotRecorder,
    SnapshotRecord,
    SnapshotRecorder,
    SnapshotWriter,
    SnapshotWriterMetrics,
)

__all__ = [
    "SNAPSHOT_CLASSES",
    "AggregateSnapshot",
    "BulkEventReader",
    "InMemorySnapshotRecorder",
    "InventoryItemSnapshot",
    "InventoryItemState",
    "SnapshotRecord",
    "SnapshotRecorder",
    "SnapshotUnusableError",
    "SnapshotWriter",
    "SnapshotWriterMetrics",
    "Snapshotting",
    "SnapshottingMetrics",
    "SnapshottingRepository",
    "StoredSnapshot",
]
