"""Helpers for the domain state machines: a caching runner and event round trips."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper

from domain.errors import DomainError
from domain.unit_of_work import TrackingUnitOfWork, UnitOfWork

R = TypeVar("R")


class CachingRunner:
    """Runs commands against aggregates kept live in memory between commands.

    Like the group committer, it never reloads an aggregate it already holds, so the
    live objects can be compared with what replaying their stored events gives. It also
    checks the runner rule: a command that raises a DomainError has triggered nothing.
    """

    def __init__(self, app: Application[UUID]) -> None:
        self.app = app
        self.live: dict[UUID, Aggregate] = {}

    def new_unit_of_work(self) -> TrackingUnitOfWork:
        return _CachedUnitOfWork(self)

    def run(self, command: Callable[[UnitOfWork], R]) -> R:
        uow = self.new_unit_of_work()
        try:
            result = command(uow)
        except DomainError:
            dirty = [aggregate for aggregate in uow.touched if aggregate.pending_events]
            assert not dirty, f"a refused command triggered events on {dirty}"
            raise
        changed = [aggregate for aggregate in uow.touched if aggregate.pending_events]
        if changed:
            self.app.save(*changed)
        return result


class _CachedUnitOfWork(TrackingUnitOfWork):
    """Finds aggregates among the runner's live ones first, then in the store."""

    def __init__(self, runner: CachingRunner) -> None:
        super().__init__()
        self._runner = runner

    def _load(self, aggregate_id: UUID) -> Aggregate | None:
        aggregate = self._runner.live.get(aggregate_id)
        if aggregate is None:
            try:
                aggregate = self._runner.app.repository.get(aggregate_id)
            except AggregateNotFoundError:
                return None
            self._runner.live[aggregate_id] = aggregate
        return aggregate

    def _exists(self, aggregate_id: UUID) -> bool:
        return aggregate_id in self._runner.live or aggregate_id in self._runner.app.repository

    def _added(self, aggregate: Aggregate) -> None:
        self._runner.live[aggregate.id] = aggregate


def round_trip(mapper: Mapper[UUID], events: Iterable[Any]) -> Aggregate | None:
    """Rebuilds an aggregate from events passed through storage encoding and back."""
    aggregate: Aggregate | None = None
    for event in events:
        aggregate = mapper.to_domain_event(mapper.to_stored_event(event)).mutate(aggregate)  # type: ignore[attr-defined]
    return aggregate
