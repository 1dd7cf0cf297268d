"""The group committer on the in-memory event store."""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, wait
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import ApplicationRecorder, IntegrityError, OperationalError, Recording

from domain.groupcommit import (
    AggregateCache,
    CommandOutcome,
    CommitOutcomeUnknownError,
    ConflictRetriesExhaustedError,
    DuplicateAggregateError,
    GroupCommitter,
    GroupCommitterStoppedError,
    OverloadedError,
)
from domain.unit_of_work import AggregateMissingError, UnitOfWork

POPO_ENV = {"PERSISTENCE_MODULE": "eventsourcing.popo"}
DEADLINE_SECONDS = 10.0


# --- a small domain -----------------------------------------------------------------------


class Counter(Aggregate):
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    @staticmethod
    def create_id(name: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"counter:{name}")

    @event("Incremented")
    def increment(self, by: int) -> None:
        self.count += by


class LimitReachedError(Exception):
    """A domain-style error: the command is refused, nothing changes."""


class Limited(Aggregate):
    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit
        self.used = 0

    @staticmethod
    def create_id(name: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"limited:{name}")

    def take(self, amount: int) -> None:
        if self.used + amount > self.limit:
            msg = f"{self.used} + {amount} > {self.limit}"
            raise LimitReachedError(msg)
        self._take(amount)

    @event("Taken")
    def _take(self, amount: int) -> None:
        self.used += amount


class BuggyCommandError(Exception):
    """Raised by a command after it already triggered events."""


def increment(counter_id: UUID, by: int = 1) -> Callable[[UnitOfWork], int]:
    def command(uow: UnitOfWork) -> int:
        counter = uow.get(counter_id, Counter)
        counter.increment(by)
        return counter.count

    return command


def take(limited_id: UUID, amount: int) -> Callable[[UnitOfWork], int]:
    def command(uow: UnitOfWork) -> int:
        limited = uow.get(limited_id, Limited)
        limited.take(amount)
        return limited.used

    return command


def read(counter_id: UUID) -> Callable[[UnitOfWork], int]:
    return lambda uow: uow.get(counter_id, Counter).count


def increment_then_raise(*counter_ids: UUID) -> Callable[[UnitOfWork], None]:
    def command(uow: UnitOfWork) -> None:
        for counter_id in counter_ids:
            uow.get(counter_id, Counter).increment(100)
        raise BuggyCommandError

    return command


def create(name: str) -> Callable[[UnitOfWork], UUID]:
    def command(uow: UnitOfWork) -> UUID:
        counter = Counter(name)
        uow.add(counter)
        return counter.id

    return command


class Gate:
    """A command that holds the worker until released, so the test controls batches."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.released = threading.Event()

    def __call__(self, uow: UnitOfWork) -> str:
        self.entered.set()
        if not self.released.wait(DEADLINE_SECONDS):
            raise TimeoutError
        return "gate"

    def hold(self, committer: GroupCommitter) -> Future[CommandOutcome[str]]:
        future = committer.submit(self)
        assert self.entered.wait(DEADLINE_SECONDS), "the worker never ran the gate"
        return future


# --- applications -------------------------------------------------------------------------


class CountingApp(Application[UUID]):
    """Counts save calls; can fail the next saves, or let a rival write just before them."""

    def __init__(self, recorder: ApplicationRecorder | None = None) -> None:
        self._shared_recorder = recorder
        super().__init__(env=POPO_ENV)
        self.save_calls = 0
        self.failures: list[Exception] = []
        self.rival_writes: list[Callable[[Sequence[Aggregate]], Sequence[UUID]]] = []

    def construct_recorder(self) -> ApplicationRecorder:
        if self._shared_recorder is not None:
            return self._shared_recorder
        return super().construct_recorder()

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        self.save_calls += 1
        if self.failures:
            raise self.failures.pop(0)
        if self.rival_writes:
            # Another process writes these counters between the batch's start and its save.
            for counter_id in self.rival_writes.pop(0)(objs):
                rival: Counter = self.repository.get(counter_id)
                rival.increment(1000)
                super().save(rival)
        return super().save(*objs, **kwargs)


def the_saved_ones(objs: Sequence[Aggregate]) -> Sequence[UUID]:
    return [obj.id for obj in objs]


def seed(app: Application[UUID], *aggregates: Aggregate) -> list[UUID]:
    app.save(*aggregates)
    return [aggregate.id for aggregate in aggregates]


def position_of(outcome: CommandOutcome[Any]) -> int:
    assert outcome.position is not None
    return outcome.position


def stored_count(app: Application[UUID], counter_id: UUID) -> int:
    counter: Counter = app.repository.get(counter_id)
    return counter.count


def results(futures: Sequence[Future[Any]]) -> list[Any]:
    """Each future's value or exception, once all are done (within the deadline)."""
    _, not_done = wait(futures, timeout=DEADLINE_SECONDS)
    assert not not_done, f"{len(not_done)} futures unresolved"
    return [future.exception() or future.result().value for future in futures]


