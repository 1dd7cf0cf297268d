"""Processing the webhook inbox: stored deliveries → gateway facts → Payment/Order commands.

A message names inbox rows by id. The worker claims those still pending and not leased
(counting an attempt, leasing them for ``LEASE_S``), parses each stored body into
gateway facts, applies every fact through the group committer (one event-store
transaction per batch, across the worker's threads) and then marks the rows processed.
The events and the row state are not written in one transaction; instead re-applying a
row is a no-op: the Payment records each distinct fact once (refund ids once), and
relating a payment to its order is idempotent. A crash between the two therefore only
costs a redundant no-op pass, once the lease has ended.

Failures:
- transient (the database or the committer unreachable, overloaded, stopping,
  conflicting, a commit outcome unknown, a command still running at the deadline): the
  row stays pending, its lease ends, and :class:`InboxRetryError` is raised so that
  dramatiq retries the message; later the sweeper sends it again. However often it
  happens, a transient failure never parks a row: it would park a payment fact.
- poison (the body no longer parses, a fact the domain refuses, any other error applying
  it): the row is parked with a reason for a person to look at, and
  :func:`redrive_parked` (``daybook inbox redrive``) makes parked rows pending again.

Rows whose message was lost (Redis flushed or restarted, a worker killed) stay pending:
:func:`sweep_pending` sends them again, once per ``SWEEP_DELAY_S`` at most, never while
a worker holds their lease.

The stored body is parsed with :mod:`adapters.gateways`, the pure parser the edge
uses, so that a row is read exactly as it was accepted.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from uuid import UUID

import dramatiq
import psycopg
from eventsourcing import persistence
from eventsourcing.application import Application
from psycopg_pool import ConnectionPool

from adapters import audit_log, webhook_inbox
from adapters.broker import enqueue_inbox_rows
from adapters.gateways import Ignored, MalformedPayloadError, parse_delivery
from adapters.webhook_inbox import InboxRow
from domain import limits
from domain.audit import ParkedRow
from domain.commands import ApplyGatewayEvent, GatewayEventOutcome
from domain.context import CommandContext
from domain.errors import DomainError
from domain.groupcommit import CommandOutcome, GroupCommitError, GroupCommitter

log = logging.getLogger(__name__)

APPLY_WAIT_S = 30.0
LEASE_S = 15.0
"""How long a claimed row is a worker's; renewed every ``LEASE_RENEW_S`` while it works on it."""
LEASE_RENEW_S = 5.0
SWEEP_DELAY_S = 5.0
SWEEP_ROWS_MAX = 1_000
REDRIVE_ROWS_MAX = 1_000
"""Rows re-driven per statement (and per batch of messages)."""

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    GroupCommitError,
    persistence.OperationalError,
    persistence.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    TimeoutError,
)
"""Failures that say nothing about the row: it is tried again, never parked for them."""


class InboxRetryError(Exception):
    """Some rows failed for a reason that may pass; the message should be retried.

    Attributes:
        inbox_ids: the rows left pending.
    """

    def __init__(self, inbox_ids: Sequence[int], cause: BaseException | None) -> None:
        super().__init__(f"{len(inbox_ids)} inbox rows left pending: {cause!r}")
        self.inbox_ids = list(inbox_ids)


@dataclass(slots=True)
class InboxReport:
    """What one call of :func:`process_rows` did with the rows it was given."""

    processed: list[int] = field(default_factory=list)
    parked: dict[int, str] = field(default_factory=dict)
    pending: list[int] = field(default_factory=list)
    first_failure: BaseException | None = None


def process_rows(
    pool: ConnectionPool[Any],
    committer: GroupCommitter,
    inbox_ids: Sequence[int],
    *,
    wait_s: float = APPLY_WAIT_S,
) -> InboxReport:
    """Applies the pending rows among ``inbox_ids``; rows no longer pending are skipped.

    Raises:
        InboxRetryError: some rows failed transiently (the others were settled first).
        psycopg.Error: the inbox could not be read or updated (nothing was marked).
    """
    owner = uuid.uuid4()
    with pool.connection() as conn:
        rows = webhook_inbox.claim(conn, inbox_ids, timedelta(seconds=LEASE_S), owner)
    report = InboxReport()
    submitted: dict[int, list[Future[CommandOutcome[GatewayEventOutcome]]]] = {}
    for row in rows:
        try:
            futures = _submit(committer, row)
        except MalformedPayloadError as error:
            report.parked[row.inbox_id] = f"malformed: {error.detail}"
        except GroupCommitError as error:
            _pending(report, row.inbox_id, error)
        else:
            submitted[row.inbox_id] = futures
    _wait_renewing_leases(pool, submitted, wait_s, owner)
    for inbox_id, futures in submitted.items():
        _settle(report, inbox_id, futures)
    with pool.connection() as conn:
        webhook_inbox.mark_processed(conn, report.processed)
        park_recorded(conn, committer.app, report.parked)
        webhook_inbox.release(conn, report.pending, owner)
    for inbox_id, reason in report.parked.items():
        log.warning("inbox row %d parked: %s", inbox_id, reason)
    if report.pending:
        raise InboxRetryError(report.pending, report.first_failure)
    return report


