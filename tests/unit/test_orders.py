"""Orders through the Daybook application: holds, payment, refunds, disputes, expiry."""

from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from domain.application import Daybook
from domain.commands import ApplyGatewayEvent, CancelOrder, ExpireOrder, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.errors import (
    CurrencyMismatchError,
    InvalidCommandError,
    InvalidStateError,
    OrderAlreadyExistsError,
    OrderNotFoundError,
    OutOfStockError,
    Shortage,
)
from domain.gateway import GatewayEvent, GatewayEventKind, payment_id
from domain.groupcommit import GroupCommitter
from domain.money import Money
from domain.orders import Order, OrderLine, OrderStatus, OrderView, check_order_lines
from domain.payments import AnomalyKind

CONTEXT = CommandContext(actor="api_key:k1", request_id="req-1")
GATEWAY = CommandContext(actor="gateway:stripe", request_id="job-1", causation_id="evt")
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


class Shop:
    """One merchant on a fresh in-memory Daybook."""

    def __init__(self) -> None:
        self.app = Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"})
        self.merchant_id = uuid4()

    def stock(self, sku: str, quantity: int) -> None:
        self.app.execute(ReceiveStock(CONTEXT, self.merchant_id, sku, quantity))

    def level(self, sku: str) -> tuple[int, int, int]:
        level = self.app.get_inventory_level(self.merchant_id, sku)
        return level.on_hand, level.reserved, level.available

    def place(self, *lines: tuple[str, int, int], currency: str = "EUR", **options: object) -> OrderView:
        order_lines = [OrderLine(sku, quantity, Money(price, currency)) for sku, quantity, price in lines]
        return self.app.execute(
            PlaceOrder(
                CONTEXT,
                self.merchant_id,
                order_id=uuid4(),
                lines=order_lines,
                currency=currency,
                now=NOW,
                **options,  # type: ignore[arg-type]
            )
        )

    def fact(
        self,
        kind: GatewayEventKind,
        order_id: UUID | None,
        amount: int,
        *,
        ref: str = "pi_1",
        currency: str = "EUR",
        refund_id: str | None = None,
    ):
        event = GatewayEvent(kind, "stripe", ref, f"evt_{uuid4().hex}", order_id, amount, currency, refund_id)
        return self.app.execute(ApplyGatewayEvent(GATEWAY, self.merchant_id, event, now=NOW))

    def order(self, order_id: UUID) -> OrderView:
        return self.app.get_order(self.merchant_id, order_id)


@pytest.fixture
def shop() -> Shop:
    return Shop()


def test_placing_an_order_holds_stock_for_every_line_and_reserves_it(shop: Shop):
    shop.stock("A", 10)
    shop.stock("B", 5)
    order = shop.place(("A", 2, 500), ("B", 1, 1200), customer_ref="cust-1", hold_seconds=600)
    assert order.status is OrderStatus.RESERVED
    assert order.total == Money(2200, "EUR")
    assert order.hold_expires_at == NOW + timedelta(seconds=600)
    assert order.customer_ref == "cust-1"
    assert shop.level("A") == (10, 2, 8)
    assert shop.level("B") == (5, 1, 4)


def test_orders_of_equal_lines_in_two_currencies_keep_each_its_own_currency(shop: Shop):
    shop.stock("A", 10)
    in_euros = shop.place(("A", 1, 500))
    in_yen = shop.place(("A", 1, 500), currency="JPY")
    again_in_euros = shop.place(("A", 1, 500))
    assert in_euros.lines == again_in_euros.lines == (OrderLine("A", 1, Money(500, "EUR")),)
    assert in_yen.lines == (OrderLine("A", 1, Money(500, "JPY")),)
    assert (in_euros.total, in_yen.total) == (Money(500, "EUR"), Money(500, "JPY"))
    replayed = shop.app.get_order(shop.merchant_id, in_yen.id)
    assert (replayed.lines, replayed.total) == (in_yen.lines, in_yen.total)


def test_lines_of_one_sku_are_held_together_and_equal_prices_merged(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 2, 500), ("A", 3, 500), ("A", 1, 400))
    assert [(line.quantity, line.unit_price.amount) for line in order.lines] == [(5, 500), (1, 400)]
    assert order.total == Money(2900, "EUR")
    assert shop.level("A") == (10, 6, 4)