@pytest.fixture
def app() -> CountingApp:
    return CountingApp()


@pytest.fixture
def committer(app: CountingApp) -> Iterator[GroupCommitter]:
    committer = GroupCommitter(app, batch_size_max=200, batch_wait_ms=2.0, name="test")
    committer.start()
    yield committer
    assert committer.stop(DEADLINE_SECONDS)


# --- batching -----------------------------------------------------------------------------


def test_concurrent_increments_are_applied_exactly_once_in_far_fewer_saves(
    app: CountingApp, committer: GroupCommitter
) -> None:
    counter_ids = seed(app, Counter("a"), Counter("b"), Counter("c"))
    thread_count, commands_per_thread = 16, 100
    barrier = threading.Barrier(thread_count)
    futures: list[Future[CommandOutcome[int]]] = []
    futures_lock = threading.Lock()

    def submit_many(thread_index: int) -> None:
        barrier.wait(DEADLINE_SECONDS)
        mine = [committer.submit(increment(counter_ids[(thread_index + i) % 3])) for i in range(commands_per_thread)]
        with futures_lock:
            futures.extend(mine)

    threads = [threading.Thread(target=submit_many, args=(i,)) for i in range(thread_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_SECONDS)
    seeded_saves = 1
    command_count = thread_count * commands_per_thread

    values = results(futures)

    assert all(isinstance(value, int) for value in values)
    assert sum(stored_count(app, counter_id) for counter_id in counter_ids) == command_count
    assert [stored_count(app, counter_id) for counter_id in counter_ids] == [
        sum(1 for t in range(thread_count) for i in range(commands_per_thread) if (t + i) % 3 == c) for c in range(3)
    ]
    assert (app.save_calls - seeded_saves) * 10 <= command_count
    assert committer.metrics.commands_total == command_count


def test_commands_queued_while_a_batch_runs_form_the_next_batch_without_waiting(
    app: CountingApp,
) -> None:
    # A window far longer than the test's deadline: only a full batch can start at once.
    committer = GroupCommitter(app, batch_size_max=50, batch_wait_ms=600_000)
    (counter_id,) = seed(app, Counter("a"))
    committer.start()
    gate = Gate()
    gate_future = committer.submit(gate)
    futures = [committer.submit(increment(counter_id)) for _ in range(49)]
    assert gate.entered.wait(DEADLINE_SECONDS)
    futures += [committer.submit(increment(counter_id)) for _ in range(50)]
    gate.released.set()

    values = results(futures)

    assert gate_future.result(DEADLINE_SECONDS).value == "gate"
    assert values == list(range(1, 100))
    assert app.save_calls == 1 + 2
    assert committer.stop(DEADLINE_SECONDS)


def test_commands_arriving_within_the_batch_window_share_one_save(app: CountingApp) -> None:
    (counter_id,) = seed(app, Counter("a"))
    with GroupCommitter(app, batch_size_max=10, batch_wait_ms=200) as committer:
        futures = [committer.submit(increment(counter_id)) for _ in range(2)]
        assert results(futures) == [1, 2]
    assert app.save_calls == 1 + 1


def test_each_caller_gets_its_own_result_and_its_own_error(app: CountingApp, committer: GroupCommitter) -> None:
    limited_id, counter_id = seed(app, Limited("l", limit=10), Counter("c"))
    gate = Gate()
    gate.hold(committer)
    futures: list[Future[Any]] = [
        committer.submit(take(limited_id, 3)),
        committer.submit(take(limited_id, 5)),
        committer.submit(take(limited_id, 3)),
        committer.submit(increment(counter_id, 7)),
        committer.submit(take(limited_id, 2)),
        committer.submit(read(uuid5(NAMESPACE_URL, "missing"))),
    ]
    gate.released.set()

    values = results(futures)

    assert values[:2] == [3, 8]
    assert isinstance(values[2], LimitReachedError)
    assert values[3:5] == [7, 10]
    assert isinstance(values[5], AggregateMissingError)
    assert app.repository.get(limited_id).used == 10
    assert committer.metrics.dirty_reruns_total == 0
    assert committer.metrics.commands_failed_total == 2


def test_a_command_that_mutated_then_raised_leaks_no_events(app: CountingApp, committer: GroupCommitter) -> None:
    a, b = seed(app, Counter("a"), Counter("b"))
    gate = Gate()
    gate.hold(committer)
    futures: list[Future[Any]] = [
        committer.submit(increment(a)),
        committer.submit(increment_then_raise(a, b)),
        committer.submit(increment(a)),
        committer.submit(increment(b)),
    ]
    gate.released.set()

    values = results(futures)

    assert values[0] == 1
    assert isinstance(values[1], BuggyCommandError)
    assert values[2:] == [2, 1]
    assert (stored_count(app, a), stored_count(app, b)) == (2, 1)
    assert app.repository.get(a).version == 1 + 2
    assert committer.metrics.dirty_reruns_total == 1
    # The cache was not left dirty either.
    assert committer.submit(read(a)).result(DEADLINE_SECONDS).value == 2


def test_an_aggregate_added_by_a_command_that_then_raised_is_not_saved(
    app: CountingApp, committer: GroupCommitter
) -> None:
    (a,) = seed(app, Counter("a"))

    def create_then_raise(uow: UnitOfWork) -> None:
        counter = Counter("ghost")
        uow.add(counter)
        counter.increment(1)
        raise BuggyCommandError

    gate = Gate()
    gate.hold(committer)
    futures: list[Future[Any]] = [
        committer.submit(create_then_raise),
        committer.submit(increment(a)),
    ]
    gate.released.set()

    values = results(futures)

    assert isinstance(values[0], BuggyCommandError)
    assert values[1] == 1
    assert Counter.create_id("ghost") not in app.repository
    assert committer.submit(create("ghost")).result(DEADLINE_SECONDS).value == (Counter.create_id("ghost"))


def test_positions_are_per_command_and_increase_within_an_aggregate(
    app: CountingApp, committer: GroupCommitter
) -> None:
    a, b = seed(app, Counter("a"), Counter("b"))
    gate = Gate()
    gate.hold(committer)
    commands = [increment(a), increment(b), increment(a), read(a), increment(b), increment(a)]
    futures = [committer.submit(command) for command in commands]
    gate.released.set()
    results(futures)
    outcomes = [future.result() for future in futures]

    positions = [outcome.position for outcome in outcomes]
    assert positions[3] is None  # the read triggered no event
    a_positions = [position_of(outcomes[i]) for i in (0, 2, 5)]
    b_positions = [position_of(outcomes[i]) for i in (1, 4)]
    assert a_positions == sorted(a_positions)
    assert b_positions == sorted(b_positions)
    assert len({*a_positions, *b_positions}) == 5
    for index, aggregate_id, version in [(0, a, 2), (2, a, 3), (5, a, 4), (1, b, 2), (4, b, 3)]:
        position = position_of(outcomes[index])
        (notification,) = app.recorder.select_notifications(start=position, limit=1)
        assert (notification.originator_id, notification.originator_version) == (
            aggregate_id,
            version,
        )


class CopyingApp(CountingApp):
    """An application whose save answers with copies of the events it recorded."""

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        return [
            Recording(copy.copy(recording.domain_event), recording.notification)
            for recording in super().save(*objs, **kwargs)
        ]


def test_positions_are_found_when_the_store_answers_with_copies_of_the_events() -> None:
    app = CopyingApp()
    a, b = seed(app, Counter("a"), Counter("b"))
    with GroupCommitter(app, batch_size_max=200, batch_wait_ms=2.0, name="copies") as committer:
        gate = Gate()
        gate.hold(committer)
        futures = [committer.submit(command) for command in (increment(a), increment(b), increment(a), read(b))]
        gate.released.set()
        results(futures)
    outcomes = [future.result() for future in futures]
    assert outcomes[3].position is None
    for index, aggregate_id, version in [(0, a, 2), (1, b, 2), (2, a, 3)]:
        (notification,) = app.recorder.select_notifications(start=position_of(outcomes[index]), limit=1)
        assert (notification.originator_id, notification.originator_version) == (aggregate_id, version)


# --- the unit of work ---------------------------------------------------------------------


def test_the_unit_of_work_finds_nothing_for_a_missing_id_and_checks_classes(
    app: CountingApp, committer: GroupCommitter
) -> None:
    (a,) = seed(app, Counter("a"))
    missing = uuid5(NAMESPACE_URL, "missing")

    futures: list[Future[Any]] = [
        committer.submit(lambda uow: uow.find(missing, Counter)),
        committer.submit(lambda uow: uow.get(missing, Counter)),
        committer.submit(lambda uow: uow.get(a, Limited)),
        committer.submit(lambda uow: uow.find(a, Counter).count),
    ]

    values = results(futures)
    assert values[0] is None
    assert isinstance(values[1], AggregateMissingError)
    assert isinstance(values[2], TypeError)
    assert values[3] == 0


def test_adding_an_existing_id_fails_only_that_command(app: CountingApp, committer: GroupCommitter) -> None:
    (b,) = seed(app, Counter("b"))
    stored_elsewhere = seed(app, Counter("stored"))[0]
    gate = Gate()
    gate.hold(committer)
    futures: list[Future[Any]] = [
        committer.submit(create("new")),
        committer.submit(create("new")),  # same id as the one just added in this batch
        committer.submit(create("stored")),  # in the store, not in the cache
        committer.submit(increment(b)),
    ]
    gate.released.set()

    values = results(futures)

    assert values[0] == Counter.create_id("new")
    assert isinstance(values[1], DuplicateAggregateError)
    assert isinstance(values[2], DuplicateAggregateError)
    assert isinstance(values[2], IntegrityError)
    assert values[2].aggregate_id == stored_elsewhere
    assert values[3] == 1
    assert committer.metrics.conflict_retries_total == 1
    # Cached now: found without a conflict.
    assert isinstance(committer.submit(create("new")).exception(DEADLINE_SECONDS), IntegrityError)
    assert committer.metrics.conflict_retries_total == 1


def test_aggregate_cache_evicts_the_least_recently_used_past_its_bound() -> None:
    cache = AggregateCache(size_max=2)
    a, b, c = Counter("a"), Counter("b"), Counter("c")
    cache.put([a, b])
    assert cache.get(a.id) is a  # now b is the least recently used
    cache.put([c])

    assert len(cache) == 2
    assert cache.get(b.id) is None
    assert cache.get(a.id) is a
    assert cache.get(c.id) is c


# --- conflicts and save errors ------------------------------------------------------------


def test_a_change_by_another_writer_between_batches_is_seen_without_a_conflict(
    app: CountingApp, committer: GroupCommitter
) -> None:
    (a,) = seed(app, Counter("a"))
    assert committer.submit(increment(a)).result(DEADLINE_SECONDS).value == 1  # now cached
    other_process = CountingApp(recorder=app.recorder)
    counter: Counter = other_process.repository.get(a)
    counter.increment(10)
    other_process.save(counter)

    assert committer.submit(read(a)).result(DEADLINE_SECONDS).value == 11
    assert committer.submit(increment(a)).result(DEADLINE_SECONDS).value == 12
    assert stored_count(app, a) == 12
    assert committer.metrics.conflict_retries_total == 0


def test_a_version_conflict_with_another_writer_is_retried_and_ends_correct(
    app: CountingApp, committer: GroupCommitter
) -> None:
    (a,) = seed(app, Counter("a"))
    assert committer.submit(increment(a)).result(DEADLINE_SECONDS).value == 1  # now cached
    app.rival_writes.append(the_saved_ones)

    outcome = committer.submit(increment(a)).result(DEADLINE_SECONDS)

    assert outcome.value == 1 + 1000 + 1
    assert stored_count(app, a) == 1002
    assert committer.metrics.conflict_retries_total == 1


def test_a_write_by_another_writer_during_a_batch_is_seen_by_the_next_batch(
    app: CountingApp, committer: GroupCommitter
) -> None:
    a, b = seed(app, Counter("a"), Counter("b"))
    assert committer.submit(read(b)).result(DEADLINE_SECONDS).value == 0  # now cached
    app.rival_writes.append(lambda _: [b])  # not in the batch: no conflict

    assert committer.submit(increment(a)).result(DEADLINE_SECONDS).value == 1

    assert committer.submit(read(b)).result(DEADLINE_SECONDS).value == 1000
    assert committer.metrics.conflict_retries_total == 0


def test_conflicts_on_every_attempt_exhaust_the_retries_with_a_typed_error(
    app: CountingApp,
) -> None:
    (a,) = seed(app, Counter("a"))
    batches: list[tuple[int, float, int]] = []
    committer = GroupCommitter(
        app,
        batch_size_max=2,
        batch_wait_ms=600_000,
        conflict_retries_max=2,
        on_batch=lambda size, duration_seconds, retries: batches.append((size, duration_seconds, retries)),
    )
    saves_before = app.save_calls
    app.rival_writes += [the_saved_ones] * 3
    with committer:
        futures = [committer.submit(increment(a)), committer.submit(read(a))]
        errors = results(futures)

    assert all(isinstance(error, ConflictRetriesExhaustedError) for error in errors)
    assert errors[0] is not errors[1]
    assert errors[0].attempts == 3
    assert isinstance(errors[0].__cause__, IntegrityError)
    assert app.save_calls - saves_before == 3
    assert stored_count(app, a) == 3000  # only the rival's writes
    assert [(size, retries) for size, _, retries in batches] == [(2, 2)]
    assert committer.metrics.batches_failed_total == 1


def test_any_other_save_error_fails_every_command_of_the_batch_and_commits_nothing(
    app: CountingApp, committer: GroupCommitter
) -> None:
    limited_id, a = seed(app, Limited("l", limit=1), Counter("a"))
    assert committer.submit(read(a)).result(DEADLINE_SECONDS).value == 0  # now cached
    gate = Gate()
    gate.hold(committer)
    app.failures.append(OperationalError("database down"))
    futures = [
        committer.submit(increment(a)),
        committer.submit(read(a)),  # it saw the uncommitted increment
        committer.submit(take(limited_id, 5)),  # judged on uncommitted state too
    ]
    gate.released.set()

    values = results(futures)

    assert all(isinstance(value, OperationalError) for value in values)
    assert stored_count(app, a) == 0
    # The cache forgot the uncommitted state.
    assert committer.submit(increment(a)).result(DEADLINE_SECONDS).value == 1


def test_a_store_that_cannot_be_read_fails_the_batch_and_the_next_one_recovers(
    app: CountingApp, committer: GroupCommitter, monkeypatch: pytest.MonkeyPatch
) -> None:
    (a,) = seed(app, Counter("a"))
    gate = Gate()
    gate.hold(committer)
    max_notification_id = app.recorder.max_notification_id
    outages = [OperationalError("database down")]

    def flaky_max_notification_id() -> int | None:
        if outages:
            raise outages.pop()
        return max_notification_id()

    monkeypatch.setattr(app.recorder, "max_notification_id", flaky_max_notification_id)
    future = committer.submit(increment(a))
    gate.released.set()

    assert isinstance(future.exception(DEADLINE_SECONDS), OperationalError)
    assert committer.submit(increment(a)).result(DEADLINE_SECONDS).value == 1


# --- limits and lifecycle -----------------------------------------------------------------


def test_submit_raises_overloaded_when_the_queue_is_full(app: CountingApp) -> None:
    (a,) = seed(app, Counter("a"))
    committer = GroupCommitter(app, queue_size_max=3, batch_size_max=10)
    committer.start()
    gate = Gate()
    gate.hold(committer)
    futures = [committer.submit(increment(a)) for _ in range(3)]

    with pytest.raises(OverloadedError):
        committer.submit(increment(a))

    assert committer.queue_depth() == 3
    assert committer.metrics.overloaded_total == 1
    gate.released.set()
    assert results(futures) == [1, 2, 3]
    assert committer.stop(DEADLINE_SECONDS)


def test_stop_commits_every_queued_command_before_returning(app: CountingApp) -> None:
    (a,) = seed(app, Counter("a"))
    committer = GroupCommitter(app, batch_size_max=100, batch_wait_ms=600_000)
    committer.start()
    futures = [committer.submit(increment(a)) for _ in range(10)]

    assert committer.stop(DEADLINE_SECONDS)

    assert all(future.done() for future in futures)
    assert [future.result().value for future in futures] == list(range(1, 11))
    with pytest.raises(GroupCommitterStoppedError):
        committer.submit(increment(a))


def test_a_stop_that_times_out_answers_queued_and_in_flight_callers(app: CountingApp) -> None:
    (a,) = seed(app, Counter("a"))
    committer = GroupCommitter(app)
    committer.start()
    gate = Gate()
    gate_future = gate.hold(committer)
    queued = [committer.submit(increment(a)) for _ in range(3)]

    assert not committer.stop(timeout_seconds=0.05)

    assert gate_future.done()
    assert all(future.done() for future in queued)
    assert isinstance(gate_future.exception(), CommitOutcomeUnknownError)
    assert all(isinstance(f.exception(), GroupCommitterStoppedError) for f in queued)
    gate.released.set()
    assert committer.stop(DEADLINE_SECONDS)
    assert stored_count(app, a) == 0


def test_submit_before_start_is_refused(app: CountingApp) -> None:
    committer = GroupCommitter(app)
    with pytest.raises(GroupCommitterStoppedError):
        committer.submit(read(uuid5(NAMESPACE_URL, "a")))
    assert committer.stop()
    assert committer.stop()
    with pytest.raises(RuntimeError):
        committer.start()


def test_an_application_cache_that_does_not_fast_forward_is_refused() -> None:
    app = Application[UUID](env={**POPO_ENV, "AGGREGATE_CACHE_MAXSIZE": "10", "AGGREGATE_CACHE_FASTFORWARD": "n"})
    with pytest.raises(ValueError, match="fast-forward"):
        GroupCommitter(app)


def test_a_command_cancelled_while_queued_never_runs(app: CountingApp, committer: GroupCommitter) -> None:
    (a,) = seed(app, Counter("a"))
    gate = Gate()
    gate.hold(committer)
    cancelled = committer.submit(increment(a))
    after = committer.submit(read(a))

    assert cancelled.cancel()
    gate.released.set()

    assert after.result(DEADLINE_SECONDS).value == 0
    assert committer.metrics.commands_cancelled_total == 1


def test_submit_async_returns_the_outcome_or_raises_the_command_error(
    app: CountingApp, committer: GroupCommitter
) -> None:
    limited_id, a = seed(app, Limited("l", limit=1), Counter("a"))

    async def scenario() -> tuple[CommandOutcome[int], BaseException | None]:
        async with asyncio.timeout(DEADLINE_SECONDS):
            outcome = await committer.submit_async(increment(a))
            try:
                await committer.submit_async(take(limited_id, 2))
            except LimitReachedError as error:
                return outcome, error
            return outcome, None

    outcome, error = asyncio.run(scenario())

    assert outcome.value == 1
    assert outcome.position is not None
    assert isinstance(error, LimitReachedError)


@pytest.mark.parametrize(
    "limits",
    [{"batch_size_max": 0}, {"queue_size_max": 0}, {"batch_wait_ms": -1}, {"cache_size_max": 0}],
)
def test_limits_out_of_range_are_refused(app: CountingApp, limits: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="at least"):
        GroupCommitter(app, **limits)


def test_async_callers_of_one_batch_each_get_their_own_answer(app: CountingApp, committer: GroupCommitter) -> None:
    limited_id, a = seed(app, Limited("l", limit=50), Counter("a"))
    gate = Gate()
    gate.hold(committer)  # the next commands queue up into one batch behind the gate

    async def scenario() -> list[Any]:
        async with asyncio.timeout(DEADLINE_SECONDS):
            calls = [committer.submit_async(increment(a)) for _ in range(100)]
            calls += [committer.submit_async(take(limited_id, 1)) for _ in range(60)]
            pending = asyncio.gather(*calls, return_exceptions=True)
            await asyncio.sleep(0)  # let every call enqueue
            gate.released.set()
            return list(await pending)

    answers = asyncio.run(scenario())

    counts = [answer.value for answer in answers[:100]]
    assert sorted(counts) == list(range(1, 101))
    taken = answers[100:]
    assert sum(isinstance(answer, CommandOutcome) for answer in taken) == 50
    assert sum(isinstance(answer, LimitReachedError) for answer in taken) == 10


def test_cancelling_an_async_caller_before_its_batch_starts_means_its_command_never_runs(
    app: CountingApp, committer: GroupCommitter
) -> None:
    (a,) = seed(app, Counter("a"))
    gate = Gate()
    gate.hold(committer)

    async def scenario() -> None:
        async with asyncio.timeout(DEADLINE_SECONDS):
            cancelled = asyncio.ensure_future(committer.submit_async(increment(a, by=5)))
            await asyncio.sleep(0)  # enqueued, waiting behind the gate
            cancelled.cancel()
            with pytest.raises(asyncio.CancelledError):
                await cancelled
            gate.released.set()
            after = await committer.submit_async(increment(a, by=1))
            assert after.value == 1

    asyncio.run(scenario())
    assert app.repository.get(a).count == 1


def test_a_stop_that_times_out_answers_queued_and_in_flight_async_callers(app: CountingApp) -> None:
    (a,) = seed(app, Counter("a"))
    committer = GroupCommitter(app, batch_size_max=1)
    committer.start()
    gate = Gate()

    async def scenario() -> list[BaseException | None]:
        async with asyncio.timeout(DEADLINE_SECONDS):
            in_flight = asyncio.ensure_future(committer.submit_async(gate))
            while not gate.entered.is_set():  # the worker runs the gate, off this loop's thread
                await asyncio.sleep(0.001)
            queued = [asyncio.ensure_future(committer.submit_async(increment(a))) for _ in range(3)]
            await asyncio.sleep(0)  # every caller enqueued
            assert not await asyncio.to_thread(committer.stop, 0.05)
            answers = await asyncio.gather(in_flight, *queued, return_exceptions=True)
            return [answer if isinstance(answer, BaseException) else None for answer in answers]

    answers = asyncio.run(scenario())
    assert isinstance(answers[0], CommitOutcomeUnknownError)
    assert all(isinstance(answer, GroupCommitterStoppedError) for answer in answers[1:])
    gate.released.set()
    assert committer.stop(DEADLINE_SECONDS)
    assert stored_count(app, a) == 0


def test_an_async_caller_cancelled_once_its_batch_started_is_still_committed_once(
    app: CountingApp, committer: GroupCommitter
) -> None:
    (a,) = seed(app, Counter("a"))
    first, second = Gate(), Gate()
    first.hold(committer)

    async def scenario() -> None:
        async with asyncio.timeout(DEADLINE_SECONDS):
            # Queued behind the first gate, so both run in the next batch, the second gate last.
            started = asyncio.ensure_future(committer.submit_async(increment(a, by=7)))
            await asyncio.sleep(0)
            holding = asyncio.ensure_future(committer.submit_async(second))
            await asyncio.sleep(0)
            first.released.set()
            while not second.entered.is_set():  # the increment ran; its batch is not saved yet
                await asyncio.sleep(0.001)
            started.cancel()
            with pytest.raises(asyncio.CancelledError):
                await started
            second.released.set()
            await holding
            after = await committer.submit_async(read(a))
            assert after.value == 7

    asyncio.run(scenario())
    assert app.repository.get(a).count == 7


class WorkerKilledError(BaseException):
    """Not an Exception: no command's answer, it takes the worker down (like an interrupt)."""


# The worker re-raises what is not an Exception, so its thread ends with it, as intended.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_async_callers_of_a_batch_that_crashed_get_the_crash_raised_not_returned(app: CountingApp) -> None:
    committer = GroupCommitter(app, name="crash")
    committer.start()

    def crash(uow: UnitOfWork) -> None:
        raise WorkerKilledError

    async def scenario() -> None:
        async with asyncio.timeout(DEADLINE_SECONDS):
            with pytest.raises(WorkerKilledError):
                await committer.submit_async(crash)

    asyncio.run(scenario())
    assert committer.stop(DEADLINE_SECONDS)
