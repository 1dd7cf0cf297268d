"""``POST /v1/webhooks/{merchant_id}/{gateway}``: the gateways' edge (no bearer auth).

In this order: the endpoint (404 for an unknown gateway or merchant) and the merchant's
limits (429 ``rate_limited``, see :mod:`api.webhooks.limits`), both before the body is
even read, so that a flood of made-up or forged deliveries costs little; then the body
limit (413), the signature over the raw bytes with every active secret (401
``invalid_signature``, one body for every cause), the payload (400 ``malformed``; an
event type Daybook does not act on is 200 ``ignored`` and nothing is stored), then
deduplication by the gateway's event id and the inbox row. Nothing is stored for a
rejected request. 200 ``accepted`` is answered only once the row is committed (see
:class:`api.webhooks.inbox_writer.InboxWriter`); the message to the workers is sent after that,
and if it is lost (Redis down) the sweeper sends it again, so the answer never depends
on Redis.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import anyio.to_thread
from litestar import Controller, Request, Router, post
from litestar.datastructures import State
from litestar.exceptions import HTTPException
from litestar.params import FromPath

from adapters.gateways import GATEWAYS, Ignored, MalformedPayloadError, event_id_of, parse_delivery
from adapters.settings import Settings
from adapters.webhook_inbox import Delivery, UnstorableDeliveryError
from api.answers import JsonAnswer
from api.metrics import WEBHOOK_OUTCOMES
from api.problems import ApiError
from api.schemas import WebhookAck
from api.tally import TALLY
from api.webhooks.inbox_writer import InboxUnavailableError, InboxWriter
from api.webhooks.limits import WebhookLimits
from api.webhooks.secrets import SecretsCache
from api.webhooks.signatures import STANDARD_ID_HEADER, InvalidSignatureError, header_value, verify

log = logging.getLogger(__name__)

IGNORED = "ignored"
INVALID_SIGNATURE_DETAIL = "The webhook signature is missing, malformed, stale or does not match."


class WebhooksController(Controller):
    """Signed deliveries from payment gateways."""

    path = "/v1/webhooks"
    tags = ["webhooks"]
    opt = {"exclude_from_auth": True}

    @post("/{merchant_id:uuid}/{gateway:str}", operation_id="receiveWebhook", status_code=200)
    async def receive(
        self, request: Request[Any, Any, Any], merchant_id: FromPath[uuid.UUID], gateway: FromPath[str]
    ) -> JsonAnswer:
        """Verifies, deduplicates and stores a delivery; its effects are applied asynchronously."""
        if gateway not in GATEWAYS:
            _count("unknown", "not_found")
            raise ApiError(404, "not_found", "No such webhook endpoint.")
        state = request.app.state
        secrets = await admit_delivery(state, merchant_id, gateway)
        try:
            body = await request.body()
        except HTTPException as error:
            _count(gateway, "payload_too_large" if error.status_code == 413 else "bad_request")
            raise
        headers = {name.lower(): value for name, value in request.headers.items()}
        status = await receive_delivery(state, merchant_id, gateway, body, headers, secrets=secrets, now=time.time())
        _count(gateway, status)
        return JsonAnswer(WebhookAck(status))


def webhooks_router(settings: Settings) -> Router:
    """The webhook routes with their own body limit (256 KiB by default)."""
    return Router(
        path="/",
        route_handlers=[WebhooksController],
        request_max_body_size=settings.webhook_body_size_max_bytes,
    )


async def admit_delivery(state: State, merchant_id: uuid.UUID, gateway: str) -> list[str]:
    """The endpoint's active secrets, once the merchant exists and is within its limits.

    Raises:
        ApiError: 404 unknown merchant, 429 ``rate_limited``.
    """
    secrets_cache: SecretsCache = state.webhook_secrets
    secrets = await secrets_cache.secrets(merchant_id, gateway)
    if secrets is None:
        _count(gateway, "not_found")
        raise ApiError(404, "not_found", "No such merchant.")
    limits: WebhookLimits = state.webhook_limits
    retry_after_s = limits.admit(merchant_id, gateway)
    if retry_after_s is not None:
        _count(gateway, "rate_limited")
        detail = "Too many deliveries to this endpoint, or too many that failed verification; retry later."
        raise ApiError(429, "rate_limited", detail, headers={"Retry-After": str(retry_after_s)})
    return secrets


async def receive_delivery(
    state: State,
    merchant_id: uuid.UUID,
    gateway: str,
    body: bytes,
    headers: dict[str, str],
    *,
    secrets: list[str],
    now: float,
) -> str:
    """Everything after the body limit, for an admitted delivery; returns the status to answer.

    Runs in the event loop: verifying and parsing cost microseconds, secrets are cached,
    and the inbox writer batches the round trips of concurrent deliveries.

    Raises:
        ApiError: 401 ``invalid_signature``, 400 ``malformed``, 503 ``unavailable`` when
            the delivery could not be stored.
    """
    secrets_cache: SecretsCache = state.webhook_secrets
    limits: WebhookLimits = state.webhook_limits
    tolerance_s = state.settings.webhook_tolerance_seconds
    try:
        try:
            verify(gateway, body, headers, secrets, now=now, tolerance_s=tolerance_s)
        except InvalidSignatureError:
            # Perhaps signed with a secret rotated in after the cache was filled.
            fresh = await anyio.to_thread.run_sync(secrets_cache.refresh_after_failure, merchant_id, gateway) or []
            if fresh == secrets:
                raise
            verify(gateway, body, headers, fresh, now=now, tolerance_s=tolerance_s)
    except InvalidSignatureError as error:
        limits.failed_verification(merchant_id, gateway)
        _count(gateway, "invalid_signature")
        log.info("webhook rejected: %s", error.reason, extra={"merchant_id": str(merchant_id), "gateway": gateway})
        raise ApiError(401, "invalid_signature", INVALID_SIGNATURE_DETAIL) from None
    webhook_id = header_value(headers, STANDARD_ID_HEADER) if gateway == "standard" else None
    try:
        parsed = parse_delivery(gateway, body, webhook_id)
        event_id = event_id_of(gateway, body, webhook_id)
    except MalformedPayloadError as error:
        _count(gateway, "malformed")
        raise ApiError(400, "malformed", error.detail) from None
    if isinstance(parsed, Ignored):
        return IGNORED
    stored_headers = {STANDARD_ID_HEADER: event_id} if gateway == "standard" else {}
    delivery = Delivery(merchant_id, gateway, event_id, body, stored_headers)
    writer: InboxWriter = state.inbox_writer
    try:
        return await writer.store(delivery)
    except UnstorableDeliveryError as error:
        _count(gateway, "malformed")
        raise ApiError(400, "malformed", f"The delivery cannot be stored: {error}") from None
    except InboxUnavailableError as error:
        _count(gateway, "unavailable")
        log.warning("webhook not stored: %s", error)
        raise ApiError(
            503, "unavailable", "The delivery was not stored; retry.", headers={"Retry-After": "1"}
        ) from None


def _count(gateway: str, outcome: str) -> None:
    TALLY.inc(WEBHOOK_OUTCOMES.labels(gateway=gateway, outcome=outcome))
