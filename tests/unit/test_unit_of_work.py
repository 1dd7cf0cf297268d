"""The unit-of-work contract, run against every implementation."""

from __future__ import annotations

from uuid import UUID

import pytest
from eventsourcing.application import Application

from domain.application import RepositoryUnitOfWork
from domain.groupcommit import AggregateCache, BatchUnitOfWork
from domain.unit_of_work import DuplicateAggregateError, TrackingUnitOfWork
from tests.property.domain_support import CachingRunner
from tests.unit.unit_of_work_contract import Note, UnitOfWorkContract


def memory_app() -> Application[UUID]:
    return Application[UUID](env={"PERSISTENCE_MODULE": "eventsourcing.popo"})


class TestRepositoryUnitOfWork(UnitOfWorkContract):
    def setup_method(self) -> None:
        self.app = memory_app()

    def new_unit_of_work(self) -> TrackingUnitOfWork:
        return RepositoryUnitOfWork(self.app.repository)

    def test_adding_a_stored_id_raises_duplicate_at_once(self) -> None:
        note = self.stored()
        impostor = Note("again")
        impostor._id = note.id  # type: ignore[attr-defined]
        with pytest.raises(DuplicateAggregateError):
            self.new_unit_of_work().add(impostor)


class TestBatchUnitOfWork(UnitOfWorkContract):
    def setup_method(self) -> None:
        self.app = memory_app()
        self.cache = AggregateCache(100)

    def new_unit_of_work(self) -> TrackingUnitOfWork:
        return BatchUnitOfWork(self.app, self.cache, check_store_on_add=True)

    def test_a_cached_aggregate_is_found_without_the_store(self) -> None:
        note = Note("only cached")
        self.cache.put([note])
        assert self.new_unit_of_work().find(note.id, Note) is note

    def test_an_id_the_prefetch_found_missing_is_not_read_again(self) -> None:
        note = self.stored()
        uow = BatchUnitOfWork(self.app, self.cache, check_store_on_add=False, known_missing=frozenset({note.id}))
        assert uow.find(note.id, Note) is None


class TestCachingRunnerUnitOfWork(UnitOfWorkContract):
    def setup_method(self) -> None:
        self.app = memory_app()
        self.runner = CachingRunner(self.app)

    def new_unit_of_work(self) -> TrackingUnitOfWork:
        return self.runner.new_unit_of_work()
