"""Every bound of the API's request schemas is the domain's, and the domain enforces it."""

from __future__ import annotations

import re
from typing import Any
from uuid import uuid4

import msgspec
import pytest

from api.controllers.admin import MerchantCreate
from api.schemas import AdjustmentCreate, LineCreate, Money, OrderCreate, ReceiptCreate
from domain import limits
from domain.context import CommandContext
from domain.errors import InvalidCommandError
from domain.inventory import InventoryItem
from domain.money import check_currency
from domain.validation import check_sku, check_text

CONTEXT = CommandContext(actor="test", request_id="r-1")


def field_type(struct: type[msgspec.Struct], name: str) -> Any:
    info = msgspec.inspect.type_info(struct)
    assert isinstance(info, msgspec.inspect.StructType)
    [field] = [field for field in info.fields if field.name == name]
    field_type = field.type
    if isinstance(field_type, msgspec.inspect.UnionType):  # optional: the non-None member
        [field_type] = [member for member in field_type.types if not isinstance(member, msgspec.inspect.NoneType)]
    return field_type


@pytest.mark.parametrize(
    ("struct", "name", "bounds"),
    [
        (LineCreate, "quantity", (limits.LINE_QUANTITY_MIN, limits.LINE_QUANTITY_MAX)),
        (ReceiptCreate, "quantity", (1, limits.RECEIPT_QUANTITY_MAX)),
        (AdjustmentCreate, "delta", (-limits.ADJUSTMENT_DELTA_MAX, limits.ADJUSTMENT_DELTA_MAX)),
        (OrderCreate, "hold_seconds", (limits.HOLD_SECONDS_MIN, limits.HOLD_SECONDS_MAX)),
        (Money, "amount", (0, limits.AMOUNT_MAX)),
    ],
)
def test_integer_bounds_of_the_schemas_are_the_domain_limits(
    struct: type[msgspec.Struct], name: str, bounds: tuple[int, int]
) -> None:
    info = field_type(struct, name)
    assert (info.ge, info.le) == bounds


@pytest.mark.parametrize(
    ("struct", "name", "length_max", "pattern"),
    [
        (LineCreate, "sku", limits.SKU_LENGTH_MAX, limits.SKU_PATTERN),
        (ReceiptCreate, "reference", limits.TEXT_LENGTH_MAX, limits.TEXT_PATTERN),
        (AdjustmentCreate, "reason", limits.TEXT_LENGTH_MAX, limits.TEXT_PATTERN),
        (OrderCreate, "customer_ref", limits.TEXT_LENGTH_MAX, limits.TEXT_PATTERN),
        (MerchantCreate, "name", limits.MERCHANT_NAME_LENGTH_MAX, limits.TEXT_PATTERN),
    ],
)
def test_text_bounds_of_the_schemas_are_the_domain_limits(
    struct: type[msgspec.Struct], name: str, length_max: int, pattern: str
) -> None:
    info = field_type(struct, name)
    assert (info.min_length, info.max_length, info.pattern) == (1, length_max, pattern)


def test_the_order_lines_and_default_hold_are_the_domain_limits() -> None:
    info = msgspec.inspect.type_info(OrderCreate)
    assert isinstance(info, msgspec.inspect.StructType)
    fields = {field.name: field for field in info.fields}
    assert (fields["lines"].type.min_length, fields["lines"].type.max_length) == (limits.LINES_MIN, limits.LINES_MAX)
    assert fields["hold_seconds"].default == limits.HOLD_SECONDS_DEFAULT


@pytest.mark.parametrize("text", ["abc\n", "a\x00b", "tab\there", "del\x7f", "c1\x85", "\u009f"])
def test_a_pattern_refuses_control_characters_anywhere_even_a_final_newline(text: str) -> None:
    assert re.search(limits.TEXT_PATTERN, text) is None
    with pytest.raises(InvalidCommandError):
        check_text("reason", text, required=True)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode({"delta": 1, "reason": text}), type=AdjustmentCreate)


@pytest.mark.parametrize("sku", ["abc\n", "a" * 65, "", "a b"])
def test_the_sku_pattern_matches_the_whole_string_in_the_schema_and_the_domain(sku: str) -> None:
    with pytest.raises(InvalidCommandError):
        check_sku(sku)
    line = {"sku": sku, "quantity": 1, "unit_price": {"amount": 1, "currency": "EUR"}}
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode(line), type=LineCreate)


def test_non_ascii_text_without_controls_is_accepted() -> None:
    assert check_text("reason", "café, ünïcode ✓", required=True) == "café, ünïcode ✓"


def test_the_domain_enforces_the_receipt_and_adjustment_bounds() -> None:
    item = InventoryItem.register(uuid4(), "SKU-1", CONTEXT)
    item.receive(limits.RECEIPT_QUANTITY_MAX, None, CONTEXT)
    with pytest.raises(InvalidCommandError):
        item.receive(limits.RECEIPT_QUANTITY_MAX + 1, None, CONTEXT)
    with pytest.raises(InvalidCommandError):
        item.adjust(limits.ADJUSTMENT_DELTA_MAX + 1, "count", CONTEXT)
    with pytest.raises(InvalidCommandError):
        item.adjust(-limits.ADJUSTMENT_DELTA_MAX - 1, "count", CONTEXT)


@pytest.mark.parametrize("currency", ["EUR\n", "eur", "EURO", "E1R"])
def test_the_currency_pattern_matches_the_whole_string_in_the_schema_and_the_domain(currency: str) -> None:
    with pytest.raises(InvalidCommandError):
        check_currency(currency)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(msgspec.json.encode({"amount": 1, "currency": currency}), type=Money)
