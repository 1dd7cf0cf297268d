"""Several API processes, one committer per aggregate: partition ownership and forwarding.

See ``docs/SCALING.md``. :func:`start_routing` wires them for one process.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from adapters.committers import wire
from adapters.committers.ownership import PartitionOwnership
from adapters.committers.peer import CommitterListener, socket_path
from adapters.committers.router import CommandRouter
from adapters.settings import Settings
from domain.groupcommit import GroupCommitter

WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})  # noqa: S104 - names, not a bind

__all__ = ["CommandRouter", "PartitionOwnership", "Routing", "start_routing"]


@dataclass(slots=True)
class Routing:
    """This process's part in routing: its router, its listener and its ownership."""

    router: CommandRouter
    listener: CommitterListener
    ownership: PartitionOwnership

    def fence(self) -> None:
        """Takes no more commands of any partition (the first step of stopping)."""
        self.ownership.owned = {}

    async def stop(self) -> None:
        """Gives the partitions up, stops listening and closes connections to others."""
        self.ownership.stop()
        await self.listener.stop()
        await self.router.close()


async def start_routing(settings: Settings, database_url: str, committer: GroupCommitter) -> Routing:
    """Listens for forwarded commands, then claims this process's share of the partitions.

    Blocks (in a thread) until the first claim is done, so a lone process owns every
    partition before it serves a request.
    """
    ownership = PartitionOwnership(
        database_url,
        partitions=settings.committer_partitions,
        address="",
        interval_seconds=settings.committer_ownership_interval_seconds,
    )
    router = CommandRouter(
        committer,
        ownership,
        deadline_seconds=settings.committer_forward_deadline_seconds,
        in_flight_max=settings.committer_forward_in_flight_max,
    )
    listener = CommitterListener(router.answer_forward, wire.encode_error)
    if settings.committer_transport == "tcp":
        advertised = settings.committer_advertised_host or settings.committer_host
        if advertised in WILDCARD_HOSTS:  # others cannot dial a wildcard: this machine's name
            advertised = socket.gethostname()
        ownership.address = await listener.start_tcp(settings.committer_host, settings.committer_port, advertised)
    else:
        ownership.address = await listener.start_unix(socket_path(settings.home))
    await asyncio.to_thread(ownership.start)
    return Routing(router, listener, ownership)