def _wait_renewing_leases(
    pool: ConnectionPool[Any],
    submitted: Mapping[int, list[Future[CommandOutcome[GatewayEventOutcome]]]],
    wait_s: float,
    owner: uuid.UUID,
) -> None:
    """Waits up to ``wait_s`` for the commands, keeping the leases of the rows still running.

    A live worker keeps its rows however long their commands take; a killed one loses
    them ``LEASE_S`` after its last renewal, and the sweeper sends them again.
    """
    deadline = time.monotonic() + wait_s
    while (remaining_s := deadline - time.monotonic()) > 0:
        running = [inbox_id for inbox_id, futures in submitted.items() if not all(f.done() for f in futures)]
        if not running:
            return
        futures = [future for inbox_id in running for future in submitted[inbox_id]]
        if not wait(futures, timeout=min(remaining_s, LEASE_RENEW_S)).not_done:
            return
        with pool.connection() as conn:
            webhook_inbox.renew(conn, running, timedelta(seconds=LEASE_S), owner)


def _submit(committer: GroupCommitter, row: InboxRow) -> list[Future[CommandOutcome[GatewayEventOutcome]]]:
    """Queues one command per fact of the row; an ignored event yields none."""
    parsed = parse_delivery(row.gateway, row.body, row.event_id)
    if isinstance(parsed, Ignored):
        return []
    context = CommandContext(actor=f"gateway:{row.gateway}", request_id=str(row.inbox_id), causation_id=row.event_id)
    return [committer.submit(ApplyGatewayEvent(context, row.merchant_id, fact, views=False)) for fact in parsed]


def _settle(report: InboxReport, inbox_id: int, futures: list[Future[CommandOutcome[GatewayEventOutcome]]]) -> None:
    for future in futures:
        if not future.done():
            # Given up on: withdrawn unless its batch has started. Left queued, the retried
            # message would queue it again beside it, and an overloaded committer would
            # spend itself on commands nobody waits for (measured: the queue stayed full
            # and nothing was applied for minutes).
            for late in futures:
                late.cancel()
            _pending(report, inbox_id, TimeoutError("the command did not finish in time"))
            return
        error = future.exception()
        if error is None:
            continue
        if isinstance(error, TRANSIENT_ERRORS):
            _pending(report, inbox_id, error)
        elif isinstance(error, DomainError):
            # Refused by a business rule: retrying would be refused again.
            report.parked[inbox_id] = f"{error.code}: {error}"
        else:
            log.error("inbox row %d failed to apply", inbox_id, exc_info=error)
            report.parked[inbox_id] = f"error: {type(error).__name__}: {error}"
        return
    report.processed.append(inbox_id)


def _pending(report: InboxReport, inbox_id: int, error: BaseException) -> None:
    report.pending.append(inbox_id)
    if report.first_failure is None:
        report.first_failure = error
    log.info("inbox row %d left pending: %r", inbox_id, error)


def sweep_pending(
    pool: ConnectionPool[Any],
    broker: dramatiq.Broker,
    *,
    delay_s: float = SWEEP_DELAY_S,
    limit: int = SWEEP_ROWS_MAX,
) -> list[int]:
    """Sends again up to ``limit`` pending rows whose last message is older than ``delay_s``.

    Each row sent has its ``enqueued_at`` moved to now, so a backlog is not re-sent on
    every run. Returns the ids sent.
    """
    with pool.connection() as conn:
        ids = webhook_inbox.overdue(conn, timedelta(seconds=delay_s), limit)
    if ids:
        enqueue_inbox_rows(broker, ids)
        log.info("inbox sweep: sent %d pending rows again", len(ids))
    return ids


