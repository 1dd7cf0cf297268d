"""API keys: random, shown once, stored only as SHA-256 hashes.

A key reads ``dbk_<key id>_<secret>``. The key id finds the row; the secret's hash is
compared in constant time. SHA-256 (not a slow password hash) is right here because
the secret has 256 bits of entropy: there is nothing to brute-force.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "dbk_"
_KEY_ID_BYTES = 9
_SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly generated key: ``plaintext`` is shown once, the rest is stored."""

    key_id: str
    plaintext: str
    secret_sha256: bytes


def generate_key() -> NewKey:
    """Returns a new random API key."""
    key_id = secrets.token_hex(_KEY_ID_BYTES)
    secret = secrets.token_urlsafe(_SECRET_BYTES)
    return NewKey(key_id, f"{PREFIX}{key_id}_{secret}", sha256(secret))


def split_key(plaintext: str) -> tuple[str, str] | None:
    """Returns (key id, secret) of a well-formed key, else ``None``."""
    if not plaintext.startswith(PREFIX):
        return None
    key_id, separator, secret = plaintext[len(PREFIX) :].partition("_")
    if not separator or len(key_id) != 2 * _KEY_ID_BYTES or not secret:
        return None
    return key_id, secret


def sha256(text: str) -> bytes:
    """The stored hash of a key secret."""
    return hashlib.sha256(text.encode()).digest()


def matches(secret: str, secret_sha256: bytes) -> bool:
    """Constant-time check of a presented secret against its stored hash."""
    return hmac.compare_digest(sha256(secret), secret_sha256)
