"""Webhook signature schemes: Stripe (``Stripe-Signature``) and Standard Webhooks.

Pure functions: the caller passes the raw body, the headers, every active secret of the
merchant's gateway and the current time. Every rejection raises one
:class:`InvalidSignatureError`; its ``reason`` is for logs and metrics only, the HTTP
answer is the same for every cause.

Standard Webhooks is verified here with :mod:`hmac` per the specification rather than
through ``standardwebhooks.Webhook.verify`` (1.1), which reads the wall clock itself
(no injectable ``now``), takes one secret per call, signs the body as ``str`` (so a
non-UTF-8 body raises ``UnicodeDecodeError``) and lets a malformed signature list escape
as ``ValueError`` / ``binascii.Error``. The unit tests sign with that package and check
that both implementations accept each other's signatures.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum

from adapters.gateways.secrets import standard_key

TOLERANCE_S_DEFAULT = 300
# Real headers are well under 1 KiB; the bound keeps a hostile header from costing work.
HEADER_LENGTH_MAX = 4096

STRIPE_SIGNATURE_HEADER = "stripe-signature"
STANDARD_ID_HEADER = "webhook-id"
STANDARD_TIMESTAMP_HEADER = "webhook-timestamp"
STANDARD_SIGNATURE_HEADER = "webhook-signature"

# ASCII digits only: int() also accepts "1_700", " 17" and non-ASCII digits.
_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_STRIPE_V1 = re.compile(r"[0-9a-fA-F]{64}")


class SignatureFailure(StrEnum):
    """Why a webhook signature was rejected (for logs and metrics, never the response)."""

    MISSING_HEADER = "missing_header"
    MALFORMED_HEADER = "malformed_header"
    TIMESTAMP_OUT_OF_TOLERANCE = "timestamp_out_of_tolerance"
    NO_MATCHING_SIGNATURE = "no_matching_signature"
    NO_ACTIVE_SECRET = "no_active_secret"  # noqa: S105 (a reason code)


class InvalidSignatureError(Exception):
    """The webhook's signature is missing, malformed, stale or wrong.

    The message is the same for every cause so that it can never leak into a response
    differently; the cause is kept in ``reason``.

    Attributes:
        reason: why the signature was rejected.
    """

    MESSAGE = "invalid webhook signature"

    def __init__(self, reason: SignatureFailure) -> None:
        super().__init__(self.MESSAGE)
        self.reason = reason


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` matched case-insensitively (``name`` in lower case)."""
    value = headers.get(name)
    if value is not None:
        return value
    for key, candidate in headers.items():
        if key.lower() == name:
            return candidate
    return None


def verify(
    gateway: str,
    raw_body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    *,
    now: float,
    tolerance_s: int = TOLERANCE_S_DEFAULT,
) -> None:
    """Verify a webhook of either gateway; see :func:`verify_stripe`, :func:`verify_standard`.

    Raises:
        InvalidSignatureError: the signature does not verify (any cause).
        ValueError: unknown ``gateway``.
    """
    if gateway == "stripe":
        header = header_value(headers, STRIPE_SIGNATURE_HEADER)
        verify_stripe(raw_body, header, secrets, now, tolerance_s)
    elif gateway == "standard":
        verify_standard(raw_body, headers, secrets, now, tolerance_s)
    else:
        raise ValueError(f"unknown gateway: {gateway!r}")


def verify_stripe(
    raw_body: bytes,
    header: str | None,
    secrets: Sequence[str],
    now: float,
    tolerance_s: int = TOLERANCE_S_DEFAULT,
) -> None:
    """Verify a ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`` header.

    The signature is HMAC-SHA256 of ``"{t}.{raw body}"`` keyed with the secret string,
    ``whsec_`` prefix included. Schemes other than ``v1`` are ignored.

    Args:
        raw_body: the request body exactly as received.
        header: the ``Stripe-Signature`` header value, ``None`` when absent.
        secrets: every active secret (current and, during rotation, previous).
        now: current Unix time in seconds.
        tolerance_s: allowed clock difference, in both directions.

    Raises:
        InvalidSignatureError: missing or malformed header, timestamp more than
            ``tolerance_s`` away from ``now``, or no signature made with any secret.
    """
    if not header:
        raise InvalidSignatureError(SignatureFailure.MISSING_HEADER)
    timestamp, signatures = _parse_stripe_header(header)
    _check_timestamp(timestamp, now, tolerance_s)
    if not secrets:
        raise InvalidSignatureError(SignatureFailure.NO_ACTIVE_SECRET)
    signed = f"{timestamp}.".encode() + raw_body
    for secret in secrets:
        expected = _stripe_digest(secret, signed)
        for signature in signatures:
            if hmac.compare_digest(expected, signature):
                return
    raise InvalidSignatureError(SignatureFailure.NO_MATCHING_SIGNATURE)