def test_out_of_stock_lists_every_short_line_and_holds_nothing(shop: Shop):
    shop.stock("A", 10)
    shop.stock("B", 1)
    before = shop.app.recorder.max_notification_id()
    with pytest.raises(OutOfStockError) as caught:
        shop.place(("A", 3, 100), ("B", 2, 100), ("C", 1, 100), ("B", 1, 100))
    assert caught.value.lines == (
        Shortage(sku="B", requested=3, available=1),
        Shortage(sku="C", requested=1, available=0),
    )
    assert shop.level("A") == (10, 0, 10)
    assert shop.app.recorder.max_notification_id() == before


def test_a_line_in_another_currency_is_refused_and_holds_nothing(shop: Shop):
    shop.stock("A", 10)
    lines = [OrderLine("A", 1, Money(100, "EUR")), OrderLine("A", 1, Money(100, "USD"))]
    with pytest.raises(CurrencyMismatchError):
        shop.app.execute(PlaceOrder(CONTEXT, shop.merchant_id, order_id=uuid4(), lines=lines, currency="EUR"))
    assert shop.level("A") == (10, 0, 10)


@pytest.mark.parametrize(
    ("lines", "options"),
    [
        ([], {}),
        ([("A", 1, 100)] * 101, {}),
        ([("A", 0, 100)], {}),
        ([("A", 10_001, 100)], {}),
        ([("bad sku", 1, 100)], {}),
        ([("A", 1, 100)], {"hold_seconds": 59}),
        ([("A", 1, 100)], {"hold_seconds": 86_401}),
        ([("A", 1, 100)], {"customer_ref": "x" * 256}),
    ],
)
def test_invalid_orders_are_refused(shop: Shop, lines: list[tuple[str, int, int]], options: dict[str, object]):
    shop.stock("A", 100_000)
    with pytest.raises(InvalidCommandError):
        shop.place(*lines, **options)
    assert shop.level("A") == (100_000, 0, 100_000)


def test_placing_an_order_with_a_taken_id_is_refused(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 1, 100))
    line = OrderLine("A", 1, Money(100, "EUR"))
    with pytest.raises(OrderAlreadyExistsError):
        shop.app.execute(PlaceOrder(CONTEXT, shop.merchant_id, order_id=order.id, lines=[line], currency="EUR"))
    assert shop.level("A") == (10, 1, 9)


def test_an_order_that_may_exist_run_again_after_its_stock_was_released_and_sold_is_already_placed(shop: Shop):
    shop.stock("A", 2)
    line = OrderLine("A", 2, Money(100, "EUR"))
    command = PlaceOrder(CONTEXT, shop.merchant_id, order_id=uuid4(), lines=[line], currency="EUR", may_exist=True)
    shop.app.execute(command)
    shop.app.execute(CancelOrder(CONTEXT, shop.merchant_id, command.order_id))
    shop.place(("A", 2, 100))
    with pytest.raises(OrderAlreadyExistsError):
        shop.app.execute(command)
    fresh = PlaceOrder(CONTEXT, shop.merchant_id, order_id=uuid4(), lines=[line], currency="EUR", may_exist=True)
    with pytest.raises(OutOfStockError):
        shop.app.execute(fresh)
    assert shop.level("A") == (2, 2, 0)


def test_cancelling_a_reserved_order_releases_its_stock(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 4, 100))
    cancelled = shop.app.execute(CancelOrder(CONTEXT, shop.merchant_id, order.id))
    assert cancelled.status is OrderStatus.CANCELLED
    assert shop.level("A") == (10, 0, 10)


def test_cancelling_twice_is_a_no_op(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 4, 100))
    first = shop.app.execute(CancelOrder(CONTEXT, shop.merchant_id, order.id))
    second = shop.app.execute(CancelOrder(CONTEXT, shop.merchant_id, order.id))
    assert second.version == first.version
    assert second.status is OrderStatus.CANCELLED


def test_cancelling_a_paid_order_is_an_invalid_state(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 1, 100))
    shop.fact(GatewayEventKind.CAPTURED, order.id, 100)
    with pytest.raises(InvalidStateError) as caught:
        shop.app.execute(CancelOrder(CONTEXT, shop.merchant_id, order.id))
    assert (caught.value.current_status, caught.value.action) == ("paid", "cancel")


