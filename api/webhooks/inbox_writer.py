"""The webhook edge's writer: verified deliveries into the inbox, in batches.

The inbox row is written before the delivery is acknowledged; its unique key
(merchant, gateway, gateway event id) decides whether a delivery is new. Redis keeps a
copy of "already stored" keys as a fast path, and is written only after the row is
known to be in PostgreSQL, so Redis can never claim an event that PostgreSQL lacks.

:class:`InboxWriter` does this for concurrent deliveries together, as the group
committer does for commands: one Redis round trip to drop known duplicates, one
``INSERT … ON CONFLICT DO NOTHING`` (one commit) for the rest, then, after the commit,
a background task that, every ``PUBLISH_LINGER_S``, writes one pipeline of ``SET NX`` for
the stored keys and sends the new row ids to the workers in messages of up to
``MESSAGE_ROWS_MAX`` rows. Each caller is answered once its batch is committed.

One bad delivery fails alone: each is checked before it joins a batch, and a batch
whose insert fails for any reason but the connection is stored again row by row, so
that only the row at fault is refused (another merchant's deliveries never are).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from typing import Any, Final

import anyio.to_thread
import dramatiq
import psycopg
import redis
import redis.asyncio

from adapters.broker import INBOX_MESSAGE_ROWS_MAX, enqueue_inbox_rows
from adapters.settings import Settings
from adapters.webhook_inbox import INSERT, Delivery, UnstorableDeliveryError, check, dedupe_key, insert_parameters

log = logging.getLogger(__name__)

# Sized for the redelivery window of the gateways (Stripe retries for up to three days,
# most redeliveries come within hours); past it PostgreSQL still answers correctly.
DEDUPE_TTL_S = 24 * 3600
BATCH_SIZE_MAX = 500
QUEUE_SIZE_MAX = 10_000
STORE_WAIT_S = 10.0
REDIS_TIMEOUT_S = 2.0
# Stored keys and new rows wait this long for others to share one Redis pipeline and
# one queue message: fewer, fuller messages also make the workers' batches larger.
PUBLISH_LINGER_S = 0.01
PUBLISH_ROWS_MAX = 10 * INBOX_MESSAGE_ROWS_MAX

ACCEPTED: Final = "accepted"
DUPLICATE: Final = "duplicate"


class InboxUnavailableError(Exception):
    """The delivery could not be stored (database down, overloaded, timed out); retry."""


@dataclass(slots=True)
class _Pending:
    delivery: Delivery
    future: asyncio.Future[str]


class InboxWriter:
    """Stores concurrent deliveries in batches on one connection; lives in the event loop."""

    def __init__(self, database_url: str, settings: Settings, redis_url: str, broker: dramatiq.Broker) -> None:
        self.database_url = database_url
        self.settings = settings
        self.broker = broker
        self.redis = redis.asyncio.Redis.from_url(
            redis_url, socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S
        )
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue(QUEUE_SIZE_MAX)
        self._conn: psycopg.AsyncConnection[Any] | None = None
        # (keys stored, new row ids) of each committed batch, for the publisher.
        self._committed: asyncio.Queue[tuple[list[str], list[int]]] = asyncio.Queue(QUEUE_SIZE_MAX)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Starts the batching and the publishing tasks."""
        self._tasks = [
            asyncio.create_task(self._run(), name="inbox-writer"),
            asyncio.create_task(self._publish(), name="inbox-publisher"),
        ]

    async def stop(self) -> None:
        """Stops; deliveries still queued are failed (never acknowledged), unsent ids left to the sweeper."""
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        while not self._queue.empty():
            self._fail([self._queue.get_nowait()], InboxUnavailableError("the API is shutting down"))
        if self._conn is not None:
            await self._conn.close()
        await self.redis.aclose()  # type: ignore[attr-defined]  # (types-redis predates aclose)

    async def store(self, delivery: Delivery) -> str:
        """``"accepted"`` once the new delivery is committed, else ``"duplicate"``.

        Raises:
            InboxUnavailableError: it was not stored (the sender should retry).
            UnstorableDeliveryError: it can never be stored.
        """
        check(delivery)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Pending(delivery, future))
        except asyncio.QueueFull as error:
            raise InboxUnavailableError(f"{QUEUE_SIZE_MAX} deliveries are waiting") from error
        try:
            return await asyncio.wait_for(asyncio.shield(future), STORE_WAIT_S)
        except TimeoutError as error:
            raise InboxUnavailableError("storing took too long") from error

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < BATCH_SIZE_MAX and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                self._fail(batch, InboxUnavailableError("the API is shutting down"))
                raise
            except Exception as error:
                log.exception("inbox writer: a batch of %d failed", len(batch))
                self._fail(batch, InboxUnavailableError(str(error)))

    async def _write(self, batch: list[_Pending]) -> None:
        known = await self._known_to_redis(batch)
        first: dict[tuple[uuid.UUID, str, str], _Pending] = {}
        for pending, is_known in zip(batch, known, strict=True):
            if not is_known:
                first.setdefault(pending.delivery.key, pending)
        inserted: dict[tuple[uuid.UUID, str, str], int] = {}
        refused: dict[tuple[uuid.UUID, str, str], Exception] = {}
        if first:
            deliveries = [pending.delivery for pending in first.values()]
            try:
                inserted = await self._insert(deliveries)
            except psycopg.OperationalError:
                raise  # the database: every delivery of the batch is unavailable
            except Exception as error:
                log.warning("inbox writer: a batch of %d failed (%s); storing it row by row", len(deliveries), error)
                inserted, refused = await self._insert_each(deliveries)
        # Committed: every caller may be answered, and Redis may remember every stored key.
        for pending in batch:
            key = pending.delivery.key
            if pending.future.done():
                continue
            if key in refused:
                pending.future.set_exception(UnstorableDeliveryError(str(refused[key])))
            else:
                pending.future.set_result(ACCEPTED if first.get(key) is pending and key in inserted else DUPLICATE)
        keys = [dedupe_key(pending.delivery) for key, pending in first.items() if key not in refused]
        try:
            self._committed.put_nowait((keys, sorted(inserted.values())))
        except asyncio.QueueFull:
            log.warning("inbox writer: publish queue full; %d new rows are left to the sweeper", len(inserted))

    async def _known_to_redis(self, batch: list[_Pending]) -> list[bool]:
        try:
            values = await self.redis.mget([dedupe_key(pending.delivery) for pending in batch])
        except redis.RedisError as error:
            log.warning("inbox writer: redis unavailable for dedupe (%s); asking postgresql", error)
            return [False] * len(batch)
        return [value is not None for value in values]

    async def _insert(self, deliveries: list[Delivery]) -> dict[tuple[uuid.UUID, str, str], int]:
        conn = await self._connection()
        try:
            rows = await (await conn.execute(INSERT, insert_parameters(deliveries))).fetchall()
        except psycopg.OperationalError:
            self._conn = None
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        return {(row[1], row[2], row[3]): int(row[0]) for row in rows}

    async def _insert_each(
        self, deliveries: list[Delivery]
    ) -> tuple[dict[tuple[uuid.UUID, str, str], int], dict[tuple[uuid.UUID, str, str], Exception]]:
        """Inserts one delivery at a time: (stored ids, errors of the refused ones)."""
        inserted: dict[tuple[uuid.UUID, str, str], int] = {}
        refused: dict[tuple[uuid.UUID, str, str], Exception] = {}
        for delivery in deliveries:
            try:
                inserted |= await self._insert([delivery])
            except psycopg.OperationalError:
                raise
            except Exception as error:
                log.warning("inbox writer: delivery %r refused by the database: %s", delivery.key, error)
                refused[delivery.key] = error
        return inserted, refused

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            options = (
                f"-c statement_timeout={self.settings.statement_timeout_ms} "
                f"-c lock_timeout={self.settings.lock_timeout_ms}"
            )
            self._conn = await psycopg.AsyncConnection.connect(
                self.database_url,
                autocommit=True,
                options=options,
                application_name="daybook-inbox",
                connect_timeout=10,
            )
        return self._conn

    async def _publish(self) -> None:
        """Remembers stored keys in Redis and sends new rows to the workers, a few ms' worth at a time."""
        while True:
            committed = [await self._committed.get()]
            await asyncio.sleep(PUBLISH_LINGER_S)
            rows = len(committed[0][1])
            while rows < PUBLISH_ROWS_MAX and not self._committed.empty():
                committed.append(self._committed.get_nowait())
                rows += len(committed[-1][1])
            await self._remember([key for keys, _ in committed for key in keys])
            ids = [inbox_id for _, new_ids in committed for inbox_id in new_ids]
            if not ids:
                continue
            try:
                await anyio.to_thread.run_sync(enqueue_inbox_rows, self.broker, ids)
            except Exception as error:
                # The rows are durable; the sweeper sends them once their message is overdue.
                log.warning("inbox writer: %d rows stored but not enqueued (%s)", len(ids), error)

    async def _remember(self, keys: list[str]) -> None:
        """Tells Redis that these keys are in the inbox (after their commit)."""
        if not keys:
            return
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.set(key, b"1", nx=True, ex=DEDUPE_TTL_S)
                await pipe.execute()
        except redis.RedisError as error:
            log.warning("inbox writer: could not remember %d keys in redis: %s", len(keys), error)

    @staticmethod
    def _fail(batch: list[_Pending], error: Exception) -> None:
        for pending in batch:
            if not pending.future.done():
                pending.future.set_exception(error)