def verify_standard(
    raw_body: bytes,
    headers: Mapping[str, str],
    secrets: Sequence[str],
    now: float,
    tolerance_s: int = TOLERANCE_S_DEFAULT,
) -> str:
    """Verify a Standard Webhooks delivery and return its ``webhook-id``.

    Headers ``webhook-id``, ``webhook-timestamp`` and
    ``webhook-signature: v1,<base64>[ v1,<base64>…]`` (names matched case-insensitively);
    the signature is HMAC-SHA256 of ``"{id}.{timestamp}.{raw body}"`` keyed with the
    base64-decoded part of the ``whsec_`` secret. Other versions (``v1a``) are ignored.

    Args:
        raw_body: the request body exactly as received.
        headers: the request headers.
        secrets: every active secret (current and, during rotation, previous).
        now: current Unix time in seconds.
        tolerance_s: allowed clock difference, in both directions.

    Returns:
        The ``webhook-id`` header: the delivery's deduplication key.

    Raises:
        InvalidSignatureError: missing or malformed headers, timestamp more than
            ``tolerance_s`` away from ``now``, or no signature made with any secret.
        ValueError: a configured secret is not ``whsec_`` + base64 (configuration error).
    """
    msg_id = header_value(headers, STANDARD_ID_HEADER)
    timestamp_header = header_value(headers, STANDARD_TIMESTAMP_HEADER)
    signature_header = header_value(headers, STANDARD_SIGNATURE_HEADER)
    if not (msg_id and timestamp_header and signature_header):
        raise InvalidSignatureError(SignatureFailure.MISSING_HEADER)
    if len(msg_id) > HEADER_LENGTH_MAX:
        raise InvalidSignatureError(SignatureFailure.MALFORMED_HEADER)
    timestamp = _parse_timestamp(timestamp_header)
    signatures = _parse_standard_signatures(signature_header)
    _check_timestamp(timestamp, now, tolerance_s)
    if not secrets:
        raise InvalidSignatureError(SignatureFailure.NO_ACTIVE_SECRET)
    signed = f"{msg_id}.{timestamp}.".encode() + raw_body
    for secret in secrets:
        expected = hmac.digest(standard_key(secret), signed, hashlib.sha256)
        for signature in signatures:
            if hmac.compare_digest(expected, signature):
                return msg_id
    raise InvalidSignatureError(SignatureFailure.NO_MATCHING_SIGNATURE)


def sign_stripe(raw_body: bytes, secret: str, timestamp: int) -> str:
    """The ``Stripe-Signature`` header Stripe would send (for tests and benchmarks)."""
    signed = f"{timestamp}.".encode() + raw_body
    return f"t={timestamp},v1={_stripe_digest(secret, signed)}"


def sign_standard(raw_body: bytes, secret: str, msg_id: str, timestamp: int) -> dict[str, str]:
    """The three Standard Webhooks headers a sender would send (for tests and benchmarks)."""
    signed = f"{msg_id}.{timestamp}.".encode() + raw_body
    digest = hmac.digest(standard_key(secret), signed, hashlib.sha256)
    return {
        STANDARD_ID_HEADER: msg_id,
        STANDARD_TIMESTAMP_HEADER: str(timestamp),
        STANDARD_SIGNATURE_HEADER: "v1," + base64.b64encode(digest).decode(),
    }


def _stripe_digest(secret: str, signed: bytes) -> str:
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def _parse_timestamp(value: str) -> int:
    if not _TIMESTAMP.fullmatch(value):
        raise InvalidSignatureError(SignatureFailure.MALFORMED_HEADER)
    return int(value)


def _check_timestamp(timestamp: int, now: float, tolerance_s: int) -> None:
    if abs(now - timestamp) > tolerance_s:
        raise InvalidSignatureError(SignatureFailure.TIMESTAMP_OUT_OF_TOLERANCE)


def _parse_stripe_header(header: str) -> tuple[int, list[str]]:
    """``(t, [v1 signatures in lower-case hex])``; other schemes are skipped."""
    if len(header) > HEADER_LENGTH_MAX:
        raise InvalidSignatureError(SignatureFailure.MALFORMED_HEADER)
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, separator, value = item.strip().partition("=")
        if not separator:
            raise InvalidSignatureError(SignatureFailure.MALFORMED_HEADER)
        if key == "t":
            if timestamp is not None:
                raise InvalidSignatureError(SignatureFailure.MALFORMED_HEADER)
            timestamp = _parse_timestamp(value)
        elif key == "v1":
            if not _STRIPE_V1.fullmatch(value):
                raise InvalidSignatureError(SignatureFailure.MALFORMED_HEADER)
            signatures.append(value.lower())
    if timestamp is None or not signatures:
        raise InvalidSignatureError(SignatureFailure.MALFORMED_HEADER)
    return timestamp, signatures


def _parse_standard_signatures(header: str) -> list[bytes]:
    """The decoded ``v1`` signatures of a ``webhook-signature`` header."""
    if len(header) > HEADER_LENGTH_MAX:
        raise InvalidSignatureError(SignatureFailure.MALFORMED_HEADER)
    signatures: list[bytes] = []
    for token in header.split():
        version, separator, encoded = token.partition(",")
        if not separator:
            raise InvalidSignatureError(SignatureFailure.MALFORMED_HEADER)
        if version != "v1":
            continue
        try:
            signatures.append(base64.b64decode(encoded, validate=True))
        except binascii.Error as error:
            raise InvalidSignatureError(SignatureFailure.MALFORMED_HEADER) from error
    if not signatures:
        raise InvalidSignatureError(SignatureFailure.MALFORMED_HEADER)
    return signatures
