"""An insert of events takes the events table's lock, notifies listeners and returns ordered ids."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, Recording, StoredEvent
from psycopg import sql

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from domain.application import Daybook
from domain.context import CommandContext
from domain.inventory import InventoryItem

CONTEXT = CommandContext(actor="system:test", request_id="inserts").stamped()


@pytest.fixture
def own_daybook(own_database: str, settings: Settings) -> Iterator[Daybook]:
    daybook = Daybook(env=eventsourcing_env(own_database, settings))
    yield daybook
    daybook.close()


def _new_items(count: int) -> list[InventoryItem]:
    merchant_id = uuid4()
    return [InventoryItem.register(merchant_id, f"SKU-{index}", CONTEXT) for index in range(count)]


def test_an_insert_notifies_the_channel_and_returns_ascending_notification_ids(
    own_daybook: Daybook, own_database: str
) -> None:
    channel = own_daybook.recorder.channel_name  # type: ignore[attr-defined]
    with psycopg.connect(own_database, autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        recordings = own_daybook.save(*_new_items(3))
        notices = list(listener.notifies(timeout=10, stop_after=1))
    ids = [recording.notification.id for recording in recordings]
    assert len(set(ids)) == 3
    assert ids == sorted(ids)
    assert [notice.channel for notice in notices] == [channel]
    with psycopg.connect(own_database) as conn:
        stored = conn.execute("SELECT notification_id FROM daybook_events ORDER BY notification_id").fetchall()
    assert [row[0] for row in stored] == ids


def test_an_insert_waits_for_the_table_lock_another_writer_holds(own_daybook: Daybook, own_database: str) -> None:
    saved: list[list[Recording[object]]] = []
    with psycopg.connect(own_database) as holder:
        holder.execute("LOCK TABLE daybook_events IN EXCLUSIVE MODE")  # held until the rollback
        writer = threading.Thread(target=lambda: saved.append(own_daybook.save(*_new_items(1))), daemon=True)
        writer.start()
        deadline = time.monotonic() + 10
        waiting = False
        while not waiting and time.monotonic() < deadline:
            with psycopg.connect(own_database) as observer:
                row = observer.execute(
                    "SELECT count(*) FROM pg_locks WHERE relation = 'daybook_events'::regclass AND NOT granted"
                ).fetchone()
            waiting = row is not None and row[0] == 1
        assert waiting, "the insert never waited for the table lock"
        assert not saved
        holder.rollback()
    writer.join(timeout=10)
    assert not writer.is_alive()
    ((recording,),) = saved
    assert recording.notification.id >= 1


def test_a_conflicting_insert_stores_none_of_its_events_and_leaves_the_connection_usable(
    own_database: str, settings: Settings
) -> None:
    daybook = Daybook(env=eventsourcing_env(own_database, settings, pool_size=1))  # one connection, reused
    try:
        taken = uuid4()
        daybook.recorder.insert_events([StoredEvent(taken, 1, "tests:Stream.Event", b"{}")])
        batch = [
            StoredEvent(uuid4(), 1, "tests:Stream.Event", b"{}"),
            StoredEvent(taken, 1, "tests:Stream.Event", b"{}"),
        ]
        with pytest.raises(IntegrityError):
            daybook.recorder.insert_events(batch)
        ids = daybook.recorder.insert_events([StoredEvent(uuid4(), 1, "tests:Stream.Event", b"{}")])
        assert ids is not None
        assert len(ids) == 1
    finally:
        daybook.close()
    with psycopg.connect(own_database) as conn:
        row = conn.execute("SELECT count(*) FROM daybook_events WHERE originator_id = %s", (batch[0].originator_id,))
        assert row.fetchone() == (0,)
        assert conn.execute("SELECT count(*) FROM daybook_events").fetchone() == (2,)
