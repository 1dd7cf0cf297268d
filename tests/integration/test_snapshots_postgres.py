"""Snapshots on real PostgreSQL: every cold load of a long-lived SKU reads about an interval of events."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import takewhile
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from domain.application import Daybook
from domain.commands import PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.groupcommit import GroupCommitter
from domain.inventory import inventory_item_id
from domain.money import Money
from domain.orders import OrderLine
from domain.snapshots import SnapshotRecord, StoredSnapshot
from projections.inventory import InventoryLevelsProjection

INTERVAL = 100
RECEIPTS = 1_500
START = datetime(2033, 1, 1, tzinfo=UTC)
DEADLINE_S = 30.0


def env(database_url: str, settings: Settings, *, snapshots: bool = True) -> dict[str, str]:
    return {
        **eventsourcing_env(database_url, settings),
        "SNAPSHOTS": "y" if snapshots else "n",
        "SNAPSHOT_INTERVAL_EVENTS": str(INTERVAL),
    }


class Reads:
    """What one application read from the store: snapshot rows, event rows, single reads."""

    def __init__(self, app: Daybook) -> None:
        self.events = 0
        self.snapshot_versions: list[int] = []
        self.single = 0
        recorder: Any = app.recorder
        select_events_of, select_events = recorder.select_events_of, recorder.select_events

        def counted_bulk(*args: Any, **kwargs: Any) -> dict[UUID, list[StoredEvent]]:
            found: dict[UUID, list[StoredEvent]] = select_events_of(*args, **kwargs)
            for stored in found.values():
                self.snapshot_versions += [
                    event.originator_version for event in stored if isinstance(event, StoredSnapshot)
                ]
                self.events += sum(not isinstance(event, StoredSnapshot) for event in stored)
            return found

        def counted_single(*args: Any, **kwargs: Any) -> Any:
            found = select_events(*args, **kwargs)
            self.single += 1
            self.events += len(found)
            return found

        recorder.select_events_of, recorder.select_events = counted_bulk, counted_single


@dataclass(frozen=True)
class LongLived:
    """A SKU with a long history, written by a committer that snapshots it."""

    merchant_id: UUID
    item_id: UUID
    version: int


def at(milliseconds: int) -> CommandContext:
    return CommandContext("system:test", "snapshots", occurred_at=START + timedelta(milliseconds=milliseconds))


@pytest.fixture(scope="module")
def long_lived(database_url: str, settings: Settings) -> LongLived:
    """1,500 receipts, one millisecond apart, through a group committer in batches of up to 200."""
    writer = Daybook(env=env(database_url, settings))
    merchant_id = uuid.uuid4()
    try:
        with GroupCommitter(writer, batch_size_max=200, batch_wait_ms=50) as committer:
            futures = [committer.submit(ReceiveStock(at(n), merchant_id, "LONG-1", 1)) for n in range(RECEIPTS)]
            for future in futures:
                future.result(DEADLINE_S)
        assert writer.snapshotting is not None
        assert writer.snapshotting.writer.flush(DEADLINE_S)
        assert writer.snapshotting.metrics.taken_total >= RECEIPTS // 200
        assert writer.snapshotting.writer.metrics.written_total >= 1
    finally:
        writer.close()
    return LongLived(merchant_id, inventory_item_id(merchant_id, "LONG-1"), RECEIPTS + 1)


def replayed(app: Daybook, aggregate_id: UUID, version: int | None = None) -> Any:
    aggregate: Any = None
    for event in app.events.get(aggregate_id, lte=version):
        aggregate = event.mutate(aggregate)
    return aggregate


@pytest.fixture
def cold(database_url: str, settings: Settings) -> Iterator[Daybook]:
    app = Daybook(env=env(database_url, settings))
    yield app
    app.close()


def test_a_cold_committer_loads_a_long_lived_sku_from_its_snapshot_and_the_later_events(
    cold: Daybook, long_lived: LongLived, database_url: str, settings: Settings
) -> None:
    reads = Reads(cold)
    line = (OrderLine("LONG-1", 3, Money(100, "EUR")),)
    with GroupCommitter(cold, batch_size_max=10, batch_wait_ms=5) as committer:
        view = committer.submit(PlaceOrder(at(RECEIPTS), long_lived.merchant_id, uuid.uuid4(), line, "EUR"))
        assert view.result(DEADLINE_S).value.status == "reserved"
    (snapshot_version,) = reads.snapshot_versions  # one read, the batch's prefetch
    assert reads.single == 0
    assert long_lived.version - snapshot_version < 2 * 200
    assert reads.events == long_lived.version - snapshot_version
    item = replayed(cold, long_lived.item_id)
    assert (item.on_hand, item.reserved, item.version) == (RECEIPTS, 3, long_lived.version + 1)

    without = Daybook(env=env(database_url, settings, snapshots=False))
    try:
        reads_without = Reads(without)
        with GroupCommitter(without, batch_size_max=10, batch_wait_ms=5) as committer:
            order = PlaceOrder(at(RECEIPTS + 1), long_lived.merchant_id, uuid.uuid4(), line, "EUR")
            committer.submit(order).result(DEADLINE_S)
        assert reads_without.snapshot_versions == []
        assert reads_without.events == long_lived.version + 1  # the whole history
    finally:
        without.close()


def test_a_projection_that_lost_its_cached_item_reloads_it_from_a_snapshot(
    cold: Daybook, long_lived: LongLived, database_url: str
) -> None:
    # A table of its own: the suite's projection runner keeps the live one.
    projection = InventoryLevelsProjection(cold, table="snapshot_test_levels", name="snapshot_test")
    version = long_lived.version - 7
    (event,) = cold.events.get(long_lived.item_id, gt=version - 1, lte=version)
    reads = Reads(cold)
    with psycopg.connect(database_url) as conn, conn.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE snapshot_test_levels (LIKE inventory_levels INCLUDING ALL)")
        projection.process(cursor, [(10_000_000, event)])
        cursor.execute("SELECT on_hand, version FROM snapshot_test_levels WHERE item_id = %s", (long_lived.item_id,))
        assert cursor.fetchone() == (version - 1, version)
        conn.rollback()
    (snapshot_version,) = reads.snapshot_versions
    assert snapshot_version <= version
    assert reads.events == version - snapshot_version < 2 * 200
    assert reads.single == 0


def test_a_version_before_the_latest_snapshot_is_restored_from_an_earlier_one(
    cold: Daybook, long_lived: LongLived
) -> None:
    for version in (1, 150, 777, 1_201, long_lived.version):
        reads = Reads(cold)
        restored = cold.repository.get(long_lived.item_id, version=version)
        assert all(snapshot <= version for snapshot in reads.snapshot_versions)
        assert reads.events < 2 * 200
        if version >= 400:
            assert reads.snapshot_versions
        assert vars(restored) == vars(replayed(cold, long_lived.item_id, version))


def test_as_of_reads_start_from_the_snapshot_of_that_instant(cold: Daybook, long_lived: LongLived) -> None:
    history = cold.history(long_lived.item_id)
    for milliseconds in (-1, 0, 250, 999, 1_400, 5_000):
        as_of = START + timedelta(milliseconds=milliseconds, microseconds=500)
        reads = Reads(cold)
        item = cold.replay(long_lived.item_id, as_of=as_of)
        prefix = list(takewhile(lambda event, as_of=as_of: event.timestamp <= as_of, history))
        assert all(snapshot <= len(prefix) for snapshot in reads.snapshot_versions)
        assert reads.events < 2 * 200
        if len(prefix) >= 400:
            assert reads.snapshot_versions
        assert (item.version if item else 0) == len(prefix)
        if prefix:
            assert vars(item) == vars(replayed(cold, long_lived.item_id, len(prefix)))


def test_a_snapshot_is_stored_once_per_version(cold: Daybook, long_lived: LongLived, database_url: str) -> None:
    recorder: Any = cold.recorder
    (head, *_) = recorder.select_events_of([long_lived.item_id], snapshots=True)[long_lived.item_id]
    assert isinstance(head, StoredSnapshot)
    again = StoredEvent(head.originator_id, head.originator_version, head.topic, b"{}")
    recorder.insert_snapshots([SnapshotRecord(again, START)])
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT state FROM daybook_snapshots WHERE originator_id = %s AND originator_version = %s",
            (head.originator_id, head.originator_version),
        ).fetchall()
    assert rows == [(head.state,)]
