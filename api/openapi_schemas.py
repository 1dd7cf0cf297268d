"""What the OpenAPI document says beyond what msgspec derives from the types.

JSON Schema cannot be generated for the rules the API checks across fields or in code,
so they are written here, each beside the check it describes: the lines of an order are
in the order's currency, an adjustment is never 0, a merchant name is not only spaces,
and the problem shape (RFC 9457 plus ``code`` and ``request_id``). The webhook bodies
are the gateways' formats (``adapters/gateways``), documented as received.
"""

from __future__ import annotations

from typing import Any

from domain import currencies, limits

# Python's str.strip() removes these (the control characters are refused anyway).
_SPACES = "\\u0020\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000"
NOT_ONLY_SPACES_PATTERN = f"[^{_SPACES}\\x00-\\x1f\\x7f-\\x9f]"
"""Some character that is neither white space nor a control character (checked by ``merchant_name``)."""

PROBLEM: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details, with Daybook's stable `code` and the `request_id`.",
    "type": "object",
    "required": ["type", "status", "title", "detail", "code", "request_id"],
    "properties": {
        "type": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "title": {"type": "string"},
        "detail": {"type": "string"},
        "code": {"type": "string", "pattern": "^[a-z][a-z_]*$"},
        "request_id": {"type": "string"},
        "errors": {"description": "Where a body failed validation, when known."},
    },
}
OUT_OF_STOCK_PROBLEM: dict[str, Any] = {
    "title": "OutOfStockProblem",
    "description": "A problem; `out_of_stock` lists each line that could not be held.",
    "allOf": [{"$ref": "#/components/schemas/Problem"}],
    "properties": {
        "lines": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["sku", "requested", "available"],
                "properties": {
                    "sku": {"type": "string"},
                    "requested": {"type": "integer", "minimum": 1},
                    "available": {"type": "integer"},
                },
            },
        }
    },
}


def _without_titles(schema: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in schema.items() if key not in ("title", "description")}


def _order_in_one_currency(components: dict[str, Any]) -> dict[str, Any]:
    """``OrderCreate`` as one whole branch per currency: the order's and every unit price's are the same.

    (Else 400 ``currency_mismatch``.) Each branch is complete in itself, with no reference to
    merge: generators of test data then handle all ~180 branches.
    """
    order, line, price = (_without_titles(components[name]) for name in ("OrderCreate", "LineCreate", "UnitPrice"))

    def branch(code: str) -> dict[str, Any]:
        unit_price = {**price, "properties": {**price["properties"], "currency": {"const": code}}}
        one_line = {**line, "properties": {**line["properties"], "unit_price": unit_price}}
        lines = {**order["properties"]["lines"], "items": one_line}
        return {**order, "properties": {**order["properties"], "lines": lines, "currency": {"const": code}}}

    return {
        "title": "OrderCreate",
        "description": components["OrderCreate"].get("description", ""),
        "anyOf": [branch(code) for code in currencies.CODES],
    }


CURRENCY: dict[str, Any] = {
    "title": "Currency",
    "description": (
        f"ISO 4217 code with a minor unit (table published {currencies.PUBLISHED}); amounts count minor units."
    ),
    "type": "string",
    "enum": list(currencies.CODES),
}


def to_openapi_30(node: Any) -> Any:
    """A JSON Schema 2020-12 node (msgspec's) in the OpenAPI 3.0 dialect.

    3.0 is the dialect where ``integer`` means a number written without a fraction or
    exponent (JSON Schema draft 4), which is what Daybook decodes: ``2.0`` is refused.
    Nullable unions become ``nullable``, ``const`` a one-value ``enum``, and the
    currency enum a reference to one ``Currency`` schema.
    """
    if isinstance(node, list):
        return [to_openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("enum") == list(currencies.CODES) and node is not CURRENCY:
        return {"$ref": "#/components/schemas/Currency"}
    converted = {key: to_openapi_30(value) for key, value in node.items()}
    if "const" in converted:
        converted["enum"] = [converted.pop("const")]
    if "examples" in converted and isinstance(converted["examples"], list):
        converted["example"] = converted.pop("examples")[0]
    for union in ("anyOf", "oneOf"):
        branches = converted.get(union)
        if isinstance(branches, list) and {"type": "null"} in branches:
            rest = [branch for branch in branches if branch != {"type": "null"}]
            del converted[union]
            if len(rest) == 1 and "$ref" not in rest[0]:
                converted = {**rest[0], **converted}
            else:
                converted[union] = rest
            converted["nullable"] = True
    return converted


def amend_components(components: dict[str, Any]) -> dict[str, Any]:
    """msgspec's schemas with the cross-field and coded rules added."""
    components = dict(components)
    components["OrderCreate"] = _order_in_one_currency(components)
    adjustment = components["AdjustmentCreate"]
    delta = {**adjustment["properties"]["delta"], "not": {"const": 0}}
    components["AdjustmentCreate"] = {**adjustment, "properties": {**adjustment["properties"], "delta": delta}}
    merchant = components["MerchantCreate"]
    name = {**merchant["properties"]["name"], "allOf": [{"pattern": NOT_ONLY_SPACES_PATTERN}]}
    name["description"] = f"1 to {limits.MERCHANT_NAME_LENGTH_MAX} characters, surrounding spaces stripped."
    components["MerchantCreate"] = {**merchant, "properties": {**merchant["properties"], "name": name}}
    components["Currency"] = CURRENCY
    components["Problem"] = PROBLEM
    components["OutOfStockProblem"] = OUT_OF_STOCK_PROBLEM
    return components


_GATEWAY_ID = {"type": "string", "minLength": 1, "maxLength": limits.GATEWAY_ID_LENGTH_MAX}
WEBHOOK_EVENT: dict[str, Any] = {
    "title": "WebhookEvent",
    "description": (
        "The gateway's event, verified over the raw bytes: a Stripe event on `/stripe`, a Standard Webhooks "
        "payload on `/standard`. Types Daybook does not act on are answered `ignored`."
    ),
    "anyOf": [
        {
            "title": "StripeEvent",
            "type": "object",
            "required": ["id", "type", "data"],
            "properties": {
                "id": _GATEWAY_ID,
                "type": {"type": "string"},
                "created": {"type": "integer"},
                "data": {"type": "object", "required": ["object"], "properties": {"object": {"type": "object"}}},
            },
        },
        {
            "title": "StandardEvent",
            "type": "object",
            "required": ["type", "data"],
            "properties": {
                "type": {
                    "type": "string",
                    "examples": [
                        "payment.authorized",
                        "payment.captured",
                        "payment.failed",
                        "payment.refunded",
                        "payment.disputed",
                    ],
                },
                "data": {
                    "type": "object",
                    "required": ["gateway_ref", "currency"],
                    "properties": {
                        "gateway_ref": _GATEWAY_ID,
                        "order_id": {"type": "string", "format": "uuid"},
                        "amount": {"type": "integer", "minimum": 0, "maximum": limits.AMOUNT_MAX},
                        "currency": {"type": "string", "pattern": "^[A-Za-z]{3}$"},
                        "refund_id": _GATEWAY_ID,
                    },
                },
            },
        },
    ],
}
