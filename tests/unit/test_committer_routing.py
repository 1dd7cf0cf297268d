"""Routing commands to the committer of their partition: rules, wire format, fencing, retries.

The owner and the sender are real routers with real group committers on the in-memory
event store, talking over a real unix socket; only the ownership thread (PostgreSQL
advisory locks, covered by ``tests/integration/test_committer_routing.py``) is replaced
by ownership set by hand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import eventsourcing.persistence
import psycopg
import pytest

from adapters.committers import wire
from adapters.committers.ownership import Owner, PartitionOwnership
from adapters.committers.peer import CommitterListener
from adapters.committers.router import CommandRouter
from api.problems import ERROR_STATUSES
from domain.application import Daybook
from domain.commands import CancelOrder, OncePerKey, PlaceOrder, ReceiveStock
from domain.commands.routing import is_retry_safe, partition_of, partition_of_id, routing_id, sent_again
from domain.context import CommandContext
from domain.errors import OrderAlreadyExistsError, OutOfStockError, Shortage
from domain.groupcommit import (
    CommitOutcomeUnknownError,
    CommitterDatabaseUnavailableError,
    CommitterFailedError,
    CommitterUnavailableError,
    GroupCommitter,
    OverloadedError,
)
from domain.inventory import InventoryLevel, inventory_item_id
from domain.money import Money
from domain.orders import OrderLine

PARTITIONS = 8
CONTEXT = CommandContext(actor="test", request_id="r-1")
MERCHANT = uuid.UUID("11111111-2222-3333-4444-555555555555")


def _order(*skus: str, order_id: uuid.UUID | None = None) -> PlaceOrder:
    lines = tuple(OrderLine(sku, 1, Money(100, "EUR")) for sku in skus)
    return PlaceOrder(CONTEXT, MERCHANT, order_id or uuid.uuid4(), lines, "EUR")


class HandOwnership(PartitionOwnership):
    """Ownership set by the test; a tick re-reads ``live`` (the directory the database would show)."""

    def __init__(self, address: str) -> None:
        super().__init__("postgresql://unused", partitions=PARTITIONS, address=address, claim=False)
        self.live: dict[int, Owner] = {}
        self.orphans: list[tuple[int, str | None]] = []

    def orphaned(self, partition: int, address: str | None) -> Future[None]:
        self.orphans.append((partition, address))
        super().orphaned(partition, address)
        self.directory = {**self.directory, **self.live}
        done: Future[None] = Future()
        done.set_result(None)
        return done


@pytest.fixture
def app() -> Iterator[Daybook]:
    daybook = Daybook({"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield daybook
    daybook.close()


@pytest.fixture
def committer(app: Daybook) -> Iterator[GroupCommitter]:
    with GroupCommitter(app, batch_wait_ms=0, name="test") as running:
        yield running


@pytest.fixture
def socket_directory() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="dbk-") as directory:
        yield Path(directory)


def test_an_order_goes_to_the_partition_of_its_lowest_sku_whatever_the_line_order() -> None:
    lowest = inventory_item_id(MERCHANT, "A-1")
    assert routing_id(_order("Z-9", "A-1", "M-5")) == lowest
    assert partition_of(_order("A-1", "Z-9"), PARTITIONS) == partition_of(_order("Z-9", "A-1"), PARTITIONS)
    assert partition_of(_order("A-1"), PARTITIONS) == partition_of_id(lowest, PARTITIONS)


def test_stock_and_orders_of_one_sku_share_a_partition_and_keyed_commands_route_as_the_command_they_wrap() -> None:
    receipt = ReceiveStock(CONTEXT, MERCHANT, "HOT", 5)
    keyed = OncePerKey(receipt, "key-1", "sha", InventoryLevel.from_record)
    assert partition_of(receipt, PARTITIONS) == partition_of(_order("HOT"), PARTITIONS)
    assert partition_of(keyed, PARTITIONS) == partition_of(receipt, PARTITIONS)
    order_id = uuid.uuid4()
    assert routing_id(CancelOrder(CONTEXT, MERCHANT, order_id)) == order_id
    assert all(0 <= partition_of(_order(f"S-{n}"), PARTITIONS) < PARTITIONS for n in range(100))


def test_only_commands_that_apply_once_when_run_twice_are_safe_to_send_again() -> None:
    receipt = ReceiveStock(CONTEXT, MERCHANT, "HOT", 5)
    assert not is_retry_safe(receipt)
    assert is_retry_safe(OncePerKey(receipt, "key-1", "sha", InventoryLevel.from_record))
    assert is_retry_safe(_order("HOT"))
    assert is_retry_safe(CancelOrder(CONTEXT, MERCHANT, uuid.uuid4()))


def test_an_order_sent_again_may_exist_and_other_commands_are_sent_unchanged() -> None:
    order = _order("HOT")
    again = sent_again(order)
    assert again.may_exist
    assert again == dataclasses.replace(order, may_exist=True)
    assert sent_again(again) is again
    cancel = CancelOrder(CONTEXT, MERCHANT, uuid.uuid4())
    assert sent_again(cancel) is cancel


@pytest.mark.parametrize(
    "command",
    [
        _order("A", "B"),
        dataclasses.replace(_order("A"), may_exist=True),
        ReceiveStock(CONTEXT, MERCHANT, "HOT", 5, "po-1"),
        OncePerKey(ReceiveStock(CONTEXT, MERCHANT, "HOT", 5), "key-1", "ab" * 32, InventoryLevel.from_record),
        CancelOrder(CONTEXT, MERCHANT, uuid.uuid4()),
    ],
)
def test_a_forwarded_command_is_rebuilt_as_the_same_command(command: object) -> None:
    frame = wire.encode_forward(7, 3, 42, command)  # type: ignore[arg-type]
    forward, decoded = wire.decode_forward(frame[4:])
    assert (forward.id, forward.partition, forward.epoch) == (7, 3, 42)
    if isinstance(command, OncePerKey):
        assert isinstance(decoded, OncePerKey)
        assert (decoded.command, decoded.key, decoded.request_sha256) == (
            command.command,
            command.key,
            command.request_sha256,
        )
    else:
        assert decoded == command


def test_errors_cross_as_their_own_class_with_their_fields_and_anything_else_as_a_committer_failure() -> None:
    def crossed(error: Exception) -> Exception:
        answer = wire.decode_answer(wire.encode_error(1, error)[4:])
        assert answer.status == wire.ERROR
        return wire.error_of(answer)

    shortage = crossed(OutOfStockError([Shortage("HOT", 2, 1)]))
    assert isinstance(shortage, OutOfStockError)
    assert shortage.lines == (Shortage("HOT", 2, 1),)
    overloaded = crossed(OverloadedError("api", 5, merchant=True))
    assert isinstance(overloaded, OverloadedError)
    assert overloaded.merchant
    failure = crossed(RuntimeError("disk on fire"))
    assert isinstance(failure, CommitterFailedError)
    assert "disk on fire" in str(failure)
    for dropped in (psycopg.OperationalError("server closed"), eventsourcing.persistence.OperationalError("gone")):
        unavailable = crossed(dropped)  # the owner's connection failed: nothing saved, 503 as in-process
        assert isinstance(unavailable, CommitterDatabaseUnavailableError)
        assert ERROR_STATUSES[CommitterDatabaseUnavailableError].status == 503
    moved = wire.decode_answer(wire.encode_moved(9)[4:])
    assert (moved.id, moved.status, moved.error) == (9, wire.MOVED, None)


def _owner_and_sender(
    committer: GroupCommitter, directory: Path
) -> tuple[CommandRouter, HandOwnership, CommandRouter, HandOwnership, CommitterListener]:
    owner_ownership = HandOwnership("")
    owner = CommandRouter(committer, owner_ownership, deadline_seconds=2.0)
    sender_ownership = HandOwnership(f"unix:{directory / 'sender.sock'}")
    sender = CommandRouter(committer, sender_ownership, deadline_seconds=2.0)
    return owner, owner_ownership, sender, sender_ownership, CommitterListener(owner.answer_forward, wire.encode_error)


def test_a_command_of_a_partition_owned_here_runs_here_without_a_hop(committer: GroupCommitter) -> None:
    command = ReceiveStock(CONTEXT, MERCHANT, "HOT", 5)
    ownership = HandOwnership("unix:/nowhere")
    ownership.owned = {partition_of(command, PARTITIONS): 1}
    router = CommandRouter(committer, ownership)
    outcome = asyncio.run(router.submit_async(command))
    assert outcome.value.on_hand == 5
    assert (router.local_total, router.forwarded_total) == (1, 0)


def test_a_command_forwarded_to_its_owner_is_run_there_and_answered_with_its_outcome_or_its_error(
    committer: GroupCommitter, socket_directory: Path
) -> None:
    owner, owner_ownership, sender, sender_ownership, listener = _owner_and_sender(committer, socket_directory)
    receipt = ReceiveStock(CONTEXT, MERCHANT, "HOT", 1)
    partition = partition_of(receipt, PARTITIONS)

    async def scenario() -> tuple[int, Exception]:
        address = await listener.start_unix(socket_directory / "owner.sock")
        owner_ownership.owned = {partition: 3}
        sender_ownership.directory = {partition: Owner(address, 3)}
        try:
            level = (await sender.submit_async(receipt)).value
            await sender.submit_async(_order("HOT"))
            try:
                await sender.submit_async(_order("HOT"))
            except OutOfStockError as error:
                return level.on_hand, error
            raise AssertionError("the second order found stock")
        finally:
            await sender.close()
            await listener.stop()

    on_hand, error = asyncio.run(scenario())
    assert on_hand == 1
    assert isinstance(error, OutOfStockError)
    assert (sender.forwarded_total, sender.local_total, owner.local_total) == (3, 0, 0)


def test_a_former_owner_refuses_a_command_sent_at_another_epoch_and_the_sender_finds_the_new_owner(
    committer: GroupCommitter, socket_directory: Path
) -> None:
    _, former_ownership, sender, sender_ownership, former = _owner_and_sender(committer, socket_directory)
    current_ownership = HandOwnership("")
    current = CommandRouter(committer, current_ownership)
    current_listener = CommitterListener(current.answer_forward, wire.encode_error)
    receipt = ReceiveStock(CONTEXT, MERCHANT, "HOT", 2)
    partition = partition_of(receipt, PARTITIONS)

    async def scenario() -> int:
        former_address = await former.start_unix(socket_directory / "former.sock")
        current_address = await current_listener.start_unix(socket_directory / "current.sock")
        former_ownership.owned = {partition: 1}  # it still believes it owns epoch 1
        current_ownership.owned = {partition: 2}
        # The sender saw epoch 2 at the former owner's address (a stale entry): fenced.
        sender_ownership.directory = {partition: Owner(former_address, 2)}
        sender_ownership.live = {partition: Owner(current_address, 2)}
        try:
            return (await sender.submit_async(receipt)).value.on_hand
        finally:
            await sender.close()
            await former.stop()
            await current_listener.stop()

    assert asyncio.run(scenario()) == 2
    assert sender.redirects_total == 1
    assert sender_ownership.orphans == [(partition, sender_ownership.orphans[0][1])]


def test_an_unreachable_owner_is_forgotten_and_without_any_owner_the_caller_gets_503_after_the_deadline(
    committer: GroupCommitter, socket_directory: Path
) -> None:
    receipt = ReceiveStock(CONTEXT, MERCHANT, "HOT", 2)
    partition = partition_of(receipt, PARTITIONS)
    ownership = HandOwnership("unix:/nowhere")
    dead = f"unix:{socket_directory / 'dead.sock'}"
    ownership.directory = {partition: Owner(dead, 1)}
    router = CommandRouter(committer, ownership, deadline_seconds=0.3)
    with pytest.raises(CommitterUnavailableError):
        asyncio.run(router.submit_async(receipt))
    assert (partition, dead) in ownership.orphans
    assert partition not in ownership.directory


class DropsFirstAnswer:
    """Runs each command but drops the connection instead of the first answer."""

    def __init__(self, router: CommandRouter) -> None:
        self.router = router
        self.dropped = False
        self.listener = CommitterListener(self.answer, wire.encode_error)

    async def answer(self, forward: wire.Forward, command: object) -> bytes:
        frame = await self.router.answer_forward(forward, command)
        if not self.dropped:
            self.dropped = True
            for connection in list(self.listener._connections):
                connection.cancel()  # which cancels this answer too, before it is written
            await asyncio.Event().wait()
        return frame


def test_an_order_whose_answer_was_lost_is_sent_again_and_found_placed_by_its_first_send(
    committer: GroupCommitter, socket_directory: Path
) -> None:
    owner, owner_ownership, sender, sender_ownership, _ = _owner_and_sender(committer, socket_directory)
    dropping = DropsFirstAnswer(owner)
    order = _order("HOT")
    partition = partition_of(order, PARTITIONS)

    async def scenario() -> Exception:
        address = await dropping.listener.start_unix(socket_directory / "owner.sock")
        owner_ownership.owned = {partition: 1}
        sender_ownership.directory = sender_ownership.live = {partition: Owner(address, 1)}
        await owner.submit_async(ReceiveStock(CONTEXT, MERCHANT, "HOT", 10))
        try:
            await sender.submit_async(order)
        except OrderAlreadyExistsError as error:
            return error
        finally:
            await sender.close()
            await dropping.listener.stop()
        raise AssertionError("the second send placed another order")

    error = asyncio.run(scenario())
    assert getattr(error, "placed_by_this_request", False)
    level = committer.app.get_inventory_level(MERCHANT, "HOT")  # type: ignore[attr-defined]
    assert level.reserved == 1


def test_a_receipt_without_a_key_whose_answer_was_lost_is_not_sent_again_its_outcome_is_unknown(
    committer: GroupCommitter, socket_directory: Path
) -> None:
    owner, owner_ownership, sender, sender_ownership, _ = _owner_and_sender(committer, socket_directory)
    dropping = DropsFirstAnswer(owner)
    receipt = ReceiveStock(CONTEXT, MERCHANT, "COLD", 3)
    partition = partition_of(receipt, PARTITIONS)

    async def scenario() -> None:
        address = await dropping.listener.start_unix(socket_directory / "owner.sock")
        owner_ownership.owned = {partition: 1}
        sender_ownership.directory = sender_ownership.live = {partition: Owner(address, 1)}
        try:
            await sender.submit_async(receipt)
        finally:
            await sender.close()
            await dropping.listener.stop()

    with pytest.raises(CommitOutcomeUnknownError):
        asyncio.run(scenario())
    assert committer.app.get_inventory_level(MERCHANT, "COLD").on_hand == 3  # type: ignore[attr-defined]


def test_commands_are_forwarded_over_tcp_as_over_a_unix_socket(committer: GroupCommitter) -> None:
    owner_ownership = HandOwnership("")
    owner = CommandRouter(committer, owner_ownership)
    sender_ownership = HandOwnership("tcp:127.0.0.1:1")
    sender = CommandRouter(committer, sender_ownership)
    listener = CommitterListener(owner.answer_forward, wire.encode_error)
    receipt = ReceiveStock(CONTEXT, MERCHANT, "TCP", 4)
    partition = partition_of(receipt, PARTITIONS)

    async def scenario() -> int:
        address = await listener.start_tcp("127.0.0.1", 0, "127.0.0.1")
        owner_ownership.owned = {partition: 1}
        sender_ownership.directory = {partition: Owner(address, 1)}
        try:
            return (await sender.submit_async(receipt)).value.on_hand
        finally:
            await sender.close()
            await listener.stop()

    assert asyncio.run(scenario()) == 4
    assert sender.forwarded_total == 1


def test_an_order_run_again_by_a_new_owner_that_loads_its_holds_is_already_placed_not_held_twice(
    app: Daybook, committer: GroupCommitter
) -> None:
    order = _order("HOT")
    committer.submit(ReceiveStock(CONTEXT, MERCHANT, "HOT", 5)).result(10)
    committer.submit(order).result(10)
    # A cold cache, as after a hand-over.
    with GroupCommitter(app, batch_wait_ms=0, name="new-owner") as new_owner, pytest.raises(OrderAlreadyExistsError):
        new_owner.submit(order).result(10)
    assert app.get_inventory_level(MERCHANT, "HOT").reserved == 1


def test_a_command_that_finds_every_slot_to_its_owner_taken_until_the_deadline_is_not_sent_and_503(
    committer: GroupCommitter, socket_directory: Path
) -> None:
    stuck = asyncio.Event()

    async def never_answers(forward: wire.Forward, command: object) -> bytes:
        stuck.set()
        await asyncio.Event().wait()
        raise AssertionError

    listener = CommitterListener(never_answers, wire.encode_error)
    ownership = HandOwnership("unix:/nowhere")
    sender = CommandRouter(committer, ownership, deadline_seconds=0.5, in_flight_max=1)
    receipt = ReceiveStock(CONTEXT, MERCHANT, "BUSY", 1)
    partition = partition_of(receipt, PARTITIONS)

    async def scenario() -> BaseException | None:
        address = await listener.start_unix(socket_directory / "owner.sock")
        ownership.directory = {partition: Owner(address, 1)}
        first = asyncio.create_task(sender.submit_async(_order("BUSY")))
        await stuck.wait()
        try:
            await sender.submit_async(receipt)
        except CommitterUnavailableError as error:
            return error
        finally:
            first.cancel()
            await sender.close()
            await listener.stop()
        return None

    assert isinstance(asyncio.run(scenario()), CommitterUnavailableError)
