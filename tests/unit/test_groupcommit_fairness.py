"""The group committer shares its queue fairly between merchants."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from uuid import UUID, uuid4

import pytest

from domain.groupcommit import GroupCommitter, OverloadedError
from domain.unit_of_work import UnitOfWork
from tests.unit.test_groupcommit import DEADLINE_SECONDS, CountingApp, Gate, results


@dataclass(frozen=True)
class Note:
    """A merchant's command that only records that it ran."""

    merchant_id: UUID
    label: str
    ran: list[str]

    def __call__(self, uow: UnitOfWork, /) -> str:
        self.ran.append(self.label)
        return self.label


@pytest.fixture
def app() -> CountingApp:
    return CountingApp()


def test_one_merchants_burst_fills_only_its_share_and_other_merchants_still_queue(app: CountingApp) -> None:
    committer = GroupCommitter(app, queue_size_max=10, merchant_queue_size_max=4, batch_size_max=10)
    committer.start()
    gate = Gate()
    gate.hold(committer)
    ran: list[str] = []
    noisy, quiet = uuid4(), uuid4()
    burst = [committer.submit(Note(noisy, f"a{i}", ran)) for i in range(4)]

    with pytest.raises(OverloadedError) as refused:
        committer.submit(Note(noisy, "a-too-many", ran))
    quiet_futures = [committer.submit(Note(quiet, f"b{i}", ran)) for i in range(4)]

    assert refused.value.merchant
    assert committer.merchant_queue_depth(noisy) == 4
    assert committer.merchant_queue_depth(quiet) == 4
    assert committer.metrics.merchant_overloaded_total == 1
    gate.released.set()
    assert results(burst + quiet_futures) == ["a0", "a1", "a2", "a3", "b0", "b1", "b2", "b3"]
    assert committer.stop(DEADLINE_SECONDS)


def test_the_whole_queue_still_bounds_the_sum_of_every_merchants_share(app: CountingApp) -> None:
    committer = GroupCommitter(app, queue_size_max=5, merchant_queue_size_max=3, batch_size_max=10)
    committer.start()
    gate = Gate()
    gate.hold(committer)
    ran: list[str] = []
    futures = [committer.submit(Note(uuid4(), f"m{i}", ran)) for i in range(5)]

    with pytest.raises(OverloadedError) as refused:
        committer.submit(Note(uuid4(), "one-more", ran))

    assert not refused.value.merchant
    assert committer.queue_depth() == 5
    gate.released.set()
    assert len(results(futures)) == 5
    assert committer.stop(DEADLINE_SECONDS)


def test_a_batch_takes_commands_from_every_waiting_merchant_in_turn(app: CountingApp) -> None:
    committer = GroupCommitter(app, batch_size_max=4, batch_wait_ms=0)
    committer.start()
    gate = Gate()
    gate.hold(committer)
    ran: list[str] = []
    noisy, quiet = uuid4(), uuid4()
    futures: list[Future[object]] = [committer.submit(Note(noisy, f"a{i}", ran)) for i in range(8)]
    futures += [committer.submit(Note(quiet, f"b{i}", ran)) for i in range(2)]

    gate.released.set()
    results(futures)

    # The quiet merchant's two commands ride in the first batch, not behind the eight before them.
    assert set(ran[:4]) == {"a0", "a1", "b0", "b1"}
    assert [label for label in ran if label.startswith("a")] == [f"a{i}" for i in range(8)]
    assert committer.stop(DEADLINE_SECONDS)


def test_commands_without_a_merchant_share_one_lane_in_arrival_order(app: CountingApp) -> None:
    committer = GroupCommitter(app, batch_size_max=3, batch_wait_ms=0, merchant_queue_size_max=2)
    committer.start()
    gate = Gate()
    gate.hold(committer)

    first = committer.submit(lambda uow: "first")
    second = committer.submit(lambda uow: "second")
    with pytest.raises(OverloadedError):
        committer.submit(lambda uow: "third")

    gate.released.set()
    assert results([first, second]) == ["first", "second"]
    assert committer.stop(DEADLINE_SECONDS)


def test_a_merchant_share_larger_than_the_queue_is_the_queue() -> None:
    committer = GroupCommitter(CountingApp(), queue_size_max=5, merchant_queue_size_max=50)
    assert committer.merchant_queue_size_max == 5
    with pytest.raises(ValueError, match="merchant_queue_size_max"):
        GroupCommitter(CountingApp(), merchant_queue_size_max=0)
