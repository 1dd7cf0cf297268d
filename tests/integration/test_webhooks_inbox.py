"""The inbox worker's rules on real PostgreSQL: apply, park poison, retry transients, sweep."""

from __future__ import annotations

import json
import uuid
from typing import Any
from uuid import UUID

import psycopg
import pytest
from dramatiq.brokers.stub import StubBroker
from psycopg_pool import ConnectionPool

from adapters import merchants
from adapters.broker import PROCESS_INBOX_ACTOR
from adapters.webhook_inbox import Delivery, store
from domain.application import Daybook
from domain.gateway import payment_id
from domain.groupcommit import GroupCommitter
from tests.integration.conftest import OPERATOR
from workers.inbox import InboxRetryError, process_rows, sweep_pending


@pytest.fixture(scope="module")
def merchant_id(pool: ConnectionPool[Any], daybook: Daybook) -> UUID:
    with pool.connection() as conn:
        return merchants.create_merchant(conn, daybook, "Inbox rules", OPERATOR).merchant_id


def _row(pool: ConnectionPool[Any], merchant_id: UUID, body: dict[str, Any] | bytes, gateway: str = "standard") -> int:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    event_id = f"msg_{uuid.uuid4().hex}"
    headers = {"webhook-id": event_id} if gateway == "standard" else {}
    with pool.connection() as conn:
        inbox_id = store(conn, Delivery(merchant_id, gateway, event_id, raw, headers))
    assert inbox_id is not None
    return inbox_id


def _state(pool: ConnectionPool[Any], inbox_id: int) -> tuple[str, int, str | None]:
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT state, attempts, park_reason FROM webhook_inbox WHERE inbox_id = %s", (inbox_id,)
        ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]), row[2]


def _capture(gateway_ref: str, amount: int = 500) -> dict[str, Any]:
    return {"type": "payment.captured", "data": {"gateway_ref": gateway_ref, "amount": amount, "currency": "EUR"}}


def test_a_pending_row_is_applied_and_marked_processed(
    pool: ConnectionPool[Any], committer: GroupCommitter, daybook: Daybook, merchant_id: UUID
) -> None:
    inbox_id = _row(pool, merchant_id, _capture("pay_applied", 700))
    report = process_rows(pool, committer, [inbox_id])
    assert report.processed == [inbox_id]
    assert _state(pool, inbox_id) == ("processed", 1, None)
    assert daybook.get_payment(merchant_id, payment_id(merchant_id, "standard", "pay_applied")).amount_captured == 700


def test_events_of_an_applied_row_carry_the_gateway_actor_the_row_id_and_the_event_id(
    pool: ConnectionPool[Any], committer: GroupCommitter, daybook: Daybook, merchant_id: UUID
) -> None:
    inbox_id = _row(pool, merchant_id, _capture("pay_audited"))
    process_rows(pool, committer, [inbox_id])
    with pool.connection() as conn:
        row = conn.execute("SELECT event_id FROM webhook_inbox WHERE inbox_id = %s", (inbox_id,)).fetchone()
    assert row is not None
    metadata = [event.metadata for event in daybook.history(payment_id(merchant_id, "standard", "pay_audited"))]
    assert metadata[0] == {"actor": "gateway:standard", "request_id": str(inbox_id), "causation_id": row[0]}


def test_a_row_that_is_no_longer_pending_is_skipped(
    pool: ConnectionPool[Any], committer: GroupCommitter, merchant_id: UUID
) -> None:
    inbox_id = _row(pool, merchant_id, _capture("pay_once"))
    process_rows(pool, committer, [inbox_id])
    again = process_rows(pool, committer, [inbox_id])
    assert (again.processed, again.parked, again.pending) == ([], {}, [])
    assert _state(pool, inbox_id) == ("processed", 1, None)


def test_a_body_that_no_longer_parses_is_parked_with_the_reason(
    pool: ConnectionPool[Any], committer: GroupCommitter, merchant_id: UUID
) -> None:
    inbox_id = _row(pool, merchant_id, b'{"type": "payment.captured", "data": {"gateway_ref": 7}}')
    report = process_rows(pool, committer, [inbox_id])
    state, attempts, reason = _state(pool, inbox_id)
    assert (state, attempts) == ("parked", 1)
    assert reason is not None
    assert reason.startswith("malformed:")
    assert inbox_id in report.parked


def test_a_fact_the_domain_refuses_is_parked_and_not_retried(
    pool: ConnectionPool[Any], committer: GroupCommitter, merchant_id: UUID
) -> None:
    refund_of_nothing = {
        "type": "payment.refunded",
        "data": {"gateway_ref": "pay_zero", "amount": 0, "currency": "EUR", "refund_id": "re_0"},
    }
    good = _row(pool, merchant_id, _capture("pay_beside_poison"))
    poison = _row(pool, merchant_id, refund_of_nothing)
    report = process_rows(pool, committer, [good, poison])  # does not raise: nothing to retry
    assert report.processed == [good]
    state, _, reason = _state(pool, poison)
    assert state == "parked"
    assert reason is not None
    assert reason.startswith("invalid_request:")


def test_a_transient_failure_leaves_the_row_pending_and_asks_for_a_retry(
    pool: ConnectionPool[Any], daybook: Daybook, merchant_id: UUID
) -> None:
    stopped = GroupCommitter(daybook, name="stopped")  # never started: every submit fails
    inbox_id = _row(pool, merchant_id, _capture("pay_transient"))
    with pytest.raises(InboxRetryError) as raised:
        process_rows(pool, stopped, [inbox_id])
    assert raised.value.inbox_ids == [inbox_id]
    assert _state(pool, inbox_id) == ("pending", 1, None)


def test_a_row_tried_many_times_before_is_still_applied_and_never_parked_for_it(
    pool: ConnectionPool[Any], committer: GroupCommitter, merchant_id: UUID
) -> None:
    # Issue 11, item 6: attempts count transient failures, which never park a payment fact
    # (this test asserted the former rule, parking past 20 attempts).
    inbox_id = _row(pool, merchant_id, _capture("pay_tired"))
    with pool.connection() as conn:
        conn.execute("UPDATE webhook_inbox SET attempts = 20 WHERE inbox_id = %s", (inbox_id,))
    process_rows(pool, committer, [inbox_id])
    assert _state(pool, inbox_id) == ("processed", 21, None)


def test_the_sweeper_resends_pending_rows_once_overdue_and_not_again_before_the_delay(
    pool: ConnectionPool[Any], merchant_id: UUID, database_url: str
) -> None:
    broker = StubBroker()
    broker.declare_queue("default")
    fresh = _row(pool, merchant_id, _capture("pay_fresh"))
    overdue = _row(pool, merchant_id, _capture("pay_overdue"))
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("UPDATE webhook_inbox SET enqueued_at = now() - interval '1 hour' WHERE inbox_id = %s", (overdue,))
    first = sweep_pending(pool, broker, delay_s=60)
    second = sweep_pending(pool, broker, delay_s=60)
    assert overdue in first
    assert fresh not in first
    assert overdue not in second
    sent = list(broker.queues["default"].queue)
    assert sent
    assert all(json.loads(message)["actor_name"] == PROCESS_INBOX_ACTOR for message in sent)
