"""The inbox sweeper is one of the scheduler's periodic jobs."""

from __future__ import annotations

from adapters.broker import SWEEP_INBOX_ACTOR
from adapters.settings import Settings
from workers.runner import scheduled_jobs


def test_the_scheduler_sends_the_inbox_sweep_at_the_configured_interval() -> None:
    jobs = {job.actor_name: job.interval_s for job in scheduled_jobs(Settings(inbox_sweep_interval_seconds=7.5))}
    assert jobs[SWEEP_INBOX_ACTOR] == 7.5
