"""What every gateway's wire format shares: the parse results and the typed fields.

Gateways add fields over time, so unknown fields are ignored; the fields Daybook needs
are required and typed strictly (no coercion: ``"100"`` or ``100.0`` is not an amount).
Ids and amounts are bounded by :mod:`domain.limits`; ids with control characters are
malformed (they could never be stored or shown safely).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, TypeAlias, TypeVar

import msgspec

from domain import limits
from domain.gateway import GatewayEvent

Amount = Annotated[int, msgspec.Meta(ge=0, le=limits.AMOUNT_MAX)]
Currency = Annotated[str, msgspec.Meta(min_length=3, max_length=3, pattern="^[A-Za-z]{3}$")]
Ref = Annotated[str, msgspec.Meta(min_length=1, max_length=limits.GATEWAY_ID_LENGTH_MAX, pattern=limits.TEXT_PATTERN)]

T = TypeVar("T")


class MalformedPayloadError(ValueError):
    """The verified body is not a well-formed event of its gateway.

    Attributes:
        detail: human-readable reason, safe to return to the sender.
    """

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed event that Daybook does not act on.

    Attributes:
        event_type: the gateway's event type.
        reason: why it carries no payment fact, for logs.
    """

    event_type: str
    reason: str


ParseResult: TypeAlias = list[GatewayEvent] | Ignored


def decode(decoder: msgspec.json.Decoder[T], raw_body: bytes) -> T:
    """``raw_body`` decoded, or :class:`MalformedPayloadError` saying where it is wrong."""
    try:
        return decoder.decode(raw_body)
    except msgspec.ValidationError as error:
        # The message names the field and its JSON path: "... - at `$.data.amount`".
        raise MalformedPayloadError(str(error)) from error
    except msgspec.DecodeError as error:
        raise MalformedPayloadError(f"body is not valid JSON: {error}") from error
