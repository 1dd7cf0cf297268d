"""The Daybook application: atomic commands, replay at an instant, versioned events."""

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from domain.application import Daybook, RepositoryUnitOfWork
from domain.commands import AdjustStock, ApplyGatewayEvent, CancelOrder, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.errors import InventoryItemNotFoundError, OutOfStockError, PaymentNotFoundError
from domain.events import event_data, event_metadata, event_type, format_time, stream_type
from domain.gateway import GatewayEvent, GatewayEventKind
from domain.inventory import InventoryItem, inventory_item_id
from domain.money import Money
from domain.orders import Order, OrderLine, OrderStatus
from domain.payments import Payment
from domain.unit_of_work import AggregateMissingError

CONTEXT = CommandContext(actor="api_key:k1", request_id="req-1")


@pytest.fixture
def app() -> Daybook:
    return Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"})


@pytest.fixture
def merchant_id() -> UUID:
    return uuid4()


def place(app: Daybook, merchant_id: UUID, sku: str, quantity: int) -> UUID:
    order_id = uuid4()
    line = OrderLine(sku, quantity, Money(100, "EUR"))
    app.execute(PlaceOrder(CONTEXT, merchant_id, order_id=order_id, lines=[line], currency="EUR"))
    return order_id


def test_the_application_is_named_daybook_so_its_table_is_daybook_events():
    assert Daybook.name == "Daybook"


def test_a_command_saves_every_aggregate_it_changed_in_one_save_call(
    app: Daybook, merchant_id: UUID, monkeypatch: pytest.MonkeyPatch
):
    app.execute(ReceiveStock(CONTEXT, merchant_id, "A", 5))
    app.execute(ReceiveStock(CONTEXT, merchant_id, "B", 5))
    calls: list[tuple[Any, ...]] = []
    original = app.save

    def spy(*aggregates: Any, **kwargs: Any) -> Any:
        calls.append(aggregates)
        return original(*aggregates, **kwargs)

    monkeypatch.setattr(app, "save", spy)
    lines = (OrderLine("A", 1, Money(1, "EUR")), OrderLine("B", 2, Money(1, "EUR")))
    order_id = uuid4()
    app.execute(PlaceOrder(CONTEXT, merchant_id, order_id, lines, "EUR"))
    assert len(calls) == 1
    assert [type(aggregate).__name__ for aggregate in calls[0]] == [
        "InventoryItem",
        "InventoryItem",
        "Order",
    ]


def test_a_refused_command_saves_nothing(app: Daybook, merchant_id: UUID):
    app.execute(ReceiveStock(CONTEXT, merchant_id, "A", 1))
    position = app.recorder.max_notification_id()
    with pytest.raises(OutOfStockError):
        place(app, merchant_id, "A", 2)
    assert app.recorder.max_notification_id() == position


def test_execute_recorded_returns_the_position_of_the_last_stored_event(app: Daybook, merchant_id: UUID):
    executed = app.execute_recorded(ReceiveStock(CONTEXT, merchant_id, "A", 3))
    assert executed.result.on_hand == 3
    assert executed.position == app.recorder.max_notification_id() == 2


def test_a_command_that_changes_nothing_has_no_position(app: Daybook, merchant_id: UUID):
    order_id = place_after_stock(app, merchant_id)
    app.execute(CancelOrder(CONTEXT, merchant_id, order_id))

    def cancel_again(uow: Any) -> None:
        order = uow.get(order_id, Order)
        order.cancel(CONTEXT)

    assert app.execute_recorded(cancel_again).position is None


def place_after_stock(app: Daybook, merchant_id: UUID) -> UUID:
    app.execute(ReceiveStock(CONTEXT, merchant_id, "A", 5))
    return place(app, merchant_id, "A", 1)


def test_the_unit_of_work_returns_the_same_object_for_the_same_id(app: Daybook, merchant_id: UUID):
    app.execute(ReceiveStock(CONTEXT, merchant_id, "A", 5))
    uow = RepositoryUnitOfWork(app.repository)
    item_id = inventory_item_id(merchant_id, "A")
    first = uow.find(item_id, InventoryItem)
    assert first is not None
    assert uow.get(item_id, InventoryItem) is first


