"""Operator endpoints: create merchants, rotate webhook secrets."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody

from adapters import merchants
from api.auth import admin_only
from api.commands import context_of
from api.problems import ApiError
from domain import limits


class MerchantCreate(msgspec.Struct, forbid_unknown_fields=True):
    """Body of ``POST /v1/admin/merchants``."""

    name: Annotated[
        str,
        msgspec.Meta(min_length=1, max_length=limits.MERCHANT_NAME_LENGTH_MAX, pattern=limits.TEXT_PATTERN),
    ]


class MerchantCreated(msgspec.Struct):
    """A new merchant with its keys and secrets, shown this once."""

    merchant_id: uuid.UUID
    name: str
    api_key: str
    auditor_key: str
    webhook_secrets: dict[str, str]

    @classmethod
    def of(cls, created: merchants.CreatedMerchant) -> MerchantCreated:
        """Converts the store's result."""
        return cls(
            created.merchant_id,
            created.name,
            created.api_key,
            created.auditor_key,
            created.webhook_secrets,
        )


class SecretRotated(msgspec.Struct):
    """The new webhook secret; the previous one stays valid for 24 h."""

    secret: str


class AdminController(Controller):
    """``/v1/admin``: operator-only."""

    path = "/v1/admin"
    tags = ["admin"]
    # Guards sit on the handlers, not here: Litestar's OPTIONS handler of a route belongs
    # to the controller, and answers without authentication.

    @post("/merchants", operation_id="createMerchant", status_code=201, sync_to_thread=True, opt=admin_only)
    def create_merchant(
        self, request: Request[Any, Any, Any], state: State, data: JSONBody[MerchantCreate]
    ) -> MerchantCreated:
        """Creates a merchant; its API key, auditor key and webhook secrets are shown once."""
        try:
            name = merchants.merchant_name(data.name)
        except merchants.InvalidMerchantNameError as error:
            raise ApiError(400, "invalid_request", f"{error}.") from None
        with state.pool.connection() as conn:
            return MerchantCreated.of(merchants.create_merchant(conn, state.daybook, name, context_of(request)))

    @post(
        "/merchants/{merchant_id:uuid}/webhook-secrets/{gateway:str}/rotate",
        operation_id="rotateWebhookSecret",
        status_code=201,
        sync_to_thread=True,
        opt=admin_only,
    )
    def rotate_secret(
        self,
        request: Request[Any, Any, Any],
        state: State,
        merchant_id: FromPath[uuid.UUID],
        gateway: FromPath[Literal["stripe", "standard"]],
    ) -> SecretRotated:
        """Adds a new webhook secret; the previous one stays valid for 24 hours."""
        with state.pool.connection() as conn:
            if not merchants.merchant_exists(conn, merchant_id):
                raise ApiError(404, "not_found", "No such merchant.")
            secret = merchants.rotate_webhook_secret(conn, state.daybook, merchant_id, gateway, context_of(request))
            return SecretRotated(secret)
