"""Projections whose rows are views of aggregates, kept by applying events to them.

The row of an aggregate is whatever its ``view()`` / ``level()`` says, so the read model
cannot drift from the domain's rules: the projection applies each event to a cached copy
of the aggregate (the same ``apply`` the write side uses) and upserts one row per
aggregate touched in the batch. A hot SKU held 200 times in one batch is written once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, DomainEventProtocol

CACHE_SIZE_MAX = 50_000


class AggregateStateProjection:
    """Base: subclasses name the aggregate class and write rows for touched aggregates."""

    name = "abstract"
    aggregate_class: type[Aggregate] = Aggregate

    def __init__(self, app: Application[Any]) -> None:
        self.app = app
        self._cache: OrderedDict[UUID, Aggregate] = OrderedDict()

    def process(self, cursor: psycopg.Cursor[Any], events: Sequence[tuple[int, DomainEventProtocol[Any]]]) -> None:
        """Applies this projection's events, then writes one row per touched aggregate."""
        touched: dict[UUID, tuple[Aggregate, int]] = {}
        for position, event in events:
            if not self._is_mine(event):
                continue
            aggregate = self._apply(event)
            touched[aggregate.id] = (aggregate, position)
        if touched:
            try:
                self.write(cursor, list(touched.values()))
            except BaseException:
                # The transaction rolls back; cached copies are ahead of the table now.
                self._cache.clear()
                raise

    def _is_mine(self, event: DomainEventProtocol[Any]) -> bool:
        return type(event).__qualname__.split(".", 1)[0] == self.aggregate_class.__name__

    def _apply(self, event: DomainEventProtocol[Any]) -> Aggregate:
        aggregate_id = event.originator_id
        cached = self._cache.get(aggregate_id)
        if cached is not None and cached.version == event.originator_version - 1:
            aggregate = event.mutate(cached)  # type: ignore[attr-defined]
        elif event.originator_version == 1:
            aggregate = event.mutate(None)  # type: ignore[attr-defined]
        else:
            aggregate = self.app.repository.get(aggregate_id, version=event.originator_version)
        assert aggregate is not None
        self._cache[aggregate_id] = aggregate
        self._cache.move_to_end(aggregate_id)
        while len(self._cache) > CACHE_SIZE_MAX:
            self._cache.popitem(last=False)
        return aggregate  # type: ignore[no-any-return]

    def write(self, cursor: psycopg.Cursor[Any], aggregates: list[tuple[Aggregate, int]]) -> None:
        """Upserts the rows of ``aggregates`` (each with the position of its last event)."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forgets cached aggregates (before a rebuild)."""
        self._cache.clear()
