"""The audit log: operator and security actions, one stream per merchant.

Orders, payments and stock are the merchant's books; this stream records what was done
*to* the merchant's account around them: the merchant created, keys issued and revoked,
webhook secrets rotated (the gateway, never the secret), webhook inbox rows parked and
re-driven. Being ordinary events of the merchant, they are chained and exported with
the books. Actions of no one merchant (projection rebuilds: read models are shared)
are in the operator's log, the stream of merchant :data:`OPERATOR_ID`.

The log is created on first use: by its merchant's creation, or, for a merchant that
existed before the log (and for the operator), by :class:`AuditLog.Opened`. Its events
hold no secret: key ids, never keys; gateways, never webhook secrets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from domain import limits
from domain.context import CommandContext
from domain.events import DaybookAggregate, DaybookCreated, DaybookEvent

AUDIT_LOG_NAMESPACE = UUID("a1d17c0e-3f5b-4c8a-9d2e-6b7f0e1c2d3a")
OPERATOR_ID = UUID(int=0)
"""The "merchant" whose audit log holds actions on no one merchant (projection rebuilds)."""


def audit_log_id(merchant_id: UUID) -> UUID:
    """The id of the merchant's audit log (the operator's for :data:`OPERATOR_ID`)."""
    return uuid5(AUDIT_LOG_NAMESPACE, str(merchant_id))


@dataclass(frozen=True, slots=True)
class ParkedRow:
    """A webhook inbox row set aside, and why (the reason is cut to a bound)."""

    inbox_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class ExistingMerchant:
    """What the merchants tables say of a merchant created before its audit log (no secret)."""

    name: str
    created_at: str
    keys: Sequence[Mapping[str, Any]]
    webhook_secrets: Sequence[Mapping[str, Any]]


class AuditLog(DaybookAggregate):
    """One merchant's append-only log of operator and security actions.

    Every method records one event; none decides anything from earlier events, so the
    log never refuses an action that already happened elsewhere (a table row written in
    the same transaction).
    """

    class Opened(DaybookCreated):
        """The log of a merchant created before audit logs were kept (or the operator's).

        For such a merchant it carries what the merchants tables said when the log was
        opened: ``name``, ``created_at``, ``keys`` (``[{"key_id", "role", "created_at",
        "revoked_at"}]``) and ``webhook_secrets`` (``[{"gateway", "created_at",
        "expires_at"}]``, never a secret). Times are RFC 3339 strings or ``None``.
        """

        name: str | None = None
        created_at: str | None = None
        keys: list[dict[str, Any]] | None = None
        webhook_secrets: list[dict[str, Any]] | None = None

    class MerchantCreated(DaybookCreated):
        """The merchant was created, with one webhook secret per gateway (not shown)."""

        name: str
        gateways: list[str]

    class ApiKeyIssued(DaybookEvent):
        """A merchant API key was issued (its id; the key itself is shown once, never kept)."""

        key_id: str

    class AuditorKeyIssued(DaybookEvent):
        """A read-only auditor key was issued."""

        key_id: str

    class KeyRevoked(DaybookEvent):
        """A merchant or auditor key was revoked: it authenticates no more."""

        key_id: str
        role: str

    class WebhookSecretRotated(DaybookEvent):
        """A new webhook secret of ``gateway``; the previous ones verify until ``previous_valid_until``."""

        gateway: str
        previous_valid_until: datetime

    class InboxRowsParked(DaybookEvent):
        """Webhook inbox rows set aside for a person to look at: ``[{"inbox_id", "reason"}]``."""

        rows: list[dict[str, Any]]

    class InboxRowsRedriven(DaybookEvent):
        """Parked rows made pending again by an operator (``metadata.actor``), and why."""

        inbox_ids: list[int]
        count: int
        reason: str | None

    class ProjectionRebuildStarted(DaybookEvent):
        """A rebuild of a read model began (or resumed, ``restart`` false and a fresh table kept)."""

        projection: str
        restart: bool

    class ProjectionRebuildFinished(DaybookEvent):
        """A rebuilt read model was swapped in at ``position``, having applied ``events``."""

        projection: str
        events: int
        position: int

    def __init__(self, merchant_id: UUID) -> None:
        self.merchant_id = merchant_id

    @classmethod
    def opened(cls, merchant_id: UUID, context: CommandContext, facts: ExistingMerchant | None = None) -> AuditLog:
        """A new log for a merchant that exists already (with what its rows say), or the operator's."""
        known: dict[str, Any] = {}
        if facts is not None:
            known = {
                "name": facts.name,
                "created_at": facts.created_at,
                "keys": [dict(key) for key in facts.keys],
                "webhook_secrets": [dict(secret) for secret in facts.webhook_secrets],
            }
        return cls._create(
            cls.Opened,
            id=audit_log_id(merchant_id),
            merchant_id=merchant_id,
            metadata=context.metadata(),
            timestamp=context.instant,
            **known,
        )

    @classmethod
    def merchant_created(
        cls, merchant_id: UUID, name: str, gateways: Sequence[str], context: CommandContext
    ) -> AuditLog:
        """The log of a new merchant, starting with its creation."""
        return cls._create(
            cls.MerchantCreated,
            id=audit_log_id(merchant_id),
            merchant_id=merchant_id,
            metadata=context.metadata(),
            timestamp=context.instant,
            name=name,
            gateways=list(gateways),
        )

    def key_issued(self, key_id: str, role: str, context: CommandContext) -> None:
        """Records a merchant (``role`` "merchant") or auditor key issued."""
        event_class = self.AuditorKeyIssued if role == "auditor" else self.ApiKeyIssued
        assert role in {"merchant", "auditor"}, role
        self._record(event_class, context, key_id=key_id)

    def key_revoked(self, key_id: str, role: str, context: CommandContext) -> None:
        """Records a key revoked."""
        self._record(self.KeyRevoked, context, key_id=key_id, role=role)

    def webhook_secret_rotated(self, gateway: str, previous_valid_until: datetime, context: CommandContext) -> None:
        """Records a webhook secret rotated (never the secret)."""
        self._record(self.WebhookSecretRotated, context, gateway=gateway, previous_valid_until=previous_valid_until)

    def inbox_rows_parked(self, rows: Sequence[ParkedRow], context: CommandContext) -> None:
        """Records inbox rows parked, each with its reason (cut to ``AUDIT_REASON_LENGTH_MAX``)."""
        assert rows, "an empty park records nothing"
        parked = [
            {"inbox_id": row.inbox_id, "reason": row.reason[: limits.AUDIT_REASON_LENGTH_MAX]}
            for row in sorted(rows, key=lambda row: row.inbox_id)
        ]
        self._record(self.InboxRowsParked, context, rows=parked)

    def inbox_rows_redriven(self, inbox_ids: Sequence[int], reason: str | None, context: CommandContext) -> None:
        """Records parked rows re-driven by ``context.actor`` for ``reason``."""
        assert inbox_ids, "an empty re-drive records nothing"
        ids = sorted(inbox_ids)
        self._record(self.InboxRowsRedriven, context, inbox_ids=ids, count=len(ids), reason=reason)

    def projection_rebuild_started(self, projection: str, restart: bool, context: CommandContext) -> None:
        """Records a rebuild begun (operator's log)."""
        self._record(self.ProjectionRebuildStarted, context, projection=projection, restart=restart)

    def projection_rebuild_finished(self, projection: str, events: int, position: int, context: CommandContext) -> None:
        """Records a rebuilt table swapped in (operator's log)."""
        self._record(self.ProjectionRebuildFinished, context, projection=projection, events=events, position=position)
