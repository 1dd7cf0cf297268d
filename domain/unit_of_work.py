"""The unit of work that every Daybook command runs against.

A command is a plain callable taking a :class:`UnitOfWork`. It loads the aggregates it
needs through the unit of work, calls their command methods (which trigger events) and
returns its result. It never saves: whoever runs the command saves every aggregate the
unit of work touched in one ``Application.save(...)`` call, so a command is atomic.

The same command runs unchanged on two runners:
- :meth:`domain.application.Daybook.execute` — one command, one transaction;
- :class:`domain.groupcommit.GroupCommitter` — many concurrent commands, one
  transaction per batch, aggregates cached between batches.
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
    """A command: runs against a unit of work and returns its result."""

    def __call__(self, uow: UnitOfWork, /) -> R_co: ...


AnyCommand = Callable[[UnitOfWork], Any]


def check_class(aggregate: Aggregate, aggregate_class: type[A], aggregate_id: UUID) -> A:
    """Returns ``aggregate`` typed as ``aggregate_class`` or raises ``TypeError``."""
    if not isinstance(aggregate, aggregate_class):
        actual, expected = type(aggregate).__name__, aggregate_class.__name__
        msg = f"aggregate {aggregate_id} is a {actual}, not a {expected}"
        raise TypeError(msg)
    return aggregate
