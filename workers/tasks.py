"""The dramatiq actors. ``daybook worker`` runs ``dramatiq workers.tasks``.

dramatiq binds actors to the global broker when they are declared, so the broker is
configured from the settings (``DAYBOOK_REDIS_URL``) when this module is imported;
without a Redis URL the import fails with a message saying so. Database resources
are opened lazily, once per worker process.
"""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import Any

import dramatiq
import redis
from psycopg_pool import ConnectionPool

from adapters.broker import (
    CHECK_DRIFT_ACTOR,
    EXPIRE_HOLDS_ACTOR,
    MAX_RETRIES,
    PING_ACTOR,
    PROCESS_INBOX_ACTOR,
    SWEEP_INBOX_ACTOR,
    TIME_LIMIT_MS,
    make_broker,
)
from adapters.database import connection_pool, eventsourcing_env
from adapters.runtime import tune_gc
from adapters.settings import Settings
from domain.application import Daybook
from domain.groupcommit import GroupCommitter
from workers.drift import check_drift
from workers.holds import expire_due_holds
from workers.inbox import process_rows, sweep_pending
from workers.metrics import MessageMetrics


class WorkerConfigurationError(RuntimeError):
    """The worker cannot start: a required setting is missing."""


@cache
def _settings() -> Settings:
    return Settings.from_env()


def _required(value: str | None, variable: str) -> str:
    if not value:
        msg = f"the dramatiq workers need {variable} (daybook serve sets it)"
        raise WorkerConfigurationError(msg)
    return value


_REDIS_URL = _required(_settings().redis_url, "DAYBOOK_REDIS_URL")
tune_gc()
_broker = make_broker(_REDIS_URL)
_broker.add_middleware(MessageMetrics())
dramatiq.set_broker(_broker)
_redis = redis.Redis.from_url(_REDIS_URL, socket_timeout=5.0)
_lock = threading.Lock()

PING_KEY_PREFIX = "daybook:ping:"
PING_TTL_S = 300


@cache
def _pool() -> ConnectionPool[Any]:
    settings = _settings()
    database_url = _required(settings.database_url, "DAYBOOK_DATABASE_URL")
    # Claims and marks of the worker threads (which mostly wait on the committer).
    return connection_pool(database_url, settings, size=8, name="worker")


@cache
def _committer() -> GroupCommitter:
    settings = _settings()
    database_url = _required(settings.database_url, "DAYBOOK_DATABASE_URL")
    committer = GroupCommitter(
        Daybook(env=eventsourcing_env(database_url, settings)),
        # Larger than the API's: a worker's commands come a message of rows at a time, and
        # fuller batches applied webhook facts faster (bench/deployment.py, 200 → 1,000:
        # end to end p50 879 → 571 ms at the same moment).
        batch_size_max=settings.worker_batch_size_max,
        batch_wait_ms=settings.batch_wait_ms,
        name="worker",
    )
    committer.start()
    return committer


@dramatiq.actor(actor_name=PING_ACTOR, max_retries=MAX_RETRIES, time_limit=TIME_LIMIT_MS)
def ping(token: str) -> None:
    """Proves the broker → worker path: records that ``token`` was processed."""
    _redis.set(PING_KEY_PREFIX + token, str(os.getpid()), ex=PING_TTL_S)


@dramatiq.actor(actor_name=EXPIRE_HOLDS_ACTOR, max_retries=0, time_limit=TIME_LIMIT_MS)
def expire_holds() -> None:
    """Releases the stock of orders whose hold passed unpaid (scheduled every few seconds)."""
    with _lock:
        pool, committer = _pool(), _committer()
    expire_due_holds(pool, committer)


# A message is retried while its rows fail transiently; the sweeper re-sends rows whose
# message ran out of retries, and a row is parked after workers.inbox.ATTEMPTS_MAX.
INBOX_RETRIES_MAX = 10
INBOX_TIME_LIMIT_MS = 60_000


@dramatiq.actor(
    actor_name=PROCESS_INBOX_ACTOR,
    max_retries=INBOX_RETRIES_MAX,
    time_limit=INBOX_TIME_LIMIT_MS,
    min_backoff=200,
    max_backoff=30_000,
)
def process_inbox(inbox_ids: list[int]) -> None:
    """Applies stored webhook deliveries to payments and orders (see :mod:`workers.inbox`)."""
    with _lock:
        pool, committer = _pool(), _committer()
    process_rows(pool, committer, inbox_ids)


@dramatiq.actor(actor_name=SWEEP_INBOX_ACTOR, max_retries=0, time_limit=TIME_LIMIT_MS)
def sweep_inbox() -> None:
    """Sends again the inbox rows whose message was lost (scheduled every few seconds)."""
    with _lock:
        pool = _pool()
    sweep_pending(pool, dramatiq.get_broker())


@dramatiq.actor(actor_name=CHECK_DRIFT_ACTOR, max_retries=0, time_limit=TIME_LIMIT_MS)
def check_read_models() -> None:
    """Replays a sample of each read model's rows and records any drift (scheduled)."""
    with _lock:
        pool, committer = _pool(), _committer()
    check_drift(pool, committer.app)
