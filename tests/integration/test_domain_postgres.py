"""The domain applications on real PostgreSQL: commands, replay, conflicts, group commit.

Every test works for a merchant of its own (a fresh uuid4), so the tests share the
session's migrated database without seeing each other's streams. "Fresh" ``Daybook``
instances read everything back from the database: nothing comes from a cache.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, ProgrammingError
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from adapters.database import eventsourcing_env
from adapters.settings import Settings
from domain.application import Daybook
from domain.commands import ApplyGatewayEvent, CancelOrder, PlaceOrder, ReceiveStock
from domain.context import CommandContext
from domain.errors import OutOfStockError
from domain.gateway import GatewayEvent, GatewayEventKind, payment_id
from domain.groupcommit import CommandOutcome, GroupCommitter
from domain.inventory import InventoryItem, inventory_item_id
from domain.money import Money
from domain.orders import OrderLine, OrderStatus
from domain.payments import Payment, PaymentStatus
from domain.unit_of_work import Command, UnitOfWork

if TYPE_CHECKING:
    from tests.conftest import Servers

R = TypeVar("R")

CONTEXT = CommandContext(actor="api_key:integration", request_id="req-integration")
DEADLINE_SECONDS = 10.0
SKU = "SKU-1"
PRICE = Money(1_250, "EUR")


# --- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def merchant_id() -> UUID:
    return uuid4()


@pytest.fixture
def open_daybook(database_url: str, settings: Settings) -> Iterator[Callable[[], Daybook]]:
    """Opens ``Daybook`` instances on the session database; closes them afterwards."""
    apps: list[Daybook] = []

    def open_() -> Daybook:
        app = Daybook(env=eventsourcing_env(database_url, settings))
        apps.append(app)
        return app

    yield open_
    for app in apps:
        app.close()


@pytest.fixture
def start_committer(
    open_daybook: Callable[[], Daybook],
) -> Iterator[Callable[..., GroupCommitter]]:
    """Starts group committers; stops them (before their applications close)."""
    committers: list[GroupCommitter] = []

    def start(app: Daybook, **options: Any) -> GroupCommitter:
        committer = GroupCommitter(app, **options)
        committer.start()
        committers.append(committer)
        return committer

    yield start
    stopped = [committer.stop(DEADLINE_SECONDS) for committer in committers]
    assert all(stopped), "a group committer did not stop in time"


def stored_versions(database_url: str, originator_id: UUID) -> list[int]:
    """The versions stored in ``daybook_events`` for one stream, read with plain SQL."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT originator_version FROM daybook_events WHERE originator_id = %s ORDER BY originator_version",
            (originator_id,),
        ).fetchall()
    return [row[0] for row in rows]


def load_item(app: Daybook, merchant_id: UUID, sku: str = SKU) -> InventoryItem:
    """The merchant's inventory item of ``sku``, as ``app`` loads it from the database."""
    item: object = app.repository.get(inventory_item_id(merchant_id, sku))
    assert isinstance(item, InventoryItem)
    return item


def event_types(app: Daybook, aggregate_id: UUID) -> list[str]:
    return [type(event).__qualname__ for event in app.history(aggregate_id)]


def place_command(merchant_id: UUID, order_id: UUID, quantity: int = 1) -> PlaceOrder:
    return PlaceOrder(CONTEXT, merchant_id, order_id, (OrderLine(SKU, quantity, PRICE),), "EUR")


def capture(order_id: UUID, amount: int, *, gateway_ref: str, event_id: str) -> GatewayEvent:
    return GatewayEvent(
        kind=GatewayEventKind.CAPTURED,
        gateway="stripe",
        gateway_ref=gateway_ref,
        event_id=event_id,
        order_id=order_id,
        amount=amount,
        currency="EUR",
    )


