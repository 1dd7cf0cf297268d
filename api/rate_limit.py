"""Per-API-key rate limit: one limit for every API process, kept in Redis.

A key may burst to its per-minute limit and then sustain ``limit / 60`` requests per
second, over any number of API processes and machines: the state is one GCRA
"theoretical arrival time" per key in Redis, read and written by one Lua script (atomic,
timed by the Redis server's clock, one round trip). Litestar's rate-limit middleware is
not used: its store keeps every timestamp of the window and has no burst policy.

A process takes up to :func:`lease_size` requests' worth of a busy key in one script
call and admits them locally for at most ``LEASE_SECONDS`` (a tenth of a second of the
key's rate, at most 64): the Redis round trip is paid once per lease instead of once
per request (it was an eighth of the API's CPU on a hot key). Leased requests are
taken from the shared budget when leased, so the processes together still admit at
most the limit plus its burst; an unused lease only makes the limit stricter.

With Redis unreachable the limit falls back to a token bucket in each process (with N
API processes a key may then get up to N times its limit); the fallback is logged when
it starts and ends and named in ``/readyz`` while it lasts, and Redis is tried again
after a second.

Every answer to an authenticated request carries the IETF ``RateLimit-Policy`` and
``RateLimit`` headers (draft-ietf-httpapi-ratelimit-headers); a refusal is 429
``rate_limited`` with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock
from typing import Any

import redis.asyncio
import redis.exceptions
from litestar.types import Scope
from prometheus_client import Counter

from api.problems import ApiError
from api.tally import TALLY

log = logging.getLogger(__name__)

BUCKETS_MAX = 100_000
REDIS_RETRY_SECONDS = 1.0
"""After a Redis failure, requests use the local buckets for this long before Redis is tried again."""
REDIS_TIMEOUT_SECONDS = 0.5
REDIS_CONNECTIONS_MAX = 64
REDIS_CONNECTION_WAIT_SECONDS = 1.0
"""How long a request waits for a free connection of the pool (a busy process, not a Redis failure)."""
POLICY_NAME = "per-key"
_STATE_KEY = "rate_limit_headers"
DECISIONS = Counter(
    "daybook_rate_limit_decisions_total",
    "Rate-limit decisions by where they were made (redis: shared by every API process; process: fallback)",
    ["store", "outcome"],
)
_WINDOW_SECONDS = 60
LEASE_MAX = 64
LEASE_SECONDS = 1.0
"""A lease not used up in this long is dropped (its requests stay spent)."""
LEASES_MAX = 100_000

# GCRA: the key's theoretical arrival time (TAT, µs of the Redis clock) moves one
# emission interval forward per admitted request; a request is admitted while the TAT
# stays within the burst capacity of now. Up to ARGV[3] requests are taken at once.
# Returns {requests granted (0: refused), µs of slack left or µs to wait, µs until the
# whole burst is available again}.
_GCRA = """
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local wanted = tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local room = capacity - (tat - now)
local granted = math.floor(room / interval)
if granted < 1 then
  return {0, interval - room, tat - now}
