"""Money: integer minor units, one currency, never negative unless a delta."""

import pytest

from domain import limits
from domain.errors import CurrencyMismatchError, InvalidCommandError
from domain.money import Money, check_currency


def test_adding_amounts_of_one_currency_sums_minor_units():
    assert Money(150, "EUR") + Money(250, "EUR") == Money(400, "EUR")


def test_adding_amounts_of_different_currencies_is_refused():
    with pytest.raises(CurrencyMismatchError) as caught:
        Money(1, "EUR") + Money(1, "USD")
    assert (caught.value.expected, caught.value.actual) == ("EUR", "USD")


def test_subtracting_different_currencies_is_refused():
    with pytest.raises(CurrencyMismatchError):
        Money(5, "EUR") - Money(1, "GBP")


def test_comparing_different_currencies_is_refused():
    with pytest.raises(CurrencyMismatchError):
        _ = Money(5, "EUR") < Money(6, "USD")


def test_subtracting_below_zero_is_refused_for_plain_amounts():
    with pytest.raises(InvalidCommandError):
        Money(1, "EUR") - Money(2, "EUR")


def test_difference_is_a_signed_delta():
    delta = Money(1, "EUR").difference(Money(3, "EUR"))
    assert delta.amount == -2
    assert delta.is_delta


def test_a_delta_may_be_negative_and_a_plain_amount_may_not():
    assert Money.delta(-5, "EUR").amount == -5
    with pytest.raises(InvalidCommandError):
        Money(-5, "EUR")


@pytest.mark.parametrize("amount", [1.5, 2.0, True, "3", None])
def test_amount_must_be_an_integer_never_a_float_or_bool(amount: object):
    with pytest.raises(InvalidCommandError):
        Money(amount, "EUR")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["eur", "EURO", "EU", "", "E1R", 978])
def test_currency_must_be_three_upper_case_letters(currency: object):
    with pytest.raises(InvalidCommandError):
        Money(1, currency)  # type: ignore[arg-type]
    with pytest.raises(InvalidCommandError):
        check_currency(currency)


def test_multiplying_by_a_quantity_gives_the_line_total():
    assert Money(199, "USD") * 3 == Money(597, "USD")


def test_money_is_frozen():
    money = Money(1, "EUR")
    with pytest.raises(AttributeError):
        money.amount = 2  # type: ignore[misc]


def test_ordering_compares_amounts_of_one_currency():
    assert Money(1, "EUR") < Money(2, "EUR") <= Money(2, "EUR")
    assert Money(3, "EUR") > Money(2, "EUR") >= Money(2, "EUR")


def test_delta_flag_does_not_change_equality():
    assert Money.delta(5, "EUR") == Money(5, "EUR")


def test_as_dict_is_the_contract_shape():
    assert Money(1250, "JPY").as_dict() == {"amount": 1250, "currency": "JPY"}


def test_zero_is_no_money_in_the_currency():
    assert Money.zero("EUR") == Money(0, "EUR")


def test_amounts_are_bounded_by_the_amount_limit_on_both_sides():
    assert Money(limits.AMOUNT_MAX, "EUR").amount == limits.AMOUNT_MAX
    assert Money.delta(-limits.AMOUNT_MAX, "EUR").amount == -limits.AMOUNT_MAX
    with pytest.raises(InvalidCommandError):
        Money(limits.AMOUNT_MAX + 1, "EUR")
    with pytest.raises(InvalidCommandError):
        Money.delta(-limits.AMOUNT_MAX - 1, "EUR")


class Euro(str):
    """A str subclass: still a currency code, checked the long way."""


def test_a_currency_given_as_a_str_subclass_is_accepted_as_before():
    assert Money(1, Euro("EUR")).currency == "EUR"


@pytest.mark.parametrize("currency", ["eur", "XAU", ["EUR"], None])
def test_zero_refuses_what_is_not_a_currency(currency: object):
    with pytest.raises(InvalidCommandError):
        Money.zero(currency)  # type: ignore[arg-type]


def test_zero_of_a_currency_is_one_shared_instance():
    assert Money.zero("JPY") is Money.zero("JPY")
    assert Money.zero("JPY") != Money.zero("EUR")
