"""Idempotency-Key under faults: a cut-short body, a lost answer, a crashed or slow first run.

Issue 11, items 3 and 10. A keyed receipt or adjustment is applied once whatever happens
between its commit and its stored answer, and a body cut short by a disconnect is never
answered under its key.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient
from litestar.types import Message

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from domain.application import Daybook
from domain.commands import OncePerKey, ReceiveStock
from domain.context import CommandContext
from domain.groupcommit import GroupCommitter
from domain.inventory import InventoryItem, InventoryLevel, inventory_item_id
from tests.integration.conftest import create_merchant

pytestmark = pytest.mark.usefixtures("projections_running")


def _sku() -> str:
    return f"SKU-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def keyed(client: TestClient[Any]) -> dict[str, Any]:
    """A merchant of this module's own."""
    return create_merchant(client, "Idempotency faults")


def _key_rows(database_url: str, merchant_id: str, key: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(database_url) as conn:
        return conn.execute(
            "SELECT state, status_code FROM idempotency_keys WHERE merchant_id = %s AND idempotency_key = %s",
            (merchant_id, key),
        ).fetchall()


def _send_cut_short(client: TestClient[Any], path: str, headers: dict[str, str], body: bytes) -> list[Message]:
    """Runs the real app on a request whose client disconnects after half of ``body``."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in headers.items()),
        ],
        "client": ("testclient", 50000),
        "server": ("testserver", 80),
    }
    messages = iter(
        [
            {"type": "http.request", "body": body[: len(body) // 2], "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[Message] = []

    async def receive() -> Any:
        return next(messages, {"type": "http.disconnect"})

    async def send(message: Message) -> None:
        sent.append(message)

    async def run() -> None:
        await client.app(scope, receive, send)  # type: ignore[arg-type]

    client.blocking_portal.call(run)
    return sent


def test_a_body_cut_short_by_a_disconnect_stores_nothing_under_its_key_and_the_retry_runs(
    client: TestClient[Any], keyed: dict[str, Any], database_url: str
) -> None:
    sku, key = _sku(), f"cut-{uuid.uuid4().hex}"
    headers = {**keyed["headers"], "Idempotency-Key": key}
    path = f"/v1/inventory/{sku}/receipts"
    _send_cut_short(client, path, headers, b'{"quantity": 5, "reference": "PO-9"}')
    assert _key_rows(database_url, keyed["merchant_id"], key) == []

    retry = client.post(path, json={"quantity": 5, "reference": "PO-9"}, headers=headers)
    assert retry.status_code == 201, retry.text
    assert "idempotent-replayed" not in retry.headers
    assert retry.json()["on_hand"] == 5


def _level(client: TestClient[Any], headers: dict[str, str], sku: str) -> tuple[int, int]:
    response = client.get(f"/v1/inventory/{sku}", params={"as_of": "2999-01-01T00:00:00Z"}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()["on_hand"], response.json()["reserved"]


def _forget_answer(database_url: str, merchant_id: str, key: str, *, release: bool) -> None:
    """What a crash leaves: the key running with its lock expired, or (after a 5xx) no key at all."""
    with psycopg.connect(database_url) as conn:
        if release:
            conn.execute(
                "DELETE FROM idempotency_keys WHERE merchant_id = %s AND idempotency_key = %s", (merchant_id, key)
            )
        else:
            conn.execute(
                "UPDATE idempotency_keys SET state = 'running', status_code = NULL, headers = NULL, body = NULL, "
                "locked_until = now() - interval '1 second' WHERE merchant_id = %s AND idempotency_key = %s",
                (merchant_id, key),
            )


@pytest.mark.parametrize("release", [False, True], ids=["crashed-before-storing-the-answer", "answered-503"])
def test_a_keyed_receipt_whose_answer_was_lost_is_answered_alike_and_not_applied_again(
    client: TestClient[Any], keyed: dict[str, Any], database_url: str, release: bool
) -> None:
    sku, key = _sku(), f"lost-{uuid.uuid4().hex}"
    headers = {**keyed["headers"], "Idempotency-Key": key}
    first = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 5}, headers=headers)
    assert first.status_code == 201, first.text
    _forget_answer(database_url, keyed["merchant_id"], key, release=release)
    retry = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 5}, headers=headers)
    assert retry.status_code == 201, retry.text
    assert retry.json() == first.json()
    assert _level(client, keyed["headers"], sku) == (5, 0)


def test_a_keyed_adjustment_whose_answer_was_lost_is_answered_alike_and_not_applied_again(
    client: TestClient[Any], keyed: dict[str, Any], database_url: str
) -> None:
    sku, key = _sku(), f"lost-{uuid.uuid4().hex}"
    assert client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 10}, headers=keyed["headers"]).is_success
    headers = {**keyed["headers"], "Idempotency-Key": key}
    body = {"delta": -3, "reason": "damaged"}
    first = client.post(f"/v1/inventory/{sku}/adjustments", json=body, headers=headers)
    assert first.status_code == 201, first.text
    for release in (False, True):
        _forget_answer(database_url, keyed["merchant_id"], key, release=release)
        retry = client.post(f"/v1/inventory/{sku}/adjustments", json=body, headers=headers)
        assert retry.status_code == 201, retry.text
        assert retry.json() == first.json()
    assert _level(client, keyed["headers"], sku) == (7, 0)


def test_a_key_that_applied_one_receipt_is_409_for_another_even_after_its_record_went(
    client: TestClient[Any], keyed: dict[str, Any], database_url: str
) -> None:
    sku, key = _sku(), f"reused-{uuid.uuid4().hex}"
    headers = {**keyed["headers"], "Idempotency-Key": key}
    assert client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 5}, headers=headers).status_code == 201
    _forget_answer(database_url, keyed["merchant_id"], key, release=True)
    other = client.post(f"/v1/inventory/{sku}/receipts", json={"quantity": 6}, headers=headers)
    assert other.status_code == 409, other.text
    assert other.json()["code"] == "idempotency_key_reused"
    assert _level(client, keyed["headers"], sku) == (5, 0)


def test_a_keyed_receipt_run_again_by_another_process_is_applied_once(
    database_url: str, settings: Settings, keyed: dict[str, Any]
) -> None:
    merchant_id, sku = uuid.UUID(keyed["merchant_id"]), _sku()
    context = CommandContext(actor="test", request_id="two-processes")
    keyed_receipt = OncePerKey(ReceiveStock(context, merchant_id, sku, 4), "k-1", "ab" * 32, InventoryLevel.from_record)
    apps = [Daybook(env=eventsourcing_env(database_url, settings)) for _ in range(2)]
    committers = [GroupCommitter(app, name=f"process-{index}") for index, app in enumerate(apps)]
    try:
        for committer in committers:
            committer.start()
        first = committers[0].submit(keyed_receipt).result(timeout=30)
        again = committers[1].submit(keyed_receipt).result(timeout=30)
        assert again.value == first.value
        assert again.position is None  # nothing recorded the second time
        item = apps[1].replay(inventory_item_id(merchant_id, sku))
        assert isinstance(item, InventoryItem)
        assert item.on_hand == 4
    finally:
        for committer in committers:
            committer.stop()
        for app in apps:
            app.close()


def test_a_client_gone_before_its_body_was_read_is_no_server_error(
    client: TestClient[Any], keyed: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    body = (
        b'{"lines": [{"sku": "A", "quantity": 1, "unit_price": {"amount": 1, "currency": "EUR"}}], "currency": "EUR"}'
    )
    with caplog.at_level(logging.INFO, logger="api.problems"):
        sent = _send_cut_short(client, "/v1/orders", keyed["headers"], body)
    [start] = [message for message in sent if message["type"] == "http.response.start"]
    assert start["status"] == 499
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert any("client disconnected" in record.getMessage() for record in caplog.records)
