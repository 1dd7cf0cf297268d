"""A poisoned event never stops a projection: it is set aside, reads stay correct, retry re-applies."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from litestar.testing import TestClient
from psycopg_pool import ConnectionPool

from adapters.database import connection_pool, eventsourcing_env
from adapters.settings import Settings
from api.app import create_app
from api.consistency import projected_position
from domain.application import Daybook
from domain.commands import ReceiveStock
from domain.context import CommandContext
from domain.groupcommit import GroupCommitter
from domain.inventory import InventoryItem, inventory_item_id
from domain.orders import Order
from projections import quarantine
from projections.orders import OrdersProjection
from projections.registry import projection_names
from projections.retry import retry_quarantined
from tests.conftest import Servers, fresh_database
from tests.integration.conftest import ADMIN_KEY, create_merchant, running_projections
from tests.integration.serving import wait_for
from workers.drift import check_drift
from workers.holds import expire_due_holds

CONTEXT = CommandContext(actor="test:poison", request_id="poison-1")


@pytest.fixture(scope="module")
def own_database(servers: Servers) -> Iterator[str]:
    """A database of this module's own: the quarantine it leaves must not degrade other tests."""
    with fresh_database(servers) as url:
        yield url


@pytest.fixture(scope="module")
def module_settings(settings: Settings) -> Settings:
    return replace(settings, admin_key=ADMIN_KEY)


@pytest.fixture(scope="module")
def client(module_settings: Settings, own_database: str, redis_url: str) -> Iterator[TestClient[Any]]:
    with (
        running_projections(own_database, module_settings),
        TestClient(create_app(module_settings, own_database, redis_url), raise_server_exceptions=False) as test_client,
    ):
        yield test_client


@pytest.fixture(scope="module")
def daybook(own_database: str, module_settings: Settings) -> Iterator[Daybook]:
    app = Daybook(env=eventsourcing_env(own_database, module_settings))
    yield app
    app.close()


@pytest.fixture(scope="module")
def pool(own_database: str, module_settings: Settings) -> Iterator[ConnectionPool[Any]]:
    pool = connection_pool(own_database, module_settings, size=2, name="test-quarantine")
    yield pool
    pool.close()


def reached(pool: ConnectionPool[Any], position: int) -> bool:
    return projected_position(pool, projection_names()) >= position


def poison_order(daybook: Daybook, merchant_id: uuid.UUID, *, customer_ref: str, sku: str | None = None) -> Order:
    """An order written straight to the store, past the domain's checks (as an older release might have)."""
    order = Order._create(
        Order.Placed,
        id=uuid.uuid4(),
        merchant_id=merchant_id,
        metadata=CONTEXT.metadata(),
        timestamp=datetime.now(UTC),
        lines=[{"sku": sku or "POISON", "quantity": 2, "unit_price": 100}],
        currency="EUR",
        customer_ref=customer_ref,
        hold_expires_at=datetime.now(UTC) - timedelta(seconds=1),
        amount_total=200,
    )
    aggregates: list[Any] = [order]
    if sku is not None:
        item = daybook.repository.get(inventory_item_id(merchant_id, sku))
        assert isinstance(item, InventoryItem)
        item.hold(order.id, 2, order.hold_expires_at, CONTEXT.stamped())
        aggregates.append(item)
    daybook.save(*aggregates)
    return order