@dataclass(frozen=True, slots=True)
class Redrive:
    """What :func:`redrive_parked` did: the rows made pending again, per merchant."""

    rows_by_merchant: dict[UUID, list[int]]
    messages_sent: int

    @property
    def rows(self) -> int:
        """How many rows were re-driven."""
        return sum(len(ids) for ids in self.rows_by_merchant.values())


def redrive_parked(
    pool: ConnectionPool[Any],
    broker: dramatiq.Broker,
    app: Application[UUID],
    *,
    merchant_id: UUID | None,
    context: CommandContext,
    reason: str | None,
    rows_max: int = REDRIVE_ROWS_MAX,
) -> Redrive:
    """Makes every parked row (of one merchant, or all) pending again and sends it to the workers.

    In batches of ``rows_max``, each in one transaction with its record in the audit log
    of every merchant concerned (the rows, their count, ``context.actor`` and
    ``reason``). A row that is poison still is parked again by the workers. If the
    broker cannot be reached the rows stay pending, and the sweeper sends them once
    overdue.
    """
    assert rows_max <= limits.AUDIT_ROWS_PER_EVENT_MAX
    by_merchant: dict[UUID, list[int]] = {}
    messages = 0
    with pool.connection() as conn:
        parked = webhook_inbox.count_parked(conn, merchant_id)
    # Bounded by what was parked when it started: rows the workers park again meanwhile
    # are not re-driven twice in a loop.
    for _ in range(parked // rows_max + 1):
        with pool.connection() as conn, conn.transaction():
            rows = webhook_inbox.redrive(conn, merchant_id, rows_max)
            batch = _by_merchant(rows)
            if batch:
                audit_log.record(
                    conn, app, context, {owner: _redriven(ids, reason, context) for owner, ids in batch.items()}
                )
        for owner, inbox_ids in batch.items():
            by_merchant.setdefault(owner, []).extend(inbox_ids)
            log.info(
                "inbox rows re-driven",
                extra={"merchant_id": str(owner), "rows": len(inbox_ids), "actor": context.actor},
            )
        if rows:
            try:
                messages += enqueue_inbox_rows(broker, [inbox_id for inbox_id, _ in rows])
            except Exception as error:  # the sweeper sends pending rows whatever failed here
                log.warning("inbox redrive: %d rows pending but not sent (%s); the sweeper will", len(rows), error)
        if len(rows) < rows_max:
            break
    return Redrive(by_merchant, messages)


PARKER_ACTOR = "system:inbox"
"""The audit actor of rows parked by the inbox workers."""


def park_recorded(conn: psycopg.Connection[Any], app: Application[UUID], reasons: Mapping[int, str]) -> None:
    """Parks the rows with their reasons and records them in their merchants' audit logs, in one transaction.

    Only rows still pending are parked and recorded, so processing a row again after a
    crash records nothing twice. One audit event per merchant names up to
    ``AUDIT_ROWS_PER_EVENT_MAX`` rows.
    """
    ids = sorted(reasons)
    for start in range(0, len(ids), limits.AUDIT_ROWS_PER_EVENT_MAX):
        chunk = {inbox_id: reasons[inbox_id] for inbox_id in ids[start : start + limits.AUDIT_ROWS_PER_EVENT_MAX]}
        context = CommandContext(actor=PARKER_ACTOR, request_id=f"inbox:{min(chunk)}")
        with conn.transaction():
            parked = _by_merchant(webhook_inbox.park(conn, chunk))
            if parked:
                actions = {owner: _parked(inbox_ids, chunk, context) for owner, inbox_ids in parked.items()}
                audit_log.record(conn, app, context, actions)


def _by_merchant(rows: Sequence[tuple[int, UUID]]) -> dict[UUID, list[int]]:
    grouped: dict[UUID, list[int]] = {}
    for inbox_id, owner in rows:
        grouped.setdefault(owner, []).append(inbox_id)
    return grouped


def _parked(inbox_ids: Sequence[int], reasons: Mapping[int, str], context: CommandContext) -> audit_log.Action:
    rows = [ParkedRow(inbox_id, reasons[inbox_id]) for inbox_id in inbox_ids]
    return lambda entry: entry.inbox_rows_parked(rows, context)


def _redriven(inbox_ids: Sequence[int], reason: str | None, context: CommandContext) -> audit_log.Action:
    return lambda entry: entry.inbox_rows_redriven(inbox_ids, reason, context)
