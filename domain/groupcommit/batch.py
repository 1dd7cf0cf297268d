"""Runs one batch of commands and saves all they did in one transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, Recording

from domain.groupcommit.batch_unit_of_work import BatchUnitOfWork, EventKey
from domain.groupcommit.cache import AggregateCache
from domain.groupcommit.errors import ConflictRetriesExhaustedError
from domain.snapshots import BulkEventReader, SnapshottingRepository
from domain.unit_of_work import AnyCommand

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class CommandOutcome(Generic[R]):
    """What a committed command returned.

    Attributes:
        value: the command's return value.
        position: the highest notification id of the events this command triggered
            (wait for a projection to reach it to read your own write), or ``None``
            when it triggered none.
    """

    value: R
    position: int | None


Outcome = CommandOutcome[Any] | Exception
"""A command's answer: its outcome, or the exception to raise to its caller."""


@dataclass(frozen=True, slots=True)
class BatchReport:
    """How a batch went.

    Attributes:
        outcomes: one per command, in the order the commands were given.
        conflict_retries: how many times the batch was re-run after a version conflict.
        dirty_reruns: how many times it was re-run without a command that triggered
            events and then raised.
        saved: whether an ``Application.save`` call committed events.
        failure: the save error that failed the whole batch (the last version
            conflict when retries ran out), else ``None``.
    """

    outcomes: list[Outcome]
    conflict_retries: int
    dirty_reruns: int
    saved: bool
    failure: Exception | None = None


@dataclass(frozen=True, slots=True)
class _Pass:
    uow: BatchUnitOfWork
    outcomes: dict[int, tuple[Any, list[Any]] | Exception]


def run_batch(
    app: Application[UUID],
    cache: AggregateCache,
    commands: Sequence[AnyCommand],
    *,
    conflict_retries_max: int,
) -> BatchReport:
    """Runs ``commands`` in order against shared aggregates and saves them at once.

    Each attempt first evicts the cached aggregates that other writers changed. A
    command that raises without triggering events fails alone. One that triggered
    events and then raised left dirty aggregates behind: they are evicted and the batch
    is re-run without it. A version conflict evicts the batch's aggregates and re-runs
    the batch on reloaded ones, at most ``conflict_retries_max`` times. Any other save
    error fails every command still in the batch: nothing was committed.

    Only the worker thread may call this, as it mutates ``cache``.
    """
    excluded: dict[int, Exception] = {}
    conflict_retries = 0
    dirty_reruns = 0

    def failed(failure: Exception, *, conflicts: bool = False) -> BatchReport:
        # Nothing was committed: excluded commands keep their own errors, others get ours.
        outcomes: list[Outcome] = []
        for index in range(len(commands)):
            if index in excluded:
                outcomes.append(excluded[index])
            elif conflicts:
                outcomes.append(_exhausted(conflict_retries + 1, failure))
            else:
                outcomes.append(failure)
        return BatchReport(outcomes, conflict_retries, dirty_reruns, saved=False, failure=failure)

    while True:
        try:
            cache.catch_up(app.recorder)
            # Known only on the first attempt: a conflict means the store moved under us.
            missing = _prefetch(app, cache, commands) if conflict_retries == 0 else frozenset[UUID]()
        except Exception as error:  # the store is unreachable: nothing can be decided
            return failed(error)
        batch_pass, reruns = _run_commands(
            app, cache, commands, excluded, check_store_on_add=conflict_retries > 0, known_missing=missing
        )
        dirty_reruns += reruns
        try:
            recordings = _save(app, batch_pass.uow)
        except IntegrityError as error:
            cache.evict(aggregate.id for aggregate in batch_pass.uow.touched)
            if conflict_retries < conflict_retries_max:
                conflict_retries += 1
                continue
            return failed(error, conflicts=True)
        except Exception as error:  # the callers get the save error itself
            cache.evict(aggregate.id for aggregate in batch_pass.uow.touched)
            return failed(error)
        cache.put(batch_pass.uow.touched)
        cache.saved([recording.notification.id for recording in recordings or ()])
        outcomes = _outcomes(len(commands), batch_pass, excluded, recordings)
        return BatchReport(outcomes, conflict_retries, dirty_reruns, recordings is not None)


def _exhausted(attempts: int, conflict: Exception) -> ConflictRetriesExhaustedError:
    # One error per caller, as each raises it in its own thread.
    error = ConflictRetriesExhaustedError(attempts)
    error.__cause__ = conflict
    return error


