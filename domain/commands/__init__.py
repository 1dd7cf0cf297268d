"""The Daybook commands: each a frozen dataclass whose ``__call__`` is its handler.

Called with a :class:`~domain.unit_of_work.UnitOfWork`, a command loads what it needs
through it, lets the aggregates check their inputs and rules before any event is
triggered (so a :class:`~domain.errors.DomainError` leaves nothing to save), never
saves, and returns a frozen view of what it changed. A runner (``Daybook.execute``, the group committer)
saves every aggregate the unit of work touched. ``aggregate_ids`` names the aggregates
a command will load, so that a batch runner can read them in one query.
"""

from domain.commands.once import OncePerKey
from domain.commands.orders import CancelOrder, ExpireOrder, ExpiryResult, PlaceOrder, find_order, get_order
from domain.commands.payments import ApplyGatewayEvent, GatewayEventOutcome, settle_order
from domain.commands.stock import AdjustStock, ReceiveStock, find_item

__all__ = [
    "AdjustStock",
    "ApplyGatewayEvent",
    "CancelOrder",
    "ExpireOrder",
    "ExpiryResult",
    "GatewayEventOutcome",
    "OncePerKey",
    "PlaceOrder",
    "ReceiveStock",
    "find_item",
    "find_order",
    "get_order",
    "settle_order",
]
