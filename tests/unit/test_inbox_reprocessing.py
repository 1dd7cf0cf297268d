"""Why the inbox may apply a row again: re-applying stored facts records nothing new.

The inbox worker marks a row processed after its events are committed, not in the same
transaction, so a crash in between re-applies the row. These tests run what the worker
runs — the stored bodies parsed by the edge's parser, applied as ``ApplyGatewayEvent``
through a group committer — on the in-memory store.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest

from adapters.gateways import parse_delivery
from domain.application import Daybook
from domain.commands import ApplyGatewayEvent, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.gateway import GatewayEvent, payment_id
from domain.groupcommit import GroupCommitter
from domain.money import Money
from domain.orders import OrderLine
from tests.integration.webhook_senders import VARIANTS, PaymentStory

MERCHANT = uuid4()
SKU = "INBOX-SKU"
CONTEXT = CommandContext(actor="gateway:test", request_id="1", causation_id="evt")


@pytest.fixture
def daybook() -> Iterator[Daybook]:
    app = Daybook(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


def _shop(daybook: Daybook, count: int) -> list[PaymentStory]:
    merchant = {"merchant_id": str(MERCHANT), "webhook_secrets": {"stripe": "whsec_x", "standard": "whsec_eHh4eA=="}}
    daybook.execute(ReceiveStock(CONTEXT, MERCHANT, SKU, 10 * count))
    stories = []
    for index in range(count):
        order_id = uuid4()
        line = OrderLine(SKU, 1, Money(1_000 + index, "EUR"))
        daybook.execute(PlaceOrder(CONTEXT, MERCHANT, order_id=order_id, lines=[line], currency="EUR"))
        gateway = "stripe" if index % 2 == 0 else "standard"
        stories.append(PaymentStory(merchant, gateway, str(order_id), 1_000 + index, index))
    return stories


def _facts(story: PaymentStory) -> list[GatewayEvent]:
    facts: list[GatewayEvent] = []
    for delivery in story.deliveries:
        headers = {k.lower(): v for k, v in delivery.headers.items()}
        parsed = parse_delivery(story.gateway, delivery.body, headers.get("webhook-id"))
        assert isinstance(parsed, list)
        facts.extend(parsed)
    return facts


def _apply(committer: GroupCommitter, facts: list[GatewayEvent]) -> None:
    futures = [committer.submit(ApplyGatewayEvent(CONTEXT, MERCHANT, fact)) for fact in facts]
    for future in futures:
        future.result(timeout=10)


def _state(daybook: Daybook, stories: list[PaymentStory]) -> list[Any]:
    state: list[Any] = []
    for story in stories:
        payment = daybook.get_payment(MERCHANT, payment_id(MERCHANT, story.gateway, story.gateway_ref))
        order = daybook.get_order(MERCHANT, UUID(story.order_id))
        state.append((payment.status, payment.amount_captured, payment.amount_refunded, payment.refunds))
        state.append((order.status, order.amount_captured, order.amount_refunded, order.payment_ids))
    level = daybook.get_inventory_level(MERCHANT, SKU)
    state.append((level.on_hand, level.reserved))
    return state


def test_applying_every_stored_fact_again_in_any_order_records_nothing_new(daybook: Daybook) -> None:
    stories = _shop(daybook, 2 * VARIANTS)
    facts = [fact for story in stories for fact in _facts(story)]
    with GroupCommitter(daybook, name="inbox-test") as committer:
        _apply(committer, facts)
        position = daybook.recorder.max_notification_id()
        state = _state(daybook, stories)
        again = facts * 2
        random.Random(7).shuffle(again)
        _apply(committer, again)
    assert daybook.recorder.max_notification_id() == position
    assert _state(daybook, stories) == state


@pytest.mark.parametrize("seed", range(5))
def test_facts_delivered_in_any_order_and_repeated_end_as_one_in_order_delivery(seed: int) -> None:
    in_order = Daybook(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    shuffled = Daybook(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    stories = _shop(in_order, 2 * VARIANTS)
    # The same shop in the second store: same stock, same orders.
    shuffled.execute(ReceiveStock(CONTEXT, MERCHANT, SKU, 10 * len(stories)))
    for story in stories:
        order = in_order.get_order(MERCHANT, UUID(story.order_id))
        shuffled.execute(PlaceOrder(CONTEXT, MERCHANT, order_id=order.id, lines=list(order.lines), currency="EUR"))
    facts = [fact for story in stories for fact in _facts(story)]
    for fact in facts:
        in_order.execute(ApplyGatewayEvent(CONTEXT, MERCHANT, fact))
    delivered = facts * 3
    random.Random(seed).shuffle(delivered)
    with GroupCommitter(shuffled, name="shuffled") as committer:
        _apply(committer, delivered)
    assert _state(shuffled, stories) == _state(in_order, stories)


def test_a_refund_listed_again_by_a_later_charge_refunded_event_counts_once(daybook: Daybook) -> None:
    stories = _shop(daybook, VARIANTS)
    story = stories[4]  # variant 4, stripe: refund A reported by two distinct events
    assert story.gateway == "stripe"
    with GroupCommitter(daybook, name="refund-once") as committer:
        _apply(committer, _facts(story))
    payment = daybook.get_payment(MERCHANT, payment_id(MERCHANT, story.gateway, story.gateway_ref))
    assert payment.refunds == {story.refund_a[0]: story.refund_a[1]}
    assert payment.amount_refunded == story.refund_a[1]
    refunded = [event for event in daybook.history(payment.id) if type(event).__name__ == "Refunded"]
    assert len(refunded) == 1
