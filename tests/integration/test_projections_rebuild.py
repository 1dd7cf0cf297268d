"""A rebuild reads only its stream type's events, resumes where it was interrupted, and runs once at a time."""

from __future__ import annotations

import gc
import threading
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import register_topic

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from domain.application import Daybook
from domain.commands import CancelOrder, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.money import Money
from domain.orders import Order, OrderLine
from projections import compare
from projections.inventory import InventoryLevelsProjection
from projections.orders import OrdersProjection
from projections.pages import LogPages, read_page
from projections.rebuild import FRESH_SUFFIX, TRACKING_SUFFIX, RebuildInProgressError, rebuild, rebuild_lock_key
from projections.source import Undecodable
from tests.integration.conftest import OPERATOR

CONTEXT = CommandContext(actor="test:rebuild", request_id="rebuild")
SKUS = ("REBUILD-1", "REBUILD-2", "REBUILD-3")
_ORDER_POSITIONS = (
    "SELECT notification_id FROM daybook_events WHERE topic LIKE '%%:Order.%%' AND notification_id > %s "
    "ORDER BY notification_id"
)


class Interrupted(Exception):
    """Stands for the operator's Ctrl-C between two pages."""


@pytest.fixture
def daybook(own_database: str, settings: Settings) -> Iterator[Daybook]:
    app = Daybook(env=eventsourcing_env(own_database, settings))
    yield app
    app.close()


def write_history(daybook: Daybook, orders: int) -> int:
    """Stock, then ``orders`` orders (every third cancelled); returns the head."""
    merchant_id = uuid.uuid4()
    for sku in SKUS:
        daybook.execute(ReceiveStock(CONTEXT, merchant_id, sku, 1_000))
    for index in range(orders):
        order_id = uuid.uuid4()
        line = OrderLine(SKUS[index % len(SKUS)], 1 + index % 2, Money(250, "EUR"))
        daybook.execute(PlaceOrder(CONTEXT, merchant_id, order_id, [line], "EUR"))
        if index % 3 == 0:
            daybook.execute(CancelOrder(CONTEXT, merchant_id, order_id))
    return daybook.recorder.max_notification_id() or 0


def order_positions(database_url: str, after: int = 0) -> list[int]:
    with psycopg.connect(database_url) as conn:
        return [row[0] for row in conn.execute(_ORDER_POSITIONS, (after,))]


def test_pages_cover_the_log_in_order_with_only_their_stream_types_events(daybook: Daybook, own_database: str) -> None:
    head = write_history(daybook, orders=20)
    with LogPages(daybook, own_database, "Order", start=3, page_size=7, tail_max=4) as pages:
        read = list(pages)
    # Pages of 7 positions from 3 on, until the head is within 4 positions of the last end.
    expected, position = [], 3
    while head - position > 4:
        position = min(position + 7, head)
        expected.append(position)
    ends = [page.end for page in read]
    assert ends == expected
    assert all(page.head == head for page in read)
    events = [positioned for page in read for positioned in page.events]
    assert [position for position, _ in events] == [p for p in order_positions(own_database, 3) if p <= ends[-1]]
    assert all(type(event).__qualname__.startswith("Order.") for _, event in events)
    for page, start in zip(read, [3, *ends], strict=False):
        assert all(start < position <= page.end for position, _ in page.events)


def test_a_page_holds_an_undecodable_event_of_its_stream_type_in_its_place(daybook: Daybook, own_database: str) -> None:
    head = write_history(daybook, orders=2)
    broken = StoredEvent(
        originator_id=uuid.uuid4(),
        originator_version=1,
        topic="domain.orders.aggregate:Order.Placed",
        state=b'{"merchant_id": "not a uuid"',
    )
    daybook.recorder.insert_events([broken])
    with psycopg.connect(own_database) as conn:
        [(position, event)] = read_page(conn, daybook, "Order", head, head + 1)
        assert read_page(conn, daybook, "InventoryItem", head, head + 1) == []
    assert position == head + 1
    assert isinstance(event, Undecodable)
    assert event.originator_id == broken.originator_id
    assert "cannot decode" in event.error


