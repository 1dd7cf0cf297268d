"""Every projection the projection process runs."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import Application

from projections.inventory import InventoryLevelsProjection
from projections.orders import OrdersProjection
from projections.payments import PaymentsProjection
from projections.runner import Projection


def all_projections(app: Application[Any]) -> list[Projection]:
    """Fresh instances of every projection, fed from ``app``."""
    return [InventoryLevelsProjection(app), OrdersProjection(app), PaymentsProjection(app)]


def projection_names() -> list[str]:
    """The names of every projection (their rows in ``projection_tracking``)."""
    return [InventoryLevelsProjection.name, OrdersProjection.name, PaymentsProjection.name]
