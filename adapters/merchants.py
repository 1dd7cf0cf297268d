"""Persistence of merchants, API key hashes and webhook secrets (tables of 0002_merchants).

The API authenticates with these tables and the CLI creates merchants in them, so
both go through this module: one rule for a merchant's name, one way to create one.
Every change here is recorded in the merchant's audit log (:mod:`adapters.audit_log`)
in the same transaction: the tables hold what authentication looks up, the events
hold who did what and when.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from eventsourcing.application import Application
from psycopg import Connection, sql

from adapters import audit_log
from adapters.gateways import GATEWAYS
from adapters.gateways.secrets import generate_secret
from adapters.keys import NewKey, generate_key
from domain import limits
from domain.audit import AuditLog
from domain.context import CommandContext
from domain.validation import has_control_characters

ROTATION_GRACE = timedelta(hours=24)

_INSERT_MERCHANT = sql.SQL("INSERT INTO merchants (merchant_id, name) VALUES (%s, %s)")
_INSERT_KEY = sql.SQL("INSERT INTO api_keys (key_id, merchant_id, role, secret_sha256) VALUES (%s, %s, %s, %s)")
_INSERT_SECRET = sql.SQL("INSERT INTO webhook_secrets (merchant_id, gateway, secret) VALUES (%s, %s, %s)")
_SELECT_KEY = sql.SQL("SELECT merchant_id, role, secret_sha256 FROM api_keys WHERE key_id = %s AND revoked_at IS NULL")
_MERCHANT_EXISTS = sql.SQL("SELECT 1 FROM merchants WHERE merchant_id = %s")
_EXPIRE_CURRENT_SECRETS = sql.SQL(
    "UPDATE webhook_secrets SET expires_at = %(until)s "
    "WHERE merchant_id = %(merchant)s AND gateway = %(gateway)s AND (expires_at IS NULL OR expires_at > %(until)s)"
)
_REVOKE_KEY = sql.SQL(
    "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL RETURNING merchant_id, role"
)
_ACTIVE_SECRETS = sql.SQL(
    "SELECT secret FROM webhook_secrets WHERE merchant_id = %s AND gateway = %s "
    "AND (expires_at IS NULL OR expires_at > now()) ORDER BY created_at DESC LIMIT 10"
)


@dataclass(frozen=True, slots=True)
class CreatedMerchant:
    """What creating a merchant returns: the only time keys and secrets are shown."""

    merchant_id: uuid.UUID
    name: str
    api_key: str
    auditor_key: str
    webhook_secrets: dict[str, str]

    def as_json(self) -> dict[str, object]:
        """The contract's JSON for a created merchant (the admin endpoint's and the CLI's)."""
        return {
            "merchant_id": str(self.merchant_id),
            "name": self.name,
            "api_key": self.api_key,
            "auditor_key": self.auditor_key,
            "webhook_secrets": dict(self.webhook_secrets),
        }


class InvalidMerchantNameError(ValueError):
    """A merchant name that cannot be stored; the message says why."""


def merchant_name(name: str) -> str:
    """The name to store: ``name`` without surrounding white space.

    One rule for the admin endpoint and the CLI: 1 to ``MERCHANT_NAME_LENGTH_MAX``
    characters as given, no control character anywhere (checked before stripping, as
    Python strips some control characters as white space), and not only white space.

    Raises:
        InvalidMerchantNameError: the name breaks that rule.
    """
    if not 1 <= len(name) <= limits.MERCHANT_NAME_LENGTH_MAX:
        raise InvalidMerchantNameError(f"a merchant name is 1 to {limits.MERCHANT_NAME_LENGTH_MAX} characters")
    if has_control_characters(name):
        raise InvalidMerchantNameError("a merchant name must not contain control characters")
    stripped = name.strip()
    if not stripped:
        raise InvalidMerchantNameError("a merchant name must not be only white space")
    return stripped


@dataclass(frozen=True, slots=True)
class StoredKey:
    """An API key row, looked up by key id."""

    merchant_id: uuid.UUID
    role: str
    secret_sha256: bytes


@dataclass(frozen=True, slots=True)
class RevokedKey:
    """A key just revoked."""

    key_id: str
    merchant_id: uuid.UUID
    role: str