def test_the_unit_of_work_finds_nothing_for_an_unknown_id_and_get_raises(app: Daybook):
    uow = RepositoryUnitOfWork(app.repository)
    missing = uuid4()
    assert uow.find(missing, Order) is None
    with pytest.raises(AggregateMissingError):
        uow.get(missing, Order)
    assert uow.touched == []


def test_the_unit_of_work_refuses_an_aggregate_of_another_class(app: Daybook, merchant_id: UUID):
    app.execute(ReceiveStock(CONTEXT, merchant_id, "A", 5))
    uow = RepositoryUnitOfWork(app.repository)
    with pytest.raises(TypeError):
        uow.find(inventory_item_id(merchant_id, "A"), Order)


def test_the_unit_of_work_lists_touched_aggregates_in_first_touch_order(app: Daybook, merchant_id: UUID):
    app.execute(ReceiveStock(CONTEXT, merchant_id, "B", 5))
    app.execute(ReceiveStock(CONTEXT, merchant_id, "A", 5))
    uow = RepositoryUnitOfWork(app.repository)
    a = uow.get(inventory_item_id(merchant_id, "A"), InventoryItem)
    b = uow.get(inventory_item_id(merchant_id, "B"), InventoryItem)
    created = InventoryItem.register(merchant_id, "C", CONTEXT)
    uow.add(created)
    uow.get(inventory_item_id(merchant_id, "A"), InventoryItem)
    assert uow.touched == [a, b, created]
    assert uow.changed == [created]


def test_an_aggregate_loaded_from_its_events_equals_the_live_one(app: Daybook, merchant_id: UUID):
    order_id = place_after_stock(app, merchant_id)
    live = RepositoryUnitOfWork(app.repository).get(order_id, Order)
    assert app.repository.get(order_id) == live
    assert app.replay(order_id) == live


def test_an_inventory_level_can_be_read_as_it_was_at_a_past_instant(app: Daybook, merchant_id: UUID):
    before_anything = datetime.now(UTC)
    app.execute(ReceiveStock(CONTEXT, merchant_id, "A", 5))
    after_receipt = datetime.now(UTC)
    place(app, merchant_id, "A", 2)
    assert app.get_inventory_level(merchant_id, "A", as_of=after_receipt).reserved == 0
    assert app.get_inventory_level(merchant_id, "A").reserved == 2
    with pytest.raises(InventoryItemNotFoundError):
        app.get_inventory_level(merchant_id, "A", as_of=before_anything)


def test_an_order_can_be_read_as_it_was_before_it_was_paid(app: Daybook, merchant_id: UUID):
    order_id = place_after_stock(app, merchant_id)
    before_payment = datetime.now(UTC)
    capture = GatewayEvent(GatewayEventKind.CAPTURED, "stripe", "pi_1", "evt_1", order_id, 100, "EUR")
    outcome = app.execute(ApplyGatewayEvent(CONTEXT, merchant_id, capture))
    assert app.get_order(merchant_id, order_id).status is OrderStatus.PAID
    assert app.get_order(merchant_id, order_id, as_of=before_payment).status is OrderStatus.RESERVED
    assert app.get_payment(merchant_id, outcome.payment.id).amount_captured == 100
    with pytest.raises(PaymentNotFoundError):
        app.get_payment(merchant_id, outcome.payment.id, as_of=before_payment)
    with pytest.raises(PaymentNotFoundError):
        app.get_payment(uuid4(), outcome.payment.id)
    assert isinstance(app.replay(outcome.payment.id), Payment)


def test_an_unknown_sku_has_no_level_and_cannot_be_adjusted(app: Daybook, merchant_id: UUID):
    with pytest.raises(InventoryItemNotFoundError):
        app.get_inventory_level(merchant_id, "NOPE")
    with pytest.raises(InventoryItemNotFoundError) as caught:
        app.execute(AdjustStock(CONTEXT, merchant_id, "NOPE", 5, "count"))
    assert caught.value.sku == "NOPE"