def _run_commands(
    app: Application[UUID],
    cache: AggregateCache,
    commands: Sequence[AnyCommand],
    excluded: dict[int, Exception],
    *,
    check_store_on_add: bool,
    known_missing: frozenset[UUID],
) -> tuple[_Pass, int]:
    """Runs every command not yet excluded; returns the pass and how often it restarted.

    Each restart excludes one more command, so there are at most ``len(commands)``.
    """
    reruns = 0
    while True:
        uow = BatchUnitOfWork(app, cache, check_store_on_add=check_store_on_add, known_missing=known_missing)
        outcomes: dict[int, tuple[Any, list[Any]] | Exception] = {}
        for index, command in enumerate(commands):
            if index in excluded:
                continue
            uow.begin_command()
            try:
                value = command(uow)
            except Exception as error:  # it is this command's answer
                if uow.end_command():
                    excluded[index] = error
                    cache.evict(aggregate.id for aggregate in uow.touched)
                    break
                outcomes[index] = error
            else:
                outcomes[index] = (value, uow.end_command())
        else:
            return _Pass(uow, outcomes), reruns
        reruns += 1


def _prefetch(app: Application[UUID], cache: AggregateCache, commands: Sequence[AnyCommand]) -> frozenset[UUID]:
    """Loads, in one query, the aggregates the commands say they need and the cache lacks.

    Commands may name them with an ``aggregate_ids()`` method (a hint: a command may
    still load others, one by one). Each is loaded from its latest snapshot and the
    events after it when the application snapshots (:mod:`domain.snapshots`), so a
    long-lived SKU costs about an interval of events, not its history. Returns the
    named ids that do not exist, so the pass need not ask the store again. Does nothing
    when the recorder cannot read in bulk (the in-memory store).
    """
    if not isinstance(app.recorder, BulkEventReader):
        return frozenset()
    wanted: set[UUID] = set()
    for command in commands:
        hint = getattr(command, "aggregate_ids", None)
        if hint is not None:
            # try, not contextlib.suppress: entering a context manager per command cost more.
            try:  # noqa: SIM105
                wanted.update(hint())
            except Exception:  # noqa: S110 - a malformed command fails when it runs
                pass
    wanted = {aggregate_id for aggregate_id in wanted if not cache.contains(aggregate_id)}
    if not wanted:
        return frozenset()
    if isinstance(app.repository, SnapshottingRepository):
        loaded = app.repository.get_many(sorted(wanted))
    else:
        loaded = {}
        for aggregate_id, events in app.recorder.select_events_of(sorted(wanted)).items():
            aggregate: Any = None
            for stored_event in events:
                aggregate = app.mapper.to_domain_event(stored_event).mutate(aggregate)  # type: ignore[attr-defined]
            loaded[aggregate_id] = aggregate
    cache.put(loaded.values())
    return frozenset(wanted - loaded.keys())


def _save(app: Application[UUID], uow: BatchUnitOfWork) -> list[Recording[UUID]] | None:
    """Saves the aggregates with pending events in one transaction, if there are any."""
    changed = [aggregate for aggregate in uow.touched if aggregate.pending_events]
    if not changed:
        return None
    return app.save(*changed)


def _outcomes(
    command_count: int,
    batch_pass: _Pass,
    excluded: dict[int, Exception],
    recordings: list[Recording[UUID]] | None,
) -> list[Outcome]:
    # By the event objects themselves (the store records the very objects the commands
    # triggered): a UUID's hash is computed in Python, an id's is not.
    positions = {id(recording.domain_event): recording.notification.id for recording in recordings or ()}
    by_key: dict[EventKey, int] | None = None
    outcomes: list[Outcome] = []
    for index in range(command_count):
        if index in excluded:
            outcomes.append(excluded[index])
            continue
        result = batch_pass.outcomes[index]
        if isinstance(result, Exception):
            outcomes.append(result)
            continue
        value, events = result
        position: int | None = None
        for event in events:
            event_position = positions.get(id(event))
            if event_position is None and recordings:
                # A store that recorded copies: look the event up by its key instead.
                by_key = by_key if by_key is not None else _positions_by_key(recordings)
                event_position = by_key.get((event.originator_id, event.originator_version))
            if event_position is not None and (position is None or event_position > position):
                position = event_position
        outcomes.append(CommandOutcome(value, position))
    return outcomes


def _positions_by_key(recordings: list[Recording[UUID]]) -> dict[EventKey, int]:
    return {
        (recording.domain_event.originator_id, recording.domain_event.originator_version): recording.notification.id
        for recording in recordings
    }
