"""Processing the webhook inbox: stored deliveries → gateway facts → Payment/Order commands.

A message names inbox rows by id. The worker claims those still pending (counting an
attempt), parses each stored body into gateway facts, applies every fact through the
group committer (one event-store transaction per batch, across the worker's threads)
and then marks the rows processed. The events and the row state are not written in
one transaction; instead re-applying a row is a no-op: the Payment records each
distinct fact once (refund ids once), and relating a payment to its order is
idempotent. A crash between the two therefore only costs a redundant no-op pass.

Failures:
- transient (database unreachable, version conflicts exhausted, committer overloaded,
  a command still running at the deadline): the row stays pending and
  :class:`InboxRetryError` is raised so that dramatiq retries the message;
- poison (the body no longer parses, a fact refused by the domain, or more than
  ``ATTEMPTS_MAX`` attempts): the row is parked with a reason for a person to look at.

Rows whose message was lost (Redis flushed or restarted, a worker killed) stay pending:
:func:`sweep_pending` sends them again, once per ``SWEEP_DELAY_S`` at most.

The stored body is parsed with :mod:`adapters.gateways`, the pure parser the edge
uses, so that a row is read exactly as it was accepted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import dramatiq
from psycopg_pool import ConnectionPool

from adapters import webhook_inbox
from adapters.broker import enqueue_inbox_rows
from adapters.gateways import Ignored, MalformedPayloadError, parse_delivery
from adapters.webhook_inbox import InboxRow
from domain.commands import ApplyGatewayEvent, GatewayEventOutcome
from domain.context import CommandContext
from domain.errors import DomainError
from domain.groupcommit import CommandOutcome, GroupCommitError, GroupCommitter

log = logging.getLogger(__name__)

ATTEMPTS_MAX = 20
APPLY_WAIT_S = 30.0
SWEEP_DELAY_S = 5.0
SWEEP_ROWS_MAX = 1_000


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
    with pool.connection() as conn:
        rows = webhook_inbox.claim(conn, inbox_ids)
    report = InboxReport()
    submitted: dict[int, list[Future[CommandOutcome[GatewayEventOutcome]]]] = {}
    for row in rows:
        if row.attempts > ATTEMPTS_MAX:
            report.parked[row.inbox_id] = f"gave up after {ATTEMPTS_MAX} attempts"
            continue
        try:
            futures = _submit(committer, row)
        except MalformedPayloadError as error:
            report.parked[row.inbox_id] = f"malformed: {error.detail}"
        except GroupCommitError as error:
            _pending(report, row.inbox_id, error)
        else:
            submitted[row.inbox_id] = futures
    wait([future for futures in submitted.values() for future in futures], timeout=wait_s)
    for inbox_id, futures in submitted.items():
        _settle(report, inbox_id, futures)
    with pool.connection() as conn:
        webhook_inbox.mark_processed(conn, report.processed)
        webhook_inbox.park(conn, report.parked)
    for inbox_id, reason in report.parked.items():
        log.warning("inbox row %d parked: %s", inbox_id, reason)
    if report.pending:
        raise InboxRetryError(report.pending, report.first_failure)
    return report


def _submit(committer: GroupCommitter, row: InboxRow) -> list[Future[CommandOutcome[GatewayEventOutcome]]]:
    """Queues one command per fact of the row; an ignored event yields none."""
    parsed = parse_delivery(row.gateway, row.body, row.event_id)
    if isinstance(parsed, Ignored):
        return []
    context = CommandContext(actor=f"gateway:{row.gateway}", request_id=str(row.inbox_id), causation_id=row.event_id)
    return [committer.submit(ApplyGatewayEvent(context, row.merchant_id, fact)) for fact in parsed]


def _settle(report: InboxReport, inbox_id: int, futures: list[Future[CommandOutcome[GatewayEventOutcome]]]) -> None:
    for future in futures:
        if not future.done():
            _pending(report, inbox_id, TimeoutError("the command did not finish in time"))
            return
        error = future.exception()
        if isinstance(error, DomainError):
            # Refused by a business rule: retrying would be refused again.
            report.parked[inbox_id] = f"{error.code}: {error}"
            return
        if error is not None:
            _pending(report, inbox_id, error)
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