@dataclass(frozen=True)
class WaitBeforeSave(Generic[R]):
    """Runs ``command``, then waits at ``barrier``: both racers load before either saves."""

    command: Command[R]
    barrier: threading.Barrier

    def __call__(self, uow: UnitOfWork, /) -> R:
        result = self.command(uow)
        self.barrier.wait(DEADLINE_SECONDS)
        return result


class MeetOnce(Generic[R]):
    """Runs ``command``; the first time only, then waits at ``barrier`` (a batch may re-run)."""

    def __init__(self, command: Command[R], barrier: threading.Barrier) -> None:
        self.command = command
        self.barrier = barrier
        self.met = False

    def __call__(self, uow: UnitOfWork, /) -> R:
        result = self.command(uow)
        if not self.met:  # only the committer's worker thread calls it
            self.met = True
            self.barrier.wait(DEADLINE_SECONDS)
        return result


def answer(future: Future[CommandOutcome[R]]) -> CommandOutcome[R] | Exception:
    """The committer's answer to one command: its outcome, or the exception it got."""
    try:
        return future.result(timeout=DEADLINE_SECONDS)
    except Exception as error:  # the command's own answer
        return error


def run_together(*calls: Callable[[], R]) -> list[R | IntegrityError]:
    """Runs each call in its own thread; an ``IntegrityError`` is returned, not raised."""

    def run(call: Callable[[], R]) -> R | IntegrityError:
        try:
            return call()
        except IntegrityError as error:
            return error

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(run, call) for call in calls]
        return [future.result(timeout=DEADLINE_SECONDS) for future in futures]


def submit_together(
    committers: list[GroupCommitter], commands: list[PlaceOrder]
) -> list[CommandOutcome[Any] | Exception]:
    """One thread per command, released at once by a barrier; round-robin committers."""
    barrier = threading.Barrier(len(commands))

    def submit(index: int) -> CommandOutcome[Any] | Exception:
        barrier.wait(DEADLINE_SECONDS)
        return answer(committers[index % len(committers)].submit(commands[index]))

    with ThreadPoolExecutor(max_workers=len(commands)) as pool:
        return list(pool.map(submit, range(len(commands))))


# --- 1. the commands on PostgreSQL --------------------------------------------------------


def test_stock_orders_cancellation_and_capture_on_postgres_replay_to_the_live_views(
    open_daybook: Callable[[], Daybook], merchant_id: UUID
) -> None:
    app = open_daybook()
    received = app.execute(ReceiveStock(CONTEXT, merchant_id, SKU, 10, reference="PO-1"))
    assert (received.on_hand, received.reserved, received.version) == (10, 0, 2)

    cancelled_id = uuid4()
    placed = app.execute(
        PlaceOrder(CONTEXT, merchant_id, order_id=cancelled_id, lines=[OrderLine(SKU, 3, PRICE)], currency="EUR")
    )
    assert placed.status is OrderStatus.RESERVED
    held = app.get_inventory_level(merchant_id, SKU)
    assert (held.on_hand, held.reserved, held.available) == (10, 3, 7)

    cancelled = app.execute(CancelOrder(CONTEXT, merchant_id, cancelled_id))
    assert cancelled.status is OrderStatus.CANCELLED
    released = app.get_inventory_level(merchant_id, SKU)
    assert (released.on_hand, released.reserved) == (10, 0)

    paid_id = uuid4()
    to_pay = app.execute(
        PlaceOrder(CONTEXT, merchant_id, order_id=paid_id, lines=[OrderLine(SKU, 2, PRICE)], currency="EUR")
    )
    outcome = app.execute(
        ApplyGatewayEvent(
            CONTEXT, merchant_id, capture(paid_id, to_pay.total.amount, gateway_ref="pi_1", event_id="e1")
        )
    )
    assert outcome.changed
    assert outcome.order is not None
    assert outcome.order.status is OrderStatus.PAID
    assert outcome.order.amount_captured == Money(2_500, "EUR")
    assert outcome.payment.status is PaymentStatus.CAPTURED
    committed = app.get_inventory_level(merchant_id, SKU)
    assert (committed.on_hand, committed.reserved) == (8, 0)
    # A last command, so that the item's live view comes from a command too.
    restocked = app.execute(ReceiveStock(CONTEXT, merchant_id, SKU, 5, reference="PO-2"))
    assert (restocked.on_hand, restocked.reserved, restocked.available) == (13, 0, 13)

    fresh = open_daybook()
    assert fresh.get_inventory_level(merchant_id, SKU) == restocked
    assert fresh.get_order(merchant_id, cancelled_id) == cancelled
    assert fresh.get_order(merchant_id, paid_id) == outcome.order
    assert fresh.get_payment(merchant_id, outcome.payment.id) == outcome.payment
    item = load_item(fresh, merchant_id)
    assert item.holds == {}
    assert event_types(fresh, item.id).count("InventoryItem.StockCommitted") == 1
    assert event_types(fresh, item.id).count("InventoryItem.StockReleased") == 1


