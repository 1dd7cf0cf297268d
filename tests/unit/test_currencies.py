"""ISO 4217: the codes Daybook accepts and the exponents of their minor units."""

from __future__ import annotations

import datetime

import msgspec
import pytest

from api.schemas import Money as MoneyBody
from domain import currencies
from domain.errors import InvalidCommandError
from domain.money import Money, check_currency


@pytest.mark.parametrize(("code", "exponent"), [("JPY", 0), ("EUR", 2), ("USD", 2), ("KWD", 3), ("BHD", 3)])
def test_each_currency_knows_the_exponent_of_its_minor_unit(code: str, exponent: int) -> None:
    assert currencies.minor_unit_exponent(code) == exponent


@pytest.mark.parametrize("code", ["AAA", "ZZZ", "XAU", "XXX", "XTS", "XDR", "EURO", "eur"])
def test_codes_that_are_not_currencies_with_a_minor_unit_are_refused(code: str) -> None:
    with pytest.raises(InvalidCommandError):
        check_currency(code)
    with pytest.raises(InvalidCommandError):
        Money(1, code)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode({"amount": 1, "currency": code}), type=MoneyBody)


def test_every_listed_code_is_accepted_by_the_domain_and_by_the_request_schema() -> None:
    for code in currencies.CODES:
        assert check_currency(code) == code
        decoded = msgspec.json.decode(msgspec.json.encode({"amount": 1, "currency": code}), type=MoneyBody)
        assert decoded.currency == code


def test_the_list_is_the_published_standard_with_its_date() -> None:
    assert datetime.date(2026, 1, 1) <= currencies.PUBLISHED
    assert 150 <= len(currencies.CODES) <= 200
    assert list(currencies.CODES) == sorted(currencies.CODES)
