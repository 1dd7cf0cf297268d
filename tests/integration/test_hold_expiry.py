"""Hold expiry: the sweep releases stock of reserved orders whose hold passed, exactly once."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from psycopg_pool import ConnectionPool

from adapters.database import connection_pool, eventsourcing_env
from adapters.settings import Settings
from api.consistency import projected_position
from domain.application import Daybook
from domain.commands import ApplyGatewayEvent
from domain.context import CommandContext
from domain.gateway import GatewayEvent, GatewayEventKind
from domain.groupcommit import GroupCommitter
from projections.orders import due_holds
from tests.integration.conftest import create_merchant
from tests.integration.serving import wait_for
from workers.holds import expire_due_holds

pytestmark = pytest.mark.usefixtures("projections_running")


@pytest.fixture(scope="module")
def pool(database_url: str, api_settings: Settings) -> Iterator[ConnectionPool[Any]]:
    pool = connection_pool(database_url, api_settings, size=4, name="test-holds")
    yield pool
    pool.close()


def _committer(database_url: str, settings: Settings, name: str) -> Iterator[GroupCommitter]:
    """A committer on an application of its own, as a worker process builds one."""
    daybook = Daybook(env=eventsourcing_env(database_url, settings))
    committer = GroupCommitter(daybook, batch_size_max=settings.batch_size_max, batch_wait_ms=2.0, name=name)
    committer.start()
    yield committer
    committer.stop(timeout_seconds=10.0)
    daybook.close()


@pytest.fixture(scope="module")
def committer(database_url: str, api_settings: Settings) -> Iterator[GroupCommitter]:
    yield from _committer(database_url, api_settings, "test-sweeper-a")


@pytest.fixture(scope="module")
def second_committer(database_url: str, api_settings: Settings) -> Iterator[GroupCommitter]:
    yield from _committer(database_url, api_settings, "test-sweeper-b")


@pytest.fixture
def lonely(client: TestClient[Any], admin_headers: dict[str, str]) -> dict[str, Any]:
    return create_merchant(client, "Expiring merchant")


def _stock(client: TestClient[Any], headers: dict[str, str], quantity: int) -> str:
    sku = f"SKU-{uuid.uuid4().hex[:10]}"
    response = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": quantity}, headers=headers)
    assert response.status_code == 201, response.text
    return sku


def _place(client: TestClient[Any], headers: dict[str, str], sku: str, quantity: int, hold_seconds: int) -> Any:
    body = {
        "lines": [{"sku": sku, "quantity": quantity, "unit_price": {"amount": 100, "currency": "EUR"}}],
        "currency": "EUR",
        "hold_seconds": hold_seconds,
    }
    response = client.post("/v1/orders", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json(), int(response.headers["x-daybook-position"])


def _wait_projected(pool: ConnectionPool[Any], position: int) -> None:
    wait_for(
        lambda: projected_position(pool, ["orders"]) >= position,
        timeout_s=10,
        what=f"the orders read model to reach position {position}",
    )


def _now_position(client: TestClient[Any]) -> str:
    return str(client.app.state.daybook.recorder.max_notification_id() or 0)


def _order(client: TestClient[Any], headers: dict[str, str], order_id: str) -> dict[str, Any]:
    wait = {**headers, "X-Daybook-Min-Position": _now_position(client)}
    response = client.get(f"/v1/orders/{order_id}", headers=wait)
    assert response.status_code == 200, response.text
    order: dict[str, Any] = response.json()
    return order


def _level(client: TestClient[Any], headers: dict[str, str], sku: str) -> tuple[int, int, int]:
    wait = {**headers, "X-Daybook-Min-Position": _now_position(client)}
    level = client.get(f"/v1/inventory/{sku}", headers=wait).json()
    return level["on_hand"], level["reserved"], level["available"]


def _event_types(client: TestClient[Any], headers: dict[str, str], order_id: str) -> list[str]:
    response = client.get(f"/v1/orders/{order_id}/events", params={"limit": 1000}, headers=headers)
    assert response.status_code == 200, response.text
    return [event["type"] for event in response.json()["data"]]


def test_due_hold_expires_the_order_and_releases_its_stock(
    client: TestClient[Any], lonely: dict[str, Any], pool: ConnectionPool[Any], committer: GroupCommitter
) -> None:
    headers = lonely["headers"]
    sku = _stock(client, headers, 5)
    due, _ = _place(client, headers, sku, 2, hold_seconds=60)
    later, position = _place(client, headers, sku, 1, hold_seconds=120)
    _wait_projected(pool, position)

    expired = expire_due_holds(pool, committer, now=datetime.now(UTC) + timedelta(seconds=61))

    assert expired >= 1
    assert _order(client, headers, due["id"])["status"] == "expired"
    assert _order(client, headers, later["id"])["status"] == "reserved"
    assert _level(client, headers, sku) == (5, 1, 4)
    assert _event_types(client, headers, due["id"]) == ["Order.Placed", "Order.Expired"]
    refused = client.post(f"/v1/orders/{due['id']}/cancel", headers=headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "invalid_state"


def test_hold_is_not_expired_before_it_is_due(
    client: TestClient[Any], lonely: dict[str, Any], pool: ConnectionPool[Any], committer: GroupCommitter
) -> None:
    headers = lonely["headers"]
    sku = _stock(client, headers, 1)
    order, position = _place(client, headers, sku, 1, hold_seconds=60)
    _wait_projected(pool, position)

    expire_due_holds(pool, committer, now=datetime.now(UTC) + timedelta(seconds=55))

    assert _order(client, headers, order["id"])["status"] == "reserved"
    assert _level(client, headers, sku) == (1, 1, 0)
    assert _event_types(client, headers, order["id"]) == ["Order.Placed"]


def test_cancelled_and_paid_orders_are_never_expired(
    client: TestClient[Any], lonely: dict[str, Any], pool: ConnectionPool[Any], committer: GroupCommitter
) -> None:
    headers = lonely["headers"]
    sku = _stock(client, headers, 5)
    cancelled, _ = _place(client, headers, sku, 1, hold_seconds=60)
    paid, _ = _place(client, headers, sku, 2, hold_seconds=60)
    assert client.post(f"/v1/orders/{cancelled['id']}/cancel", headers=headers).status_code == 200
    fact = GatewayEvent(
        kind=GatewayEventKind.CAPTURED,
        gateway="standard",
        gateway_ref=f"pay_{uuid.uuid4().hex}",
        event_id=f"msg_{uuid.uuid4().hex}",
        order_id=uuid.UUID(paid["id"]),
        amount=paid["total"]["amount"],
        currency="EUR",
    )
    context = CommandContext(actor="gateway:standard", request_id="test-capture")
    client.app.state.daybook.execute(ApplyGatewayEvent(context, uuid.UUID(lonely["merchant_id"]), fact))
    _wait_projected(pool, int(_now_position(client)))

    expire_due_holds(pool, committer, now=datetime.now(UTC) + timedelta(seconds=61))

    assert _order(client, headers, cancelled["id"])["status"] == "cancelled"
    assert _order(client, headers, paid["id"])["status"] == "paid"
    assert "Order.Expired" not in _event_types(client, headers, cancelled["id"])
    assert "Order.Expired" not in _event_types(client, headers, paid["id"])
    assert _level(client, headers, sku) == (3, 0, 3)


def test_two_concurrent_sweeps_expire_each_due_order_exactly_once(
    client: TestClient[Any],
    lonely: dict[str, Any],
    pool: ConnectionPool[Any],
    committer: GroupCommitter,
    second_committer: GroupCommitter,
) -> None:
    headers = lonely["headers"]
    skus = [_stock(client, headers, 30) for _ in range(2)]
    orders = []
    position = 0
    for i in range(24):
        order, position = _place(client, headers, skus[i % 2], 1 + i % 3, hold_seconds=60)
        orders.append(order)
    _wait_projected(pool, position)
    now = datetime.now(UTC) + timedelta(seconds=61)
    with pool.connection() as conn:
        due = due_holds(conn, now, 10_000)
    mine = {uuid.UUID(order["id"]) for order in orders}
    assert mine <= {order_id for _, order_id in due}

    start = threading.Barrier(2)
    counts: list[int] = []
    errors: list[BaseException] = []

    def sweep(sweeper: GroupCommitter) -> None:
        try:
            start.wait(timeout=10)
            counts.append(expire_due_holds(pool, sweeper, now=now))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=sweep, args=(c,)) for c in (committer, second_committer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert len(counts) == 2
    # Every due order was expired by one sweep or the other, never by both.
    assert sum(counts) == len(due)
    for order in orders:
        assert _event_types(client, headers, order["id"]).count("Order.Expired") == 1
        assert _order(client, headers, order["id"])["status"] == "expired"
    for sku in skus:
        assert _level(client, headers, sku) == (30, 0, 30)