# --- 2. one payment per gateway reference -------------------------------------------------


def test_a_second_payment_for_the_same_gateway_reference_is_refused_by_the_database(
    open_daybook: Callable[[], Daybook], database_url: str, merchant_id: UUID
) -> None:
    first, second = open_daybook(), open_daybook()
    first_context = CommandContext(actor="gateway:stripe", request_id="first")
    second_context = CommandContext(actor="gateway:stripe", request_id="second")
    ours = Payment.open(merchant_id, "stripe", "pi_same", first_context)
    theirs = Payment.open(merchant_id, "stripe", "pi_same", second_context)
    assert ours.id == theirs.id == payment_id(merchant_id, "stripe", "pi_same")

    first.save(ours)
    with pytest.raises(IntegrityError):
        second.save(theirs)

    assert stored_versions(database_url, ours.id) == [1]
    (opened,) = open_daybook().history(ours.id)
    assert opened.metadata["request_id"] == "first"


def test_a_gateway_event_applied_twice_records_its_fact_once(
    open_daybook: Callable[[], Daybook], database_url: str, merchant_id: UUID
) -> None:
    first, second = open_daybook(), open_daybook()
    first.execute(ReceiveStock(CONTEXT, merchant_id, SKU, 5))
    order_id = uuid4()
    first.execute(place_command(merchant_id, order_id, quantity=2))
    fact = capture(order_id, 2 * PRICE.amount, gateway_ref="pi_twice", event_id="evt_1")

    applied = first.execute(ApplyGatewayEvent(CONTEXT, merchant_id, fact))
    again = second.execute(ApplyGatewayEvent(CONTEXT, merchant_id, fact))

    assert applied.changed
    assert not again.changed
    assert again.payment == applied.payment
    assert again.order == applied.order
    payment = payment_id(merchant_id, "stripe", "pi_twice")
    assert stored_versions(database_url, payment) == [1, 2]
    assert event_types(open_daybook(), payment) == ["Payment.Opened", "Payment.Captured"]
    item = open_daybook().get_inventory_level(merchant_id, SKU)
    assert (item.on_hand, item.reserved, item.version) == (3, 0, 4)


def test_two_instances_racing_on_one_webhook_commit_it_once_and_the_retry_is_a_no_op(
    open_daybook: Callable[[], Daybook], database_url: str, merchant_id: UUID
) -> None:
    setup = open_daybook()
    setup.execute(ReceiveStock(CONTEXT, merchant_id, SKU, 5))
    order_id = uuid4()
    setup.execute(place_command(merchant_id, order_id, quantity=1))
    fact = capture(order_id, PRICE.amount, gateway_ref="pi_race", event_id="evt_race")
    first, second = open_daybook(), open_daybook()
    barrier = threading.Barrier(2)
    command = ApplyGatewayEvent(CONTEXT, merchant_id, fact)

    results = run_together(
        lambda: first.execute(WaitBeforeSave(command, barrier)),
        lambda: second.execute(WaitBeforeSave(command, barrier)),
    )

    refused = [result for result in results if isinstance(result, IntegrityError)]
    assert len(refused) == 1, results
    loser = second if isinstance(results[1], IntegrityError) else first
    retried = loser.execute(ApplyGatewayEvent(CONTEXT, merchant_id, fact))
    assert not retried.changed
    assert retried.order is not None
    assert retried.order.status is OrderStatus.PAID
    assert stored_versions(database_url, payment_id(merchant_id, "stripe", "pi_race")) == [1, 2]
    item_events = event_types(open_daybook(), inventory_item_id(merchant_id, SKU))
    assert item_events.count("InventoryItem.StockCommitted") == 1


