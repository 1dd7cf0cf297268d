"""Every operation of the API as the OpenAPI document states it (see :mod:`api.openapi`).

One entry per route and method: who may call it, its parameters and body, its answer,
and each status and problem code it can answer with beyond the ones every operation of
its kind shares (those are added by :mod:`api.openapi`). ``tests/integration`` checks
that the entries and the application's routes are the same set, and schemathesis checks
that the API answers as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from api import pagination
from api.controllers.audit import POSITION_PATTERN as AUDIT_POSITION_PATTERN
from api.controllers.orders import STATUSES
from domain import limits

Role = Literal["merchant", "auditor", "admin"]
UUID_SCHEMA: dict[str, Any] = {"type": "string", "format": "uuid"}
SKU_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": limits.SKU_LENGTH_MAX,
    "pattern": limits.SKU_PATTERN,
}


@dataclass(frozen=True)
class Param:
    """One path, query or header parameter."""

    name: str
    where: Literal["path", "query", "header"]
    schema: dict[str, Any]
    description: str
    required: bool = False


@dataclass(frozen=True)
class Operation:
    """One route and method.

    Attributes:
        command: runs through the group committer (answers ``X-Daybook-Position``, may be 503).
        idempotent: takes ``Idempotency-Key``.
        reads_projections: waits for ``X-Daybook-Min-Position``.
        problems: status → the problem codes of this operation beyond the shared ones.
        links: response links for stateful clients, name → (operationId, parameters).
    """

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    roles: tuple[Role, ...]
    status: int
    response: str | None
    body: str | None = None
    params: tuple[Param, ...] = ()
    command: bool = False
    idempotent: bool = False
    reads_projections: bool = False
    problems: dict[int, tuple[str, ...]] = field(default_factory=dict)
    links: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    response_media_type: str = "application/json"
    streamed_media_type: str | None = None
    """Also answered, streamed and of any length, when the client accepts this media type."""


def _limit(maximum: int) -> Param:
    return Param(
        "limit",
        "query",
        {"type": "integer", "minimum": 1, "maximum": maximum, "default": limits.PAGE_SIZE_DEFAULT},
        f"Page size, 1 to {maximum}.",
    )


def _cursor(pattern: str) -> Param:
    return Param(
        "cursor",
        "query",
        {"type": "string", "pattern": pattern},
        "The `next_cursor` of the previous page (opaque; any string of the pattern is a valid position).",
    )


AS_OF = Param(
    "as_of",
    "query",
    {"type": "string", "format": "date-time"},
    "An RFC 3339 instant: the resource as it was then, replayed from its events.",
)
SKU = Param("sku", "path", SKU_SCHEMA, "The stock keeping unit.", required=True)
ORDER_ID = Param("order_id", "path", UUID_SCHEMA, "The order's id.", required=True)
_TRACE_ID = {
    "type": "string",
    "minLength": 1,
    "maxLength": limits.TRACE_ID_LENGTH_MAX,
    "pattern": limits.TEXT_PATTERN,
}
MERCHANTS: tuple[Role, ...] = ("merchant",)
READERS: tuple[Role, ...] = ("merchant", "auditor")
SECRET_LINK = ("rotateWebhookSecret", {"merchant_id": "$response.body#/merchant_id", "gateway": "stripe"})
LEVEL_LINK = ("getInventoryLevel", {"sku": "$request.path.sku"})
ORDER_LINKS = {
    "GetOrder": ("getOrder", {"order_id": "$response.body#/id"}),
    "CancelOrder": ("cancelOrder", {"order_id": "$response.body#/id"}),
    "ListOrderEvents": ("listOrderEvents", {"order_id": "$response.body#/id"}),
}

OPERATIONS: tuple[Operation, ...] = (
    Operation("get", "/healthz", "healthz", "Liveness", "operator", (), 200, "Health"),
    Operation(
        "get", "/readyz", "readyz", "Readiness: PostgreSQL, Redis, projection lag", "operator", (), 200, "ReadinessRead"
    ),
    Operation(
        "get",
        "/metrics",
        "metrics",
        "Prometheus metrics",
        "operator",
        (),
        200,
        None,
        response_media_type="text/plain",
    ),
    Operation(
        "get",
        "/schema/openapi.json",
        "openapi",
        "This document",
        "operator",
        (),
        200,
        None,
        response_media_type="application/vnd.oai.openapi+json",
    ),
    Operation(
        "post",
        "/v1/admin/merchants",
        "createMerchant",
        "Create a merchant; its keys and webhook secrets are shown once",
        "admin",
        ("admin",),
        201,
        "MerchantCreated",
        body="MerchantCreate",
        links={"RotateWebhookSecret": SECRET_LINK},
    ),
    Operation(
        "post",
        "/v1/admin/merchants/{merchant_id}/webhook-secrets/{gateway}/rotate",
        "rotateWebhookSecret",
        "Add a webhook secret; the previous one stays valid for 24 h",
        "admin",
        ("admin",),
        201,
        "SecretRotated",
        params=(
            Param("merchant_id", "path", UUID_SCHEMA, "The merchant.", required=True),
            Param("gateway", "path", {"enum": ["stripe", "standard"]}, "The gateway.", required=True),
        ),
        problems={404: ("not_found",)},
    ),
    Operation(
        "post",
        "/v1/inventory/{sku}/receipts",
        "receiveStock",
        "Record units received (the first receipt stocks the SKU)",
        "inventory",
        MERCHANTS,
        201,
        "LevelRead",
        body="ReceiptCreate",
        params=(SKU,),
        command=True,
        idempotent=True,
        links={"GetInventoryLevel": LEVEL_LINK},
    ),
    Operation(
        "post",
        "/v1/inventory/{sku}/adjustments",
        "adjustStock",
        "Correct on-hand stock, never below what is reserved",
        "inventory",
        MERCHANTS,
        201,
        "LevelRead",
        body="AdjustmentCreate",
        params=(SKU,),
        command=True,
        idempotent=True,
        problems={404: ("not_found",), 409: ("insufficient_stock",)},
        links={"GetInventoryLevel": LEVEL_LINK},
    ),
    Operation(
        "get",
        "/v1/inventory/{sku}",
        "getInventoryLevel",
        "The level of one SKU, now or as of an instant",
        "inventory",
        READERS,
        200,
        "LevelRead",
        params=(SKU, AS_OF),
        reads_projections=True,
        problems={404: ("not_found",)},
    ),
    Operation(
        "get",
        "/v1/inventory",
        "listInventoryLevels",
        "Levels in SKU order",
        "inventory",
        READERS,
        200,
        "LevelPage",
        params=(_limit(limits.PAGE_SIZE_MAX), _cursor(pagination.LEVEL_CURSOR_PATTERN)),
        reads_projections=True,
    ),
    Operation(
        "post",
        "/v1/orders",
        "placeOrder",
        "Place an order holding stock for every line, all or nothing",
        "orders",
        MERCHANTS,
        201,
        "OrderRead",
        body="OrderCreate",
        command=True,
        idempotent=True,
        problems={400: ("currency_mismatch",), 409: ("out_of_stock", "order_already_exists")},
        links=ORDER_LINKS,
    ),
    Operation(
        "get",
        "/v1/orders/{order_id}",
        "getOrder",
        "An order, now or as of an instant",
        "orders",
        READERS,
        200,
        "OrderRead",
        params=(ORDER_ID, AS_OF),
        reads_projections=True,
        problems={404: ("not_found",)},
    ),
    Operation(
        "get",
        "/v1/orders",
        "listOrders",
        "Orders in creation order, optionally of one status",
        "orders",
        READERS,
        200,
        "OrderPage",
        params=(
            Param("status", "query", {"enum": list(STATUSES)}, "Only orders in this status."),
            _limit(limits.PAGE_SIZE_MAX),
            _cursor(pagination.TIME_ID_CURSOR_PATTERN),
        ),
        reads_projections=True,
    ),
    Operation(
        "post",
        "/v1/orders/{order_id}/cancel",
        "cancelOrder",
        "Cancel a reserved order and release its stock (no body)",
        "orders",
        MERCHANTS,
        200,
        "OrderRead",
        params=(ORDER_ID,),
        command=True,
        idempotent=True,
        problems={404: ("not_found",), 409: ("invalid_state",)},
        links={"GetOrder": ("getOrder", {"order_id": "$request.path.order_id"})},
    ),
    Operation(
        "get",
        "/v1/orders/{order_id}/events",
        "listOrderEvents",
        "The order's own event stream, in version order",
        "orders",
        READERS,
        200,
        "EventPage",
        params=(ORDER_ID, _limit(limits.EVENT_PAGE_SIZE_MAX), _cursor(pagination.VERSION_CURSOR_PATTERN)),
        problems={404: ("not_found",)},
    ),
    Operation(
        "get",
        "/v1/events/stream",
        "streamEvents",
        "The merchant's events as Server-Sent Events (`id` = position, `event` = type, `data` = audit event)",
        "events",
        MERCHANTS,
        200,
        None,
        params=(
            Param(
                "Last-Event-ID",
                "header",
                {"type": "string", "pattern": "^[0-9]{1,19}$"},
                "Resume right after this position (0: from the first event); without it, from the live head.",
            ),
        ),
        problems={503: ("overloaded",)},
        response_media_type="text/event-stream",
    ),
    Operation(
        "get",
        "/v1/payments/{payment_id}",
        "getPayment",
        "A payment (created by webhooks only)",
        "payments",
        READERS,
        200,
        "PaymentRead",
        params=(Param("payment_id", "path", UUID_SCHEMA, "The payment's id.", required=True),),
        reads_projections=True,
        problems={404: ("not_found",)},
    ),
    Operation(
        "get",
        "/v1/payments",
        "listPayments",
        "Payments in creation order, optionally of one order",
        "payments",
        READERS,
        200,
        "PaymentPage",
        params=(
            Param("order_id", "query", UUID_SCHEMA, "Only payments of this order."),
            _limit(limits.PAGE_SIZE_MAX),
            _cursor(pagination.TIME_ID_CURSOR_PATTERN),
        ),
        reads_projections=True,
    ),
    Operation(
        "get",
        "/v1/reconciliation/issues",
        "listReconciliationIssues",
        "What to reconcile: payment anomalies and paid orders that could not be fulfilled",
        "reconciliation",
        READERS,
        200,
        "IssuePage",
        params=(_limit(limits.PAGE_SIZE_MAX), _cursor(pagination.ISSUE_CURSOR_PATTERN)),
        reads_projections=True,
    ),
    Operation(
        "get",
        "/v1/audit/events",
        "listAuditEvents",
        "The merchant's chained events in position order; with Accept: application/x-ndjson, all of them, streamed",
        "audit",
        READERS,
        200,
        "AuditEventPage",
        params=(
            Param(
                "after",
                "query",
                {"type": "string", "pattern": AUDIT_POSITION_PATTERN},
                "Events after this position (a page's `next_cursor`, or an export's last position).",
            ),
            Param(
                "limit",
                "query",
                {"type": "integer", "minimum": 1, "maximum": limits.EVENT_PAGE_SIZE_MAX, "default": 50},
                f"Page size, 1 to {limits.EVENT_PAGE_SIZE_MAX}; with NDJSON, the most events streamed (default: all).",
            ),
            Param("request_id", "query", _TRACE_ID, "Only the events caused by this request (its X-Request-ID)."),
            Param("causation_id", "query", _TRACE_ID, "Only the events of this cause (e.g. a gateway event id)."),
        ),
        reads_projections=True,
        streamed_media_type="application/x-ndjson",
    ),
    Operation(
        "get",
        "/v1/audit/streams/{stream_id}/events",
        "listAuditStreamEvents",
        "One stream's chained events, in version order",
        "audit",
        READERS,
        200,
        "AuditEventPage",
        params=(
            Param("stream_id", "path", UUID_SCHEMA, "The stream (aggregate) id.", required=True),
            _limit(limits.EVENT_PAGE_SIZE_MAX),
            _cursor(pagination.VERSION_CURSOR_PATTERN),
        ),
        reads_projections=True,
        problems={404: ("not_found",)},
    ),
    Operation(
        "get",
        "/v1/audit/digest",
        "getAuditDigest",
        "The latest signed digest of the merchant's chain",
        "audit",
        READERS,
        200,
        "DigestRead",
        reads_projections=True,
        problems={400: ("invalid_request",), 404: ("not_found",)},
    ),
    Operation(
        "get",
        "/v1/audit/verify",
        "verifyAuditChain",
        "Recompute a bounded part of the chain from the stored events (incremental, with a rotating re-check)",
        "audit",
        READERS,
        200,
        "VerificationRead",
        reads_projections=True,
        problems={400: ("invalid_request",)},
    ),
    Operation(
        "post",
        "/v1/webhooks/{merchant_id}/{gateway}",
        "receiveWebhook",
        "A gateway's signed event (no API key: the signature authenticates)",
        "webhooks",
        (),
        200,
        "WebhookAck",
        body="WebhookEvent",
        params=(
            Param("merchant_id", "path", UUID_SCHEMA, "The merchant the gateway delivers for.", required=True),
            Param("gateway", "path", {"enum": ["stripe", "standard"]}, "The gateway.", required=True),
            Param(
                "Stripe-Signature",
                "header",
                {"type": "string", "maxLength": 4096, "pattern": r"^t=[0-9]+(,v1=[0-9a-f]{64})+$"},
                "stripe: `t=<unix>,v1=<hex>[,v1=<hex>…]`, HMAC-SHA256 of `{t}.{raw body}` keyed with the secret.",
            ),
            Param("webhook-id", "header", {"type": "string", "maxLength": 4096}, "standard: the event id."),
            Param(
                "webhook-timestamp", "header", {"type": "string", "pattern": "^[0-9]{1,12}$"}, "standard: unix time."
            ),
            Param(
                "webhook-signature",
                "header",
                {"type": "string", "maxLength": 4096},
                "standard: `v1,<base64>[ v1,<base64>…]`, HMAC-SHA256 of `{id}.{timestamp}.{raw body}`.",
            ),
        ),
        problems={
            400: ("malformed",),
            401: ("invalid_signature",),
            404: ("not_found",),
            413: ("payload_too_large",),
            429: ("rate_limited",),
            503: ("unavailable",),
        },
    ),
)
"""Every operation, in the order of the document."""
