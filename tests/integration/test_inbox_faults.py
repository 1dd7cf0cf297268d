"""The inbox under faults (issue 11, item 6): transient failures never park, leases, re-drives."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest
import redis
from click.testing import CliRunner
from dramatiq.brokers.stub import StubBroker
from psycopg_pool import ConnectionPool

from adapters import merchants, webhook_inbox
from adapters.webhook_inbox import Delivery, store
from daybook.cli import main as cli_main
from domain.application import Daybook
from domain.groupcommit import GroupCommitter
from tests.integration.conftest import OPERATOR
from workers.inbox import InboxRetryError, process_rows, redrive_parked, sweep_pending

LEASE = timedelta(seconds=60)


def _merchant(pool: ConnectionPool[Any], app: Daybook, name: str) -> UUID:
    with pool.connection() as conn:
        return merchants.create_merchant(conn, app, name, OPERATOR).merchant_id


@pytest.fixture(scope="module")
def merchant_id(pool: ConnectionPool[Any], daybook: Daybook) -> UUID:
    return _merchant(pool, daybook, "Inbox faults")


def _row(pool: ConnectionPool[Any], merchant_id: UUID, body: dict[str, Any] | bytes) -> int:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    event_id = f"msg_{uuid.uuid4().hex}"
    with pool.connection() as conn:
        inbox_id = store(conn, Delivery(merchant_id, "standard", event_id, raw, {"webhook-id": event_id}))
    assert inbox_id is not None
    return inbox_id


def _capture(gateway_ref: str) -> dict[str, Any]:
    return {"type": "payment.captured", "data": {"gateway_ref": gateway_ref, "amount": 500, "currency": "EUR"}}


def _state(pool: ConnectionPool[Any], inbox_id: int) -> tuple[str, int, bool, str | None]:
    """(state, attempts, leased, park reason)."""
    with pool.connection() as conn:
        row = conn.execute(
            "SELECT state, attempts, locked_until > now(), park_reason FROM webhook_inbox WHERE inbox_id = %s",
            (inbox_id,),
        ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1]), bool(row[2]), row[3]


def test_a_row_failing_transiently_again_and_again_stays_pending_and_is_never_parked(
    pool: ConnectionPool[Any], daybook: Daybook, committer: GroupCommitter, merchant_id: UUID
) -> None:
    stopped = GroupCommitter(daybook, name="stopped")  # never started: every submit fails
    inbox_id = _row(pool, merchant_id, _capture("pay_flaky"))
    for _ in range(25):
        with pytest.raises(InboxRetryError):
            process_rows(pool, stopped, [inbox_id])
    assert _state(pool, inbox_id) == ("pending", 25, False, None)  # and its lease ended each time
    assert process_rows(pool, committer, [inbox_id]).processed == [inbox_id]


def test_commands_given_up_on_are_withdrawn_so_they_never_run_after_their_row_was_left_pending(
    pool: ConnectionPool[Any], daybook: Daybook, merchant_id: UUID
) -> None:
    # A committer that waits a second for a batch to fill: the row's wait ends long before.
    slow = GroupCommitter(daybook, name="slow", batch_wait_ms=1_000, batch_size_max=1_000)
    slow.start()
    try:
        gateway_ref = f"pay_{uuid.uuid4().hex[:8]}"
        inbox_id = _row(pool, merchant_id, _capture(gateway_ref))
        with pytest.raises(InboxRetryError) as raised:
            process_rows(pool, slow, [inbox_id], wait_s=0.05)
        assert raised.value.inbox_ids == [inbox_id]
        assert _state(pool, inbox_id)[:3] == ("pending", 1, False)
        slow.stop(timeout_seconds=10)
        assert slow.metrics.commands_cancelled_total == 1
        assert slow.metrics.commands_total == 0, "the withdrawn command ran"
    finally:
        slow.stop(timeout_seconds=10)


def test_a_row_being_processed_is_leased_so_it_is_neither_claimed_again_nor_swept(
    pool: ConnectionPool[Any], merchant_id: UUID
) -> None:
    inbox_id = _row(pool, merchant_id, _capture("pay_leased"))
    with pool.connection() as conn:
        conn.execute(
            "UPDATE webhook_inbox SET enqueued_at = now() - interval '1 hour' WHERE inbox_id = %s", (inbox_id,)
        )
        assert [row.inbox_id for row in webhook_inbox.claim(conn, [inbox_id], LEASE, uuid.uuid4())] == [inbox_id]
        assert webhook_inbox.claim(conn, [inbox_id], LEASE, uuid.uuid4()) == []  # a duplicate message finds it taken
    broker = StubBroker()
    broker.declare_queue("default")
    assert inbox_id not in sweep_pending(pool, broker, delay_s=1)
    assert _state(pool, inbox_id)[:3] == ("pending", 1, True)
    with pool.connection() as conn:  # the worker died: its lease runs out
        conn.execute(
            "UPDATE webhook_inbox SET locked_until = now() - interval '1 second' WHERE inbox_id = %s", (inbox_id,)
        )
    assert inbox_id in sweep_pending(pool, broker, delay_s=1)
    with pool.connection() as conn:
        assert [row.inbox_id for row in webhook_inbox.claim(conn, [inbox_id], LEASE, uuid.uuid4())] == [inbox_id]


def test_redrive_requeues_parked_rows_of_one_merchant_and_a_poison_row_parks_again(
    pool: ConnectionPool[Any], committer: GroupCommitter
) -> None:
    one, other = _merchant(pool, committer.app, "Redrive one"), _merchant(pool, committer.app, "Redrive other")
    poison = _row(pool, one, b'{"type": "payment.captured", "data": {"gateway_ref": 7}}')
    bystander = _row(pool, other, b'{"type": "payment.captured"}')
    process_rows(pool, committer, [poison, bystander])
    assert _state(pool, poison)[0] == _state(pool, bystander)[0] == "parked"
    broker = StubBroker()
    broker.declare_queue("default")
    done = redrive_parked(pool, broker, committer.app, merchant_id=one, context=OPERATOR, reason="parser fixed")
    assert done.rows_by_merchant == {one: [poison]}
    assert done.messages_sent == 1
    assert _state(pool, poison) == ("pending", 1, False, None)
    assert _state(pool, bystander)[0] == "parked"
    [message] = broker.queues["default"].queue
    assert json.loads(message)["args"] == [[poison]]
    process_rows(pool, committer, [poison])
    state, attempts, _, reason = _state(pool, poison)
    assert (state, attempts) == ("parked", 2)
    assert reason is not None
    assert reason.startswith("malformed:")


def test_daybook_inbox_redrive_requeues_the_parked_rows_and_says_how_many(
    pool: ConnectionPool[Any], committer: GroupCommitter, database_url: str, redis_url: str
) -> None:
    merchant = _merchant(pool, committer.app, "Redrive CLI")
    parked = [_row(pool, merchant, b"not json") for _ in range(2)]
    process_rows(pool, committer, parked)
    env = {"DAYBOOK_DATABASE_URL": database_url, "DAYBOOK_REDIS_URL": redis_url, "DAYBOOK_LOG_LEVEL": "WARNING"}
    args = ["inbox", "redrive", "--merchant", str(merchant), "--reason", "after the fix"]
    result = CliRunner().invoke(cli_main, args, env=env)
    assert result.exit_code == 0, result.output
    assert "re-queued 2 parked rows" in result.output
    assert all(_state(pool, inbox_id)[0] == "pending" for inbox_id in parked)
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.hlen("daybook:default.msgs") >= 1
    finally:
        client.close()
    refused = CliRunner().invoke(cli_main, ["inbox", "redrive", "--reason", "tab\there"], env=env)
    assert refused.exit_code == 2


def test_redrive_goes_through_every_parked_row_in_bounded_batches(
    pool: ConnectionPool[Any], committer: GroupCommitter
) -> None:
    merchant = _merchant(pool, committer.app, "Redrive batches")
    parked = [_row(pool, merchant, b"[]") for _ in range(3)]
    process_rows(pool, committer, parked)
    broker = StubBroker()
    broker.declare_queue("default")
    done = redrive_parked(pool, broker, committer.app, merchant_id=merchant, context=OPERATOR, reason=None, rows_max=1)
    assert done.rows_by_merchant == {merchant: parked}
    assert done.messages_sent == 3
