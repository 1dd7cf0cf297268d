"""One bad delivery fails alone (issue 11, item 7).

The webhook edge stores concurrent deliveries with one multi-row insert. A delivery the
table cannot hold must not take the others of its batch, other merchants' included, down
with it: each is checked before it joins a batch, and a batch that fails anyway is
stored again row by row.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest
from dramatiq.brokers.stub import StubBroker

from adapters import merchants
from adapters.database import eventsourcing_env
from adapters.settings import Settings
from adapters.webhook_inbox import Delivery, UnstorableDeliveryError
from api.webhooks.inbox_writer import ACCEPTED, InboxWriter
from domain.application import Daybook
from tests.integration.conftest import OPERATOR


def _merchant(database_url: str, name: str) -> uuid.UUID:
    app = Daybook(env=eventsourcing_env(database_url, Settings(), pool_size=1))
    try:
        with psycopg.connect(database_url, autocommit=True) as conn:
            return merchants.create_merchant(conn, app, name, OPERATOR).merchant_id
    finally:
        app.close()


def _delivery(merchant_id: uuid.UUID, event_id: str | None = None) -> Delivery:
    return Delivery(merchant_id, "stripe", event_id or f"evt_{uuid.uuid4().hex}", b'{"id": "x"}')


def _store_in_one_batch(database_url: str, settings: Settings, redis_url: str, deliveries: list[Delivery]) -> list[Any]:
    """Queues every delivery before the writer starts, so that they form one batch."""

    async def scenario() -> list[Any]:
        broker = StubBroker()
        broker.declare_queue("default")
        writer = InboxWriter(database_url, settings, redis_url, broker)
        tasks = [asyncio.create_task(writer.store(delivery)) for delivery in deliveries]
        await asyncio.sleep(0)  # each store() has queued its delivery (or refused it)
        await writer.start()
        try:
            return list(await asyncio.gather(*tasks, return_exceptions=True))
        finally:
            await writer.stop()

    return asyncio.run(scenario())


def _stored(database_url: str, deliveries: list[Delivery]) -> int:
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM webhook_inbox WHERE event_id = ANY(%s)", ([d.event_id for d in deliveries],)
        ).fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("event_id", ["evt_\x00nul", "evt_\ud800", "x" * 256, ""])
def test_a_delivery_the_inbox_cannot_hold_is_refused_and_the_rest_of_its_batch_is_stored(
    database_url: str, settings: Settings, redis_url: str, event_id: str
) -> None:
    one, other = _merchant(database_url, "Writer one"), _merchant(database_url, "Writer other")
    good = [_delivery(one), _delivery(other), _delivery(other)]
    bad = Delivery(one, "stripe", event_id, b"{}")
    results = _store_in_one_batch(database_url, settings, redis_url, [good[0], bad, good[1], good[2]])
    assert isinstance(results[1], UnstorableDeliveryError)
    assert [results[0], results[2], results[3]] == [ACCEPTED] * 3
    assert _stored(database_url, good) == 3


def test_a_batch_the_database_refuses_is_stored_row_by_row_and_only_the_row_at_fault_fails(
    database_url: str, settings: Settings, redis_url: str
) -> None:
    one, other = _merchant(database_url, "Writer fallback one"), _merchant(database_url, "Writer fallback other")
    good = [_delivery(one), _delivery(other)]
    vanished = _delivery(uuid.uuid4())  # a merchant the table does not know: a foreign-key violation
    results = _store_in_one_batch(database_url, settings, redis_url, [good[0], vanished, good[1]])
    assert isinstance(results[1], UnstorableDeliveryError)
    assert [results[0], results[2]] == [ACCEPTED, ACCEPTED]
    assert _stored(database_url, good) == 2
