"""``daybook audit replay --merchant ID``: a merchant's books replayed against the read models."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
from click.testing import CliRunner, Result
from litestar.testing import TestClient

from adapters.settings import Settings
from daybook.cli import main as cli_main
from domain.commands import ApplyGatewayEvent
from domain.context import CommandContext
from domain.gateway import GatewayEvent, GatewayEventKind, payment_id
from domain.inventory import inventory_item_id
from projections.audit_replay import replay_merchant
from projections.registry import projection_names
from tests.integration.conftest import create_merchant, running_projections
from tests.integration.serving import wait_for

_TRACKED = "SELECT min(notification_id), count(*) FROM projection_tracking WHERE projection = ANY(%s)"
_HEAD = "SELECT coalesce(max(notification_id), 0) FROM daybook_events"


def _books(client: TestClient[Any], merchant: dict[str, Any]) -> dict[str, str]:
    """Stock, an order paid by a payment and an order cancelled; returns their ids."""
    headers = merchant["headers"]
    for sku in ("REPLAY-A", "REPLAY-B"):
        assert client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 10}, headers=headers).status_code == 201
    line = {"sku": "REPLAY-A", "quantity": 2, "unit_price": {"amount": 700, "currency": "EUR"}}
    paid = client.post("/v1/orders", json={"lines": [line], "currency": "EUR"}, headers=headers).json()
    cancelled = client.post(
        "/v1/orders", json={"lines": [{**line, "sku": "REPLAY-B"}], "currency": "EUR"}, headers=headers
    )
    assert client.post(f"/v1/orders/{cancelled.json()['id']}/cancel", headers=headers).status_code == 200
    gateway_ref = f"pi_{uuid.uuid4().hex}"
    fact = GatewayEvent(
        kind=GatewayEventKind.CAPTURED,
        gateway="stripe",
        gateway_ref=gateway_ref,
        event_id=f"evt_{uuid.uuid4().hex}",
        order_id=uuid.UUID(paid["id"]),
        amount=1400,
        currency="EUR",
    )
    context = CommandContext(actor="gateway:stripe", request_id=f"replay-{uuid.uuid4().hex}")
    merchant_id = uuid.UUID(merchant["merchant_id"])
    client.app.state.daybook.execute(ApplyGatewayEvent(context, merchant_id, fact))
    return {
        "paid_order": paid["id"],
        "cancelled_order": cancelled.json()["id"],
        "payment": str(payment_id(merchant_id, "stripe", gateway_ref)),
        "item": str(inventory_item_id(merchant_id, "REPLAY-A")),
    }


def _caught_up(database_url: str) -> bool:
    with psycopg.connect(database_url) as conn:
        tracked = conn.execute(_TRACKED, (projection_names(),)).fetchone()
        head = conn.execute(_HEAD).fetchone()
    assert tracked is not None
    assert head is not None
    return tracked[1] == len(projection_names()) and tracked[0] >= head[0]


def _replay(database_url: str, redis_url: str, merchant_id: str) -> Result:
    env = {"DAYBOOK_DATABASE_URL": database_url, "DAYBOOK_REDIS_URL": redis_url, "DAYBOOK_LOG_LEVEL": "WARNING"}
    return CliRunner().invoke(cli_main, ["audit", "replay", "--merchant", merchant_id], env=env)


def test_replay_passes_a_consistent_merchant_and_names_each_corrupted_row_and_column_of_it_only(
    client: TestClient[Any], database_url: str, redis_url: str, settings: Settings
) -> None:
    merchant, bystander = create_merchant(client, "Replayed"), create_merchant(client, "Replay bystander")
    ids, other = _books(client, merchant), _books(client, bystander)
    with running_projections(database_url, settings):
        wait_for(lambda: _caught_up(database_url), timeout_s=60, what="the projections to reach the head")

    consistent = _replay(database_url, redis_url, merchant["merchant_id"])
    assert consistent.exit_code == 0, consistent.output
    assert "every read-model row equals its events" in consistent.output
    assert "replayed 2 inventory_levels, 2 orders, 1 payments" in consistent.output

    with psycopg.connect(database_url, autocommit=True) as conn:  # as the tables' owner
        conn.execute("UPDATE orders_view SET amount_captured = 1399 WHERE order_id = %s", (ids["paid_order"],))
        conn.execute("UPDATE inventory_levels SET on_hand = on_hand + 5 WHERE item_id = %s", (ids["item"],))
        conn.execute("DELETE FROM payments_view WHERE payment_id = %s", (ids["payment"],))
        # Another merchant's drift is not this merchant's books.
        conn.execute("UPDATE orders_view SET status = 'paid' WHERE order_id = %s", (other["cancelled_order"],))
    corrupted = _replay(database_url, redis_url, merchant["merchant_id"])
    assert corrupted.exit_code == 1, corrupted.output
    assert "3 differences" in corrupted.output
    lines = corrupted.output.splitlines()
    assert any(ids["paid_order"] in line and "amount_captured" in line and "1399" in line for line in lines)
    assert any(ids["item"] in line and "on_hand" in line for line in lines)
    assert any(ids["payment"] in line and "(row)" in line for line in lines)
    assert not any(value in corrupted.output for value in other.values())
    assert _replay(database_url, redis_url, bystander["merchant_id"]).exit_code == 1


def test_a_row_claiming_to_be_the_merchants_without_its_aggregate_is_reported_as_extra(
    client: TestClient[Any], database_url: str, redis_url: str, settings: Settings
) -> None:
    merchant, owner = create_merchant(client, "Claimed"), create_merchant(client, "Real owner")
    _books(client, merchant)
    theirs = _books(client, owner)
    with running_projections(database_url, settings):
        wait_for(lambda: _caught_up(database_url), timeout_s=60, what="the projections to reach the head")
    assert _replay(database_url, redis_url, merchant["merchant_id"]).exit_code == 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "UPDATE orders_view SET merchant_id = %s WHERE order_id = %s",
            (merchant["merchant_id"], theirs["cancelled_order"]),
        )
    claimed = _replay(database_url, redis_url, merchant["merchant_id"])
    assert claimed.exit_code == 1, claimed.output
    assert any(theirs["cancelled_order"] in line and "(row)" in line for line in claimed.output.splitlines())
    owners = _replay(database_url, redis_url, owner["merchant_id"])
    assert any(theirs["cancelled_order"] in line and "merchant_id" in line for line in owners.output.splitlines())


def test_replay_refuses_a_merchant_id_that_is_not_a_uuid(database_url: str, redis_url: str) -> None:
    assert _replay(database_url, redis_url, "not-a-uuid").exit_code == 2


def test_replay_in_the_smallest_pages_finds_what_one_page_finds_chained_or_not(
    client: TestClient[Any], database_url: str, settings: Settings
) -> None:
    merchant = create_merchant(client, "Paged replay")
    ids = _books(client, merchant)
    with running_projections(database_url, settings):
        wait_for(lambda: _caught_up(database_url), timeout_s=60, what="the projections to reach the head")
        wait_for(lambda: _chained(database_url), timeout_s=60, what="the audit chain to reach the head")
    # Recorded after the projections stopped: neither chained nor projected yet.
    headers = merchant["headers"]
    assert client.post("/v1/inventory/REPLAY-C/receipts", json={"quantity": 1}, headers=headers).status_code == 201
    app = client.app.state.daybook
    merchant_id = uuid.UUID(merchant["merchant_id"])
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE orders_view SET status = 'expired' WHERE order_id = %s", (ids["cancelled_order"],))
        whole = replay_merchant(app, conn, merchant_id)
        scanned: list[int] = []
        paged = replay_merchant(
            app, conn, merchant_id, scan_events=2, page_size=1, progress=lambda done, _: scanned.append(done)
        )
    assert whole.aggregates == paged.aggregates == {"inventory_levels": 3, "orders": 2, "payments": 1}
    assert [(d.key, d.column, d.actual, d.expected) for d in paged.differences] == [
        (uuid.UUID(ids["cancelled_order"]), "status", "expired", "cancelled")
    ]
    assert [(d.key, d.column) for d in whole.differences] == [(d.key, d.column) for d in paged.differences]
    assert len(scanned) > 3
    assert scanned == sorted(scanned)


def _chained(database_url: str) -> bool:
    with psycopg.connect(database_url) as conn:
        tracked = conn.execute("SELECT notification_id FROM projection_tracking WHERE projection = 'audit_chain'")
        row, head = tracked.fetchone(), conn.execute(_HEAD).fetchone()
    assert head is not None
    return row is not None and row[0] >= head[0]
