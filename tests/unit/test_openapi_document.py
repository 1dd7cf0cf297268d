"""The OpenAPI document names every route of the app, with the bounds the API enforces."""

from __future__ import annotations

import json
import re

from litestar.routes import HTTPRoute

from adapters.settings import Settings
from api.app import create_app
from api.openapi import openapi_document
from domain import currencies, limits


def _document_operations() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in openapi_document()["paths"].items() for method in item}


def test_every_route_of_the_app_is_in_the_document_and_nothing_else() -> None:
    app = create_app(Settings(), "postgresql://unused", "redis://unused")
    routes = {
        (method, re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path))
        for route in app.routes
        if isinstance(route, HTTPRoute)
        for method in route.methods
        if method != "OPTIONS"
    }
    assert routes == _document_operations()


def test_integer_bounds_are_integers_from_the_domain_limits() -> None:
    text = json.dumps(openapi_document())
    assert "e+18" not in text
    schemas = openapi_document()["components"]["schemas"]
    assert schemas["Money"]["properties"]["amount"]["maximum"] == limits.AMOUNT_MAX
    assert schemas["UnitPrice"]["properties"]["amount"]["maximum"] == limits.UNIT_PRICE_MAX
    assert schemas["AdjustmentCreate"]["properties"]["delta"]["not"] == {"enum": [0]}
    assert schemas["Currency"]["enum"] == list(currencies.CODES)


def test_every_operation_answers_problems_as_problem_json_with_its_codes() -> None:
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            problems = {status: answer for status, answer in operation["responses"].items() if status >= "400"}
            assert "500" in problems, (method, path)
            for answer in problems.values():
                [(media_type, content)] = answer["content"].items()
                if (method, path, answer["description"]) == ("get", "/readyz", "Not ready, with the reasons"):
                    continue
                assert media_type == "application/problem+json", (method, path)
                assert content["schema"]["allOf"][1]["properties"]["code"]["enum"], (method, path)


def test_secured_operations_declare_their_roles_and_public_ones_none() -> None:
    paths = openapi_document()["paths"]
    assert paths["/v1/orders"]["post"]["security"] == [{"merchantKey": []}]
    assert paths["/v1/orders"]["get"]["security"] == [{"merchantKey": []}, {"auditorKey": []}]
    assert paths["/v1/admin/merchants"]["post"]["security"] == [{"adminKey": []}]
    assert paths["/v1/webhooks/{merchant_id}/{gateway}"]["post"]["security"] == []
    assert "401" not in paths["/healthz"]["get"]["responses"]


def test_an_order_body_is_in_one_currency_per_branch() -> None:
    branches = openapi_document()["components"]["schemas"]["OrderCreate"]["anyOf"]
    assert len(branches) == len(currencies.CODES)
    for branch, code in zip(branches, currencies.CODES, strict=True):
        line = branch["properties"]["lines"]["items"]
        assert branch["properties"]["currency"] == {"enum": [code]}
        assert line["properties"]["unit_price"]["properties"]["currency"] == {"enum": [code]}
