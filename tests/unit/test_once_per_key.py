"""A command with an Idempotency-Key runs once; its marker is saved with its events."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from domain.application import Daybook
from domain.commands import AdjustStock, OncePerKey, ReceiveStock
from domain.context import CommandContext
from domain.errors import IdempotencyKeyReusedError, InsufficientStockError
from domain.groupcommit import GroupCommitter
from domain.idempotency import IdempotencyMarker, marker_id
from domain.inventory import InventoryLevel, inventory_item_id

CONTEXT = CommandContext(actor="api_key:k1", request_id="req-1")


@pytest.fixture
def app() -> Daybook:
    return Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"})


def keyed(command: ReceiveStock | AdjustStock, key: str = "key-1", sha: str = "aa") -> OncePerKey[InventoryLevel]:
    return OncePerKey(command, key, sha, InventoryLevel.from_record)


def test_a_keyed_receipt_run_twice_is_applied_once_and_answers_the_first_level(app: Daybook) -> None:
    merchant = uuid4()
    first = app.execute(keyed(ReceiveStock(CONTEXT, merchant, "A", 5)))
    again = app.execute(keyed(ReceiveStock(CONTEXT, merchant, "A", 5)))
    assert again == first
    assert app.get_inventory_level(merchant, "A").on_hand == 5


def test_the_marker_is_saved_with_the_commands_events_at_the_same_instant(app: Daybook) -> None:
    merchant = uuid4()
    app.execute(keyed(ReceiveStock(CONTEXT, merchant, "A", 5)))
    [marker_event] = app.history(marker_id(merchant, "key-1"))
    item_events = app.history(inventory_item_id(merchant, "A"))
    assert {event.timestamp for event in item_events} == {marker_event.timestamp}
    marker = app.repository.get(marker_id(merchant, "key-1"))
    assert isinstance(marker, IdempotencyMarker)
    assert marker.merchant_id == merchant


def test_keys_are_per_merchant(app: Daybook) -> None:
    one, other = uuid4(), uuid4()
    app.execute(keyed(ReceiveStock(CONTEXT, one, "A", 5)))
    app.execute(keyed(ReceiveStock(CONTEXT, other, "A", 7)))
    assert app.get_inventory_level(other, "A").on_hand == 7


def test_a_key_sent_with_another_request_is_refused_and_applies_nothing(app: Daybook) -> None:
    merchant = uuid4()
    app.execute(keyed(ReceiveStock(CONTEXT, merchant, "A", 5), sha="aa"))
    with pytest.raises(IdempotencyKeyReusedError):
        app.execute(keyed(ReceiveStock(CONTEXT, merchant, "A", 6), sha="bb"))
    assert app.get_inventory_level(merchant, "A").on_hand == 5


def test_a_refused_command_leaves_no_marker_so_a_retry_runs_it(app: Daybook) -> None:
    merchant = uuid4()
    app.execute(ReceiveStock(CONTEXT, merchant, "A", 1))
    with pytest.raises(InsufficientStockError):
        app.execute(keyed(AdjustStock(CONTEXT, merchant, "A", -5, "count")))
    assert app.replay(marker_id(merchant, "key-1")) is None
    app.execute(ReceiveStock(CONTEXT, merchant, "A", 10))
    assert app.execute(keyed(AdjustStock(CONTEXT, merchant, "A", -5, "count"))).on_hand == 6


def test_two_runs_of_one_key_in_one_batch_apply_once(app: Daybook) -> None:
    merchant = uuid4()
    with GroupCommitter(app, batch_wait_ms=50) as committer:
        futures = [committer.submit(keyed(ReceiveStock(CONTEXT, merchant, "A", 3))) for _ in range(2)]
        first, second = (future.result(timeout=10) for future in futures)
    assert first.value == second.value
    assert app.get_inventory_level(merchant, "A").on_hand == 3


def test_a_level_survives_its_record_unchanged() -> None:
    level = InventoryLevel(uuid4(), UUID(int=1), "A", 5, 2, 3, CONTEXT.stamped().instant, 4)
    assert InventoryLevel.from_record(level.as_record()) == level
