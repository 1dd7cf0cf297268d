"""How many live-feed connections a merchant holds, across every API process.

Each open stream holds a slot in a Redis sorted set per merchant, scored by when it
lapses; the stream renews it at every heartbeat and gives it back when it ends, and a
process killed with its streams open loses its slots when they lapse. Taking a slot is
one Lua call (count the unlapsed slots, add one if under the limit). When Redis does not
answer, the count is this process's own (a merchant may then hold the limit in each).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import Counter
from typing import Any

import redis.asyncio
import redis.exceptions

log = logging.getLogger(__name__)

REDIS_TIMEOUT_SECONDS = 1.0
REDIS_CONNECTIONS_MAX = 16

_TAKE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


class FeedSlots:
    """Takes, renews and gives back one merchant's stream slots."""

    def __init__(self, redis_url: str, per_merchant_max: int, lapse_seconds: float) -> None:
        pool: redis.asyncio.BlockingConnectionPool[Any] = redis.asyncio.BlockingConnectionPool.from_url(
            redis_url,
            max_connections=REDIS_CONNECTIONS_MAX,
            timeout=REDIS_TIMEOUT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        self._redis = redis.asyncio.Redis(connection_pool=pool)
        self._take = self._redis.register_script(_TAKE)
        self.per_merchant_max = per_merchant_max
        self._lapse_seconds = lapse_seconds
        self._local: Counter[uuid.UUID] = Counter()

    async def close(self) -> None:
        """Closes the Redis connections."""
        await self._redis.aclose()  # type: ignore[attr-defined]  # the stubs predate redis 5

    async def take(self, merchant_id: uuid.UUID) -> str | None:
        """A slot's id, or ``None`` when the merchant holds every slot already."""
        slot = uuid.uuid4().hex
        now = time.time()
        try:
            taken = await self._take(
                keys=[_key(merchant_id)],
                args=[now, now + self._lapse_seconds, self.per_merchant_max, slot, int(self._lapse_seconds) + 1],
            )
        except (redis.exceptions.RedisError, OSError, TimeoutError) as error:
            log.warning("live feed slots counted per process: redis does not answer: %r", error)
            taken = self._local[merchant_id] < self.per_merchant_max
        if not taken:
            return None
        self._local[merchant_id] += 1
        return slot

    async def renew(self, merchant_id: uuid.UUID, slot: str) -> None:
        """Keeps a slot from lapsing for another lapse period."""
        # Unrenewed, it lapses; the stream goes on, counted locally.
        with contextlib.suppress(redis.exceptions.RedisError, OSError, TimeoutError):
            await self._redis.zadd(_key(merchant_id), {slot: time.time() + self._lapse_seconds}, xx=True)

    async def give_back(self, merchant_id: uuid.UUID, slot: str) -> None:
        """Frees the slot of a stream that ended."""
        self._local[merchant_id] -= 1
        if self._local[merchant_id] <= 0:
            del self._local[merchant_id]
        with contextlib.suppress(redis.exceptions.RedisError, OSError, TimeoutError):
            await self._redis.zrem(_key(merchant_id), slot)  # else it lapses by itself


def _key(merchant_id: uuid.UUID) -> str:
    return f"daybook:feed-slots:{merchant_id}"
