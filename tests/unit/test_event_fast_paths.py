"""Daybook's own paths for creating aggregates, triggering and storing events build what the library's build."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Aggregate, BaseAggregate, CanInitAggregate
from eventsourcing.persistence import EventStore, StoredEvent
from eventsourcing.utils import get_topic

from adapters.event_store import MsgspecMapper
from domain.application import Daybook
from domain.audit.log import AuditLog
from domain.commands import ApplyGatewayEvent, CancelOrder, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.events import DaybookAggregate, DaybookCreated
from domain.gateway import GatewayEvent, GatewayEventKind, payment_id
from domain.idempotency import IdempotencyMarker
from domain.inventory import InventoryItem, inventory_item_id
from domain.money import Money
from domain.orders import Order, OrderLine

CONTEXT = CommandContext(actor="api_key:k1", request_id="req-1", causation_id="evt_1").stamped()
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def mapper() -> MsgspecMapper:
    return MsgspecMapper(transcoder=Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"}).mapper.transcoder)


class Ticket(DaybookAggregate):
    """An aggregate whose ``__init__`` takes its id: built by the library's path."""

    class Issued(DaybookCreated):
        title: str

    def __init__(self, id: UUID, merchant_id: UUID, title: str) -> None:
        self.merchant_id = merchant_id
        self.seen_id = id
        self.title = title


def _streams(app: Daybook) -> list[list[Any]]:
    merchant_id = uuid4()
    app.execute(ReceiveStock(CONTEXT, merchant_id, "SKU-1", 10, reference="po-7"))
    paid, cancelled = uuid4(), uuid4()
    line = [OrderLine("SKU-1", 2, Money(250, "EUR"))]
    app.execute(PlaceOrder(CONTEXT, merchant_id, order_id=paid, lines=line, currency="EUR", customer_ref="c-1"))
    app.execute(PlaceOrder(CONTEXT, merchant_id, order_id=cancelled, lines=line, currency="EUR"))
    app.execute(CancelOrder(CONTEXT, merchant_id, cancelled))
    for kind in (GatewayEventKind.AUTHORIZED, GatewayEventKind.CAPTURED):
        fact = GatewayEvent(kind, "stripe", "pi_1", f"evt_{kind}", paid, 500, "EUR")
        app.execute(ApplyGatewayEvent(CONTEXT, merchant_id, fact))
    ids = [inventory_item_id(merchant_id, "SKU-1"), paid, cancelled, payment_id(merchant_id, "stripe", "pi_1")]
    streams = [list(app.history(stream)) for stream in ids]
    streams.append(list(AuditLog.opened(merchant_id, CONTEXT).pending_events))
    marker = IdempotencyMarker.record(merchant_id, "key-1", "0" * 64, {"status": 201}, CONTEXT)
    streams.append(list(marker.pending_events))
    return streams


def _library_replay(events: list[Any]) -> Any:
    aggregate = CanInitAggregate.mutate(events[0], None)
    for event in events[1:]:
        aggregate = event.mutate(aggregate)
    return aggregate


def test_every_kind_of_aggregate_replays_as_the_library_constructs_it() -> None:
    streams = _streams(Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"}))
    kinds = {type(events[0]).__qualname__ for events in streams}
    assert len(kinds) == 5, kinds
    for events in streams:
        ours: Any = None
        for event in events:
            ours = event.mutate(ours)
        library = _library_replay(events)
        assert type(ours) is type(library)
        assert vars(ours) == vars(library), type(ours).__qualname__


def test_an_order_is_created_with_the_event_and_state_the_library_creates(mapper: MsgspecMapper) -> None:
    order_id, merchant_id = uuid4(), uuid4()
    fields: dict[str, Any] = {
        "merchant_id": merchant_id,
        "metadata": CONTEXT.metadata(),
        "timestamp": NOW,
        "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": 250}],
        "currency": "EUR",
        "customer_ref": None,
        "hold_expires_at": NOW + timedelta(minutes=15),
        "amount_total": 500,
    }
    ours = Order._create(Order.Placed, id=order_id, **fields)
    library = BaseAggregate._create.__func__(Order, Order.Placed, id=order_id, **fields)  # type: ignore[attr-defined]
    assert vars(ours) == vars(library)
    assert vars(ours.pending_events[0]) == vars(library.pending_events[0])
    assert mapper.to_stored_event(ours.pending_events[0]) == mapper.to_stored_event(library.pending_events[0])


def test_a_created_event_without_a_timestamp_is_stamped_by_the_library() -> None:
    fields: dict[str, Any] = {"merchant_id": uuid4(), "metadata": {}, "sku": "SKU-1"}
    item = InventoryItem._create(InventoryItem.Registered, id=uuid4(), **fields)
    assert item.created_on.tzinfo is not None
    assert item.pending_events[0].timestamp == item.created_on


