"""Per-API-key rate limit: a token bucket per key, refilled at the configured rate.

The bucket holds at most one minute's allowance, so a key may burst to its per-minute
limit and then sustain ``limit / 60`` requests per second. Buckets live in the API
process (no network round trip on the hot path); with several API processes each
enforces the limit on the requests it serves.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from threading import Lock

BUCKETS_MAX = 100_000


class RateLimiter:
    """Token buckets keyed by API key id."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.refill_per_second = per_minute / 60.0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = Lock()

    def acquire(self, key: str, now: float | None = None) -> int | None:
        """Takes one token; returns ``None`` when allowed, else seconds to wait (for Retry-After)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens, updated = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - updated) * self.refill_per_second)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > BUCKETS_MAX:
                self._buckets.popitem(last=False)
        if allowed:
            return None
        return max(1, math.ceil((1.0 - tokens) / self.refill_per_second))