def test_a_poisoned_order_is_quarantined_and_everyone_else_is_still_served(
    client: TestClient[Any], daybook: Daybook, pool: ConnectionPool[Any], own_database: str
) -> None:
    victim, bystander = create_merchant(client, "Victim"), create_merchant(client, "Bystander")
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    stocked = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 10}, headers=victim["headers"])
    assert stocked.status_code == 201
    # PostgreSQL text cannot hold NUL: the orders projection cannot write this row, ever.
    poisoned = poison_order(daybook, uuid.UUID(victim["merchant_id"]), customer_ref="bad\x00ref", sku=sku)

    other_sku = f"SKU-{uuid.uuid4().hex[:8]}"
    client.post(f"/v1/inventory/{other_sku}/receipts", json={"quantity": 5}, headers=bystander["headers"])
    body = {
        "lines": [{"sku": other_sku, "quantity": 1, "unit_price": {"amount": 500, "currency": "EUR"}}],
        "currency": "EUR",
    }
    placed = client.post("/v1/orders", json=body, headers=bystander["headers"])
    assert placed.status_code == 201
    position = int(placed.headers["x-daybook-position"])
    wait_for(lambda: reached(pool, position), timeout_s=20, what="projections past the poisoned event")

    # Others read their own writes as usual.
    headers = {**bystander["headers"], "X-Daybook-Min-Position": str(position)}
    read = client.get(f"/v1/orders/{placed.json()['id']}", headers=headers)
    assert read.status_code == 200, read.text
    with psycopg.connect(own_database) as conn:
        [entry] = quarantine.entries(conn, OrdersProjection.default_name)
    assert (entry.quarantine_key, entry.merchant_id) == (poisoned.id, uuid.UUID(victim["merchant_id"]))
    assert "NUL" in entry.error

    # The poisoned order is still read correctly: replayed from its events, alone and in lists.
    one = client.get(f"/v1/orders/{poisoned.id}", headers=victim["headers"])
    assert one.status_code == 200, one.text
    assert (one.json()["customer_ref"], one.json()["status"]) == ("bad\x00ref", "reserved")
    listed = client.get("/v1/orders?status=reserved", headers=victim["headers"]).json()["data"]
    assert [order["id"] for order in listed] == [str(poisoned.id)]

    # Quarantine is never silent.
    metrics = client.get("/metrics").text
    assert 'daybook_projection_quarantined{projection="orders"} 1.0' in metrics
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert any("orders" in reason and "quarantined" in reason for reason in ready.json()["reasons"])

    # Its hold still expires: the sweep takes quarantined orders into account.
    committer = GroupCommitter(daybook, name="test-quarantine-sweep")
    with committer:
        assert expire_due_holds(pool, committer) >= 1
    expired = client.get(f"/v1/orders/{poisoned.id}", headers=victim["headers"]).json()
    assert expired["status"] == "expired"
    level = wait_for(
        lambda: (r := client.get(f"/v1/inventory/{sku}", headers=victim["headers"]).json())["reserved"] == 0 and r,
        timeout_s=20,
        what="the expired hold released in the levels read model",
    )
    assert level["available"] == 10


def test_a_stored_event_that_cannot_be_decoded_is_set_aside_by_the_projection_it_concerns(
    client: TestClient[Any], daybook: Daybook, pool: ConnectionPool[Any], own_database: str
) -> None:
    merchant = create_merchant(client, "Undecodable")
    merchant_id = uuid.UUID(merchant["merchant_id"])
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    level = daybook.execute(ReceiveStock(CONTEXT, merchant_id, sku, 3))
    broken = StoredEvent(
        originator_id=level.id,
        originator_version=level.version + 1,
        topic="domain.inventory.aggregate:InventoryItem.StockReceived",
        state=b'{"merchant_id": "' + str(merchant_id).encode() + b'", "quantity": "not a number"',
    )
    daybook.recorder.insert_events([broken])
    position = daybook.recorder.max_notification_id() or 0
    wait_for(lambda: reached(pool, position), timeout_s=20, what="projections past the undecodable event")
    with psycopg.connect(own_database) as conn:
        held = {entry.projection: entry for entry in quarantine.entries(conn, "inventory_levels")}
        orders_held = quarantine.entries(conn, "orders")
    assert held["inventory_levels"].quarantine_key == level.id
    assert "cannot decode" in held["inventory_levels"].error
    assert all(entry.quarantine_key != level.id for entry in orders_held)


