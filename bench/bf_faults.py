"""The fault injector: a fixed schedule of kills, restarts, a flush and dropped connections.

The schedule is drawn once from the run's seed and spread over the middle of the load
(from 10 % to 80 % of it), so the deployment has the last fifth to recover while the
traffic goes on. Each fault is counted with the time it took the deployment to answer
again where that can be seen (``GET /healthz`` after an API kill, a query after a
PostgreSQL restart).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

from bench.bf_servers import Part, Postgres, Proxy, Redis

API_CHILD = "kill -9 one API process (its server starts it again)"
API_ALL = "kill -9 the whole daybook api (the supervisor restarts it)"
WORKER = "kill -9 daybook worker (dramatiq, every process)"
PROJECTIONS = "kill -9 daybook projections"
REDIS_RESTART = "restart Redis"
REDIS_FLUSH = "flush Redis (FLUSHALL)"
POSTGRES_RESTART = "restart PostgreSQL (immediate stop: crash recovery)"
DROP_CONNECTIONS = "drop every PostgreSQL connection (proxy reset)"

FULL_COUNTS = {
    API_CHILD: 4, API_ALL: 2, WORKER: 3, PROJECTIONS: 3,
    REDIS_RESTART: 2, REDIS_FLUSH: 1, POSTGRES_RESTART: 1, DROP_CONNECTIONS: 3,
}  # fmt: skip
SHORT_COUNTS = dict.fromkeys(FULL_COUNTS, 1) | {API_CHILD: 2}
RECOVERY_TIMEOUT_S = 90.0


@dataclass
class Injected:
    """One fault as it happened."""

    kind: str
    at_s: float
    recovered_s: float | None = None


@dataclass
class FaultInjector:
    """Runs the schedule in a thread against the deployment's parts and servers."""

    api: Part
    worker: Part
    projections: Part
    postgres: Postgres
    redis: Redis
    proxy: Proxy
    api_healthy: Callable[[], bool]
    schedule: list[tuple[float, str]]
    injected: list[Injected] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @staticmethod
    def plan(duration_s: float, seed: int, *, short: bool) -> list[tuple[float, str]]:
        """Seconds after the start of the load → fault, PostgreSQL's restart near the middle."""
        rng = random.Random(seed)
        kinds = [kind for kind, n in (SHORT_COUNTS if short else FULL_COUNTS).items() for _ in range(n)]
        kinds.remove(POSTGRES_RESTART)
        rng.shuffle(kinds)
        kinds.insert(len(kinds) // 2, POSTGRES_RESTART)
        start, end = 0.1 * duration_s, 0.8 * duration_s
        step = (end - start) / len(kinds)
        return [(start + step * (i + rng.uniform(0.1, 0.9)), kind) for i, kind in enumerate(kinds)]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="faults", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=RECOVERY_TIMEOUT_S + 30)

    def _run(self) -> None:
        began = time.monotonic()
        for at_s, kind in self.schedule:
            if self._stop.wait(max(0.0, began + at_s - time.monotonic())):
                return
            fault = Injected(kind, time.monotonic() - began)
            try:
                fault.recovered_s = self._inject(kind)
            except Exception as error:  # reported; the schedule goes on
                self.errors.append(f"{kind}: {error!r}")
            self.injected.append(fault)

    def _inject(self, kind: str) -> float | None:
        started = time.monotonic()
        if kind == API_CHILD:
            processes = len(self.api.children())
            if not self.api.kill_one_child():
                raise RuntimeError("no API worker process to kill")
            return self._recovery(started, lambda: len(self.api.children()) >= processes and self.api_healthy())
        if kind == API_ALL:
            self.api.kill_group()
            return self._recovery(started, self.api_healthy)
        if kind in (WORKER, PROJECTIONS):
            (self.worker if kind == WORKER else self.projections).kill_group()
            return None
        if kind == REDIS_RESTART:
            self.redis.restart()
            return time.monotonic() - started
        if kind == REDIS_FLUSH:
            self.redis.flush()
            return None
        if kind == POSTGRES_RESTART:
            self.postgres.restart()
            return self._recovery(started, self._postgres_answers)
        if kind == DROP_CONNECTIONS:
            self.proxy.drop_connections()
            return None
        raise ValueError(kind)

    def _postgres_answers(self) -> bool:
        try:
            with psycopg.connect(self.postgres.url("daybook", self.proxy.port), connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def _recovery(self, started: float, healthy: Callable[[], bool]) -> float | None:
        time.sleep(0.2)  # the killed process is gone before the first probe
        deadline = started + RECOVERY_TIMEOUT_S
        while time.monotonic() < deadline:
            if healthy():
                return time.monotonic() - started
            time.sleep(0.1)
        return None

    def counts(self) -> dict[str, int]:
        """How many of each fault were injected."""
        counted = dict.fromkeys(FULL_COUNTS, 0)
        for fault in self.injected:
            counted[fault.kind] += 1
        return counted
