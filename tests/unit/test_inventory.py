"""InventoryItem: receipts, adjustments and holds keep the stock invariants."""

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from domain.context import CommandContext
from domain.errors import (
    InsufficientStockError,
    InvalidCommandError,
    InvalidStateError,
    OutOfStockError,
    Shortage,
)
from domain.inventory import INVENTORY_NAMESPACE, InventoryItem, inventory_item_id
from domain.validation import check_sku

CONTEXT = CommandContext(actor="api_key:k1", request_id="req-1")
LATER = datetime(2030, 1, 1, tzinfo=UTC)


def stocked(on_hand: int = 10, merchant_id: UUID | None = None) -> InventoryItem:
    item = InventoryItem.register(merchant_id or uuid4(), "SKU-1", CONTEXT)
    if on_hand:
        item.receive(on_hand, "po-1", CONTEXT)
    return item


def event_names(item: InventoryItem) -> list[str]:
    return [type(event).__name__ for event in item.collect_events()]


def test_item_id_is_a_uuid5_of_merchant_and_sku():
    merchant_id = uuid4()
    item = InventoryItem.register(merchant_id, "SKU-1", CONTEXT)
    assert item.id == inventory_item_id(merchant_id, "SKU-1")
    assert item.id.version == 5
    assert inventory_item_id(merchant_id, "SKU-2") != item.id
    assert inventory_item_id(uuid4(), "SKU-1") != item.id
    assert item.id != INVENTORY_NAMESPACE


def test_a_new_item_has_nothing_on_hand():
    item = InventoryItem.register(uuid4(), "SKU-1", CONTEXT)
    assert (item.on_hand, item.reserved, item.available, item.holds) == (0, 0, 0, {})


def test_receiving_stock_adds_to_on_hand_and_available():
    item = stocked(on_hand=0)
    item.receive(7, "po-9", CONTEXT)
    assert (item.on_hand, item.available) == (7, 7)
    received = item.collect_events()[-1]
    assert isinstance(received, InventoryItem.StockReceived)
    assert (received.quantity, received.reference) == (7, "po-9")


@pytest.mark.parametrize("quantity", [0, -1, 1.0, True])
def test_receiving_a_non_positive_or_non_integer_quantity_is_refused(quantity: object):
    item = stocked()
    with pytest.raises(InvalidCommandError):
        item.receive(quantity, None, CONTEXT)  # type: ignore[arg-type]


@pytest.mark.parametrize("sku", ["", "a" * 65, "with space", "ü", "a/b"])
def test_bad_skus_are_refused(sku: str):
    with pytest.raises(InvalidCommandError):
        check_sku(sku)
    with pytest.raises(InvalidCommandError):
        InventoryItem.register(uuid4(), sku, CONTEXT)


def test_adjusting_changes_on_hand_by_the_delta():
    item = stocked(on_hand=10)
    item.adjust(-3, "damaged", CONTEXT)
    item.adjust(1, "found in count", CONTEXT)
    assert item.on_hand == 8


def test_adjusting_below_reserved_is_refused_with_the_levels():
    item = stocked(on_hand=10)
    item.hold(uuid4(), 6, LATER, CONTEXT)
    item.collect_events()
    with pytest.raises(InsufficientStockError) as caught:
        item.adjust(-5, "shrinkage", CONTEXT)
    error = caught.value
    assert (error.sku, error.on_hand, error.reserved, error.delta) == ("SKU-1", 10, 6, -5)
    assert item.collect_events() == []
    assert item.on_hand == 10


def test_adjusting_below_zero_is_refused():
    with pytest.raises(InsufficientStockError):
        stocked(on_hand=2).adjust(-3, "count", CONTEXT)


def test_a_zero_adjustment_or_one_without_reason_is_refused():
    item = stocked()
    with pytest.raises(InvalidCommandError):
        item.adjust(0, "nothing", CONTEXT)
    with pytest.raises(InvalidCommandError):
        item.adjust(1, "", CONTEXT)