def test_retry_reapplies_once_the_cause_is_fixed_and_later_events_flow_again(
    client: TestClient[Any], daybook: Daybook, pool: ConnectionPool[Any], own_database: str
) -> None:
    merchant = create_merchant(client, "Fixable")
    merchant_id = uuid.UUID(merchant["merchant_id"])
    with psycopg.connect(own_database, autocommit=True) as conn:
        # A read-model constraint a release got wrong: rows with this reference are refused.
        conn.execute("ALTER TABLE orders_view ADD CONSTRAINT refuses_fixable CHECK (customer_ref <> 'fixable')")
    order = poison_order(daybook, merchant_id, customer_ref="fixable")
    position = daybook.recorder.max_notification_id() or 0
    wait_for(lambda: reached(pool, position), timeout_s=20, what="projections past the refused row")
    with psycopg.connect(own_database, autocommit=True) as conn:
        assert order.id in quarantine.keys(conn, OrdersProjection.default_name)
        early = retry_quarantined(conn, OrdersProjection(daybook))
        errors = {entry.quarantine_key: error for entry, error in early.still_failing}
        assert "refuses_fixable" in errors[order.id]
        assert order.id in quarantine.keys(conn, OrdersProjection.default_name)  # not released

        conn.execute("ALTER TABLE orders_view DROP CONSTRAINT refuses_fixable")  # the cause, fixed
        report = retry_quarantined(conn, OrdersProjection(daybook))
        assert order.id in [entry.quarantine_key for entry in report.released]
        assert order.id not in quarantine.keys(conn, OrdersProjection.default_name)
        row = conn.execute("SELECT status, customer_ref FROM orders_view WHERE order_id = %s", (order.id,)).fetchone()
    assert row == ("reserved", "fixable")

    # Its next event is projected as usual (the runner no longer skips it).
    cancelled = client.post(f"/v1/orders/{order.id}/cancel", headers=merchant["headers"])
    assert cancelled.status_code == 200, cancelled.text
    position = int(cancelled.headers["x-daybook-position"])
    wait_for(lambda: reached(pool, position), timeout_s=20, what="the cancel projected")
    with psycopg.connect(own_database) as conn:
        status = conn.execute("SELECT status FROM orders_view WHERE order_id = %s", (order.id,)).fetchone()
    assert status == ("cancelled",)


def test_the_drift_check_finds_a_row_that_differs_from_its_events_and_metrics_show_it(
    client: TestClient[Any], daybook: Daybook, pool: ConnectionPool[Any], own_database: str
) -> None:
    merchant = create_merchant(client, "Drifting")
    sku = f"SKU-{uuid.uuid4().hex[:8]}"
    client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 4}, headers=merchant["headers"])
    body = {"lines": [{"sku": sku, "quantity": 1, "unit_price": {"amount": 9, "currency": "EUR"}}], "currency": "EUR"}
    placed = client.post("/v1/orders", json=body, headers=merchant["headers"])
    position = int(placed.headers["x-daybook-position"])
    wait_for(lambda: reached(pool, position), timeout_s=20, what="the order projected")
    assert check_drift(pool, daybook, sample_size=1_000) == {"inventory_levels": 0, "orders": 0, "payments": 0}

    with psycopg.connect(own_database, autocommit=True) as conn:
        conn.execute("UPDATE orders_view SET status = 'paid' WHERE order_id = %s", (placed.json()["id"],))
    assert check_drift(pool, daybook, sample_size=1_000)["orders"] == 1
    with psycopg.connect(own_database) as conn:
        detail = conn.execute("SELECT detail FROM read_model_checks WHERE projection = 'orders'").fetchone()
    assert detail is not None
    assert placed.json()["id"] in detail[0]
    assert "status" in detail[0]
    assert 'daybook_read_model_drift_rows{projection="orders"} 1.0' in client.get("/metrics").text
