"""The orders bounded context: the :class:`Order` aggregate and its values."""

from domain.orders.aggregate import Order
from domain.orders.values import (
    DISPUTABLE,
    PAYABLE,
    LineData,
    OrderLine,
    OrderStatus,
    OrderView,
    ShortageData,
    check_order_lines,
    quantities_by_sku,
)

__all__ = [
    "DISPUTABLE",
    "PAYABLE",
    "LineData",
    "Order",
    "OrderLine",
    "OrderStatus",
    "OrderView",
    "ShortageData",
    "check_order_lines",
    "quantities_by_sku",
]
