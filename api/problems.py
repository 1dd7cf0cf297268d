"""RFC 9457 problem responses: the one place where errors become HTTP.

Every error the API returns is ``application/problem+json`` with ``status``, ``title``,
``detail``, a stable snake_case ``code`` and the ``request_id``. Domain and group-commit
errors know nothing of HTTP but carry their contract code; :data:`ERROR_STATUSES` adds
only the status, the headers and any extra fields of each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import eventsourcing.persistence
import psycopg
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import Scope
from psycopg_pool import PoolTimeout

from api.request_id import request_id_of
from domain.errors import (
    CurrencyMismatchError,
    DomainError,
    IdempotencyKeyReusedError,
    InsufficientStockError,
    InvalidCommandError,
    InvalidStateError,
    InventoryItemNotFoundError,
    OrderAlreadyExistsError,
    OrderNotFoundError,
    OutOfStockError,
    PaymentNotFoundError,
)
from domain.groupcommit import (
    CommitOutcomeUnknownError,
    CommitterDatabaseUnavailableError,
    CommitterFailedError,
    CommitterUnavailableError,
    ConflictRetriesExhaustedError,
    GroupCommitError,
    GroupCommitterStoppedError,
    OverloadedError,
)

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"

_TITLES: dict[int, str] = {
    400: "Bad request",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    429: "Too many requests",
    499: "Client closed request",
    500: "Internal server error",
    503: "Service unavailable",
}

_DEFAULT_CODES: dict[int, str] = {
    400: "invalid_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(HTTPException):
    """An error answered as a problem response with a stable ``code``."""

    def __init__(
        self,
        status_code: int,
        code: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail=detail, status_code=status_code, headers=headers)
        self.code = code
        self.extra_fields: dict[str, Any] = dict(extra or {})


def problem_response(
    scope: Scope,
    status_code: int,
    code: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Response[dict[str, Any]]:
    """Builds the problem+json response for one error."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "status": status_code,
        "title": _TITLES.get(status_code, "Error"),
        "detail": detail,
        "code": code,
        "request_id": request_id_of(scope),
    }
    if extra:
        body.update(extra)
    return Response(body, status_code=status_code, media_type=PROBLEM_MEDIA_TYPE, headers=dict(headers or {}))


def _log_server_error(request: Request[Any, Any, Any], error: Exception, status: int, code: str) -> None:
    """Every 5xx is logged with its traceback and the request id (500s as errors, others as warnings)."""
    if status >= 500:
        level = logging.ERROR if status == 500 else logging.WARNING
        request_id = request_id_of(request.scope)
        log.log(
            level,
            "answered %d %s to %s %s (request %s)",
            status,
            code,
            request.method,
            request.scope.get("path", ""),
            request_id,
            exc_info=error,
            extra={"request_id": request_id, "status": status, "code": code},
        )


def _handle_api_error(request: Request[Any, Any, Any], error: ApiError) -> Response[Any]:
    _log_server_error(request, error, error.status_code, error.code)
    return problem_response(
        request.scope,
        error.status_code,
        error.code,
        error.detail,
        headers=error.headers,
        extra=error.extra_fields,
    )


def _handle_validation(request: Request[Any, Any, Any], error: ValidationException) -> Response[Any]:
    extra = {"errors": error.extra} if error.extra else None
    return problem_response(request.scope, 400, "invalid_request", str(error.detail), extra=extra)


CLIENT_CLOSED_REQUEST = 499
"""Counted (nginx's convention) when the client went away before its request was read."""
_CLIENT_DISCONNECTED = "client disconnected prematurely"  # Litestar's detail when reading the body


