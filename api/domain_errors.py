"""How domain and group-commit errors are answered (the one mapper, at the API edge)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, Response

from api.problems import problem_response
from domain.errors import (
    CurrencyMismatchError,
    DomainError,
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
    ConflictRetriesExhaustedError,
    GroupCommitterStoppedError,
    OverloadedError,
)

RETRY_AFTER = {"Retry-After": "1"}


def _shortages(error: OutOfStockError) -> dict[str, Any]:
    return {"lines": [{"sku": s.sku, "requested": s.requested, "available": s.available} for s in error.lines]}


# error class → (status, code, extra fields, headers); the first matching class wins.
_MAP: list[tuple[type[Exception], int, str, Callable[[Any], dict[str, Any]] | None, dict[str, str] | None]] = [
    (OutOfStockError, 409, "out_of_stock", _shortages, None),
    (InsufficientStockError, 409, "insufficient_stock", None, None),
    (InvalidStateError, 409, "invalid_state", None, None),
    (OrderAlreadyExistsError, 409, "order_already_exists", None, None),
    (CurrencyMismatchError, 400, "currency_mismatch", None, None),
    (OrderNotFoundError, 404, "not_found", None, None),
    (InventoryItemNotFoundError, 404, "not_found", None, None),
    (PaymentNotFoundError, 404, "not_found", None, None),
    (InvalidCommandError, 400, "invalid_request", None, None),
    (DomainError, 409, "conflict", None, None),
    (OverloadedError, 503, "overloaded", None, RETRY_AFTER),
    (ConflictRetriesExhaustedError, 503, "write_contention", None, RETRY_AFTER),
    (GroupCommitterStoppedError, 503, "unavailable", None, RETRY_AFTER),
    (CommitOutcomeUnknownError, 503, "commit_outcome_unknown", None, RETRY_AFTER),
]

_DETAILS = {
    OverloadedError: "Too many commands are waiting; retry after a second.",
    ConflictRetriesExhaustedError: "Concurrent writers kept conflicting; nothing was applied. Retry.",
    GroupCommitterStoppedError: "The server is shutting down; nothing was applied. Retry.",
    CommitOutcomeUnknownError: "The server stopped while committing; retry with the same Idempotency-Key.",
}


def _handler(
    status: int,
    code: str,
    extra: Callable[[Any], dict[str, Any]] | None,
    headers: dict[str, str] | None,
) -> Callable[[Request[Any, Any, Any], Exception], Response[Any]]:
    def handle(request: Request[Any, Any, Any], error: Exception) -> Response[Any]:
        detail = _DETAILS.get(type(error), str(error))
        fields = extra(error) if extra is not None else None
        return problem_response(request.scope, status, code, detail, headers=headers, extra=fields)

    return handle


def domain_exception_handlers() -> dict[type[Exception], Callable[..., Response[Any]]]:
    """Exception handlers for every domain and group-commit error class."""
    return {error_class: _handler(status, code, extra, headers) for error_class, status, code, extra, headers in _MAP}
