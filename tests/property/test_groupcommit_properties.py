"""Group commit changes nothing but speed: any batching of any command sequence gives the
outcomes and the final state of running the commands one at a time, one save each."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import Future, wait
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from domain.application import RepositoryUnitOfWork
from domain.groupcommit import AggregateCache, CommandOutcome, GroupCommitter, run_batch
from domain.unit_of_work import UnitOfWork

POPO_ENV = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
DEADLINE_SECONDS = 10.0


class Counter(Aggregate):
    def __init__(self, name: str) -> None:
        self.count = 0

    @staticmethod
    def create_id(name: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"property-counter:{name}")

    @event("Incremented")
    def increment(self, by: int) -> None:
        self.count += by


class LimitReachedError(Exception):
    pass


class Limited(Aggregate):
    def __init__(self, name: str, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @staticmethod
    def create_id(name: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"property-limited:{name}")

    def take(self, amount: int) -> None:
        if self.used + amount > self.limit:
            raise LimitReachedError
        self._take(amount)

    @event("Taken")
    def _take(self, amount: int) -> None:
        self.used += amount


class BuggyCommandError(Exception):
    pass


# Three seeded counters, two that commands may create; two limited aggregates.
COUNTER_NAMES = ["c0", "c1", "c2", "n0", "n1"]
SEEDED_COUNTER_NAMES = COUNTER_NAMES[:3]
LIMITED_NAMES = ["l0", "l1"]
COUNTER_IDS = [Counter.create_id(name) for name in COUNTER_NAMES]
LIMITED_IDS = [Limited.create_id(name) for name in LIMITED_NAMES]

Op = tuple[str, int, int]
command_ops = st.one_of(
    st.tuples(st.just("increment"), st.integers(0, 4), st.integers(1, 5)),
    st.tuples(st.just("take"), st.integers(0, 1), st.integers(1, 8)),
    st.tuples(st.just("buggy"), st.integers(0, 4), st.integers(0, 4)),
    st.tuples(st.just("read"), st.integers(0, 4), st.just(0)),
    st.tuples(st.just("create"), st.integers(0, 4), st.just(0)),
)
external_ops = st.tuples(st.just("external"), st.integers(0, 2), st.integers(1, 5))


def command_for(op: Op) -> Callable[[UnitOfWork], Any]:
    kind, target, amount = op

    def increment(uow: UnitOfWork) -> int:
        counter = uow.get(COUNTER_IDS[target], Counter)
        counter.increment(amount)
        return counter.count

    def take(uow: UnitOfWork) -> int:
        limited = uow.get(LIMITED_IDS[target], Limited)
        limited.take(amount)
        return limited.used

    def buggy(uow: UnitOfWork) -> None:
        uow.get(COUNTER_IDS[target], Counter).increment(100)
        uow.get(COUNTER_IDS[amount], Counter).increment(100)
        raise BuggyCommandError

    def read(uow: UnitOfWork) -> int | None:
        counter = uow.find(COUNTER_IDS[target], Counter)
        return None if counter is None else counter.count

    def create(uow: UnitOfWork) -> UUID:
        counter = Counter(COUNTER_NAMES[target])
        uow.add(counter)
        return counter.id

    commands = {"increment": increment, "take": take, "buggy": buggy, "read": read}
    return commands.get(kind, create)


def changes_target(op: Op) -> bool:
    return op[0] in {"increment", "take", "create"}


def target_id(op: Op) -> UUID:
    return LIMITED_IDS[op[1]] if op[0] == "take" else COUNTER_IDS[op[1]]


# --- the reference: one command, one transaction ------------------------------------------


Answer = tuple[str, Any]


def answer_of_error(error: BaseException) -> Answer:
    # DuplicateAggregateError is an IntegrityError, as a single save's duplicate is.
    kind = IntegrityError if isinstance(error, IntegrityError) else type(error)
    return ("error", kind.__name__)


def run_one(app: Application[UUID], command: Callable[[UnitOfWork], Any]) -> Answer:
    uow = RepositoryUnitOfWork(app.repository)
    try:
        value = command(uow)
        app.save(*uow.touched)
    except Exception as error:
        return answer_of_error(error)
    return ("ok", value)


def answer_of_future(future: Future[CommandOutcome[Any]]) -> Answer:
    error = future.exception(0)
    return answer_of_error(error) if error is not None else ("ok", future.result(0).value)


# --- shared helpers -----------------------------------------------------------------------


def new_app() -> Application[UUID]:
    app: Application[UUID] = Application(env=POPO_ENV)
    app.save(
        *(Counter(name) for name in SEEDED_COUNTER_NAMES),
        *(Limited(name, limit=12) for name in LIMITED_NAMES),
    )
    return app


def write_externally(app: Application[UUID], op: Op) -> None:
    """Another process increments a counter, behind the committer's cache."""
    counter: Counter = app.repository.get(COUNTER_IDS[op[1]])
    counter.increment(op[2])
    app.save(counter)