def create_merchant(
    conn: Connection[tuple[object, ...]], app: Application[uuid.UUID], name: str, context: CommandContext
) -> CreatedMerchant:
    """Creates a merchant with a merchant key, an auditor key and one secret per gateway.

    The rows and the merchant's audit log (merchant created, API key issued, auditor
    key issued; key ids and gateways, never a key or a secret) commit together.

    Raises:
        InvalidMerchantNameError: see :func:`merchant_name`.
    """
    name = merchant_name(name)
    merchant_id = uuid.uuid4()
    api_key, auditor_key = generate_key(), generate_key()
    secrets = {gateway: generate_secret(gateway) for gateway in GATEWAYS}
    context = context.stamped()
    log = AuditLog.merchant_created(merchant_id, name, list(secrets), context)
    log.key_issued(api_key.key_id, "merchant", context)
    log.key_issued(auditor_key.key_id, "auditor", context)
    with conn.transaction():
        conn.execute(_INSERT_MERCHANT, (merchant_id, name))
        _insert_key(conn, merchant_id, "merchant", api_key)
        _insert_key(conn, merchant_id, "auditor", auditor_key)
        for gateway, secret in secrets.items():
            conn.execute(_INSERT_SECRET, (merchant_id, gateway, secret))
        audit_log.insert(conn, app, [log])
    return CreatedMerchant(merchant_id, name, api_key.plaintext, auditor_key.plaintext, secrets)


def _insert_key(conn: Connection[tuple[object, ...]], merchant_id: uuid.UUID, role: str, key: NewKey) -> None:
    conn.execute(_INSERT_KEY, (key.key_id, merchant_id, role, key.secret_sha256))


def find_key(conn: Connection[tuple[object, ...]], key_id: str) -> StoredKey | None:
    """The active key with this id, if any."""
    row = conn.execute(_SELECT_KEY, (key_id,)).fetchone()
    if row is None:
        return None
    merchant_id, role, secret_sha256 = row
    assert isinstance(merchant_id, uuid.UUID)
    return StoredKey(merchant_id, str(role), bytes(secret_sha256))  # type: ignore[call-overload]


def merchant_exists(conn: Connection[tuple[object, ...]], merchant_id: uuid.UUID) -> bool:
    """True when the merchant exists."""
    return conn.execute(_MERCHANT_EXISTS, (merchant_id,)).fetchone() is not None


def rotate_webhook_secret(
    conn: Connection[tuple[object, ...]],
    app: Application[uuid.UUID],
    merchant_id: uuid.UUID,
    gateway: str,
    context: CommandContext,
) -> str:
    """Adds a new secret; secrets active until now stay valid for 24 h more.

    Recorded in the merchant's audit log in the same transaction (the gateway and until
    when the previous secrets verify; never a secret).
    """
    secret = generate_secret(gateway)
    context = context.stamped()
    until = context.instant + ROTATION_GRACE
    with conn.transaction():
        conn.execute(_EXPIRE_CURRENT_SECRETS, {"until": until, "merchant": merchant_id, "gateway": gateway})
        conn.execute(_INSERT_SECRET, (merchant_id, gateway, secret))
        audit_log.record(
            conn, app, context, {merchant_id: lambda log: log.webhook_secret_rotated(gateway, until, context)}
        )
    return secret


def revoke_key(
    conn: Connection[tuple[object, ...]], app: Application[uuid.UUID], key_id: str, context: CommandContext
) -> RevokedKey | None:
    """Revokes an active merchant or auditor key; ``None`` if no active key has this id.

    Recorded in the key's merchant's audit log in the same transaction; revoking a key
    already revoked changes and records nothing. API processes that cached the key
    refuse it at most 30 s later (their key cache's lifetime).
    """
    context = context.stamped()
    with conn.transaction():
        row = conn.execute(_REVOKE_KEY, (key_id,)).fetchone()
        if row is None:
            return None
        merchant_id, role = row
        assert isinstance(merchant_id, uuid.UUID)
        audit_log.record(conn, app, context, {merchant_id: lambda log: log.key_revoked(key_id, str(role), context)})
    return RevokedKey(key_id, merchant_id, str(role))


def active_webhook_secrets(conn: Connection[tuple[object, ...]], merchant_id: uuid.UUID, gateway: str) -> list[str]:
    """Every secret that verifies webhooks for this merchant and gateway now (newest first)."""
    return [str(row[0]) for row in conn.execute(_ACTIVE_SECRETS, (merchant_id, gateway)).fetchall()]