def test_cancelling_an_expired_order_is_an_invalid_state(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 1, 100))
    shop.app.execute(ExpireOrder(CONTEXT, shop.merchant_id, order.id, now=NOW + timedelta(hours=1)))
    with pytest.raises(InvalidStateError):
        shop.app.execute(CancelOrder(CONTEXT, shop.merchant_id, order.id))


def test_another_merchants_order_is_not_found(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 1, 100))
    stranger = uuid4()
    with pytest.raises(OrderNotFoundError):
        shop.app.execute(CancelOrder(CONTEXT, stranger, order.id))
    with pytest.raises(OrderNotFoundError):
        shop.app.get_order(stranger, order.id)
    with pytest.raises(OrderNotFoundError):
        shop.app.execute(ExpireOrder(CONTEXT, shop.merchant_id, uuid4(), now=NOW))


def test_an_order_is_not_expired_before_its_hold_passes(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 3, 100), hold_seconds=900)
    result = shop.app.execute(ExpireOrder(CONTEXT, shop.merchant_id, order.id, now=NOW + timedelta(seconds=899)))
    assert result.expired is False
    assert result.order.status is OrderStatus.RESERVED
    assert shop.level("A") == (10, 3, 7)


def test_expiring_a_due_order_releases_its_stock_and_a_second_run_does_nothing(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 3, 100), hold_seconds=900)
    due = NOW + timedelta(seconds=900)
    first = shop.app.execute(ExpireOrder(CONTEXT, shop.merchant_id, order.id, now=due))
    second = shop.app.execute(ExpireOrder(CONTEXT, shop.merchant_id, order.id, now=due))
    assert (first.expired, second.expired) == (True, False)
    assert second.order.status is OrderStatus.EXPIRED
    assert second.order.version == first.order.version
    assert shop.level("A") == (10, 0, 10)


def test_expiring_a_paid_order_does_nothing(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 3, 100))
    shop.fact(GatewayEventKind.CAPTURED, order.id, 300)
    result = shop.app.execute(ExpireOrder(CONTEXT, shop.merchant_id, order.id, now=NOW + timedelta(days=2)))
    assert result.expired is False
    assert result.order.status is OrderStatus.PAID


def test_a_full_capture_pays_the_order_and_commits_its_stock(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 3, 100))
    outcome = shop.fact(GatewayEventKind.CAPTURED, order.id, 300)
    assert outcome.order is not None
    assert outcome.order.status is OrderStatus.PAID
    assert outcome.order.amount_captured == Money(300, "EUR")
    assert outcome.order.payment_ids == (payment_id(shop.merchant_id, "stripe", "pi_1"),)
    assert shop.level("A") == (7, 0, 7)


def test_a_capture_below_the_total_keeps_the_order_reserved(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 3, 100))
    outcome = shop.fact(GatewayEventKind.CAPTURED, order.id, 200)
    assert outcome.order is not None
    assert outcome.order.status is OrderStatus.RESERVED
    assert outcome.order.amount_captured == Money(200, "EUR")
    assert shop.level("A") == (10, 3, 7)


def test_captures_of_two_payments_together_reaching_the_total_pay_the_order(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 3, 100))
    shop.fact(GatewayEventKind.CAPTURED, order.id, 200, ref="pi_1")
    outcome = shop.fact(GatewayEventKind.CAPTURED, order.id, 100, ref="pi_2")
    assert outcome.order is not None
    assert outcome.order.status is OrderStatus.PAID
    assert len(outcome.order.payment_ids) == 2
    assert shop.level("A") == (7, 0, 7)


@pytest.mark.parametrize("kind", [GatewayEventKind.AUTHORIZED, GatewayEventKind.FAILED])
def test_a_zero_total_order_is_not_paid_by_an_authorization_or_a_failure(shop: Shop, kind: GatewayEventKind):
    shop.stock("A", 10)
    order = shop.place(("A", 2, 0))
    outcome = shop.fact(kind, order.id, 0)
    assert outcome.order is not None
    assert outcome.order.status is OrderStatus.RESERVED
    assert shop.level("A") == (10, 2, 8)