def state_of(app: Application[UUID]) -> list[tuple[int, int] | None]:
    state: list[tuple[int, int] | None] = []
    for aggregate_id in [*COUNTER_IDS, *LIMITED_IDS]:
        try:
            aggregate: Aggregate = app.repository.get(aggregate_id)
        except AggregateNotFoundError:
            state.append(None)
            continue
        assert isinstance(aggregate, Counter | Limited)
        value = aggregate.count if isinstance(aggregate, Counter) else aggregate.used
        state.append((value, aggregate.version))
    return state


# --- batches run directly, boundaries chosen by Hypothesis --------------------------------


@settings(max_examples=300, deadline=None)
@given(
    ops=st.lists(st.one_of(command_ops, external_ops), max_size=40),
    batch_sizes=st.lists(st.integers(1, 8), min_size=1, max_size=8),
    cache_size_max=st.integers(1, 8),
)
def test_any_batching_gives_the_outcomes_and_state_of_one_command_at_a_time(
    ops: list[Op], batch_sizes: list[int], cache_size_max: int
) -> None:
    reference, batched = new_app(), new_app()
    cache = AggregateCache(cache_size_max)
    expected: list[Answer] = []
    actual: list[Answer] = []
    positions: list[int | None] = []
    batch_size_cycle = itertools.cycle(batch_sizes)
    batch_size = next(batch_size_cycle)
    batch: list[Op] = []

    def flush() -> None:
        report = run_batch(batched, cache, [command_for(op) for op in batch], conflict_retries_max=3)
        for outcome in report.outcomes:
            if isinstance(outcome, Exception):
                actual.append(answer_of_error(outcome))
                positions.append(None)
            else:
                actual.append(("ok", outcome.value))
                positions.append(outcome.position)
        batch.clear()

    command_sequence: list[Op] = []
    for op in ops:
        if op[0] == "external":
            flush()
            write_externally(reference, op)
            write_externally(batched, op)
            continue
        expected.append(run_one(reference, command_for(op)))
        command_sequence.append(op)
        batch.append(op)
        if len(batch) == batch_size:
            flush()
            batch_size = next(batch_size_cycle)
    flush()

    assert actual == expected
    assert state_of(batched) == state_of(reference)
    check_positions(command_sequence, actual, positions, {})


def check_positions(
    ops: list[Op],
    answers: list[Answer],
    positions: list[int | None],
    last_position_by_target: dict[UUID, int],
) -> None:
    """Each change has a position, later than the previous change of the same aggregate."""
    for op, answer, position in zip(ops, answers, positions, strict=True):
        if answer[0] != "ok" or not changes_target(op):
            assert position is None
            continue
        assert position is not None
        previous = last_position_by_target.get(target_id(op), 0)
        assert position > previous
        last_position_by_target[target_id(op)] = position


# --- the threaded committer, batching as it happens ---------------------------------------


class GroupCommitterMachine(RuleBasedStateMachine):
    """Commands submitted in order, settled at random points, against the reference."""

    def __init__(self) -> None:
        super().__init__()
        self.reference = new_app()
        self.app = new_app()
        self.committer: GroupCommitter | None = None
        self.submitted: list[tuple[Op, Answer, Future[CommandOutcome[Any]]]] = []
        self.last_position_by_target: dict[UUID, int] = {}

    @initialize(batch_size_max=st.integers(1, 6), cache_size_max=st.integers(1, 8))
    def start(self, batch_size_max: int, cache_size_max: int) -> None:
        self.committer = GroupCommitter(
            self.app,
            batch_size_max=batch_size_max,
            batch_wait_ms=1.0,
            cache_size_max=cache_size_max,
            name="property",
        )
        self.committer.start()

    @rule(op=command_ops)
    def submit(self, op: Op) -> None:
        assert self.committer is not None
        expected = run_one(self.reference, command_for(op))
        self.submitted.append((op, expected, self.committer.submit(command_for(op))))

    @rule()
    def settle(self) -> None:
        futures = [future for _, _, future in self.submitted]
        _, not_done = wait(futures, timeout=DEADLINE_SECONDS)
        assert not not_done
        ops = [op for op, _, _ in self.submitted]
        answers = [answer_of_future(future) for future in futures]
        assert answers == [expected for _, expected, _ in self.submitted]
        positions = [None if future.exception(0) else future.result(0).position for future in futures]
        check_positions(ops, answers, positions, self.last_position_by_target)
        self.submitted.clear()

    @precondition(lambda self: not self.submitted)
    @rule(op=external_ops)
    def another_process_writes(self, op: Op) -> None:
        write_externally(self.reference, op)
        write_externally(self.app, op)

    @invariant()
    def queue_is_bounded(self) -> None:
        if self.committer is not None:
            assert self.committer.queue_depth() <= self.committer.queue_size_max

    def teardown(self) -> None:
        if self.committer is None:
            return
        try:
            self.settle()
        finally:
            assert self.committer.stop(DEADLINE_SECONDS)
        assert state_of(self.app) == state_of(self.reference)


GroupCommitterMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
test_the_committer_gives_the_outcomes_and_state_of_one_command_at_a_time = GroupCommitterMachine.TestCase
