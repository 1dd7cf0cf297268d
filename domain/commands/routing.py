"""Which committer partition a command belongs to, and whether it may be sent twice.

Several API processes share the commands; each aggregate must be written by one
committer, else their batches conflict on every hot SKU. A command is routed by one
aggregate id (its *routing id*) hashed into one of ``partitions`` partitions, each
owned by one process at a time (``adapters/committers``):

- stock commands by their inventory item;
- an order by the item of its lowest SKU, so every order of a single-SKU hot item
  reaches one committer. An order of several SKUs still holds all of them: its
  committer may write items of other partitions, and the event store's optimistic
  versions keep that correct (a conflicting batch is reloaded and re-run);
- a cancel or an expiry by the order, unless its caller names another routing id
  (the router takes one: the item of the order's lowest SKU sends the release to the
  item's owner);
- a gateway fact by its payment; a keyed command as the command it wraps.
"""

from __future__ import annotations

import dataclasses
from typing import TypeVar, cast
from uuid import UUID

from domain.commands.once import OncePerKey
from domain.commands.orders import CancelOrder, ExpireOrder, PlaceOrder
from domain.commands.payments import ApplyGatewayEvent
from domain.commands.stock import AdjustStock, ReceiveStock
from domain.gateway import payment_id
from domain.inventory import inventory_item_id
from domain.unit_of_work import AnyCommand

C = TypeVar("C")


def routing_id(command: AnyCommand) -> UUID:
    """The aggregate whose partition ``command`` goes to.

    Raises:
        TypeError: a command this module does not know (add it here).
    """
    if isinstance(command, OncePerKey):
        return routing_id(command.command)
    if isinstance(command, ReceiveStock | AdjustStock):
        return inventory_item_id(command.merchant_id, command.sku)
    if isinstance(command, PlaceOrder):
        skus = [line.sku for line in command.lines]
        if not skus:  # refused when it runs; any partition will do
            return command.order_id
        return inventory_item_id(command.merchant_id, min(skus))
    if isinstance(command, CancelOrder | ExpireOrder):
        return command.order_id
    if isinstance(command, ApplyGatewayEvent):
        return payment_id(command.merchant_id, command.fact.gateway, command.fact.gateway_ref)
    msg = f"no routing rule for {type(command).__name__}"
    raise TypeError(msg)


def partition_of_id(aggregate_id: UUID, partitions: int) -> int:
    """The partition of an aggregate id (ids are uuid4 or uuid5: their bits are uniform)."""
    return aggregate_id.int % partitions


def partition_of(command: AnyCommand, partitions: int) -> int:
    """The partition whose owner runs ``command``."""
    return partition_of_id(routing_id(command), partitions)


def is_retry_safe(command: AnyCommand) -> bool:
    """Whether running ``command`` twice applies it once.

    A forwarded command whose answer was lost may have committed: only these are sent
    again. An order has its id before it is sent (a second run meets the first order);
    cancels and expiries are no-ops the second time; gateway facts are kept once each;
    a keyed command meets its marker. A receipt or adjustment without a key is not:
    its caller is told the outcome is unknown instead.
    """
    if isinstance(command, OncePerKey):
        return True
    return isinstance(command, PlaceOrder | CancelOrder | ExpireOrder | ApplyGatewayEvent)


def sent_again(command: C) -> C:
    """``command`` as sent again after its answer was lost: an order it placed may exist.

    The order keeps its id, so the second run looks for it when stock is short
    (:class:`PlaceOrder` ``may_exist``) and answers with it rather than ``out_of_stock``.
    """
    if isinstance(command, PlaceOrder) and not command.may_exist:
        return cast(C, dataclasses.replace(command, may_exist=True))
    return command
