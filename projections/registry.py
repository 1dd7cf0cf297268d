"""Every projection the projection process runs."""

from __future__ import annotations

from typing import Any

from eventsourcing.application import Application

from projections.audit_chain import AuditChainProjection
from projections.inventory import InventoryLevelsProjection
from projections.orders import OrdersProjection
from projections.payments import PaymentsProjection
from projections.runner import Projection
from projections.state import AggregateStateProjection


def all_projections(app: Application[Any]) -> list[AggregateStateProjection]:
    """Fresh instances of every read model (a row per aggregate; compared, rebuilt), fed from ``app``."""
    return [InventoryLevelsProjection(app), OrdersProjection(app), PaymentsProjection(app)]


def projection_names() -> list[str]:
    """The names of every read model (their rows in ``projection_tracking``)."""
    return [InventoryLevelsProjection.default_name, OrdersProjection.default_name, PaymentsProjection.default_name]


def every_projection(app: Application[Any], **audit_options: Any) -> list[Projection]:
    """What the projection process runs: the read models and the audit chain.

    ``audit_options`` go to :class:`AuditChainProjection` (its digest signer).
    """
    return [*all_projections(app), AuditChainProjection(app, **audit_options)]


def every_projection_name() -> list[str]:
    """The names of everything the projection process runs (what ``/readyz`` watches)."""
    return [*projection_names(), AuditChainProjection.default_name]


def projection_named(app: Application[Any], name: str) -> Projection:
    """A fresh instance of the projection called ``name``.

    Raises:
        KeyError: no projection has that name.
    """
    for projection in every_projection(app):
        if projection.name == name:
            return projection
    raise KeyError(name)