def test_a_zero_total_order_is_paid_by_a_capture(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 2, 0))
    shop.fact(GatewayEventKind.AUTHORIZED, order.id, 0)
    outcome = shop.fact(GatewayEventKind.CAPTURED, order.id, 0)
    assert outcome.order is not None
    assert outcome.order.status is OrderStatus.PAID
    assert shop.level("A") == (8, 0, 8)


def test_a_capture_for_an_expired_order_holds_stock_again_and_pays_it(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 3, 100))
    shop.app.execute(ExpireOrder(CONTEXT, shop.merchant_id, order.id, now=NOW + timedelta(days=1)))
    outcome = shop.fact(GatewayEventKind.CAPTURED, order.id, 300)
    assert outcome.order is not None
    assert outcome.order.status is OrderStatus.PAID
    assert shop.level("A") == (7, 0, 7)


def test_a_capture_for_a_cancelled_order_without_stock_is_paid_unfulfillable(shop: Shop):
    shop.stock("A", 3)
    order = shop.place(("A", 3, 100))
    shop.app.execute(CancelOrder(CONTEXT, shop.merchant_id, order.id))
    shop.place(("A", 2, 100))
    outcome = shop.fact(GatewayEventKind.CAPTURED, order.id, 300)
    assert outcome.order is not None
    assert outcome.order.status is OrderStatus.PAID_UNFULFILLABLE
    assert [anomaly.kind for anomaly in outcome.payment.anomalies] == [AnomalyKind.PAID_UNFULFILLABLE]
    assert shop.level("A") == (3, 2, 1)


def test_refunds_move_a_paid_order_to_partially_refunded_then_refunded_without_restock(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 2, 500))
    shop.fact(GatewayEventKind.CAPTURED, order.id, 1000)
    partial = shop.fact(GatewayEventKind.REFUNDED, order.id, 400, refund_id="re_1")
    assert partial.order is not None
    assert partial.order.status is OrderStatus.PARTIALLY_REFUNDED
    assert partial.order.amount_refunded == Money(400, "EUR")
    full = shop.fact(GatewayEventKind.REFUNDED, order.id, 600, refund_id="re_2")
    assert full.order is not None
    assert full.order.status is OrderStatus.REFUNDED
    assert shop.level("A") == (8, 0, 8)


def test_a_refund_that_failed_later_is_reversed_on_the_order_and_its_status_follows(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 1, 1000))
    shop.fact(GatewayEventKind.CAPTURED, order.id, 1000)
    shop.fact(GatewayEventKind.REFUNDED, order.id, 400, refund_id="re_1")
    shop.fact(GatewayEventKind.REFUNDED, order.id, 600, refund_id="re_2")
    assert shop.order(order.id).status is OrderStatus.REFUNDED
    shop.fact(GatewayEventKind.REFUND_REVERSED, order.id, 600, refund_id="re_2")
    assert shop.order(order.id).status is OrderStatus.PARTIALLY_REFUNDED
    assert shop.order(order.id).amount_refunded == Money(400, "EUR")
    outcome = shop.fact(GatewayEventKind.REFUND_REVERSED, order.id, 400, refund_id="re_1")
    assert outcome.order is not None
    assert (outcome.order.status, outcome.order.amount_refunded) == (OrderStatus.PAID, Money(0, "EUR"))
    assert shop.level("A") == (9, 0, 9)  # a refund never restocks, nor does its reversal


def test_a_refund_reversed_on_a_paid_unfulfillable_order_leaves_it_paid_unfulfillable(shop: Shop):
    shop.stock("A", 3)
    order = shop.place(("A", 3, 100))
    shop.app.execute(CancelOrder(CONTEXT, shop.merchant_id, order.id))
    shop.place(("A", 2, 100))
    shop.fact(GatewayEventKind.CAPTURED, order.id, 300)
    shop.fact(GatewayEventKind.REFUNDED, order.id, 300, refund_id="re_1")
    assert shop.order(order.id).status is OrderStatus.REFUNDED
    shop.fact(GatewayEventKind.REFUND_REVERSED, order.id, 300, refund_id="re_1")
    assert shop.order(order.id).status is OrderStatus.PAID_UNFULFILLABLE


