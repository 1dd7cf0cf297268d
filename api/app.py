"""The Litestar application: wiring of controllers, auth, problems, metrics, OpenAPI."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager

import redis
from litestar import Controller, Litestar, Response, get
from litestar.datastructures import State
from litestar.middleware.base import DefineMiddleware
from prometheus_client import CONTENT_TYPE_LATEST

from adapters.broker import make_broker
from adapters.committers import start_routing
from adapters.database import READER_ROLE, connection_pool, eventsourcing_env
from adapters.logs import configure_logging
from adapters.runtime import die_with_server_parent, tune_gc
from adapters.settings import Settings
from api.auth import ApiKeyAuthentication, KeyResolver
from api.controllers.admin import AdminController
from api.controllers.audit import AuditController
from api.controllers.events import EventsController
from api.controllers.health import HealthController
from api.controllers.inventory import InventoryController
from api.controllers.orders import OrdersController
from api.controllers.payments import PaymentsController, ReconciliationController
from api.edge import ResponseEdge
from api.feed_slots import FeedSlots
from api.live_feed import DRAIN_SIGNAL, FeedHub
from api.maintenance import maintain_idempotency_partitions_forever
from api.media_types import JsonBodyMiddleware
from api.methods import allow_headers
from api.metrics import PARTITIONS_OWNED, batch_observer, observe_pools_forever, route_observer
from api.openapi import OpenAPIController
from api.problems import exception_handlers
from api.rate_limit import SharedRateLimiter
from api.scrape import exposition
from api.tally import TALLY, flush_forever
from api.webhooks.controller import webhooks_router
from api.webhooks.inbox_writer import InboxWriter
from api.webhooks.limits import WebhookLimits
from api.webhooks.secrets import SecretsCache
from domain.application import Daybook
from domain.groupcommit import GroupCommitter

log = logging.getLogger(__name__)

SHUTDOWN_STEP_S = 10.0
"""How long one awaited shutdown step may take before it is logged and left behind."""

PUBLIC_PATHS = ["^/healthz$", "^/readyz$", "^/metrics$", "^/schema", "^/v1/webhooks/"]


class MetricsController(Controller):
    """``GET /metrics``: Prometheus text; no authentication."""

    path = "/metrics"
    opt = {"exclude_from_auth": True}
    tags = ["operator"]

    @get(operation_id="metrics", sync_to_thread=True, media_type=CONTENT_TYPE_LATEST)
    def metrics(self, state: State) -> Response[bytes]:
        """Every process's metrics, and the database's read at scrape time (``api/scrape.py``)."""
        TALLY.flush()  # this process's own counts, up to this very request
        return Response(exposition(state.pool), media_type=CONTENT_TYPE_LATEST)


async def shut_down(name: str, step: Awaitable[None], *, timeout_s: float = SHUTDOWN_STEP_S) -> None:
    """Awaits one shutdown step; one that fails or outlasts ``timeout_s`` is logged by name.

    Never raises: the steps after it (stopping the committer, closing the pools) still run.
    """
    try:
        await asyncio.wait_for(step, timeout_s)
    except TimeoutError:
        log.error("shutdown: %s did not finish within %.1f s; going on without it", name, timeout_s)
    except Exception:
        log.exception("shutdown: %s failed; going on", name)


def create_app(settings: Settings, database_url: str, redis_url: str) -> Litestar:
    """Builds the API for the given servers."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        pool = connection_pool(database_url, settings, name="api")
        read_pool = connection_pool(database_url, settings, name="api-read", role=READER_ROLE)
        redis_client = redis.Redis.from_url(redis_url, socket_timeout=5.0, health_check_interval=30)
        daybook = Daybook(env=eventsourcing_env(database_url, settings))
        committer = GroupCommitter(
            daybook,
            batch_size_max=settings.batch_size_max,
            batch_wait_ms=settings.batch_wait_ms,
            queue_size_max=settings.batch_queue_size_max,
            merchant_queue_size_max=settings.batch_merchant_queue_size_max,
            conflict_retries_max=settings.batch_conflict_retries_max,
            name="api",
            on_batch=batch_observer(lambda: committer.queue_depth()),  # noqa: PLW0108 - bound below
        )
        committer.start()
        # Several processes: each command runs in the one committer owning its partition.
        routing = None
        if settings.committer_routing:
            routing = await start_routing(
                settings, database_url, committer, on_route=route_observer(), on_tick=PARTITIONS_OWNED.set
            )
        broker = make_broker(redis_url)
        inbox_writer = InboxWriter(database_url, settings, redis_url, broker)
        await inbox_writer.start()
        rate_limiter = SharedRateLimiter(redis_url, settings.rate_limit_per_minute)
        feed_hub = FeedHub(database_url, settings, daybook.mapper)
        feed_hub.start()
        draining = listen_for_drain(feed_hub)
        feed_slots = FeedSlots(redis_url, settings.sse_connections_per_merchant_max, 3 * settings.sse_heartbeat_seconds)
        tune_gc()
        app.state.update(
            settings=settings,
            pool=pool,
            read_pool=read_pool,
            redis=redis_client,
            daybook=daybook,
            committer=committer,
            commands=routing.router if routing is not None else committer,
            key_resolver=KeyResolver(pool, settings.admin_key),
            rate_limiter=rate_limiter,
            broker=broker,
            webhook_secrets=SecretsCache(pool),
            webhook_limits=WebhookLimits(settings.webhook_rate_limit_per_minute),
            inbox_writer=inbox_writer,
            feed_hub=feed_hub,
            feed_slots=feed_slots,
        )
        housekeeping = asyncio.get_running_loop().create_task(maintain_idempotency_partitions_forever(app.state))
        pools_observed = asyncio.get_running_loop().create_task(
            observe_pools_forever({"api": pool, "api-read": read_pool})
        )
        tallied = asyncio.get_running_loop().create_task(flush_forever())
        try:
            yield
        finally:
            tallied.cancel()
            pools_observed.cancel()
            housekeeping.cancel()
            if draining:
                asyncio.get_running_loop().remove_signal_handler(DRAIN_SIGNAL)
            feed_hub.stop()
            # Each bounded, so one that never finishes cannot keep the committer running.
            await shut_down("the feed slots", feed_slots.close())
            await shut_down("the rate limiter", rate_limiter.close())
            await shut_down("the inbox writer", inbox_writer.stop())
            broker.close()
            if routing is not None:
                routing.fence()  # forwarded commands are answered "moved" from now on
            committer.stop(timeout_seconds=10.0)
            if routing is not None:
                await routing.stop()
            daybook.close()
            redis_client.close()
            read_pool.close()
            pool.close()
            TALLY.flush()

    app = Litestar(
        route_handlers=[
            HealthController,
            AdminController,
            MetricsController,
            InventoryController,
            OrdersController,
            PaymentsController,
            ReconciliationController,
            AuditController,
            EventsController,
            OpenAPIController,
            webhooks_router(settings),
        ],
        lifespan=[lifespan],
        state=State({"settings": settings}),
        middleware=[DefineMiddleware(ApiKeyAuthentication, exclude=PUBLIC_PATHS), JsonBodyMiddleware()],
        exception_handlers=exception_handlers(),
        request_max_body_size=settings.body_size_max_bytes,
        openapi_config=None,  # the document is api/openapi.py's
        debug=False,
        logging_config=None,
    )
    # Around everything (routing and exception handling included): the headers every answer
    # carries, and every status sent counted.
    app.asgi_handler = ResponseEdge(app.asgi_handler, allow_headers(app))
    return app


def listen_for_drain(feed_hub: FeedHub) -> bool:
    """Closes the live feeds on :data:`~api.live_feed.DRAIN_SIGNAL`; False where signals cannot be handled.

    A server's worker process runs the application on its main thread; an application
    run elsewhere (the tests' in-process client) has no signal of its own to handle.
    """
    try:
        asyncio.get_running_loop().add_signal_handler(DRAIN_SIGNAL, feed_hub.drain)
    except (RuntimeError, ValueError, NotImplementedError):
        return False
    return True


def create_app_from_env() -> Litestar:
    """The servers' factory: reads settings and server URLs from the environment."""
    die_with_server_parent()
    if threading.current_thread() is threading.main_thread():
        # Until the application handles it, a drain signal (a stop) must not end the process.
        signal.signal(DRAIN_SIGNAL, signal.SIG_IGN)
    settings = Settings.from_env()
    configure_logging(settings.log_level)
    if not settings.database_url or not settings.redis_url:
        msg = "daybook api needs DAYBOOK_DATABASE_URL and DAYBOOK_REDIS_URL (daybook serve sets them)"
        raise SystemExit(msg)
    return create_app(settings, settings.database_url, settings.redis_url)
