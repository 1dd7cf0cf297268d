"""Routing commands to the one committer of their partition, here or in another process.

A command's partition (:mod:`domain.commands.routing`) is owned by one process at a
time (:mod:`adapters.committers.ownership`). The router runs the commands of the
partitions this process owns in its own :class:`~domain.groupcommit.GroupCommitter`
(no hop), and sends the others to their owner (:mod:`adapters.committers.peer`),
which checks that it still owns the partition at the epoch the sender saw before it
runs anything (fencing: a former owner answers ``moved``).

Until ``deadline_seconds`` have passed, a command that could not be delivered — no
owner known, the owner's socket gone or refusing, ``moved`` — forgets the directory
entry, asks the ownership thread to claim the partition here if it is free, waits for
its next tick and tries again: a live owner is found or becomes this process, and the
caller never gets a 5xx for the hand-over. A command that was sent but whose answer
was lost (the connection ended, or no answer in time) may have committed: it is sent
again only when running it twice applies it once (:func:`is_retry_safe`: it keeps its
order id, idempotency key or gateway fact), else its caller gets
:class:`CommitOutcomeUnknownError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar
from uuid import UUID

from adapters.committers import wire
from adapters.committers.ownership import PartitionOwnership
from adapters.committers.peer import PeerBusyError, PeerConnection, PeerLostError, PeerUnreachableError
from domain.commands.routing import is_retry_safe, partition_of, partition_of_id, sent_again
from domain.errors import OrderAlreadyExistsError
from domain.groupcommit import (
    CommandOutcome,
    CommitOutcomeUnknownError,
    CommitterUnavailableError,
    GroupCommitter,
)
from domain.unit_of_work import Command

R = TypeVar("R")
log = logging.getLogger(__name__)

PEERS_MAX = 256
"""Connections to other processes kept at most (the least recently used is closed)."""


def _ignore(_: str) -> None:
    pass


def _outcome(answer: wire.Answer, command: Command[R], *, maybe_sent: bool) -> CommandOutcome[R]:
    """The outcome an owner answered, or the error it answered, raised."""
    if answer.status == wire.OK:
        return wire.outcome_of(answer, wire.kind_of(command))
    error = wire.error_of(answer)
    if maybe_sent and isinstance(error, OrderAlreadyExistsError):
        # The order's id was chosen before the first send: the first send placed it.
        error.placed_by_this_request = True  # type: ignore[attr-defined]
    raise error


class CommandRouter:
    """Submits commands to the committer that owns their partition."""

    def __init__(
        self,
        committer: GroupCommitter,
        ownership: PartitionOwnership,
        *,
        deadline_seconds: float = 10.0,
        in_flight_max: int = 10_000,
        on_route: Callable[[str], None] | None = None,
    ) -> None:
        """Routes over ``ownership``'s partitions; forwards wait at most ``deadline_seconds``.

        ``on_route`` is told where each command went: ``local``, ``forwarded``, ``moved``
        (an owner refused it) or ``resent`` (sent again after a lost answer).
        """
        self.committer = committer
        self.ownership = ownership
        self.partitions = ownership.partitions
        self.deadline_seconds = deadline_seconds
        self.in_flight_max = in_flight_max
        self._on_route = on_route or _ignore
        self._peers: dict[str, PeerConnection] = {}
        self.forwarded_total = 0
        self.local_total = 0
        self.redirects_total = 0

    async def submit_async(self, command: Command[R], *, routing_id: UUID | None = None) -> CommandOutcome[R]:
        """Runs ``command`` in its partition's committer; returns its outcome or raises its error.

        ``routing_id`` overrides the command's own routing aggregate (a cancel sent to
        the owner of its order's item).

        Raises:
            CommitterUnavailableError: no owner could be reached before the deadline
                (nothing ran).
            CommitOutcomeUnknownError: the command was sent, its answer was lost, and it
                is not safe to send twice.
            Whatever the command or its batch raised.
        """
        if routing_id is not None:
            partition = partition_of_id(routing_id, self.partitions)
        else:
            partition = partition_of(command, self.partitions)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_seconds
        maybe_sent = False
        while True:
            outcome = await self._run_here(partition, command)
            if outcome is not None:
                return outcome
            owner = self.ownership.directory.get(partition)
            remaining = deadline - loop.time()
            if remaining <= 0:
                if maybe_sent:
                    raise CommitOutcomeUnknownError(f"partition {partition}: no answer within the deadline")
                raise CommitterUnavailableError(partition, self.deadline_seconds)
            if owner is None or (owner.address == self.ownership.address and partition not in self.ownership.owned):
                await self._wait_for_owner(partition, None, remaining)
                continue
            try:
                answer = await self._peer(owner.address).call(partition, owner.epoch, command, remaining)
            except PeerBusyError:
                continue  # not sent, and the deadline has passed: answered above
            except PeerUnreachableError:
                await self._wait_for_owner(partition, owner.address, deadline - loop.time())
                continue
            except (PeerLostError, TimeoutError) as lost:
                log.warning("partition %d: no answer from %s (%r)", partition, owner.address, lost)
                if not is_retry_safe(command):
                    msg = f"partition {partition}: the owner's answer was lost ({lost})"
                    raise CommitOutcomeUnknownError(msg) from lost
                maybe_sent = True
                command = sent_again(command)
                self._on_route("resent")
                # A connection that ended is forgotten; one that is only slow keeps serving
                # the other commands waiting on it.
                await self._wait_for_owner(
                    partition, owner.address, deadline - loop.time(), close=isinstance(lost, PeerLostError)
                )
                continue
            if answer.status == wire.MOVED:
                self.redirects_total += 1
                self._on_route("moved")
                await self._wait_for_owner(partition, owner.address, deadline - loop.time())
                continue
            self.forwarded_total += 1
            self._on_route("forwarded")
            return _outcome(answer, command, maybe_sent=maybe_sent)

    async def _run_here(self, partition: int, command: Command[R]) -> CommandOutcome[R] | None:
        """Runs ``command`` in this process's committer if it owns ``partition``, else ``None``."""
        in_flight = self.ownership.in_flight
        # Counted before ownership is checked: a release waits for it, so the partition
        # cannot change hands between the check and the run.
        in_flight[partition] += 1
        try:
            if partition not in self.ownership.owned:
                return None
            self.local_total += 1
            self._on_route("local")
            return await self.committer.submit_async(command)
        finally:
            in_flight[partition] -= 1

    async def answer_forward(self, forward: wire.Forward, command: Any) -> bytes:
        """Runs a forwarded command if this process owns its partition at its epoch."""
        partition = forward.partition
        if not 0 <= partition < self.partitions:
            return wire.encode_moved(forward.id)
        in_flight = self.ownership.in_flight
        in_flight[partition] += 1
        try:
            if self.ownership.owned.get(partition) != forward.epoch:
                log.info(
                    "partition %d at epoch %d is not ours (%s): moved",
                    partition,
                    forward.epoch,
                    self.ownership.owned.get(partition),
                )
                return wire.encode_moved(forward.id)
            try:
                outcome = await self.committer.submit_async(command)
            except Exception as error:
                return wire.encode_error(forward.id, error)
            return wire.encode_outcome(forward.id, outcome)
        finally:
            in_flight[partition] -= 1

    async def _wait_for_owner(
        self, partition: int, unreachable: str | None, remaining_seconds: float, *, close: bool = True
    ) -> None:
        """Forgets an owner that could not be reached and waits for the ownership thread's next tick."""
        if remaining_seconds <= 0:
            return
        if unreachable is not None and close:
            peer = self._peers.pop(unreachable, None)
            if peer is not None and unreachable != self.ownership.address:
                await peer.close()
        tick = self.ownership.orphaned(partition, unreachable)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.wrap_future(tick), remaining_seconds)

    def _peer(self, address: str) -> PeerConnection:
        peer = self._peers.pop(address, None)
        if peer is None or peer.closed:
            peer = PeerConnection(address, self.in_flight_max)
        self._peers[address] = peer  # most recently used last
        if len(self._peers) > PEERS_MAX:
            oldest = next(iter(self._peers))
            stale = self._peers.pop(oldest)
            task = asyncio.get_running_loop().create_task(stale.close())
            task.add_done_callback(lambda _: None)
        return peer

    async def close(self) -> None:
        """Closes the connections to other processes."""
        peers, self._peers = list(self._peers.values()), {}
        for peer in peers:
            await peer.close()
