"""Unauthenticated traffic costs little (issue 11, item 11; the webhook limit of issue 12).

Unknown webhook merchants and unknown API key ids are remembered briefly in bounded
caches of their own; forged deliveries are limited per merchant endpoint before any HMAC
is computed; every merchant's deliveries have a limit far above a gateway's bursts.
Nothing one merchant's endpoint receives slows another's.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from litestar.testing import TestClient
from psycopg_pool import ConnectionPool

from adapters.gateways.secrets import generate_secret
from adapters.settings import Settings
from api.app import create_app
from api.auth import KeyResolver
from api.webhooks.limits import FORGED_BURST
from api.webhooks.secrets import SecretsCache
from tests.integration.conftest import create_merchant
from tests.integration.webhook_senders import Delivery, standard_delivery, stripe_body, stripe_delivery, stripe_headers


def _capture() -> dict[str, Any]:
    return {"id": f"pi_{uuid.uuid4().hex[:12]}", "currency": "eur", "amount_received": 100, "metadata": {}}


def _forged(merchant: dict[str, Any]) -> Delivery:
    _, body = stripe_body("payment_intent.succeeded", _capture())
    headers = stripe_headers(body, generate_secret("stripe"))
    return Delivery(f"/v1/webhooks/{merchant['merchant_id']}/stripe", body, headers, "")


def _post(client: TestClient[Any], delivery: Delivery) -> Any:
    return client.post(delivery.path, content=delivery.body, headers=delivery.headers)


def test_forged_deliveries_past_the_burst_are_429_before_verification_and_other_endpoints_are_untouched(
    client: TestClient[Any],
) -> None:
    target, bystander = create_merchant(client, "Forged at"), create_merchant(client, "Bystander")
    # The bucket earns a token back every second while the burst is sent, so on a slow
    # machine a few more than the burst are verified (and refused) before the first 429.
    answers = []
    while len(answers) < 2 * FORGED_BURST and (not answers or answers[-1].status_code == 401):
        answers.append(_post(client, _forged(target)))
    limited = answers[-1]
    assert len(answers) > FORGED_BURST
    assert all(answer.status_code == 401 for answer in answers[:-1])
    assert (limited.status_code, limited.json()["code"]) == (429, "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    genuine_elsewhere = stripe_delivery(bystander, "payment_intent.succeeded", _capture())
    assert _post(client, genuine_elsewhere).json() == {"status": "accepted"}
    forged_standard = standard_delivery(
        {**target, "webhook_secrets": {"standard": generate_secret("standard")}}, "payment.failed", {}
    )
    assert _post(client, forged_standard).status_code == 401  # the merchant's other endpoint is not limited
    assert _post(client, _forged(bystander)).status_code == 401


def test_a_merchants_deliveries_past_its_limit_are_429_and_other_merchants_are_untouched(
    api_settings: Settings, database_url: str, redis_url: str
) -> None:
    app = create_app(replace(api_settings, webhook_rate_limit_per_minute=5), database_url, redis_url)
    with TestClient(app, raise_server_exceptions=False) as small:
        busy, quiet = create_merchant(small, "Busy"), create_merchant(small, "Quiet")
        answers = [_post(small, stripe_delivery(busy, "payment_intent.succeeded", _capture())) for _ in range(6)]
        assert [answer.status_code for answer in answers] == [200] * 5 + [429]
        assert answers[-1].json()["code"] == "rate_limited"
        assert answers[-1].headers["retry-after"]
        assert _post(small, stripe_delivery(quiet, "payment_intent.succeeded", _capture())).status_code == 200


def test_an_unknown_webhook_merchant_is_looked_up_once_and_never_evicts_known_secrets(
    pool: ConnectionPool[Any], client: TestClient[Any]
) -> None:
    known = uuid.UUID(create_merchant(client, "Cached secrets")["merchant_id"])
    cache = SecretsCache(pool, size_max=10, unknown_size_max=10)
    assert cache.refresh(known, "stripe")
    unknown = uuid.uuid4()
    assert cache.refresh(unknown, "stripe") is None
    assert cache.cached(unknown, "stripe") is None  # known not to exist: no lookup
    for _ in range(50):
        cache.refresh(uuid.uuid4(), "stripe")
    assert isinstance(cache.cached(known, "stripe"), list)
    assert cache.lookups_total == 52


def test_an_unknown_api_key_id_is_looked_up_once_and_never_evicts_known_keys(
    pool: ConnectionPool[Any], client: TestClient[Any]
) -> None:
    known = create_merchant(client, "Cached key")["api_key"]
    resolver = KeyResolver(pool, None, cache_size_max=10, unknown_size_max=10)
    assert resolver.resolve(known) is not None
    unknown = f"dbk_{uuid.uuid4().hex[:18]}_{uuid.uuid4().hex}"
    assert resolver.resolve(unknown) is None
    assert resolver.resolve_cached(unknown) is None  # known not to exist: no lookup
    for _ in range(50):
        resolver.resolve(f"dbk_{uuid.uuid4().hex[:18]}_guess")
    assert resolver.resolve_cached(known) not in (None, False)
    assert resolver.lookups_total == 52


def test_deliveries_to_an_unknown_merchant_are_404_and_cost_one_lookup(
    api_settings: Settings, database_url: str, redis_url: str
) -> None:
    with TestClient(create_app(api_settings, database_url, redis_url), raise_server_exceptions=False) as fresh:
        ghost = {"merchant_id": str(uuid.uuid4()), "webhook_secrets": {"stripe": generate_secret("stripe")}}
        answers = [_post(fresh, stripe_delivery(ghost, "payment_intent.succeeded", _capture())) for _ in range(5)]
        assert {(answer.status_code, answer.json()["code"]) for answer in answers} == {(404, "not_found")}
        assert fresh.app.state.webhook_secrets.lookups_total == 1
