"""``daybook projections``: the projection runner and the scheduler, in one process.

Projections follow the event store (see :mod:`projections.runner`). The scheduler sends
periodic jobs to the dramatiq workers; every job is idempotent, so a duplicate send
(two scheduler processes, a restart) does no harm.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass
from types import FrameType

import dramatiq
import psycopg

from adapters.audit_signing import load_or_create_signing_key, signing_key_path
from adapters.broker import CHECK_DRIFT_ACTOR, EXPIRE_HOLDS_ACTOR, SWEEP_INBOX_ACTOR, make_broker, send
from adapters.database import eventsourcing_env
from adapters.runtime import tune_gc
from adapters.settings import Settings
from domain.application import Daybook
from projections.audit_chain import AuditChainProjection
from projections.audit_digests import DigestSigner
from projections.registry import every_projection
from projections.runner import TRANSIENT_ERRORS, ProjectionRunner

log = logging.getLogger(__name__)


@dataclass
class PeriodicJob:
    """An actor sent every ``interval_s`` seconds."""

    actor_name: str
    interval_s: float
    next_at: float = 0.0


def scheduled_jobs(settings: Settings) -> list[PeriodicJob]:
    """The periodic jobs and their intervals."""
    return [
        PeriodicJob(EXPIRE_HOLDS_ACTOR, settings.hold_expiry_interval_seconds),
        PeriodicJob(SWEEP_INBOX_ACTOR, settings.inbox_sweep_interval_seconds),
        PeriodicJob(CHECK_DRIFT_ACTOR, settings.drift_check_interval_seconds),
    ]


def run_scheduler(broker: dramatiq.Broker, jobs: list[PeriodicJob], stop: threading.Event) -> None:
    """Sends each job when due until ``stop`` is set."""
    while not stop.is_set():
        now = time.monotonic()
        for job in jobs:
            if now >= job.next_at:
                try:
                    send(broker, job.actor_name)
                except Exception:
                    log.exception("scheduler: could not send %s", job.actor_name)
                job.next_at = now + job.interval_s
        stop.wait(min(job.interval_s for job in jobs) / 2)


def digest_signer(settings: Settings) -> DigestSigner:
    """The audit digest signer, with the key under ``DAYBOOK_HOME`` (made on first start) or configured."""
    key = load_or_create_signing_key(signing_key_path(settings.home, settings.audit_signing_key_path))
    return DigestSigner(
        key,
        interval_seconds=settings.audit_digest_interval_seconds,
        interval_events=settings.audit_digest_interval_events,
    )


def run_digest_sweeper(signer: DigestSigner, database_url: str, stop: threading.Event) -> None:
    """Signs the last events of quiet merchants until ``stop`` is set."""
    interval_s = min(5.0, signer.interval.total_seconds() / 2)
    while not stop.wait(interval_s):
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                while not stop.is_set() and signer.sweep(conn, AuditChainProjection.default_name):
                    pass
        except TRANSIENT_ERRORS as error:
            log.warning("audit digests: database unavailable (%s); trying again", error)
        except Exception:
            log.exception("audit digests: the sweep failed")


def run_forever(settings: Settings, database_url: str, redis_url: str) -> int:
    """Runs projections and the scheduler until SIGTERM/SIGINT; returns the exit code."""
    stop = threading.Event()
    app = Daybook(env=eventsourcing_env(database_url, settings))
    signer = digest_signer(settings)
    runner = ProjectionRunner(app, database_url, every_projection(app, signer=signer))

    def request_stop(signum: int, _: FrameType | None) -> None:
        log.info("projections: received %s; stopping", signal.Signals(signum).name)
        stop.set()
        runner.stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    broker = make_broker(redis_url)
    scheduler = threading.Thread(
        target=run_scheduler,
        args=(broker, scheduled_jobs(settings), stop),
        name="scheduler",
        daemon=True,
    )
    scheduler.start()
    sweeper = threading.Thread(
        target=run_digest_sweeper, args=(signer, database_url, stop), name="audit-digests", daemon=True
    )
    sweeper.start()
    tune_gc()
    log.info("projections: running")
    runner.run_forever()
    scheduler.join(timeout=5)
    sweeper.join(timeout=5)
    broker.close()
    app.close()
    return 0