# --- 3. optimistic concurrency ------------------------------------------------------------


def test_concurrent_saves_of_one_inventory_version_store_one_event_and_refuse_the_other(
    open_daybook: Callable[[], Daybook], database_url: str, merchant_id: UUID
) -> None:
    open_daybook().execute(ReceiveStock(CONTEXT, merchant_id, SKU, 10))
    item_id = inventory_item_id(merchant_id, SKU)
    apps = [open_daybook(), open_daybook()]
    items = [load_item(app, merchant_id) for app in apps]
    assert [item.version for item in items] == [2, 2]
    quantities = [1, 2]
    for item, quantity in zip(items, quantities, strict=True):
        item.receive(quantity, f"racer-{quantity}", CONTEXT)
    barrier = threading.Barrier(2)

    def save(app: Daybook, item: InventoryItem) -> Callable[[], object]:
        def call() -> object:
            barrier.wait(DEADLINE_SECONDS)
            return app.save(item)

        return call

    results = run_together(*(save(app, item) for app, item in zip(apps, items, strict=True)))

    winners = [i for i, result in enumerate(results) if not isinstance(result, IntegrityError)]
    assert len(winners) == 1, results
    assert stored_versions(database_url, item_id) == [1, 2, 3]
    level = open_daybook().get_inventory_level(merchant_id, SKU)
    assert level.on_hand == 10 + quantities[winners[0]]


# --- 4. the group committer on PostgreSQL -------------------------------------------------


def test_fifty_concurrent_orders_through_the_group_committer_sell_exactly_the_thirty_in_stock(
    open_daybook: Callable[[], Daybook],
    start_committer: Callable[..., GroupCommitter],
    database_url: str,
    merchant_id: UUID,
) -> None:
    app = open_daybook()
    app.execute(ReceiveStock(CONTEXT, merchant_id, SKU, 30))
    committer = start_committer(app, name="pg-single")
    order_ids = [uuid4() for _ in range(50)]

    outcomes = submit_together([committer], [place_command(merchant_id, o) for o in order_ids])

    sold = [o for o, out in zip(order_ids, outcomes, strict=True) if isinstance(out, CommandOutcome)]
    refused = [out for out in outcomes if not isinstance(out, CommandOutcome)]
    assert len(sold) == 30
    assert len(refused) == 20
    assert all(isinstance(error, OutOfStockError) for error in refused), refused
    assert (committer.metrics.commands_total, committer.metrics.commands_failed_total) == (50, 20)

    item_id = inventory_item_id(merchant_id, SKU)
    # Registered + StockReceived, then one StockHeld per sale; one Placed per sold order.
    assert stored_versions(database_url, item_id) == list(range(1, 33))
    for order_id in order_ids:
        expected = [1] if order_id in sold else []
        assert stored_versions(database_url, order_id) == expected
    positions = [out.position for out in outcomes if isinstance(out, CommandOutcome)]
    assert len(set(positions)) == 30
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT originator_id FROM daybook_events WHERE notification_id = ANY(%s)",
            (positions,),
        ).fetchall()
    assert {row[0] for row in rows} <= {item_id, *sold}
    assert len(rows) == 30

    item = load_item(open_daybook(), merchant_id)
    assert (item.on_hand, item.reserved, item.available) == (30, 30, 0)
    assert set(item.holds) == set(sold)