def test_a_dispute_on_a_paid_order_marks_it_disputed_and_it_stays_disputed(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 2, 500))
    shop.fact(GatewayEventKind.CAPTURED, order.id, 1000)
    disputed = shop.fact(GatewayEventKind.DISPUTED, order.id, 1000)
    assert disputed.order is not None
    assert disputed.order.status is OrderStatus.DISPUTED
    refunded = shop.fact(GatewayEventKind.REFUNDED, order.id, 1000, refund_id="re_1")
    assert refunded.order is not None
    assert refunded.order.status is OrderStatus.DISPUTED
    assert refunded.order.amount_refunded == Money(1000, "EUR")


def test_a_dispute_reported_before_the_capture_applies_once_the_order_is_paid(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 2, 500))
    early = shop.fact(GatewayEventKind.DISPUTED, order.id, 1000)
    assert early.order is not None
    assert early.order.status is OrderStatus.RESERVED
    late = shop.fact(GatewayEventKind.CAPTURED, order.id, 1000)
    assert late.order is not None
    assert late.order.status is OrderStatus.DISPUTED
    assert shop.level("A") == (8, 0, 8)


def test_an_overpayment_is_counted_and_flagged_on_the_payment(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 1, 500))
    outcome = shop.fact(GatewayEventKind.CAPTURED, order.id, 700)
    assert outcome.order is not None
    assert outcome.order.status is OrderStatus.PAID
    assert outcome.order.amount_captured == Money(700, "EUR")
    assert [anomaly.kind for anomaly in outcome.payment.anomalies] == [AnomalyKind.OVERPAYMENT]


def test_a_payment_in_another_currency_is_linked_flagged_and_never_counted(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 1, 500))
    outcome = shop.fact(GatewayEventKind.CAPTURED, order.id, 500, currency="USD")
    assert outcome.order is not None
    assert outcome.order.status is OrderStatus.RESERVED
    assert outcome.order.amount_captured == Money(0, "EUR")
    assert outcome.order.payment_ids == (outcome.payment.id,)
    assert outcome.payment.currency == "USD"
    assert outcome.payment.amount_captured == 500
    assert [anomaly.kind for anomaly in outcome.payment.anomalies] == [AnomalyKind.CURRENCY_MISMATCH]


def test_a_payment_for_an_unknown_order_is_recorded_and_flagged(shop: Shop):
    outcome = shop.fact(GatewayEventKind.CAPTURED, uuid4(), 500)
    assert outcome.order is None
    assert outcome.payment.amount_captured == 500
    assert [anomaly.kind for anomaly in outcome.payment.anomalies] == [AnomalyKind.UNKNOWN_ORDER]


def test_a_fact_applied_without_views_records_the_same_and_answers_only_whether_it_changed(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 1, 100))
    capture = GatewayEvent(GatewayEventKind.CAPTURED, "stripe", "pi_1", "evt_1", order.id, 100, "EUR")
    first = shop.app.execute(ApplyGatewayEvent(GATEWAY, shop.merchant_id, capture, now=NOW, views=False))
    assert (first.payment, first.order, first.changed) == (None, None, True)
    assert shop.app.get_order(shop.merchant_id, order.id).status is OrderStatus.PAID
    assert shop.level("A") == (9, 0, 9)
    again = shop.app.execute(ApplyGatewayEvent(GATEWAY, shop.merchant_id, capture, now=NOW, views=False))
    assert (again.payment, again.order, again.changed) == (None, None, False)


def test_a_redelivered_capture_pays_an_order_that_was_unknown_at_first_delivery(shop: Shop):
    shop.stock("A", 10)
    order_id = uuid4()
    capture = GatewayEvent(GatewayEventKind.CAPTURED, "stripe", "pi_1", "evt_1", order_id, 100, "EUR")
    first = shop.app.execute(ApplyGatewayEvent(GATEWAY, shop.merchant_id, capture, now=NOW))
    assert first.order is None
    line = OrderLine("A", 1, Money(100, "EUR"))
    shop.app.execute(PlaceOrder(CONTEXT, shop.merchant_id, order_id=order_id, lines=[line], currency="EUR"))
    again = shop.app.execute(ApplyGatewayEvent(GATEWAY, shop.merchant_id, capture, now=NOW))
    assert again.changed is True
    assert again.order is not None
    assert again.order.status is OrderStatus.PAID
    assert shop.level("A") == (9, 0, 9)


