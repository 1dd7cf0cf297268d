"""What every unit of work must do, as one test class run against each implementation.

A subclass provides :meth:`UnitOfWorkContract.new_unit_of_work` over an application in
which :meth:`UnitOfWorkContract.stored` aggregates exist (saved through the
application itself, as a committed batch would leave them).
"""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event

from domain.unit_of_work import AggregateMissingError, DuplicateAggregateError, TrackingUnitOfWork


class Note(Aggregate):
    """A minimal aggregate for the contract."""

    def __init__(self, text: str) -> None:
        self.text = text

    @event("Edited")
    def edit(self, text: str) -> None:
        self.text = text


class Other(Aggregate):
    """An aggregate of another class."""


class UnitOfWorkContract:
    """Subclasses set up ``app`` and implement :meth:`new_unit_of_work`."""

    app: Application[UUID]

    def new_unit_of_work(self) -> TrackingUnitOfWork:
        raise NotImplementedError

    def stored(self, text: str = "stored") -> Note:
        note = Note(text)
        self.app.save(note)
        return note

    def test_find_returns_a_stored_aggregate(self) -> None:
        note = self.stored("hello")
        found = self.new_unit_of_work().find(note.id, Note)
        assert found is not None
        assert (found.id, found.text, found.version) == (note.id, "hello", note.version)

    def test_find_of_an_unknown_id_is_none_and_get_raises(self) -> None:
        uow = self.new_unit_of_work()
        missing = uuid4()
        assert uow.find(missing, Note) is None
        with pytest.raises(AggregateMissingError) as caught:
            uow.get(missing, Note)
        assert caught.value.aggregate_id == missing

    def test_finding_twice_gives_the_same_object(self) -> None:
        note = self.stored()
        uow = self.new_unit_of_work()
        assert uow.find(note.id, Note) is uow.get(note.id, Note)

    def test_find_with_another_class_raises_type_error(self) -> None:
        note = self.stored()
        with pytest.raises(TypeError, match="is a Note, not a Other"):
            self.new_unit_of_work().find(note.id, Other)

    def test_an_added_aggregate_is_found_and_touched(self) -> None:
        uow = self.new_unit_of_work()
        note = Note("new")
        uow.add(note)
        uow.add(note)  # adding the same object again is harmless
        assert uow.find(note.id, Note) is note
        assert uow.touched == [note]

    def test_adding_another_object_with_a_touched_id_raises_duplicate(self) -> None:
        uow = self.new_unit_of_work()
        note = Note("new")
        uow.add(note)
        impostor = Note("again")
        impostor._id = note.id  # type: ignore[attr-defined]
        with pytest.raises(DuplicateAggregateError):
            uow.add(impostor)

    def test_touched_lists_found_and_added_in_first_touch_order(self) -> None:
        first, second = self.stored("a"), self.stored("b")
        uow = self.new_unit_of_work()
        uow.find(second.id, Note)
        added = Note("c")
        uow.add(added)
        uow.find(first.id, Note)
        uow.find(second.id, Note)
        assert [aggregate.id for aggregate in uow.touched] == [second.id, added.id, first.id]

    def test_changed_lists_only_aggregates_with_pending_events(self) -> None:
        first, second = self.stored("a"), self.stored("b")
        uow = self.new_unit_of_work()
        uow.get(first.id, Note)
        uow.get(second.id, Note).edit("b2")
        assert [aggregate.id for aggregate in uow.changed] == [second.id]
