"""The unit of work that every Daybook command runs against.

A command is called with a :class:`UnitOfWork`. It loads the aggregates it needs
through the unit of work, calls their command methods (which trigger events) and
returns its result. It never saves: whoever runs the command saves every aggregate the
unit of work touched in one ``Application.save(...)`` call, so a command is atomic.

The same command runs unchanged on two runners:
- :meth:`domain.application.Daybook.execute` — one command, one transaction;
- :class:`domain.groupcommit.GroupCommitter` — many concurrent commands, one
  transaction per batch, aggregates cached between batches.

Both units of work derive from :class:`TrackingUnitOfWork`, which keeps what a command
touched; they differ only in where an aggregate comes from and how an existing id is
known. One contract test class (``tests/unit/unit_of_work_contract.py``) runs against
every implementation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

A = TypeVar("A", bound=Aggregate)
R_co = TypeVar("R_co", covariant=True)


class AggregateMissingError(LookupError):
    """The unit of work has no aggregate with the requested id."""

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(f"aggregate {aggregate_id} not found")
        self.aggregate_id = aggregate_id


class DuplicateAggregateError(IntegrityError):
    """A command added an aggregate whose id already exists.

    It is an :class:`~eventsourcing.persistence.IntegrityError`, as when a single
    ``Application.save`` creates an existing aggregate: uniqueness of deterministic ids
    is a database fact, which a unit of work reports as this error.
    """

    def __init__(self, aggregate_id: UUID) -> None:
        super().__init__(f"aggregate {aggregate_id} already exists")
        self.aggregate_id = aggregate_id


class UnitOfWork(Protocol):
    """What a command may do with aggregates."""

    def find(self, aggregate_id: UUID, aggregate_class: type[A]) -> A | None:
        """Returns the aggregate, or ``None`` when no such aggregate exists.

        Raises ``TypeError`` when the stored aggregate is of another class.
        """

    def get(self, aggregate_id: UUID, aggregate_class: type[A]) -> A:
        """Returns the aggregate or raises :class:`AggregateMissingError`."""

    def add(self, aggregate: Aggregate) -> None:
        """Registers a newly created aggregate so that it is saved with the others.

        Raises :class:`DuplicateAggregateError` when the id is known to exist; a runner
        may learn that only when saving, and then reports it the same way.
        """


class Command(Protocol[R_co]):
    """A command: called with a unit of work, it runs and returns its result.

    Daybook's commands are frozen dataclasses whose ``__call__`` is their handler
    (:mod:`domain.commands`); the group committer accepts any such callable.
    """

    def __call__(self, uow: UnitOfWork, /) -> R_co: ...


AnyCommand = Callable[[UnitOfWork], Any]


def check_class(aggregate: Aggregate, aggregate_class: type[A], aggregate_id: UUID) -> A:
    """Returns ``aggregate`` typed as ``aggregate_class`` or raises ``TypeError``."""
    if not isinstance(aggregate, aggregate_class):
        actual, expected = type(aggregate).__name__, aggregate_class.__name__
        msg = f"aggregate {aggregate_id} is a {actual}, not a {expected}"
        raise TypeError(msg)
    return aggregate


class TrackingUnitOfWork:
    """A unit of work that remembers every aggregate it handed out or was given.

    A second ``find`` of the same id returns the same object; :attr:`touched` lists
    them in first-touch order so that the runner can save them together. Subclasses
    say where an aggregate not touched yet comes from (:meth:`_load`) and whether an
    id is known to exist (:meth:`_exists`); :meth:`_touch` is their hook to note what
    each command touched.
    """

    def __init__(self) -> None:
        self._touched: dict[UUID, Aggregate] = {}

    @property
    def touched(self) -> list[Aggregate]:
        """Every aggregate found or added, in first-touch order."""
        return list(self._touched.values())

    @property
    def changed(self) -> list[Aggregate]:
        """The touched aggregates that have events to save, in first-touch order."""
        return [aggregate for aggregate in self._touched.values() if aggregate.pending_events]

    def find(self, aggregate_id: UUID, aggregate_class: type[A]) -> A | None:
        """Returns the aggregate, or ``None`` when no such aggregate exists.

        Raises:
            TypeError: the stored aggregate is of another class.
        """
        # One dict operation per id where it can (a UUID's hash is computed in Python).
        aggregate = self._touched.get(aggregate_id)
        if aggregate is None:
            aggregate = self._load(aggregate_id)
            if aggregate is None:
                return None
            self._touched[aggregate_id] = aggregate
        self._touch(aggregate)
        return check_class(aggregate, aggregate_class, aggregate_id)

    def get(self, aggregate_id: UUID, aggregate_class: type[A]) -> A:
        """Returns the aggregate.

        Raises:
            AggregateMissingError: no such aggregate exists.
            TypeError: the stored aggregate is of another class.
        """
        aggregate = self.find(aggregate_id, aggregate_class)
        if aggregate is None:
            raise AggregateMissingError(aggregate_id)
        return aggregate

    def add(self, aggregate: Aggregate) -> None:
        """Registers a newly created aggregate so that it is saved with the others.

        Raises:
            DuplicateAggregateError: an aggregate with this id is known to exist.
        """
        touched = self._touched.get(aggregate.id)
        if touched is aggregate:
            return
        if touched is not None or self._exists(aggregate.id):
            raise DuplicateAggregateError(aggregate.id)
        self._touched[aggregate.id] = aggregate
        self._added(aggregate)

    def _load(self, aggregate_id: UUID) -> Aggregate | None:
        """The aggregate from wherever the subclass keeps them, or ``None``."""
        raise NotImplementedError

    def _exists(self, aggregate_id: UUID) -> bool:
        """Whether an aggregate with this id is known to exist (beyond those touched)."""
        raise NotImplementedError

    def _touch(self, aggregate: Aggregate) -> None:
        """Notes that the current command found ``aggregate`` (already in ``touched``)."""

    def _added(self, aggregate: Aggregate) -> None:
        """Notes that the current command created ``aggregate`` (already in ``touched``)."""