def test_a_creation_with_a_missing_field_is_refused_as_the_library_refuses_it() -> None:
    with pytest.raises(TypeError, match=r"Unable to construct .InventoryItem\.Registered. event"):
        InventoryItem._create(InventoryItem.Registered, id=uuid4(), merchant_id=uuid4(), metadata={}, timestamp=NOW)


def test_a_recorded_event_is_the_event_and_state_the_library_triggers(mapper: MsgspecMapper) -> None:
    merchant_id, order_id = uuid4(), uuid4()
    ours, library = (InventoryItem.register(merchant_id, "SKU-1", CONTEXT) for _ in range(2))
    for item in (ours, library):
        item.receive(5, None, CONTEXT)
    expires_at = NOW + timedelta(minutes=15)
    ours.hold(order_id, 2, expires_at, CONTEXT)
    library.trigger_event(
        InventoryItem.StockHeld,
        timestamp=CONTEXT.occurred_at,
        merchant_id=merchant_id,
        metadata=CONTEXT.metadata(),
        order_id=order_id,
        quantity=2,
        expires_at=expires_at,
    )
    assert vars(ours) == vars(library)
    assert mapper.to_stored_event(ours.pending_events[-1]) == mapper.to_stored_event(library.pending_events[-1])


def test_a_recorded_event_with_a_missing_field_is_refused_and_changes_nothing() -> None:
    item = InventoryItem.register(uuid4(), "SKU-1", CONTEXT)
    with pytest.raises(TypeError, match="Can't construct event"):
        item._record(InventoryItem.StockHeld, CONTEXT, quantity=1)
    assert item.version == 1
    assert len(item.pending_events) == 1


def test_an_unstamped_context_records_at_the_current_instant_as_the_library_does() -> None:
    item = InventoryItem.register(uuid4(), "SKU-1", CONTEXT)
    before = datetime.now(UTC)
    item.receive(3, None, CommandContext(actor="system:test", request_id="r"))
    assert item.modified_on >= before
    assert item.on_hand == 3


def test_an_aggregate_whose_init_takes_its_id_is_given_it() -> None:
    ticket_id, merchant_id = uuid4(), uuid4()
    ticket = Ticket._create(Ticket.Issued, id=ticket_id, merchant_id=merchant_id, metadata={}, timestamp=NOW, title="t")
    assert ticket.seen_id == ticket_id
    assert ticket.id == ticket_id
    replayed = _library_replay(list(ticket.collect_events()))
    assert vars(replayed) == vars(ticket)
    assert isinstance(ticket, Aggregate)


def test_an_event_whose_apply_step_fails_changes_neither_the_version_nor_the_pending_events() -> None:
    item = InventoryItem.register(uuid4(), "SKU-1", CONTEXT)
    with pytest.raises(KeyError):
        item._record(InventoryItem.StockCommitted, CONTEXT, order_id=uuid4(), quantity=1)
    assert item.version == 1
    assert len(item.pending_events) == 1
    assert item.modified_on == item.created_on


def test_a_recorded_event_moves_the_version_and_the_modification_time() -> None:
    item = InventoryItem.register(uuid4(), "SKU-1", CONTEXT)
    later = CommandContext(actor="system:test", request_id="r", occurred_at=NOW + timedelta(days=1))
    item.receive(2, "po-1", later)
    assert item.version == 2
    assert item.modified_on == later.occurred_at
    assert item.pending_events[-1].originator_version == 2


def test_a_stored_event_is_the_one_the_library_dataclass_builds(mapper: MsgspecMapper) -> None:
    item = InventoryItem.register(uuid4(), "SKU-1", CONTEXT)
    item.receive(3, "po-1", CONTEXT)
    for event in item.pending_events:
        stored = mapper.to_stored_event(event)
        expected = StoredEvent(event.originator_id, event.originator_version, get_topic(type(event)), stored.state)
        assert stored == expected
        assert vars(stored) == vars(expected)
        assert hash(stored) == hash(expected)
        assert repr(stored) == repr(expected)


def test_a_save_answers_the_recordings_the_library_event_store_builds() -> None:
    ours = Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    library = Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    items = [InventoryItem.register(uuid4(), f"SKU-{index}", CONTEXT) for index in range(3)]
    events = [event for item in items for event in item.pending_events]
    recordings = ours.save(*items)
    expected = EventStore(library.mapper, library.recorder).put(events)
    assert recordings == expected
    assert [vars(recording.notification) for recording in recordings] == [
        vars(recording.notification) for recording in expected
    ]
    assert [recording.domain_event for recording in recordings] == events
