"""Helpers for the domain state machines: a caching runner and event round trips."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Mapper

from domain.errors import DomainError
from domain.unit_of_work import AggregateMissingError, UnitOfWork, check_class

A = TypeVar("A", bound=Aggregate)
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

    def run(self, command: Callable[[UnitOfWork], R]) -> R:
        uow = _CachedUnitOfWork(self)
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


class _CachedUnitOfWork:
    def __init__(self, runner: CachingRunner) -> None:
        self._runner = runner
        self._touched: dict[UUID, Aggregate] = {}

    @property
    def touched(self) -> list[Aggregate]:
        return list(self._touched.values())

    def find(self, aggregate_id: UUID, aggregate_class: type[A]) -> A | None:
        aggregate = self._runner.live.get(aggregate_id)
        if aggregate is None:
            try:
                aggregate = self._runner.app.repository.get(aggregate_id)
            except AggregateNotFoundError:
                return None
            self._runner.live[aggregate_id] = aggregate
        self._touched.setdefault(aggregate_id, aggregate)
        return check_class(aggregate, aggregate_class, aggregate_id)

    def get(self, aggregate_id: UUID, aggregate_class: type[A]) -> A:
        aggregate = self.find(aggregate_id, aggregate_class)
        if aggregate is None:
            raise AggregateMissingError(aggregate_id)
        return aggregate

    def add(self, aggregate: Aggregate) -> None:
        self._runner.live[aggregate.id] = aggregate
        self._touched.setdefault(aggregate.id, aggregate)


def round_trip(mapper: Mapper[UUID], events: Iterable[Any]) -> Aggregate | None:
    """Rebuilds an aggregate from events passed through storage encoding and back."""
    aggregate: Aggregate | None = None
    for event in events:
        aggregate = mapper.to_domain_event(mapper.to_stored_event(event)).mutate(aggregate)  # type: ignore[attr-defined]
    return aggregate
