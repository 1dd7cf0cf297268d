"""The msgspec mapper: every Daybook event round-trips; older stored forms still read."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from adapters.event_store import MsgspecMapper
from domain.application import Daybook
from domain.commands import AdjustStock, ApplyGatewayEvent, CancelOrder, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.events import DaybookEvent
from domain.gateway import GatewayEvent, GatewayEventKind, payment_id
from domain.inventory import InventoryItem, inventory_item_id
from domain.money import Money
from domain.orders import OrderLine

CONTEXT = CommandContext(actor="api_key:k1", request_id="req-1", causation_id="evt_1")


@pytest.fixture
def app() -> Daybook:
    return Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"})


@pytest.fixture
def mapper(app: Daybook) -> MsgspecMapper:
    return MsgspecMapper(transcoder=app.mapper.transcoder)


def _every_kind_of_event(app: Daybook) -> list[DaybookEvent]:
    merchant_id = uuid4()
    app.execute(ReceiveStock(CONTEXT, merchant_id, "SKU-1", 10, reference="po-7"))
    app.execute(AdjustStock(CONTEXT, merchant_id, "SKU-1", -1, "damaged"))
    paid, cancelled = uuid4(), uuid4()
    line = [OrderLine("SKU-1", 2, Money(250, "EUR"))]
    app.execute(PlaceOrder(CONTEXT, merchant_id, order_id=paid, lines=line, currency="EUR", customer_ref="c-1"))
    app.execute(PlaceOrder(CONTEXT, merchant_id, order_id=cancelled, lines=line, currency="EUR"))
    app.execute(CancelOrder(CONTEXT, merchant_id, cancelled))
    facts = [
        (GatewayEventKind.AUTHORIZED, 500, None),
        (GatewayEventKind.CAPTURED, 500, None),
        (GatewayEventKind.REFUNDED, 100, "re_1"),
        (GatewayEventKind.DISPUTED, 400, None),
    ]
    for kind, amount, refund_id in facts:
        fact = GatewayEvent(kind, "stripe", "pi_1", f"evt_{kind}", paid, amount, "EUR", refund_id)
        app.execute(ApplyGatewayEvent(CONTEXT, merchant_id, fact))
    stray = GatewayEvent(GatewayEventKind.CAPTURED, "stripe", "pi_2", "evt_x", None, 10, "USD")
    app.execute(ApplyGatewayEvent(CONTEXT, merchant_id, stray))
    streams: list[UUID] = [
        inventory_item_id(merchant_id, "SKU-1"),
        paid,
        cancelled,
        payment_id(merchant_id, "stripe", "pi_1"),
        payment_id(merchant_id, "stripe", "pi_2"),
    ]
    return [event for stream in streams for event in app.history(stream)]


def test_every_event_round_trips_through_the_msgspec_mapper(app: Daybook, mapper: MsgspecMapper) -> None:
    events = _every_kind_of_event(app)
    kinds = {type(event).__qualname__ for event in events}
    assert len(kinds) >= 15, kinds
    for event in events:
        back = mapper.to_domain_event(mapper.to_stored_event(event))
        assert type(back) is type(event)
        assert vars(back) == vars(event), type(event).__qualname__


def test_events_stored_by_the_library_mapper_still_read(app: Daybook, mapper: MsgspecMapper) -> None:
    for event in _every_kind_of_event(app):
        assert vars(mapper.to_domain_event(app.mapper.to_stored_event(event))) == vars(event)


def test_a_v1_stock_received_in_plain_json_is_upcast(mapper: MsgspecMapper) -> None:
    merchant_id = uuid4()
    state = (
        '{"timestamp":"2024-05-01T10:00:00+00:00",'
        f'"merchant_id":"{merchant_id}",'
        '"metadata":{"actor":"api_key:old","request_id":"req-old"},"quantity":4}'
    ).encode()
    stored = StoredEvent(inventory_item_id(merchant_id, "A"), 3, "domain.inventory:InventoryItem.StockReceived", state)
    event = mapper.to_domain_event(stored)
    assert isinstance(event, InventoryItem.StockReceived)
    assert (event.quantity, event.reference, event.merchant_id) == (4, None, merchant_id)
    assert mapper.to_stored_event(event).state.endswith(b'"class_version":2}')


def test_an_inventory_stream_stored_under_the_old_module_topics_still_replays(mapper: MsgspecMapper) -> None:
    """Before ``domain.inventory`` became a package, every event named its class under
    ``domain.inventory:`` and the creation event named the aggregate class the same way."""
    merchant_id = uuid4()
    item = InventoryItem.register(merchant_id, "OLD-1", CONTEXT)
    item.receive(5, "po-1", CONTEXT)
    item.adjust(-2, "count", CONTEXT)
    assert type(item).__module__ == "domain.inventory.aggregate"
    stored = []
    for event in item.collect_events():
        current = mapper.to_stored_event(event)
        old_topic = current.topic.replace("domain.inventory.aggregate:", "domain.inventory:")
        state = current.state.replace(b"domain.inventory.aggregate:", b"domain.inventory:")
        stored.append(StoredEvent(current.originator_id, current.originator_version, old_topic, state))
    assert stored[0].topic == "domain.inventory:InventoryItem.Registered"
    assert b'"originator_topic":"domain.inventory:InventoryItem"' in stored[0].state
    replayed = None
    for stored_event in stored:
        replayed = mapper.to_domain_event(stored_event).mutate(replayed)  # type: ignore[attr-defined]
    assert isinstance(replayed, InventoryItem)
    assert (replayed.sku, replayed.on_hand, replayed.version) == ("OLD-1", 3, 3)
