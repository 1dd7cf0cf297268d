"""Active webhook secrets per merchant endpoint, cached briefly in each API process."""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from threading import Lock
from typing import Any, Final

import anyio.to_thread
from psycopg_pool import ConnectionPool

from adapters import merchants
from api.rate_limit import RateLimiter

REFRESHES_PER_MINUTE = 60
SECRETS_TTL_S = 10.0
SECRETS_CACHE_SIZE_MAX = 10_000

_MISSING: Final = object()


class SecretsCache:
    """Active webhook secrets per (merchant, gateway), cached briefly and bounded.

    :meth:`cached` never blocks (for the event loop); :meth:`refresh` reads PostgreSQL.
    ``None`` means the merchant does not exist (never cached, so a merchant created a
    moment ago is found). A rotated-in secret is seen at once because a delivery that
    fails verification against the cached secrets is verified again with fresh ones;
    a secret whose grace period ended is still accepted for at most ``SECRETS_TTL_S``.
    """

    MISSING: Final = _MISSING

    def __init__(self, pool: ConnectionPool[Any]) -> None:
        self._pool = pool
        self._cache: OrderedDict[tuple[uuid.UUID, str], tuple[float, list[str]]] = OrderedDict()
        self._lock = Lock()
        self._refreshes = RateLimiter(REFRESHES_PER_MINUTE)

    def cached(self, merchant_id: uuid.UUID, gateway: str) -> list[str] | object:
        """The cached secrets, or :attr:`MISSING` when they must be read."""
        with self._lock:
            cached = self._cache.get((merchant_id, gateway))
            if cached is None or cached[0] <= time.monotonic():
                return _MISSING
            self._cache.move_to_end((merchant_id, gateway))
            return cached[1]

    def refresh(self, merchant_id: uuid.UUID, gateway: str) -> list[str] | None:
        """Reads the secrets from PostgreSQL (newest first) and caches them."""
        with self._pool.connection() as conn:
            if not merchants.merchant_exists(conn, merchant_id):
                return None
            secrets = merchants.active_webhook_secrets(conn, merchant_id, gateway)
        with self._lock:
            self._cache[(merchant_id, gateway)] = (time.monotonic() + SECRETS_TTL_S, secrets)
            self._cache.move_to_end((merchant_id, gateway))
            while len(self._cache) > SECRETS_CACHE_SIZE_MAX:
                self._cache.popitem(last=False)
        return secrets

    def refresh_after_failure(self, merchant_id: uuid.UUID, gateway: str) -> list[str] | None:
        """Fresh secrets after a failed verification, rate limited per endpoint.

        The first failures read PostgreSQL at once (a secret rotated in elsewhere works
        immediately); a flood of forged deliveries costs at most one read a second per
        endpoint after a burst of ``REFRESHES_PER_MINUTE``, the cached secrets answering
        the rest.
        """
        if self._refreshes.acquire(f"{merchant_id}:{gateway}") is not None:
            cached = self.cached(merchant_id, gateway)
            if isinstance(cached, list):
                return cached
        return self.refresh(merchant_id, gateway)

    async def secrets(self, merchant_id: uuid.UUID, gateway: str) -> list[str] | None:
        """The active secrets; reads PostgreSQL in a worker thread on a miss."""
        cached = self.cached(merchant_id, gateway)
        if cached is not _MISSING:
            assert isinstance(cached, list)
            return cached
        return await anyio.to_thread.run_sync(self.refresh, merchant_id, gateway)