def test_two_group_committers_on_two_instances_never_oversell_one_sku(
    open_daybook: Callable[[], Daybook],
    start_committer: Callable[..., GroupCommitter],
    database_url: str,
    merchant_id: UUID,
) -> None:
    open_daybook().execute(ReceiveStock(CONTEXT, merchant_id, SKU, 30))
    # Each conflict a batch meets is one hold the other committer committed after this
    # batch loaded the item, so 30 stock units bound the retries any batch can need.
    committers = [start_committer(open_daybook(), name=f"pg-{n}", conflict_retries_max=40) for n in (1, 2)]
    # The first batch of each committer holds stock, then waits for the other's: both
    # batches were built on the same version of the item, so one save must conflict.
    both_loaded = threading.Barrier(2)
    gated_ids = [uuid4(), uuid4()]
    gated = [
        committer.submit(MeetOnce(place_command(merchant_id, order_id), both_loaded))
        for committer, order_id in zip(committers, gated_ids, strict=True)
    ]
    order_ids = [uuid4() for _ in range(78)]

    outcomes = submit_together(committers, [place_command(merchant_id, o) for o in order_ids])
    outcomes += [answer(future) for future in gated]
    order_ids += gated_ids

    sold = {o for o, out in zip(order_ids, outcomes, strict=True) if isinstance(out, CommandOutcome)}
    refused = [out for out in outcomes if not isinstance(out, CommandOutcome)]
    assert all(isinstance(error, OutOfStockError) for error in refused), refused
    assert len(sold) == 30
    assert sum(committer.metrics.conflict_retries_total for committer in committers) >= 1
    item_id = inventory_item_id(merchant_id, SKU)
    item = load_item(open_daybook(), merchant_id)
    assert item.reserved <= item.on_hand == 30
    assert item.reserved == sum(hold.quantity for hold in item.holds.values()) == 30
    assert set(item.holds) == sold
    assert stored_versions(database_url, item_id) == list(range(1, 33))


# --- 5. the schema comes from migrations ---------------------------------------------------


def test_the_daybook_env_never_creates_tables_and_the_app_runs_on_the_migrated_schema(
    open_daybook: Callable[[], Daybook],
    database_url: str,
    settings: Settings,
    merchant_id: UUID,
) -> None:
    env = eventsourcing_env(database_url, settings)
    assert env["CREATE_TABLE"] == "n"
    app = open_daybook()
    assert app.factory.env_create_table() is False  # type: ignore[attr-defined]

    level = app.execute(ReceiveStock(CONTEXT, merchant_id, SKU, 4))

    with psycopg.connect(database_url) as conn:
        migrated = conn.execute("SELECT count(*) FROM schema_migrations WHERE version = '0001_event_store'").fetchone()
        topics = conn.execute(
            "SELECT topic FROM daybook_events WHERE originator_id = %s ORDER BY originator_version",
            (level.id,),
        ).fetchall()
    assert migrated == (1,)
    assert [topic.rsplit(":", 1)[-1] for (topic,) in topics] == [
        "InventoryItem.Registered",
        "InventoryItem.StockReceived",
    ]


def test_on_an_unmigrated_database_the_app_creates_no_table_and_its_commands_fail(
    servers: Servers, settings: Settings, merchant_id: UUID
) -> None:
    name = f"daybook_unmigrated_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(servers.admin_database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(servers.admin_database_url)
    params["dbname"] = name
    url = make_conninfo("", **params)
    try:
        app = Daybook(env=eventsourcing_env(url, settings))
        try:
            with pytest.raises(ProgrammingError):
                app.execute(ReceiveStock(CONTEXT, merchant_id, SKU, 1))
        finally:
            app.close()
        with psycopg.connect(url) as conn:
            table = conn.execute("SELECT to_regclass('daybook_events')").fetchone()
        assert table == (None,)
    finally:
        with psycopg.connect(servers.admin_database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