def test_a_stock_received_event_stored_as_v1_is_upcast_with_no_reference(app: Daybook, merchant_id: UUID):
    item_id = inventory_item_id(merchant_id, "A")
    app.execute(ReceiveStock(CONTEXT, merchant_id, "A", 1, reference="po-1"))
    v1_state = (
        '{"timestamp":{"_type_":"datetime_iso","_data_":"2024-05-01T10:00:00+00:00"},'
        f'"merchant_id":{{"_type_":"uuid_hex","_data_":"{merchant_id.hex}"}},'
        '"metadata":{"actor":"api_key:old","request_id":"req-old"},"quantity":4}'
    ).encode()
    stored = StoredEvent(
        originator_id=item_id,
        originator_version=3,
        topic="domain.inventory:InventoryItem.StockReceived",
        state=v1_state,
    )
    event = app.mapper.to_domain_event(stored)
    assert isinstance(event, InventoryItem.StockReceived)
    assert (event.quantity, event.reference) == (4, None)
    app.recorder.insert_events([stored])
    assert app.get_inventory_level(merchant_id, "A").on_hand == 5
    assert app.mapper.to_stored_event(event).state.endswith(b'"class_version":2}')


def test_event_type_and_stream_type_name_the_aggregate_and_the_event(app: Daybook, merchant_id: UUID):
    order_id = place_after_stock(app, merchant_id)
    placed = app.history(order_id)[0]
    assert event_type(placed) == "Order.Placed"
    assert stream_type(placed) == "Order"
    assert event_metadata(placed) == {"actor": "api_key:k1", "request_id": "req-1"}


def test_event_data_holds_the_events_own_fields_as_json_values(app: Daybook, merchant_id: UUID):
    order_id = place_after_stock(app, merchant_id)
    placed = app.history(order_id)[0]
    data = event_data(placed)
    assert data["merchant_id"] == str(merchant_id)
    assert data["lines"] == [{"sku": "A", "quantity": 1, "unit_price": 100}]
    assert data["amount_total"] == 100
    assert isinstance(data["hold_expires_at"], str)
    for hidden in (
        "originator_id",
        "originator_version",
        "timestamp",
        "metadata",
        "originator_topic",
    ):
        assert hidden not in data


def test_times_are_formatted_as_rfc3339_utc():
    moment = datetime(2025, 1, 31, 9, 30, tzinfo=UTC)
    assert format_time(moment) == "2025-01-31T09:30:00.000000Z"
    with pytest.raises(ValueError, match="naive"):
        format_time(datetime(2025, 1, 31))  # noqa: DTZ001


def test_every_event_of_one_command_carries_one_timestamp(app: Daybook, merchant_id: UUID):
    app.execute(ReceiveStock(CONTEXT, merchant_id, "SKU-T", 5))
    order_id = place(app, merchant_id, "SKU-T", 2)
    placed = app.history(order_id)[0]
    held = app.history(inventory_item_id(merchant_id, "SKU-T"))[-1]
    assert type(held).__qualname__ == "InventoryItem.StockHeld"
    assert placed.timestamp == held.timestamp
    # So a level read as of the instant the order was created shows its hold.
    level = app.get_inventory_level(merchant_id, "SKU-T", as_of=placed.timestamp)
    assert level.reserved == 2


def test_a_hold_expires_exactly_hold_seconds_after_the_order_was_placed(app: Daybook, merchant_id: UUID):
    app.execute(ReceiveStock(CONTEXT, merchant_id, "SKU-E", 5))
    line = OrderLine("SKU-E", 1, Money(100, "EUR"))
    order = app.execute(
        PlaceOrder(CONTEXT, merchant_id, order_id=uuid4(), lines=[line], currency="EUR", hold_seconds=60)
    )
    assert (order.hold_expires_at - order.created_at).total_seconds() == 60
