"""The OpenAPI 3.1 document, built from the operations table, the msgspec types and the domain's limits.

Litestar's generator is not used: it writes integer bounds as floats, errors in its
own shape, and knows no problem codes, headers, per-route security, links or webhook
signatures. Here request and response schemas come from the same msgspec types the API
decodes and encodes with (so the bounds are ``domain.limits`` exactly), and every
operation's statuses and problem codes from :mod:`api.openapi_operations`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
from litestar import Controller, Response, get

from api import schemas
from api.controllers.admin import MerchantCreate, MerchantCreated, SecretRotated
from api.controllers.health import Health, ReadinessRead
from api.openapi_operations import OPERATIONS, Operation, Param
from api.openapi_schemas import WEBHOOK_EVENT, amend_components, to_openapi_30
from api.problems import PROBLEM_MEDIA_TYPE
from domain import limits

OPENAPI_MEDIA_TYPE = "application/vnd.oai.openapi+json"
_TYPES = (
    Health,
    ReadinessRead,
    MerchantCreate,
    MerchantCreated,
    SecretRotated,
    schemas.ReceiptCreate,
    schemas.AdjustmentCreate,
    schemas.LevelRead,
    schemas.LevelPage,
    schemas.OrderCreate,
    schemas.OrderRead,
    schemas.OrderPage,
    schemas.EventPage,
    schemas.AuditEventPage,
    schemas.DigestRead,
    schemas.VerificationRead,
    schemas.PaymentRead,
    schemas.PaymentPage,
    schemas.IssuePage,
    schemas.WebhookAck,
)
_TITLES = {
    400: "Invalid request",
    401: "No valid API key",
    403: "The key's role may not do this",
    404: "Not found (or another merchant's)",
    409: "Conflict",
    413: "Body too large",
    415: "Body is not JSON",
    429: "Rate limited",
    500: "Server error",
    503: "Unavailable; retry after Retry-After",
}
_SCHEMES = {"merchant": "merchantKey", "auditor": "auditorKey", "admin": "adminKey"}
_COMMAND_UNAVAILABLE = ("overloaded", "write_contention", "unavailable", "commit_outcome_unknown")


def _header(schema: dict[str, Any], description: str, *, required: bool = False) -> dict[str, Any]:
    return {"schema": schema, "description": description, "required": required}


HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": _header({"type": "string"}, "The request's id (echoed when the client sent one).", required=True),
    "X-Daybook-Position": _header(
        {"type": "string", "pattern": "^[0-9]{1,19}$"},
        "Event store position of the command's last event; send it as X-Daybook-Min-Position to read your write.",
        required=True,
    ),
    "Idempotent-Replayed": _header({"const": "true"}, "Present on an answer replayed for a repeated Idempotency-Key."),
    "Retry-After": _header(
        {"type": "string", "pattern": "^[0-9]+$"}, "Seconds to wait before retrying.", required=True
    ),
    "RateLimit-Policy": _header(
        {"type": "string"}, 'IETF RateLimit-Policy: `"per-key";q=<per minute>;w=60` (a burst of q, then q a minute).'
    ),
    "RateLimit": _header({"type": "string"}, 'IETF RateLimit: `"per-key";r=<remaining now>;t=<seconds to full>`.'),
    "Allow": _header({"type": "string"}, "The methods of the route.", required=True),
}


def _param(param: Param) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": param.where,
        "required": param.required,
        "description": param.description,
        "schema": param.schema,
    }


IDEMPOTENCY_KEY = Param(
    "Idempotency-Key",
    "header",
    {"type": "string", "minLength": 1, "maxLength": limits.IDEMPOTENCY_KEY_LENGTH_MAX},
    "Same key and same request within the TTL: the stored answer again (Idempotent-Replayed: true).",
)
MIN_POSITION = Param(
    "X-Daybook-Min-Position",
    "header",
    {"type": "string", "pattern": "^[0-9]{1,19}$"},
    "Wait (at most the read wait limit, else 503 projection_lagging) until read models reached this position.",
)


def _problems(operation: Operation) -> dict[int, list[str]]:
    """Every status and problem code the operation can answer with."""
    codes: dict[int, list[str]] = {500: ["internal_error"]}

    def add(status: int, *more: str) -> None:
        codes.setdefault(status, [])
        codes[status] += [code for code in more if code not in codes[status]]

    if operation.roles:
        add(401, "unauthenticated")
        add(403, "forbidden")
        add(429, "rate_limited")
    if operation.params or operation.body:
        add(400, "invalid_request")
    if operation.body and operation.roles:
        add(413, "payload_too_large")
        add(415, "unsupported_media_type")
    if operation.command:
        add(400, "invalid_request")
        add(503, *_COMMAND_UNAVAILABLE)
    if operation.idempotent:
        add(409, "idempotency_key_reused", "idempotency_key_in_use")
    if operation.reads_projections:
        add(503, "projection_lagging")
    for status, more in operation.problems.items():
        add(status, *more)
    return dict(sorted(codes.items()))


def _problem_response(operation: Operation, status: int, codes: list[str]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "allOf": [
            {"$ref": f"#/components/schemas/{'OutOfStockProblem' if 'out_of_stock' in codes else 'Problem'}"},
            {"properties": {"status": {"const": status}, "code": {"enum": codes}}},
        ]
    }
    headers = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
    if status in (429, 503):
        headers["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
    if operation.roles and status != 401:
        headers["RateLimit-Policy"] = {"$ref": "#/components/headers/RateLimit-Policy"}
        headers["RateLimit"] = {"$ref": "#/components/headers/RateLimit"}
    return {
        "description": f"{_TITLES.get(status, 'Error')}: " + ", ".join(f"`{code}`" for code in codes),
        "headers": headers,
        "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
    }


def _success(operation: Operation) -> dict[str, Any]:
    headers: dict[str, Any] = {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}}
    if operation.roles:
        headers["RateLimit-Policy"] = {"$ref": "#/components/headers/RateLimit-Policy"}
        headers["RateLimit"] = {"$ref": "#/components/headers/RateLimit"}
    if operation.command:
        headers["X-Daybook-Position"] = {"$ref": "#/components/headers/X-Daybook-Position"}
    if operation.idempotent:
        headers["Idempotent-Replayed"] = {"$ref": "#/components/headers/Idempotent-Replayed"}
    schema = {"$ref": f"#/components/schemas/{operation.response}"} if operation.response else {"type": "string"}
    answer: dict[str, Any] = {
        "description": operation.summary,
        "headers": headers,
        "content": {operation.response_media_type: {"schema": schema}},
    }
    if operation.streamed_media_type:
        answer["content"][operation.streamed_media_type] = {
            "schema": {"type": "string", "description": "One event per line, each its canonical JSON (any length)."}
        }
    if operation.links:
        answer["links"] = {
            name: {"operationId": target, "parameters": parameters}
            for name, (target, parameters) in operation.links.items()
        }
    return answer


def _operation(operation: Operation) -> dict[str, Any]:
    params = list(operation.params)
    if operation.idempotent:
        params.append(IDEMPOTENCY_KEY)
    if operation.reads_projections:
        params.append(MIN_POSITION)
    responses: dict[str, Any] = {str(operation.status): _success(operation)}
    for status, codes in _problems(operation).items():
        responses[str(status)] = _problem_response(operation, status, codes)
    if operation.operation_id == "readyz":
        responses["503"] = {
            "description": "Not ready, with the reasons",
            "headers": {"X-Request-ID": {"$ref": "#/components/headers/X-Request-ID"}},
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ReadinessRead"}}},
        }
    document: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
        "parameters": [_param(param) for param in params],
        "responses": responses,
        "security": [{_SCHEMES[role]: []} for role in operation.roles],
    }
    if operation.body:
        document["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{operation.body}"}}},
        }
    return document


def _any_json(kind: type) -> dict[str, Any]:
    """Event ``data`` is any JSON object (``dict[str, object]``)."""
    if kind is object:
        return {"description": "Any JSON value."}
    raise NotImplementedError(kind)


@cache
def openapi_document() -> dict[str, Any]:
    """The whole document (built once)."""
    _, components = msgspec.json.schema_components(
        _TYPES, ref_template="#/components/schemas/{name}", schema_hook=_any_json
    )
    components = amend_components(components)
    components["WebhookEvent"] = WEBHOOK_EVENT
    paths: dict[str, dict[str, Any]] = {}
    for operation in OPERATIONS:
        paths.setdefault(operation.path, {})[operation.method] = _operation(operation)
    bearer = {"type": "http", "scheme": "bearer", "bearerFormat": "dbk_<key id>_<secret>"}
    document = {
        "openapi": "3.0.3",
        "info": {
            "title": "Daybook",
            "version": "1.0.0",
            "description": "Event-sourced financial core for commerce. Errors are RFC 9457 problems.",
        },
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "headers": HEADERS,
            "securitySchemes": {
                "merchantKey": {**bearer, "description": "A merchant's API key."},
                "auditorKey": {**bearer, "description": "A merchant's auditor key (read-only)."},
                "adminKey": {**bearer, "description": "The operator key (DAYBOOK_ADMIN_KEY)."},
            },
        },
    }
    converted: dict[str, Any] = to_openapi_30(document)
    return converted


_ENCODED: list[bytes] = []


class OpenAPIController(Controller):
    """``GET /schema/openapi.json``; no authentication."""

    path = "/schema"
    opt = {"exclude_from_auth": True}
    tags = ["operator"]

    @get("/openapi.json", operation_id="openapi", media_type=OPENAPI_MEDIA_TYPE)
    async def document(self) -> Response[bytes]:
        """The OpenAPI document of every route."""
        if not _ENCODED:
            _ENCODED.append(msgspec.json.encode(openapi_document()))
        return Response(_ENCODED[0], media_type=OPENAPI_MEDIA_TYPE)
