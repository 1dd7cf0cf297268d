"""The Daybook commands: plain functions on a unit of work, and command objects.

Each function takes the :class:`~domain.unit_of_work.UnitOfWork`, the
:class:`~domain.context.CommandContext` and the merchant id, validates everything
before it triggers any event (so a :class:`~domain.errors.DomainError` leaves nothing
to save), never saves, and returns a frozen view of what it changed. Each command
object binds those arguments so that a runner (``Daybook.execute``, the group
committer) can call it with just the unit of work.
"""

from domain.commands.orders import (
    HOLD_SECONDS_DEFAULT,
    HOLD_SECONDS_MAX,
    HOLD_SECONDS_MIN,
    CancelOrder,
    ExpireOrder,
    ExpiryResult,
    PlaceOrder,
    cancel_order,
    expire_order,
    find_order,
    get_order,
    place_order,
)
from domain.commands.payments import (
    ApplyGatewayEvent,
    GatewayEventOutcome,
    apply_gateway_event,
    settle_order,
)
from domain.commands.stock import AdjustStock, ReceiveStock, adjust_stock, find_item, receive_stock

__all__ = [
    "HOLD_SECONDS_DEFAULT",
    "HOLD_SECONDS_MAX",
    "HOLD_SECONDS_MIN",
    "AdjustStock",
    "ApplyGatewayEvent",
    "CancelOrder",
    "ExpireOrder",
    "ExpiryResult",
    "GatewayEventOutcome",
    "PlaceOrder",
    "ReceiveStock",
    "adjust_stock",
    "apply_gateway_event",
    "cancel_order",
    "expire_order",
    "find_item",
    "find_order",
    "get_order",
    "place_order",
    "receive_stock",
    "settle_order",
]
