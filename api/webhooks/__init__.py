"""The webhook edge: signature verification and payload parsing (pure functions).

The HTTP endpoint, the inbox table and the queue use these; nothing here does I/O.
"""

from api.webhooks.signatures import (
    InvalidSignatureError,
    SignatureFailure,
    generate_secret,
    sign_standard,
    sign_stripe,
    verify,
    verify_standard,
    verify_stripe,
)
from domain.gateway.payloads import (
    Ignored,
    MalformedPayloadError,
    ParseResult,
    event_id_of,
    parse_event,
    parse_standard,
    parse_stripe,
)

GATEWAYS = ("stripe", "standard")

__all__ = [
    "GATEWAYS",
    "Ignored",
    "InvalidSignatureError",
    "MalformedPayloadError",
    "ParseResult",
    "SignatureFailure",
    "event_id_of",
    "generate_secret",
    "parse_event",
    "parse_standard",
    "parse_stripe",
    "sign_standard",
    "sign_stripe",
    "verify",
    "verify_standard",
    "verify_stripe",
]
