"""Liveness, readiness."""

from __future__ import annotations

import msgspec
from litestar import Controller, Response, get
from litestar.datastructures import State

from api.readiness import check_readiness


class Health(msgspec.Struct):
    """Liveness answer."""

    status: str


class ReadinessRead(msgspec.Struct):
    """Readiness answer: ``ready``, ``degraded`` (ready, with reasons) or ``unavailable``."""

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
    def readyz(self, state: State) -> Response[ReadinessRead]:
        """200 when PostgreSQL and Redis answer and projections keep up (``degraded`` with
        quarantined events); else 503 with the reasons."""
        settings = state.settings
        verdict = check_readiness(
            state.pool,
            state.redis,
            lag_max=settings.projection_lag_max,
            stall_seconds=settings.projection_stall_seconds,
        )
        if (rate_limit_reason := state.rate_limiter.degraded_reason) is not None:
            verdict.reasons.append(rate_limit_reason)
        if verdict.reasons:
            return Response(ReadinessRead("unavailable", verdict.reasons + verdict.degraded), status_code=503)
        if verdict.degraded:
            return Response(ReadinessRead("degraded", verdict.degraded), status_code=200)
        return Response(ReadinessRead("ready", []), status_code=200)
