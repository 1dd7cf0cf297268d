"""Webhook secrets: how each gateway's secrets look and what key they give the HMAC."""

from __future__ import annotations

import base64
import binascii
import secrets as secrets_random
from typing import Final

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 (a format prefix, not a secret)
STANDARD_SECRET_BYTES: Final = 32
STRIPE_SECRET_BYTES: Final = 32


def generate_secret(gateway: str) -> str:
    """A new random webhook secret for ``gateway``.

    Standard Webhooks secrets are ``whsec_`` + base64 of 32 random bytes (the key is the
    decoded bytes). Stripe secrets are ``whsec_`` + a URL-safe token of 32 random bytes
    (Stripe keys the HMAC with the whole string).

    Raises:
        ValueError: ``gateway`` is neither ``"stripe"`` nor ``"standard"``.
    """
    if gateway == "standard":
        token = base64.b64encode(secrets_random.token_bytes(STANDARD_SECRET_BYTES)).decode()
        return SECRET_PREFIX + token
    if gateway == "stripe":
        return SECRET_PREFIX + secrets_random.token_urlsafe(STRIPE_SECRET_BYTES)
    raise ValueError(f"unknown gateway: {gateway!r}")


def standard_key(secret: str) -> bytes:
    """The HMAC key of a Standard Webhooks secret: base64-decoded text after ``whsec_``.

    Raises:
        ValueError: the secret is not valid base64 or decodes to nothing.
    """
    encoded = secret.removeprefix(SECRET_PREFIX)
    # Padding is optional in secrets handed out by some senders.
    encoded += "=" * (-len(encoded) % 4)
    try:
        key = base64.b64decode(encoded, validate=True)
    except binascii.Error as error:
        raise ValueError("Standard Webhooks secret is not whsec_ + base64") from error
    if not key:
        raise ValueError("Standard Webhooks secret is empty")
    return key
