"""Snapshots on the in-memory store: restored state is exactly the replayed state, always."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import msgspec
import pytest
from eventsourcing.persistence import StoredEvent

from adapters.database import eventsourcing_env
from adapters.event_store import MAPPER_TOPIC
from adapters.settings import Settings
from domain.application import Daybook
from domain.commands import AdjustStock, CancelOrder, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.groupcommit import GroupCommitter
from domain.inventory import InventoryItem, inventory_item_id
from domain.money import Money
from domain.orders import OrderLine
from domain.snapshots import (
    InMemorySnapshotRecorder,
    InventoryItemSnapshot,
    SnapshotRecord,
    SnapshotUnusableError,
    SnapshotWriter,
    StoredSnapshot,
)

INTERVAL = 10
START = datetime(2031, 3, 1, tzinfo=UTC)


def snapshot_env(interval: int = INTERVAL) -> dict[str, str]:
    """An in-memory Daybook with the msgspec mapper and snapshots every ``interval`` events."""
    return {
        "PERSISTENCE_MODULE": "eventsourcing.popo",
        "MAPPER_TOPIC": MAPPER_TOPIC,
        "SNAPSHOTS": "y",
        "SNAPSHOT_INTERVAL_EVENTS": str(interval),
    }


def at(seconds: float) -> CommandContext:
    """A context stamped at ``START + seconds`` (commands keep a stamped instant)."""
    return CommandContext("system:test", "snapshots", occurred_at=START + timedelta(seconds=seconds))


class Reads:
    """What an application's loads read: snapshots at the head of each read, events after them.

    Counts what the store returned to the loads (its reads with snapshots, and the full
    reads that replace an unusable snapshot), not the test's own replays.
    """

    def __init__(self, app: Daybook) -> None:
        assert app.snapshotting is not None
        self.events = 0
        self.snapshot_versions: list[int] = []
        snapshotting: Any = app.snapshotting
        recorder, events = snapshotting.recorder, snapshotting._events
        select_with_snapshots = recorder.select_events_of
        reads = self

        def counted(*args: Any, **kwargs: Any) -> dict[UUID, list[StoredEvent]]:
            found: dict[UUID, list[StoredEvent]] = select_with_snapshots(*args, **kwargs)
            for stored in found.values():
                self.snapshot_versions += [
                    event.originator_version for event in stored if isinstance(event, StoredSnapshot)
                ]
                self.events += sum(not isinstance(event, StoredSnapshot) for event in stored)
            return found

        class CountedEvents:
            def select_events(self, *args: Any, **kwargs: Any) -> Any:
                found = events.select_events(*args, **kwargs)
                reads.events += len(found)
                return found

        recorder.select_events_of = counted
        snapshotting._events = CountedEvents()


@pytest.fixture
def app() -> Iterator[Daybook]:
    daybook = Daybook(snapshot_env())
    yield daybook
    daybook.close()


def replayed(app: Daybook, aggregate_id: UUID, *, version: int | None = None) -> Any:
    """The aggregate rebuilt from every one of its events (no snapshot)."""
    aggregate: Any = None
    for event in app.events.get(aggregate_id, lte=version):
        aggregate = event.mutate(aggregate)
    return aggregate


def long_history(app: Daybook, merchant_id: UUID, *, orders: int = 30, start: float = 0.0) -> UUID:
    """An item with receipts, holds and releases: ``2 + 2 * orders`` events, one second apart.

    The writer is flushed after every command: it keeps one waiting snapshot per
    aggregate (a newer one replaces it), and the tests count on every interval's.
    """
    snapshotting = app.snapshotting
    assert snapshotting is not None
    app.execute(ReceiveStock(at(start), merchant_id, "SKU-1", 1_000))
    line = (OrderLine("SKU-1", 2, Money(100, "EUR")),)
    for index in range(orders):
        order_id = UUID(int=index + 1)
        app.execute(PlaceOrder(at(start + 1 + 2 * index), merchant_id, order_id, line, "EUR"))
        assert snapshotting.writer.flush(5.0)
        if index % 3:
            app.execute(CancelOrder(at(start + 2 + 2 * index), merchant_id, order_id))
        else:
            app.execute(AdjustStock(at(start + 2 + 2 * index), merchant_id, "SKU-1", 1, "count"))
        assert snapshotting.writer.flush(5.0)
    return inventory_item_id(merchant_id, "SKU-1")


def test_snapshots_are_off_unless_the_environment_turns_them_on() -> None:
    assert Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"}).snapshotting is None
    assert Daybook(snapshot_env()).snapshotting is not None


def test_daybook_processes_snapshot_unless_daybook_snapshots_is_false() -> None:
    url = "postgresql://daybook@127.0.0.1:5432/daybook"
    assert eventsourcing_env(url, Settings())["SNAPSHOTS"] == "y"
    settings = Settings.from_env({"DAYBOOK_SNAPSHOTS": "false"})
    assert eventsourcing_env(url, settings)["SNAPSHOTS"] == "n"


def test_an_item_loads_from_its_latest_snapshot_reading_only_the_later_events(app: Daybook) -> None:
    item_id = long_history(app, uuid4())
    reads = Reads(app)
    loaded = app.repository.get(item_id)
    assert vars(loaded) == vars(replayed(app, item_id))
    assert loaded.version == 62
    (snapshot_version,) = reads.snapshot_versions
    assert loaded.version - INTERVAL < snapshot_version <= loaded.version
    assert reads.events == loaded.version - snapshot_version


def test_every_past_version_is_exact_and_never_restored_from_a_later_snapshot(app: Daybook) -> None:
    item_id = long_history(app, uuid4())
    latest = replayed(app, item_id).version
    for version in range(1, latest + 1):
        reads = Reads(app)
        assert vars(app.repository.get(item_id, version=version)) == vars(replayed(app, item_id, version=version))
        assert all(snapshot <= version for snapshot in reads.snapshot_versions), (version, reads.snapshot_versions)
        if version >= INTERVAL + 2:  # a snapshot at or before it exists: only the events after it are read
            assert reads.snapshot_versions
            assert reads.events < 2 * INTERVAL


def test_as_of_before_and_after_a_snapshot_answers_the_state_of_that_instant(app: Daybook) -> None:
    merchant_id = uuid4()
    item_id = long_history(app, merchant_id)  # events one second apart from START
    history = app.history(item_id)
    for event in history:
        for offset in (timedelta(0), timedelta(milliseconds=500)):
            as_of = event.timestamp + offset
            expected = [e for e in history if e.timestamp <= as_of]
            reads = Reads(app)
            item = app.replay(item_id, as_of=as_of)
            assert item is not None
            assert vars(item) == vars(replayed(app, item_id, version=len(expected)))
            assert all(snapshot <= item.version for snapshot in reads.snapshot_versions)
    assert app.replay(item_id, as_of=START - timedelta(seconds=1)) is None
    level = app.get_inventory_level(merchant_id, "SKU-1", as_of=START + timedelta(seconds=40.5))
    assert level == replayed(app, item_id, version=level.version).level()


def test_as_of_never_uses_a_snapshot_that_reflects_a_later_event_when_the_clock_stepped_back(app: Daybook) -> None:
    merchant_id = uuid4()
    item_id = inventory_item_id(merchant_id, "SKU-1")
    # Versions 1-2 at t=100 s, then 18 receipts back at t=1..18 s (another writer's clock).
    app.execute(ReceiveStock(at(100), merchant_id, "SKU-1", 1))
    for second in range(1, 19):
        app.execute(ReceiveStock(at(second), merchant_id, "SKU-1", 1))
    assert app.snapshotting is not None
    assert app.snapshotting.writer.flush(5.0)
    reads = Reads(app)
    # Every event up to the snapshot is at or before t=50 s except the first two: as of
    # t=50 s the item did not exist yet (the history's prefix stops at version 0).
    assert app.replay(item_id, as_of=START + timedelta(seconds=50)) is None
    assert reads.snapshot_versions == []
    item = app.replay(item_id, as_of=START + timedelta(seconds=100))
    assert item is not None
    assert vars(item) == vars(replayed(app, item_id))
    assert len(reads.snapshot_versions) == 1


def _stored_snapshot(app: Daybook, item_id: UUID) -> StoredSnapshot:
    assert app.snapshotting is not None
    recorder = app.snapshotting.recorder
    (head, *_) = recorder.select_events_of([item_id], snapshots=True)[item_id]
    assert isinstance(head, StoredSnapshot)
    return head


def _replace_snapshots(app: Daybook, item_id: UUID, state: dict[str, Any]) -> None:
    """Stores a snapshot of ``item_id`` with the given JSON state, as the only one."""
    assert app.snapshotting is not None
    head = _stored_snapshot(app, item_id)
    recorder = InMemorySnapshotRecorder(app.recorder)
    stored = StoredEvent(head.originator_id, head.originator_version, head.topic, msgspec.json.encode(state))
    recorder.insert_snapshots([SnapshotRecord(stored, START + timedelta(days=1))])
    app.snapshotting.recorder = recorder


def test_a_v1_snapshot_is_upcast_by_its_snapshot_class(app: Daybook, monkeypatch: pytest.MonkeyPatch) -> None:
    item_id = long_history(app, uuid4())
    v1 = msgspec.json.decode(_stored_snapshot(app, item_id).state)
    del v1["state"]["reserved"]  # say v1 kept only the holds, and v2 adds their sum
    _replace_snapshots(app, item_id, v1)
    calls: list[int] = []

    def upcast_v1_v2(state: dict[str, Any]) -> None:
        calls.append(1)
        state["state"]["reserved"] = sum(quantity for quantity, _ in state["state"]["holds"].values())

    monkeypatch.setattr(InventoryItemSnapshot, "class_version", 2)
    monkeypatch.setattr(InventoryItemSnapshot, "upcast_v1_v2", staticmethod(upcast_v1_v2), raising=False)
    reads = Reads(app)
    assert vars(app.repository.get(item_id)) == vars(replayed(app, item_id))
    assert calls == [1]
    assert reads.snapshot_versions
    assert app.snapshotting is not None
    assert app.snapshotting.metrics.ignored_total == 0


def test_a_snapshot_of_a_version_without_upcaster_is_ignored_and_taken_again_at_the_next_save(
    app: Daybook, monkeypatch: pytest.MonkeyPatch
) -> None:
    merchant_id = uuid4()
    item_id = long_history(app, merchant_id)
    monkeypatch.setattr(InventoryItemSnapshot, "class_version", 2)
    reads = Reads(app)
    assert vars(app.repository.get(item_id)) == vars(replayed(app, item_id))
    assert app.snapshotting is not None
    assert app.snapshotting.metrics.ignored_total == 1
    assert reads.events == replayed(app, item_id).version  # every event, each read once
    taken = app.snapshotting.metrics.taken_total
    app.execute(ReceiveStock(at(500), merchant_id, "SKU-1", 1))
    assert app.snapshotting.metrics.taken_total == taken + 1  # due at once: no usable snapshot
    assert app.snapshotting.writer.flush(5.0)
    reads = Reads(app)
    assert vars(app.repository.get(item_id)) == vars(replayed(app, item_id))
    assert reads.events == 0
    assert app.snapshotting.metrics.ignored_total == 2  # the receipt's own load ignored it too


def test_a_snapshot_written_by_newer_code_is_ignored(app: Daybook, monkeypatch: pytest.MonkeyPatch) -> None:
    merchant_id = uuid4()
    monkeypatch.setattr(InventoryItemSnapshot, "class_version", 3)
    item_id = long_history(app, merchant_id)
    assert msgspec.json.decode(_stored_snapshot(app, item_id).state)["class_version"] == 3
    monkeypatch.setattr(InventoryItemSnapshot, "class_version", 2)
    assert vars(app.repository.get(item_id)) == vars(replayed(app, item_id))
    assert app.snapshotting is not None
    assert app.snapshotting.metrics.ignored_total == 1


def test_a_snapshot_of_another_shape_is_refused_never_read_loosely(app: Daybook) -> None:
    item_id = long_history(app, uuid4())
    stored = _stored_snapshot(app, item_id)
    assert app.snapshotting is not None
    mapper = app.snapshotting.mapper
    for change in ("missing", "wrong type"):
        state = msgspec.json.decode(stored.state)
        if change == "missing":
            del state["state"]["holds"]
        else:
            state["state"]["on_hand"] = "12"
        broken = StoredSnapshot(
            stored.originator_id, stored.originator_version, stored.topic, msgspec.json.encode(state)
        )
        with pytest.raises(SnapshotUnusableError):
            mapper.to_domain_event(broken)
        _replace_snapshots(app, item_id, state)
        assert vars(app.repository.get(item_id)) == vars(replayed(app, item_id))
    assert app.snapshotting.metrics.ignored_total == 2


def test_every_attribute_of_an_inventory_item_is_declared_in_its_snapshot_state() -> None:
    item = InventoryItem.register(uuid4(), "SKU-1", at(0))
    item.collect_events()
    declared = InventoryItemSnapshot.state_keys()
    assert set(vars(item)) - {"_id", "_version", "_pending_events"} == declared


def test_an_undeclared_attribute_stops_its_snapshots_but_not_the_save() -> None:
    app = Daybook(snapshot_env(interval=1))  # every save is due a snapshot
    merchant_id = uuid4()
    item_id = long_history(app, merchant_id, orders=2)
    assert app.snapshotting is not None
    assert app.snapshotting.metrics.failed_total == 0
    committer_held = app.repository.get(item_id)
    committer_held.undeclared = 1
    committer_held.receive(1, None, at(900))
    app.save(committer_held)
    assert app.snapshotting.metrics.failed_total == 1
    assert replayed(app, item_id).on_hand == committer_held.on_hand
    app.close()


def test_a_failing_snapshot_write_never_fails_a_save(app: Daybook) -> None:
    class Refusing(InMemorySnapshotRecorder):
        def insert_snapshots(self, records: Any) -> None:
            raise OSError("disk full")

    assert app.snapshotting is not None
    app.snapshotting.writer = SnapshotWriter(Refusing(app.recorder))
    merchant_id = uuid4()
    item_id = long_history(app, merchant_id)
    assert app.snapshotting.metrics.taken_total >= 5
    writes = app.snapshotting.writer.metrics
    assert writes.written_total == 0
    assert writes.failed_total >= 1
    assert writes.failed_total + writes.replaced_total == app.snapshotting.metrics.taken_total
    assert replayed(app, item_id).version == 62
    assert vars(app.repository.get(item_id)) == vars(replayed(app, item_id))


def test_orders_and_payments_are_never_snapshotted(app: Daybook) -> None:
    merchant_id = uuid4()
    long_history(app, merchant_id)
    assert app.snapshotting is not None
    order_id = UUID(int=2)  # placed then cancelled
    reads = Reads(app)
    assert app.repository.get(order_id).version == 2
    assert reads.snapshot_versions == []
    assert app.snapshotting.take(app.repository.get(order_id)) is None


def test_the_next_snapshot_of_a_large_state_waits_in_proportion_to_its_size() -> None:
    app = Daybook(snapshot_env(interval=1))
    merchant_id = uuid4()
    assert app.snapshotting is not None
    app.execute(ReceiveStock(at(0), merchant_id, "SKU-1", 100_000))
    line = (OrderLine("SKU-1", 1, Money(100, "EUR")),)
    for index in range(200):  # 200 running holds: a snapshot of some 16 KiB
        app.execute(PlaceOrder(at(1 + index), merchant_id, UUID(int=index + 1), line, "EUR"))
    taken = app.snapshotting.metrics.taken_total
    assert taken < 200 // 2, taken  # not one per event, as the interval of 1 alone would say
    item = app.repository.get(inventory_item_id(merchant_id, "SKU-1"))
    assert vars(item) == vars(replayed(app, item.id))
    app.close()


def test_a_group_committer_snapshots_the_state_it_holds_without_reading_it_again() -> None:
    app = Daybook(snapshot_env())
    merchant_id = uuid4()
    app.execute(ReceiveStock(at(0), merchant_id, "SKU-1", 1_000))
    line = (OrderLine("SKU-1", 1, Money(100, "EUR")),)
    with GroupCommitter(app, batch_size_max=7, batch_wait_ms=20) as committer:
        committer.submit(PlaceOrder(at(1), merchant_id, uuid4(), line, "EUR")).result(10)
        reads = Reads(app)
        futures = [committer.submit(PlaceOrder(at(2 + n), merchant_id, uuid4(), line, "EUR")) for n in range(60)]
        for future in futures:
            future.result(10)
    assert app.snapshotting is not None
    assert app.snapshotting.metrics.taken_total >= 3  # 60 events, an interval of 10, batches of up to 7
    assert reads.events == 0  # the committer's cached item is snapshotted, never reloaded
    assert reads.snapshot_versions == []
    item_id = inventory_item_id(merchant_id, "SKU-1")
    assert app.snapshotting.writer.flush(5.0)
    assert vars(app.repository.get(item_id)) == vars(replayed(app, item_id))
    app.close()