end
if granted > wanted then granted = wanted end
local ahead = tat + granted * interval - now
redis.call('SET', KEYS[1], string.format('%d', now + ahead), 'PX', math.ceil(ahead / 1000) + 1)
return {granted, capacity - ahead, ahead}
"""


def lease_size(per_minute: int) -> int:
    """Requests of one key leased at once: a tenth of a second of its rate, 1 to ``LEASE_MAX``."""
    return max(1, min(LEASE_MAX, per_minute // 600))


@dataclass(slots=True)
class _Lease:
    """Requests of one key already taken from Redis, not yet admitted."""

    left: int
    remaining: int
    reset_seconds: int
    expires_at: float


@dataclass(frozen=True, slots=True)
class Decision:
    """One rate-limit answer.

    Attributes:
        admitted: whether the request may run.
        remaining: requests the key may still send at once.
        reset_seconds: until the whole burst is available again.
        retry_after_seconds: for a refusal, until the next request is admitted.
    """

    admitted: bool
    remaining: int
    reset_seconds: int
    retry_after_seconds: int


class RateLimiter:
    """Token buckets keyed by API key id, in this process (the fallback of :class:`SharedRateLimiter`)."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = Lock()

    def acquire(self, key: str, now: float | None = None) -> int | None:
        """Takes one token; returns ``None`` when allowed, else seconds to wait (for Retry-After)."""
        decision = self.decide(key, now)
        return None if decision.admitted else decision.retry_after_seconds

    def decide(self, key: str, now: float | None = None) -> Decision:
        """Takes one token if there is one."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, updated = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - updated) * self.refill_per_second)
            admitted = tokens >= 1.0
            if admitted:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > BUCKETS_MAX:
                self._buckets.popitem(last=False)
        reset_seconds = math.ceil((self.capacity - tokens) / self.refill_per_second)
        retry_after_seconds = 0 if admitted else max(1, math.ceil((1.0 - tokens) / self.refill_per_second))
        return Decision(admitted, int(tokens), reset_seconds, retry_after_seconds)


class SharedRateLimiter:
    """The per-key limit across every API process (GCRA in Redis), falling back to :class:`RateLimiter`."""

    def __init__(self, redis_url: str, per_minute: int) -> None:
        self.per_minute = per_minute
        pool: redis.asyncio.BlockingConnectionPool[Any] = redis.asyncio.BlockingConnectionPool.from_url(
            redis_url,
            max_connections=REDIS_CONNECTIONS_MAX,
            timeout=REDIS_CONNECTION_WAIT_SECONDS,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        self._redis = redis.asyncio.Redis(connection_pool=pool)
        self._script = self._redis.register_script(_GCRA)
        self._interval_us = max(1, 60_000_000 // per_minute)
        self._capacity_us = self._interval_us * per_minute
        self._key_prefix = f"daybook:rate-limit:{per_minute}:"
        self._policy = f'"{POLICY_NAME}";q={per_minute};w={_WINDOW_SECONDS}'
        self._decisions = {
            (where, admitted): DECISIONS.labels(where, "admitted" if admitted else "refused")
            for where in ("redis", "process")
            for admitted in (True, False)
        }
        self._policy_bytes = self._policy.encode("latin-1")
        self._lease_size = lease_size(per_minute)
        self._leases: OrderedDict[str, _Lease] = OrderedDict()
        self._taking: dict[str, asyncio.Future[Decision]] = {}
        self.local = RateLimiter(per_minute)
        self._redis_down_until = 0.0
        self._redis_down_since: float | None = None

    async def close(self) -> None:
        """Closes the Redis connections."""
        await self._redis.aclose()  # type: ignore[attr-defined]  # the stubs predate redis 5

    @property
    def degraded_reason(self) -> str | None:
        """Why the limit is per process right now, for ``/readyz``; ``None`` while it is shared."""
        if self._redis_down_since is None:
            return None
        return "rate limit is per API process: redis does not answer"

    async def decide(self, key_id: str) -> Decision:
        """Admits or refuses one request of ``key_id``."""
        if time.monotonic() >= self._redis_down_until:
            try:
                decision = await self._decide_in_redis(key_id)
            except (redis.exceptions.RedisError, OSError, TimeoutError) as error:
                self._redis_failed(error)
            else:
                self._redis_answered()
                TALLY.inc(self._decisions["redis", decision.admitted])
                return decision
        decision = self.local.decide(key_id)
        TALLY.inc(self._decisions["process", decision.admitted])
        return decision

    async def admit(self, scope: Scope, key_id: str) -> None:
        """Lets the request on, noting its headers for the response; 429 ``rate_limited`` otherwise."""
        decision = await self.decide(key_id)
        ratelimit = f'"{POLICY_NAME}";r={decision.remaining};t={decision.reset_seconds}'
        scope.setdefault("state", {})[_STATE_KEY] = (
            (b"ratelimit-policy", self._policy_bytes),
            (b"ratelimit", ratelimit.encode("latin-1")),
        )
        if not decision.admitted:
            headers = {"RateLimit-Policy": self._policy, "RateLimit": ratelimit}
            headers = {**headers, "Retry-After": str(decision.retry_after_seconds)}
            raise ApiError(429, "rate_limited", "Too many requests for this API key.", headers=headers)

    async def _decide_in_redis(self, key_id: str) -> Decision:
        """From the key's lease, else from a new one: one Redis call however many requests wait."""
        while True:
            lease = self._leases.get(key_id)
            if lease is not None and lease.left > 0 and time.monotonic() < lease.expires_at:
                lease.left -= 1
                return Decision(True, lease.remaining + lease.left, lease.reset_seconds, 0)
            taking = self._taking.get(key_id)
            if taking is None:
                return await self._take_lease(key_id)
            decision = await asyncio.shield(taking)  # another request is asking Redis: share its answer
            if not decision.admitted:
                return decision

    async def _take_lease(self, key_id: str) -> Decision:
        taking: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._taking[key_id] = taking
        try:
            decision = await self._ask_redis(key_id)
        except BaseException as error:
            taking.set_exception(error)
            taking.exception()  # the waiters, if any, raise it; none is no error
            raise
        else:
            taking.set_result(decision)
            return decision
        finally:
            del self._taking[key_id]

    async def _ask_redis(self, key_id: str) -> Decision:
        granted, slack_us, reset_us = await self._script(
            keys=[self._key_prefix + key_id], args=[self._interval_us, self._capacity_us, self._lease_size]
        )
        granted = int(granted)
        if not granted:
            self._leases.pop(key_id, None)
            return Decision(False, 0, _seconds(reset_us), max(1, _seconds(slack_us)))
        remaining, reset_seconds = int(slack_us) // self._interval_us, _seconds(reset_us)
        if granted > 1:
            self._leases[key_id] = _Lease(granted - 1, remaining, reset_seconds, time.monotonic() + LEASE_SECONDS)
            self._leases.move_to_end(key_id)
            if len(self._leases) > LEASES_MAX:
                self._leases.popitem(last=False)
        return Decision(True, remaining + granted - 1, reset_seconds, 0)

    def _redis_failed(self, error: BaseException) -> None:
        self._redis_down_until = time.monotonic() + REDIS_RETRY_SECONDS
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            log.warning(
                "rate limit falls back to per-process buckets (with N API processes a key may get N times "
                "its limit): redis does not answer: %r",
                error,
            )

    def _redis_answered(self) -> None:
        if self._redis_down_since is not None:
            log.warning(
                "rate limit is shared through redis again after %.1f s per process",
                time.monotonic() - self._redis_down_since,
            )
            self._redis_down_since = None


def _seconds(microseconds: Any) -> int:
    return math.ceil(int(microseconds) / 1_000_000)


def noted_headers(scope: Scope) -> tuple[tuple[bytes, bytes], ...] | None:
    """The rate-limit headers :meth:`SharedRateLimiter.admit` noted for this request's answer, if any."""
    state = scope.get("state")
    return state.get(_STATE_KEY) if state else None