def _handle_http(request: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    if error.status_code == 500 and error.detail == _CLIENT_DISCONNECTED:
        # Nothing ran and nobody will read an answer: not a server error, nor worth a traceback.
        log.info("client disconnected before its request was read", extra={"request_id": request_id_of(request.scope)})
        return problem_response(request.scope, CLIENT_CLOSED_REQUEST, "client_closed_request", _CLIENT_DISCONNECTED)
    status = error.status_code
    code = _DEFAULT_CODES.get(status, "error")
    detail = error.detail if status < 500 else _TITLES.get(status, "Error")
    _log_server_error(request, error, status, code)
    return problem_response(request.scope, status, code, detail, headers=error.headers)


def _handle_unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    _log_server_error(request, error, 500, "internal_error")
    return problem_response(
        request.scope,
        500,
        "internal_error",
        "The server failed to answer; nothing was applied unless a later read shows it.",
    )


RETRY_AFTER = {"Retry-After": "1"}


def _handle_database_unavailable(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
    # A pooled connection that the server or the network dropped (restart, failover) fails
    # its next statement; the pool discards it, so a retry gets a fresh one. Not a 500.
    _log_server_error(request, error, 503, "unavailable")
    return problem_response(
        request.scope,
        503,
        "unavailable",
        "The database did not answer. Retry (with the same Idempotency-Key).",
        headers=RETRY_AFTER,
    )


def _shortages(error: Exception) -> dict[str, Any]:
    assert isinstance(error, OutOfStockError)
    return {"lines": [{"sku": s.sku, "requested": s.requested, "available": s.available} for s in error.lines]}


@dataclass(frozen=True, slots=True)
class ErrorStatus:
    """How one error class is answered; its ``code`` is the error's own.

    Attributes:
        status: the HTTP status.
        headers: response headers (``Retry-After`` for what a retry may fix).
        fields_of: the problem's fields beyond the standard ones, from the error.
        detail: a fixed detail, where the error's message is not for callers.
    """

    status: int
    headers: Mapping[str, str] | None = None
    fields_of: Callable[[Exception], dict[str, Any]] | None = None
    detail: str | None = None


ERROR_STATUSES: dict[type[Exception], ErrorStatus] = {
    OutOfStockError: ErrorStatus(409, fields_of=_shortages),
    InsufficientStockError: ErrorStatus(409),
    InvalidStateError: ErrorStatus(409),
    OrderAlreadyExistsError: ErrorStatus(409),
    IdempotencyKeyReusedError: ErrorStatus(409),
    CurrencyMismatchError: ErrorStatus(400),
    OrderNotFoundError: ErrorStatus(404),
    InventoryItemNotFoundError: ErrorStatus(404),
    PaymentNotFoundError: ErrorStatus(404),
    InvalidCommandError: ErrorStatus(400),
    OverloadedError: ErrorStatus(503, RETRY_AFTER, detail="Too many commands are waiting; retry after a second."),
    ConflictRetriesExhaustedError: ErrorStatus(
        503, RETRY_AFTER, detail="Concurrent writers kept conflicting; nothing was applied. Retry."
    ),
    GroupCommitterStoppedError: ErrorStatus(
        503, RETRY_AFTER, detail="The server is shutting down; nothing was applied. Retry."
    ),
    CommitOutcomeUnknownError: ErrorStatus(
        503, RETRY_AFTER, detail="The server stopped while committing; retry with the same Idempotency-Key."
    ),
    CommitterUnavailableError: ErrorStatus(
        503, RETRY_AFTER, detail="The committer of this command was being replaced; nothing was applied. Retry."
    ),
    CommitterDatabaseUnavailableError: ErrorStatus(
        503, RETRY_AFTER, detail="The database did not answer. Retry (with the same Idempotency-Key)."
    ),
    CommitterFailedError: ErrorStatus(
        500, detail="The server failed to answer; nothing was applied unless a later read shows it."
    ),
}
"""Every domain and group-commit error the API answers; each must be listed here."""


def _handle_coded(request: Request[Any, Any, Any], error: DomainError | GroupCommitError) -> Response[Any]:
    answer = ERROR_STATUSES.get(type(error))
    if answer is None:  # a new error class nobody mapped: a bug, answered as one
        return _handle_unexpected(request, error)
    fields = answer.fields_of(error) if answer.fields_of is not None else None
    detail = answer.detail or str(error)
    _log_server_error(request, error, answer.status, error.code)
    return problem_response(request.scope, answer.status, error.code, detail, headers=answer.headers, extra=fields)


def exception_handlers() -> dict[Any, Callable[..., Response[Any]]]:
    """The app's exception handlers, domain and group-commit errors included."""
    return {
        DomainError: _handle_coded,
        GroupCommitError: _handle_coded,
        ApiError: _handle_api_error,
        ValidationException: _handle_validation,
        HTTPException: _handle_http,
        psycopg.OperationalError: _handle_database_unavailable,
        PoolTimeout: _handle_database_unavailable,
        # The same failures on the event store's connections (replays), as the library wraps them.
        eventsourcing.persistence.OperationalError: _handle_database_unavailable,
        eventsourcing.persistence.InterfaceError: _handle_database_unavailable,
        Exception: _handle_unexpected,
    }