def test_holding_reserves_units_for_the_order_until_expiry():
    item = stocked(on_hand=10)
    order_id = uuid4()
    item.hold(order_id, 4, LATER, CONTEXT)
    assert (item.on_hand, item.reserved, item.available) == (10, 4, 6)
    assert item.holds[order_id] == (4, LATER)


def test_holding_more_than_available_raises_out_of_stock_with_requested_and_available():
    item = stocked(on_hand=5)
    item.hold(uuid4(), 3, LATER, CONTEXT)
    item.collect_events()
    with pytest.raises(OutOfStockError) as caught:
        item.hold(uuid4(), 3, LATER, CONTEXT)
    assert caught.value.lines == (Shortage(sku="SKU-1", requested=3, available=2),)
    assert item.collect_events() == []


def test_holding_twice_for_one_order_is_refused():
    item = stocked()
    order_id = uuid4()
    item.hold(order_id, 1, LATER, CONTEXT)
    with pytest.raises(InvalidStateError):
        item.hold(order_id, 1, LATER, CONTEXT)


def test_a_hold_needs_a_timezone_aware_expiry():
    with pytest.raises(InvalidCommandError):
        stocked().hold(uuid4(), 1, datetime(2030, 1, 1), CONTEXT)  # noqa: DTZ001


def test_committing_drops_on_hand_and_reserved_by_the_held_quantity():
    item = stocked(on_hand=10)
    order_id = uuid4()
    item.hold(order_id, 4, LATER, CONTEXT)
    assert item.commit(order_id, CONTEXT) is True
    assert (item.on_hand, item.reserved, item.available, item.holds) == (6, 0, 6, {})


def test_releasing_returns_the_held_units_to_available():
    item = stocked(on_hand=10)
    order_id = uuid4()
    item.hold(order_id, 4, LATER, CONTEXT)
    assert item.release(order_id, "cancelled", CONTEXT) is True
    assert (item.on_hand, item.reserved, item.available) == (10, 0, 10)
    released = item.collect_events()[-1]
    assert isinstance(released, InventoryItem.StockReleased)
    assert (released.quantity, released.reason) == (4, "cancelled")


def test_commit_or_release_without_a_hold_is_a_no_op_returning_false():
    item = stocked()
    item.collect_events()
    assert item.commit(uuid4(), CONTEXT) is False
    assert item.release(uuid4(), "expired", CONTEXT) is False
    assert item.collect_events() == []


def test_commit_after_release_is_a_no_op():
    item = stocked(on_hand=10)
    order_id = uuid4()
    item.hold(order_id, 4, LATER, CONTEXT)
    item.release(order_id, "expired", CONTEXT)
    assert item.commit(order_id, CONTEXT) is False
    assert item.on_hand == 10


def test_every_event_carries_the_merchant_and_the_audit_metadata():
    merchant_id = uuid4()
    context = CommandContext(actor="api_key:k9", request_id="req-9", causation_id="evt_1")
    item = InventoryItem.register(merchant_id, "SKU-1", context)
    item.receive(1, None, context)
    for event in item.collect_events():
        assert event.merchant_id == merchant_id  # type: ignore[attr-defined]
        assert event.metadata == {  # type: ignore[attr-defined]
            "actor": "api_key:k9",
            "request_id": "req-9",
            "causation_id": "evt_1",
        }


def test_level_is_a_frozen_view_of_the_item():
    item = stocked(on_hand=3)
    level = item.level()
    item.receive(1, None, CONTEXT)
    assert (level.sku, level.on_hand, level.available) == ("SKU-1", 3, 3)
    assert level.updated_at <= item.updated_at
    with pytest.raises(AttributeError):
        level.on_hand = 9  # type: ignore[misc]


def test_events_are_named_in_the_past_tense_under_the_aggregate():
    item = stocked(on_hand=5)
    order_id = uuid4()
    item.adjust(-1, "count", CONTEXT)
    item.hold(order_id, 1, LATER + timedelta(days=1), CONTEXT)
    item.commit(order_id, CONTEXT)
    assert event_names(item) == [
        "Registered",
        "StockReceived",
        "StockAdjusted",
        "StockHeld",
        "StockCommitted",
    ]
