"""Persistence of merchants, API key hashes and webhook secrets (tables of 0002_merchants).

The API authenticates with these tables and the CLI creates merchants in them, so
both go through this module: one rule for a merchant's name, one way to create one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from psycopg import Connection, sql

from adapters.gateways import GATEWAYS
from adapters.gateways.secrets import generate_secret
from adapters.keys import NewKey, generate_key
from domain import limits
from domain.validation import has_control_characters

ROTATION_GRACE = timedelta(hours=24)

_INSERT_MERCHANT = sql.SQL("INSERT INTO merchants (merchant_id, name) VALUES (%s, %s)")
_INSERT_KEY = sql.SQL("INSERT INTO api_keys (key_id, merchant_id, role, secret_sha256) VALUES (%s, %s, %s, %s)")
_INSERT_SECRET = sql.SQL("INSERT INTO webhook_secrets (merchant_id, gateway, secret) VALUES (%s, %s, %s)")
_SELECT_KEY = sql.SQL("SELECT merchant_id, role, secret_sha256 FROM api_keys WHERE key_id = %s AND revoked_at IS NULL")
_MERCHANT_EXISTS = sql.SQL("SELECT 1 FROM merchants WHERE merchant_id = %s")
_EXPIRE_CURRENT_SECRETS = sql.SQL(
    "UPDATE webhook_secrets SET expires_at = now() + %s "
    "WHERE merchant_id = %s AND gateway = %s AND (expires_at IS NULL OR expires_at > now() + %s)"
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


def create_merchant(conn: Connection[tuple[object, ...]], name: str) -> CreatedMerchant:
    """Creates a merchant with a merchant key, an auditor key and one secret per gateway.

    Raises:
        InvalidMerchantNameError: see :func:`merchant_name`.
    """
    name = merchant_name(name)
    merchant_id = uuid.uuid4()
    api_key, auditor_key = generate_key(), generate_key()
    secrets = {gateway: generate_secret(gateway) for gateway in GATEWAYS}
    with conn.transaction():
        conn.execute(_INSERT_MERCHANT, (merchant_id, name))
        _insert_key(conn, merchant_id, "merchant", api_key)
        _insert_key(conn, merchant_id, "auditor", auditor_key)
        for gateway, secret in secrets.items():
            conn.execute(_INSERT_SECRET, (merchant_id, gateway, secret))
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


def rotate_webhook_secret(conn: Connection[tuple[object, ...]], merchant_id: uuid.UUID, gateway: str) -> str:
    """Adds a new secret; secrets active until now stay valid for 24 h more."""
    secret = generate_secret(gateway)
    with conn.transaction():
        conn.execute(_EXPIRE_CURRENT_SECRETS, (ROTATION_GRACE, merchant_id, gateway, ROTATION_GRACE))
        conn.execute(_INSERT_SECRET, (merchant_id, gateway, secret))
    return secret


def active_webhook_secrets(conn: Connection[tuple[object, ...]], merchant_id: uuid.UUID, gateway: str) -> list[str]:
    """Every secret that verifies webhooks for this merchant and gateway now (newest first)."""
    return [str(row[0]) for row in conn.execute(_ACTIVE_SECRETS, (merchant_id, gateway)).fetchall()]
