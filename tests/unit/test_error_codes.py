"""One code per error: the domain's code is the contract's, and the API maps every error."""

from __future__ import annotations

import pytest

import domain.errors
import domain.groupcommit.errors
from api.problems import ERROR_STATUSES
from domain.errors import DomainError, InvalidCommandError
from domain.groupcommit import GroupCommitError

# The problem codes of CONTRACT.md (and the README's decisions where it is silent).
CONTRACT_CODES = {
    "invalid_request",
    "not_found",
    "insufficient_stock",
    "out_of_stock",
    "currency_mismatch",
    "invalid_state",
    "order_already_exists",
    "idempotency_key_reused",
    "overloaded",
    "write_contention",
    "unavailable",
    "commit_outcome_unknown",
    "internal_error",  # README: 500 (a forwarded command that failed unexpectedly in its owner)
}


def error_classes() -> list[type[Exception]]:
    found: list[type[Exception]] = []
    for module in (domain.errors, domain.groupcommit.errors):
        for value in vars(module).values():
            is_error = isinstance(value, type) and issubclass(value, DomainError | GroupCommitError)
            if is_error and value not in (DomainError, GroupCommitError):
                found.append(value)
    return found


@pytest.mark.parametrize("error_class", error_classes(), ids=lambda cls: cls.__name__)
def test_every_error_has_a_contract_code_and_an_http_status(error_class: type[Exception]) -> None:
    assert error_class.code in CONTRACT_CODES  # type: ignore[attr-defined]
    assert error_class in ERROR_STATUSES


def test_an_invalid_command_is_answered_with_the_code_the_api_uses_for_bad_input() -> None:
    assert InvalidCommandError("quantity", "0 is below 1").code == "invalid_request"
    assert ERROR_STATUSES[InvalidCommandError].status == 400