def test_a_second_delivery_naming_another_order_never_pays_it_from_the_same_capture(shop: Shop):
    shop.stock("A", 10)
    lines = [OrderLine("A", 1, Money(500, "EUR"))]
    first, other = UUID("ffffffff-0000-4000-8000-000000000001"), UUID("00000000-0000-4000-8000-000000000002")
    for order_id in (first, other):  # the other order's id sorts first
        shop.app.execute(PlaceOrder(CONTEXT, shop.merchant_id, order_id=order_id, lines=lines, currency="EUR", now=NOW))
    shop.fact(GatewayEventKind.CAPTURED, first, 500)
    outcome = shop.fact(GatewayEventKind.CAPTURED, other, 500)
    assert outcome.payment.order_id == first
    assert outcome.order is not None
    assert outcome.order.id == first
    assert shop.order(first).status is OrderStatus.PAID
    assert shop.order(other).status is OrderStatus.RESERVED
    assert shop.order(other).payment_ids == ()
    assert AnomalyKind.ORDER_CONFLICT in {anomaly.kind for anomaly in outcome.payment.anomalies}
    assert shop.level("A") == (9, 1, 8)


def test_a_payment_naming_another_merchants_order_does_not_touch_it(shop: Shop):
    shop.stock("A", 10)
    order = shop.place(("A", 1, 500))
    event = GatewayEvent(GatewayEventKind.CAPTURED, "stripe", "pi_x", "evt_x", order.id, 500, "EUR")
    outcome = shop.app.execute(ApplyGatewayEvent(GATEWAY, uuid4(), event))
    assert outcome.order is None
    assert shop.order(order.id).status is OrderStatus.RESERVED


def test_marking_an_order_paid_below_its_total_is_an_invalid_state():
    line = OrderLine("A", 1, Money(100, "EUR"))
    order = Order.place(
        order_id=uuid4(),
        merchant_id=uuid4(),
        lines=[line],
        currency="EUR",
        customer_ref=None,
        hold_seconds=900,
        now=NOW,
        context=CONTEXT,
    )
    with pytest.raises(InvalidStateError):
        order.mark_paid(CONTEXT)
    with pytest.raises(InvalidStateError):
        order.mark_disputed(uuid4(), CONTEXT)
    with pytest.raises(InvalidStateError):
        order.mark_unfulfillable([], CONTEXT)
    assert [type(event).__name__ for event in order.collect_events()] == ["Placed"]


def test_a_retry_reaching_a_committer_that_knows_the_hold_but_not_the_order_is_told_the_order_exists(shop: Shop):
    # Two API processes: the first placed the order (its answer was lost); the retry reaches
    # the second, whose cache has the SKU (with the order's hold) but has never seen the order.
    first = GroupCommitter(shop.app, batch_size_max=10, batch_wait_ms=1.0, name="first")
    second = GroupCommitter(shop.app, batch_size_max=10, batch_wait_ms=1.0, name="second")
    first.start()
    second.start()
    try:
        second.submit(ReceiveStock(CONTEXT, shop.merchant_id, "A", 10)).result(timeout=10)
        line = OrderLine("A", 2, Money(100, "EUR"))
        place = PlaceOrder(CONTEXT, shop.merchant_id, order_id=uuid4(), lines=[line], currency="EUR")
        first.submit(place).result(timeout=10)
        with pytest.raises(OrderAlreadyExistsError):
            second.submit(place).result(timeout=10)
    finally:
        first.stop(10)
        second.stop(10)
    assert shop.level("A") == (10, 2, 8)


class TaggedLine(OrderLine):
    """A line of a subclass: checked lines are always plain ``OrderLine`` values."""


def test_checked_lines_are_plain_order_lines_merged_by_sku_and_price_in_order():
    eur = Money(500, "EUR")
    given = [OrderLine("A-1", 2, eur), OrderLine("B-1", 1, eur), OrderLine("A-1", 3, eur)]
    assert check_order_lines(given, "EUR") == [OrderLine("A-1", 5, eur), OrderLine("B-1", 1, eur)]
    distinct = [OrderLine("A-1", 2, eur), OrderLine("A-1", 1, Money(600, "EUR"))]
    assert check_order_lines(distinct, "EUR") == distinct
    (checked,) = check_order_lines([TaggedLine("A-1", 2, eur)], "EUR")
    assert type(checked) is OrderLine
    assert checked == OrderLine("A-1", 2, eur)
