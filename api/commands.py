"""Running commands from request handlers: context, group commit, position header."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

import anyio.to_thread
from litestar import Request

from adapters.committers import CommandRouter
from api.auth import Principal
from api.idempotency import request_hash
from api.problems import ApiError
from api.request_id import request_id_of
from domain.commands import OncePerKey
from domain.commands.once import MerchantCommand, Recordable
from domain.context import CommandContext
from domain.groupcommit import CommandOutcome
from domain.unit_of_work import Command

R = TypeVar("R")
Rr = TypeVar("Rr", bound=Recordable)
POSITION_HEADER = "X-Daybook-Position"


def merchant_of(request: Request[Any, Any, Any]) -> Any:
    """The caller's merchant id (merchant and auditor keys have one)."""
    principal: Principal = request.user
    if principal.merchant_id is None:
        raise ApiError(403, "forbidden", "This needs a merchant or auditor key.")
    return principal.merchant_id


def context_of(request: Request[Any, Any, Any]) -> CommandContext:
    """The audit context of a command caused by this request."""
    principal: Principal = request.user
    return CommandContext(actor=principal.actor, request_id=request_id_of(request.scope))


async def once_per_key(
    request: Request[Any, Any, Any], command: MerchantCommand[Rr], restore: Callable[[Mapping[str, Any]], Rr]
) -> Command[Rr]:
    """``command``, applied at most once per Idempotency-Key when the request has one.

    The key's marker is saved with the command's events (see :mod:`domain.idempotency`)
    and identifies the request as the key's table does: method, path, query and body.
    """
    key = request.headers.get("idempotency-key")
    if key is None:
        return command
    scope = request.scope
    sha256 = request_hash(scope["method"], scope["path"], scope.get("query_string", b""), await request.body())
    return OncePerKey(command, key, sha256.hex(), restore)


async def run(
    request: Request[Any, Any, Any], command: Command[R], *, routing_id: UUID | None = None
) -> tuple[R, dict[str, str]]:
    """Runs ``command`` through the group committer of its partition; returns its result and the position header.

    ``routing_id`` names the aggregate whose partition runs it, when not the command's
    own (see :mod:`domain.commands.routing`).
    """
    state = request.app.state
    commands = state.commands
    if routing_id is not None and isinstance(commands, CommandRouter):
        outcome: CommandOutcome[R] = await commands.submit_async(command, routing_id=routing_id)
    else:
        outcome = await commands.submit_async(command)
    position = outcome.position
    if position is None:  # nothing new was recorded: the store's current position is safe to wait for
        position = await anyio.to_thread.run_sync(state.daybook.recorder.max_notification_id) or 0
    return outcome.value, {POSITION_HEADER: str(position)}


def check_as_of(as_of: datetime | None) -> datetime | None:
    """400 for an instant without a time zone."""
    if as_of is not None and as_of.tzinfo is None:
        raise ApiError(400, "invalid_request", "as_of must be an RFC 3339 time with an offset, e.g. ...Z.")
    return as_of
