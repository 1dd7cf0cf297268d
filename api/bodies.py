"""Strict request bodies.

Litestar converts handler arguments leniently (``"100"`` would become ``100``); a money
API must not guess. Handlers keep their typed ``data`` parameter (it documents the body
in OpenAPI and rejects most bad input early) and take the value from :func:`strict_body`,
which decodes the same cached bytes again with msgspec in strict mode (microseconds).
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from litestar import Request

from api.problems import ApiError

T = TypeVar("T")

_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {}


async def strict_body(request: Request[Any, Any, Any], schema: type[T]) -> T:
    """The body decoded as ``schema`` with no type coercion; 400 ``invalid_request`` otherwise."""
    decoder = _decoders.get(schema)
    if decoder is None:
        decoder = _decoders.setdefault(schema, msgspec.json.Decoder(schema, strict=True))
    try:
        value: T = decoder.decode(await request.body())
    except msgspec.ValidationError as error:
        raise ApiError(400, "invalid_request", f"Invalid body: {error}") from error
    except msgspec.DecodeError as error:
        raise ApiError(400, "invalid_request", "The body is not valid JSON.") from error
    return value
