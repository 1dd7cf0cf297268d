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
    return [InventoryLevelsProjection.default_name, OrdersProjection.default_name, PaymentsProjection.default_name]


def projection_named(app: Application[Any], name: str) -> Projection:
    """A fresh instance of the projection called ``name``.

    Raises:
        KeyError: no projection has that name.
    """
    for projection in all_projections(app):
        if projection.name == name:
            return projection
    raise KeyError(name)