def test_an_interrupted_rebuild_resumes_from_its_tracked_position_and_ends_equal_to_the_events(
    daybook: Daybook, own_database: str
) -> None:
    head = write_history(daybook, orders=60)
    calls: list[int] = []

    def interrupt_after_two_pages(position: int, _head: int) -> None:
        calls.append(position)
        if len(calls) == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        rebuild(
            daybook,
            own_database,
            OrdersProjection(daybook),
            context=OPERATOR,
            progress=interrupt_after_two_pages,
            batch_size=10,
        )
    assert gc.isenabled()
    assert not [thread for thread in threading.enumerate() if thread.name.startswith("rebuild-read")]
    fresh_name = OrdersProjection.default_name + TRACKING_SUFFIX
    with psycopg.connect(own_database) as conn:
        tracked = conn.execute("SELECT notification_id FROM projection_tracking WHERE projection = %s", (fresh_name,))
        [(interrupted_at,)] = tracked.fetchall()
        fresh_rows = conn.execute(f"SELECT count(*) FROM orders_view{FRESH_SUFFIX}").fetchone()
    assert interrupted_at == calls[-1] == 20
    assert fresh_rows is not None
    assert fresh_rows[0] > 0

    reached: list[int] = []
    report = rebuild(
        daybook,
        own_database,
        OrdersProjection(daybook),
        context=OPERATOR,
        progress=lambda p, _: reached.append(p),
        batch_size=10,
    )
    # Resumed, not started over (the operator's audit log adds events of its own past ``head``).
    assert report.events == report.position - interrupted_at
    assert report.position == reached[-1] >= head
    assert reached[0] > interrupted_at
    with psycopg.connect(own_database) as conn:
        assert compare.differences(daybook, conn, OrdersProjection(daybook)) == []
        rows = conn.execute("SELECT count(*) FROM orders_view").fetchone()
        left = conn.execute("SELECT count(*) FROM projection_tracking WHERE projection = %s", (fresh_name,)).fetchone()
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE tablename = %s", (f"orders_view{FRESH_SUFFIX}",))
        fresh_tables = tables.fetchone()
    assert rows == (60,)
    assert left == (0,)
    assert fresh_tables == (0,)


def test_a_rebuild_is_refused_while_another_of_the_same_projection_holds_its_lock(
    daybook: Daybook, own_database: str
) -> None:
    write_history(daybook, orders=3)
    with psycopg.connect(own_database, autocommit=True) as other:
        held = other.execute("SELECT pg_try_advisory_lock(%s)", (rebuild_lock_key(OrdersProjection.default_name),))
        assert held.fetchone() == (True,)
        with pytest.raises(RebuildInProgressError):
            rebuild(daybook, own_database, OrdersProjection(daybook), context=OPERATOR)
        report = rebuild(daybook, own_database, InventoryLevelsProjection(daybook), context=OPERATOR)
    assert report.events > 0
    with psycopg.connect(own_database) as conn:
        assert compare.differences(daybook, conn, InventoryLevelsProjection(daybook)) == []


def test_a_rebuild_reads_the_events_stored_under_a_topic_registered_for_its_aggregate(
    daybook: Daybook, own_database: str
) -> None:
    # As a release that renamed a class keeps reading what the old name stored.
    register_topic("tests.legacy_orders:Purchase", Order)
    write_history(daybook, orders=4)
    merchant_id, order_id = uuid.uuid4(), uuid.uuid4()
    daybook.execute(ReceiveStock(CONTEXT, merchant_id, SKUS[0], 5))
    daybook.execute(PlaceOrder(CONTEXT, merchant_id, order_id, [OrderLine(SKUS[0], 2, Money(300, "EUR"))], "EUR"))
    daybook.execute(CancelOrder(CONTEXT, merchant_id, order_id))
    with psycopg.connect(own_database, autocommit=True) as conn:
        renamed = conn.execute(
            "UPDATE daybook_events SET topic = replace(topic, 'domain.orders.aggregate:Order.', "
            "'tests.legacy_orders:Purchase.') WHERE originator_id = %s",
            (order_id,),
        )
        assert renamed.rowcount == 2
    rebuild(daybook, own_database, OrdersProjection(daybook), context=OPERATOR, batch_size=5)
    with psycopg.connect(own_database) as conn:
        row = conn.execute("SELECT status, version FROM orders_view WHERE order_id = %s", (order_id,)).fetchone()
        assert compare.differences(daybook, conn, OrdersProjection(daybook)) == []
    assert row == ("cancelled", 2)
