"""Commands sent with an Idempotency-Key: applied at most once, answered alike every time."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from uuid import UUID

from domain.context import CommandContext
from domain.errors import IdempotencyKeyReusedError
from domain.idempotency import IdempotencyMarker, marker_id
from domain.unit_of_work import UnitOfWork


class Recordable(Protocol):
    """A command result that can be kept as plain values in a marker."""

    def as_record(self) -> dict[str, Any]:
        """The result as JSON-friendly values."""


R = TypeVar("R", bound=Recordable)
R_co = TypeVar("R_co", bound=Recordable, covariant=True)


class MerchantCommand(Protocol[R_co]):
    """A merchant's command (a frozen dataclass with ``context`` and ``merchant_id``)."""

    @property
    def context(self) -> CommandContext:
        """Who asked."""

    @property
    def merchant_id(self) -> UUID:
        """Whose books it changes."""

    def aggregate_ids(self) -> list[UUID]:
        """The aggregates it loads (a prefetch hint)."""

    def __call__(self, uow: UnitOfWork, /) -> R_co: ...


@dataclass(frozen=True, slots=True)
class OncePerKey(Generic[R]):
    """Runs ``command`` at most once per merchant and key, however often it is retried.

    The first run saves an :class:`~domain.idempotency.IdempotencyMarker` with the
    command's result, in the same batch as the command's events. Any later run finds
    the marker and answers that result without running the command. The marker and the
    command's events share one instant.

    Raises (when called):
        IdempotencyKeyReusedError: the key's marker belongs to another request.
        Whatever ``command`` raises (then nothing is recorded, and a retry runs it).
    """

    command: MerchantCommand[R]
    key: str
    request_sha256: str
    restore: Callable[[Mapping[str, Any]], R]

    def aggregate_ids(self) -> list[UUID]:
        """The marker and whatever the command loads (a prefetch hint)."""
        return [marker_id(self.command.merchant_id, self.key), *self.command.aggregate_ids()]

    def __call__(self, uow: UnitOfWork, /) -> R:
        """Runs the command unless its key has a marker; returns the (first) result."""
        merchant_id = self.command.merchant_id
        marker = uow.find(marker_id(merchant_id, self.key), IdempotencyMarker)
        if marker is not None:
            if marker.merchant_id != merchant_id or marker.request_sha256 != self.request_sha256:
                raise IdempotencyKeyReusedError()
            return self.restore(marker.result)
        context = self.command.context.stamped()
        command: MerchantCommand[R] = dataclasses.replace(self.command, context=context)  # type: ignore[type-var]
        result = command(uow)
        uow.add(IdempotencyMarker.record(merchant_id, self.key, self.request_sha256, result.as_record(), context))
        return result
