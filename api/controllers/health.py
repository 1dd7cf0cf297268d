"""Liveness, readiness."""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, get
from litestar.datastructures import State

from api.readiness import check_readiness


class Health(msgspec.Struct):
    """Liveness answer."""

    status: str


class Readiness(msgspec.Struct):
    """Readiness answer: ``ready`` or the reasons it is not."""

    status: str
    reasons: list[str]


class HealthController(Controller):
    """``/healthz`` and ``/readyz``; no authentication."""

    path = "/"
    opt = {"exclude_from_auth": True}
    tags = ["operator"]

    @get("/healthz", operation_id="healthz")
    async def healthz(self) -> Health:
        """200 while the process is up."""
        return Health("ok")

    @get("/readyz", operation_id="readyz", sync_to_thread=True)
    def readyz(self, state: State) -> Response[Readiness]:
        """200 when PostgreSQL and Redis answer and projections keep up; else 503 with reasons."""
        reasons = check_readiness(state.pool, state.redis, state.settings.projection_lag_max)
        if (rate_limit_reason := state.rate_limiter.degraded_reason) is not None:
            reasons.append(rate_limit_reason)
        if reasons:
            return Response(Readiness("unavailable", reasons), status_code=503)
        return Response(Readiness("ready", []), status_code=200)
