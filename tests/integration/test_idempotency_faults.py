"""Idempotency-Key under faults: a cut-short body, a lost answer, a crashed or slow first run.

Issue 11, items 3 and 10. A keyed receipt or adjustment is applied once whatever happens
between its commit and its stored answer, and a body cut short by a disconnect is never
answered under its key.
"""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest
from litestar.testing import TestClient
from litestar.types import Message

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
