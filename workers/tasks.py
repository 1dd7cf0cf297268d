"""The dramatiq actors. ``daybook worker`` runs ``dramatiq workers.tasks``.

The broker is configured from ``DAYBOOK_REDIS_URL`` when this module is imported, before
any actor is declared (dramatiq binds actors to the global broker at declaration).
"""

from __future__ import annotations

import os

import dramatiq
import redis

from workers.broker import MAX_RETRIES, TIME_LIMIT_MS, make_broker

_REDIS_URL = os.environ["DAYBOOK_REDIS_URL"]
dramatiq.set_broker(make_broker(_REDIS_URL))
_redis = redis.Redis.from_url(_REDIS_URL, socket_timeout=5.0)

PING_KEY_PREFIX = "daybook:ping:"
PING_TTL_S = 300


@dramatiq.actor(actor_name="ping", max_retries=MAX_RETRIES, time_limit=TIME_LIMIT_MS)
def ping(token: str) -> None:
    """Proves the broker → worker path: records that ``token`` was processed."""
    _redis.set(PING_KEY_PREFIX + token, str(os.getpid()), ex=PING_TTL_S)
