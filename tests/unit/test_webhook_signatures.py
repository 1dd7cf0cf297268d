"""Webhook signatures, checked against the gateways' own reference implementations."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime

import pytest
import stripe
from standardwebhooks import Webhook

from adapters.gateways.secrets import generate_secret
from api.webhooks.signatures import (
    InvalidSignatureError,
    SignatureFailure,
    sign_standard,
    sign_stripe,
    verify,
    verify_standard,
    verify_stripe,
)

NOW = 1_700_000_000
BODY = b'{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}'
STRIPE_SECRET = "whsec_current0123456789abcdefghij"
STRIPE_OLD_SECRET = "whsec_previous0123456789abcdefgh"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
STANDARD_OLD_SECRET = "whsec_" + base64.b64encode(b"o" * 32).decode()
MSG_ID = "msg_2Lh9Kx"


def reference_standard_headers(body: bytes, secret: str, timestamp: int, msg_id: str = MSG_ID) -> dict[str, str]:
    """Headers signed by the `standardwebhooks` package itself."""
    signature = Webhook(secret).sign(
        msg_id=msg_id, timestamp=datetime.fromtimestamp(timestamp, tz=UTC), data=body.decode()
    )
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }


def reference_stripe_header(body: bytes, secret: str, timestamp: int) -> str:
    """A header produced by the `stripe` package itself."""
    return str(stripe.WebhookSignature.generate_signature_header(body.decode(), secret, timestamp))


def stripe_reason(body: bytes, header: str | None, secrets: list[str]) -> SignatureFailure:
    with pytest.raises(InvalidSignatureError) as caught:
        verify_stripe(body, header, secrets, now=NOW)
    return caught.value.reason


def standard_reason(body: bytes, headers: dict[str, str], secrets: list[str]) -> SignatureFailure:
    with pytest.raises(InvalidSignatureError) as caught:
        verify_standard(body, headers, secrets, now=NOW)
    return caught.value.reason


def one_byte_changed(body: bytes, index: int) -> bytes:
    return body[:index] + bytes([body[index] ^ 0x01]) + body[index + 1 :]


# --- Stripe ---------------------------------------------------------------------------


def test_stripe_header_we_sign_is_accepted_by_the_stripe_library() -> None:
    now = int(time.time())
    header = sign_stripe(BODY, STRIPE_SECRET, now)
    assert stripe.WebhookSignature.verify_header(BODY, header, STRIPE_SECRET, 300) is True
    event = stripe.Webhook.construct_event(BODY, header, STRIPE_SECRET)
    assert event["id"] == "evt_1"


def test_stripe_header_the_stripe_library_signs_is_accepted() -> None:
    header = reference_stripe_header(BODY, STRIPE_SECRET, NOW)
    verify_stripe(BODY, header, [STRIPE_SECRET], now=NOW)


def test_stripe_key_is_the_whole_secret_including_its_whsec_prefix() -> None:
    without_prefix = STRIPE_SECRET.removeprefix("whsec_").encode()
    digest = hmac.new(without_prefix, f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    header = f"t={NOW},v1={digest}"
    assert stripe_reason(BODY, header, [STRIPE_SECRET]) is SignatureFailure.NO_MATCHING_SIGNATURE


@pytest.mark.parametrize("index", [0, 10, len(BODY) - 1])
def test_stripe_body_changed_by_one_byte_is_rejected(index: int) -> None:
    header = sign_stripe(BODY, STRIPE_SECRET, NOW)
    tampered = one_byte_changed(BODY, index)
    assert stripe_reason(tampered, header, [STRIPE_SECRET]) is SignatureFailure.NO_MATCHING_SIGNATURE


def test_stripe_body_with_one_byte_appended_is_rejected() -> None:
    header = sign_stripe(BODY, STRIPE_SECRET, NOW)
    assert stripe_reason(BODY + b" ", header, [STRIPE_SECRET]) is (SignatureFailure.NO_MATCHING_SIGNATURE)


@pytest.mark.parametrize("offset_s", [-301, 301, -86_400, 86_400])
def test_stripe_timestamp_beyond_300_seconds_either_way_is_rejected(offset_s: int) -> None:
    header = reference_stripe_header(BODY, STRIPE_SECRET, NOW + offset_s)
    assert stripe_reason(BODY, header, [STRIPE_SECRET]) is (SignatureFailure.TIMESTAMP_OUT_OF_TOLERANCE)


@pytest.mark.parametrize("offset_s", [-300, -299, 0, 299, 300])
def test_stripe_timestamp_within_300_seconds_either_way_is_accepted(offset_s: int) -> None:
    header = reference_stripe_header(BODY, STRIPE_SECRET, NOW + offset_s)
    verify_stripe(BODY, header, [STRIPE_SECRET], now=NOW)


def test_stripe_tolerance_is_configurable() -> None:
    header = reference_stripe_header(BODY, STRIPE_SECRET, NOW - 61)
    with pytest.raises(InvalidSignatureError):
        verify_stripe(BODY, header, [STRIPE_SECRET], now=NOW, tolerance_s=60)


@pytest.mark.parametrize("header", [None, ""])
def test_stripe_missing_header_is_rejected(header: str | None) -> None:
    assert stripe_reason(BODY, header, [STRIPE_SECRET]) is SignatureFailure.MISSING_HEADER


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        f"t={NOW}",
        "v1=" + "a" * 64,
        f"t=abc,v1={'a' * 64}",
        f"t=1_700_000_000,v1={'a' * 64}",
        f"t={NOW}.5,v1={'a' * 64}",
        f"t=-{NOW},v1={'a' * 64}",
        f"t={NOW},t={NOW},v1={'a' * 64}",
        f"t={NOW},v1=not-hex",
        f"t={NOW},v1={'a' * 63}",
        f"t={NOW},v1={'a' * 64},junk",
        f"t={NOW},v1={'é' * 64}",
        f"t={NOW}," + ",".join(["v1=" + "a" * 64] * 100),
    ],
)
def test_stripe_malformed_header_is_rejected(header: str) -> None:
    assert stripe_reason(BODY, header, [STRIPE_SECRET]) is SignatureFailure.MALFORMED_HEADER


def test_stripe_header_with_only_a_v0_signature_is_rejected_even_if_it_matches() -> None:
    valid = sign_stripe(BODY, STRIPE_SECRET, NOW).split("v1=")[1]
    header = f"t={NOW},v0={valid}"
    assert stripe_reason(BODY, header, [STRIPE_SECRET]) is SignatureFailure.MALFORMED_HEADER


def test_stripe_v0_signature_beside_a_valid_v1_is_ignored() -> None:
    header = sign_stripe(BODY, STRIPE_SECRET, NOW) + ",v0=" + "0" * 64
    verify_stripe(BODY, header, [STRIPE_SECRET], now=NOW)


@pytest.mark.parametrize("valid_first", [True, False])
def test_stripe_header_with_several_v1_signatures_is_accepted_if_one_matches(
    valid_first: bool,
) -> None:
    valid = sign_stripe(BODY, STRIPE_SECRET, NOW).split("v1=")[1]
    other = sign_stripe(BODY, "whsec_someone_else", NOW).split("v1=")[1]
    signatures = [valid, other] if valid_first else [other, valid]
    header = f"t={NOW}," + ",".join(f"v1={s}" for s in signatures)
    assert stripe.WebhookSignature.verify_header(BODY, header, STRIPE_SECRET, None) is True
    verify_stripe(BODY, header, [STRIPE_SECRET], now=NOW)


def test_stripe_header_with_several_v1_signatures_none_matching_is_rejected() -> None:
    header = f"t={NOW},v1={'a' * 64},v1={'b' * 64}"
    assert stripe_reason(BODY, header, [STRIPE_SECRET]) is SignatureFailure.NO_MATCHING_SIGNATURE


@pytest.mark.parametrize("signing_secret", [STRIPE_OLD_SECRET, STRIPE_SECRET])
def test_stripe_old_and_new_secret_are_both_accepted_during_rotation(signing_secret: str) -> None:
    header = reference_stripe_header(BODY, signing_secret, NOW)
    verify_stripe(BODY, header, [STRIPE_SECRET, STRIPE_OLD_SECRET], now=NOW)


def test_stripe_old_secret_is_rejected_once_retired() -> None:
    header = reference_stripe_header(BODY, STRIPE_OLD_SECRET, NOW)
    assert stripe_reason(BODY, header, [STRIPE_SECRET]) is SignatureFailure.NO_MATCHING_SIGNATURE


def test_stripe_wrong_secret_is_rejected() -> None:
    header = reference_stripe_header(BODY, "whsec_attacker_guess", NOW)
    assert stripe_reason(BODY, header, [STRIPE_SECRET]) is SignatureFailure.NO_MATCHING_SIGNATURE


def test_stripe_merchant_without_active_secret_rejects_everything() -> None:
    header = reference_stripe_header(BODY, STRIPE_SECRET, NOW)
    assert stripe_reason(BODY, header, []) is SignatureFailure.NO_ACTIVE_SECRET


def test_stripe_signature_replayed_with_a_new_timestamp_is_rejected() -> None:
    signature = sign_stripe(BODY, STRIPE_SECRET, NOW - 3600).split("v1=")[1]
    header = f"t={NOW},v1={signature}"
    assert stripe_reason(BODY, header, [STRIPE_SECRET]) is SignatureFailure.NO_MATCHING_SIGNATURE


# --- Standard Webhooks ----------------------------------------------------------------


def test_standard_headers_signed_by_the_reference_package_are_accepted() -> None:
    headers = reference_standard_headers(BODY, STANDARD_SECRET, NOW)
    assert verify_standard(BODY, headers, [STANDARD_SECRET], now=NOW) == MSG_ID


def test_standard_headers_we_sign_are_accepted_by_the_reference_package() -> None:
    now = int(time.time())
    headers = sign_standard(BODY, STANDARD_SECRET, MSG_ID, now)
    assert Webhook(STANDARD_SECRET).verify(BODY, headers) == {
        "id": "evt_1",
        "type": "payment_intent.succeeded",
        "data": {"object": {"id": "pi_1"}},
    }


def test_standard_header_names_are_matched_case_insensitively() -> None:
    headers = reference_standard_headers(BODY, STANDARD_SECRET, NOW)
    title_case = {name.title(): value for name, value in headers.items()}
    assert verify_standard(BODY, title_case, [STANDARD_SECRET], now=NOW) == MSG_ID


@pytest.mark.parametrize("index", [0, 10, len(BODY) - 1])
def test_standard_body_changed_by_one_byte_is_rejected(index: int) -> None:
    headers = reference_standard_headers(BODY, STANDARD_SECRET, NOW)
    tampered = one_byte_changed(BODY, index)
    assert standard_reason(tampered, headers, [STANDARD_SECRET]) is (SignatureFailure.NO_MATCHING_SIGNATURE)


def test_standard_signature_moved_to_another_webhook_id_is_rejected() -> None:
    headers = reference_standard_headers(BODY, STANDARD_SECRET, NOW)
    headers["webhook-id"] = "msg_other"
    assert standard_reason(BODY, headers, [STANDARD_SECRET]) is (SignatureFailure.NO_MATCHING_SIGNATURE)


@pytest.mark.parametrize("offset_s", [-301, 301, -86_400, 86_400])
def test_standard_timestamp_beyond_300_seconds_either_way_is_rejected(offset_s: int) -> None:
    headers = reference_standard_headers(BODY, STANDARD_SECRET, NOW + offset_s)
    assert standard_reason(BODY, headers, [STANDARD_SECRET]) is (SignatureFailure.TIMESTAMP_OUT_OF_TOLERANCE)


@pytest.mark.parametrize("offset_s", [-300, -299, 0, 299, 300])
def test_standard_timestamp_within_300_seconds_either_way_is_accepted(offset_s: int) -> None:
    headers = reference_standard_headers(BODY, STANDARD_SECRET, NOW + offset_s)
    assert verify_standard(BODY, headers, [STANDARD_SECRET], now=NOW) == MSG_ID


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_standard_missing_header_is_rejected(missing: str) -> None:
    headers = reference_standard_headers(BODY, STANDARD_SECRET, NOW)
    del headers[missing]
    assert standard_reason(BODY, headers, [STANDARD_SECRET]) is SignatureFailure.MISSING_HEADER


def test_standard_empty_header_counts_as_missing() -> None:
    headers = reference_standard_headers(BODY, STANDARD_SECRET, NOW)
    headers["webhook-signature"] = ""
    assert standard_reason(BODY, headers, [STANDARD_SECRET]) is SignatureFailure.MISSING_HEADER


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("webhook-timestamp", "soon"),
        ("webhook-timestamp", f"{NOW}.0"),
        ("webhook-timestamp", f" {NOW}"),
        ("webhook-signature", "v1"),
        ("webhook-signature", "v1,not*base64"),
        ("webhook-signature", "v1a,c2lnbmF0dXJl"),
        ("webhook-id", "x" * 5000),
    ],
)
def test_standard_malformed_header_is_rejected(name: str, value: str) -> None:
    headers = reference_standard_headers(BODY, STANDARD_SECRET, NOW)
    headers[name] = value
    assert standard_reason(BODY, headers, [STANDARD_SECRET]) is SignatureFailure.MALFORMED_HEADER


@pytest.mark.parametrize("valid_first", [True, False])
def test_standard_header_with_several_signatures_is_accepted_if_one_matches(
    valid_first: bool,
) -> None:
    headers = reference_standard_headers(BODY, STANDARD_SECRET, NOW)
    valid = headers["webhook-signature"]
    other = reference_standard_headers(BODY, STANDARD_OLD_SECRET, NOW)["webhook-signature"]
    asymmetric = "v1a," + base64.b64encode(b"s" * 64).decode()
    parts = [valid, asymmetric, other] if valid_first else [other, asymmetric, valid]
    headers["webhook-signature"] = " ".join(parts)
    assert verify_standard(BODY, headers, [STANDARD_SECRET], now=NOW) == MSG_ID


@pytest.mark.parametrize("signing_secret", [STANDARD_OLD_SECRET, STANDARD_SECRET])
def test_standard_old_and_new_secret_are_both_accepted_during_rotation(
    signing_secret: str,
) -> None:
    headers = reference_standard_headers(BODY, signing_secret, NOW)
    active = [STANDARD_SECRET, STANDARD_OLD_SECRET]
    assert verify_standard(BODY, headers, active, now=NOW) == MSG_ID


def test_standard_wrong_secret_is_rejected() -> None:
    headers = reference_standard_headers(BODY, generate_secret("standard"), NOW)
    assert standard_reason(BODY, headers, [STANDARD_SECRET]) is (SignatureFailure.NO_MATCHING_SIGNATURE)


def test_standard_merchant_without_active_secret_rejects_everything() -> None:
    headers = reference_standard_headers(BODY, STANDARD_SECRET, NOW)
    assert standard_reason(BODY, headers, []) is SignatureFailure.NO_ACTIVE_SECRET


def test_standard_secret_that_is_not_base64_is_a_configuration_error() -> None:
    headers = reference_standard_headers(BODY, STANDARD_SECRET, NOW)
    with pytest.raises(ValueError, match="base64"):
        verify_standard(BODY, headers, ["whsec_not base64!"], now=NOW)


def test_standard_non_utf8_body_is_verified_on_its_bytes() -> None:
    body = b"\xff\xfe not json"
    headers = sign_standard(body, STANDARD_SECRET, MSG_ID, NOW)
    assert verify_standard(body, headers, [STANDARD_SECRET], now=NOW) == MSG_ID


# --- Both -----------------------------------------------------------------------------


def test_every_rejection_cause_has_the_same_message() -> None:
    messages = {str(InvalidSignatureError(reason)) for reason in SignatureFailure}
    assert messages == {"invalid webhook signature"}


def test_verify_dispatches_on_gateway_and_finds_the_stripe_header_in_any_case() -> None:
    stripe_headers = {"Stripe-Signature": sign_stripe(BODY, STRIPE_SECRET, NOW)}
    verify("stripe", BODY, stripe_headers, [STRIPE_SECRET], now=NOW)
    standard_headers = sign_standard(BODY, STANDARD_SECRET, MSG_ID, NOW)
    verify("standard", BODY, standard_headers, [STANDARD_SECRET], now=NOW)
    with pytest.raises(InvalidSignatureError):
        verify("stripe", BODY, standard_headers, [STRIPE_SECRET], now=NOW)
    with pytest.raises(ValueError, match="unknown gateway"):
        verify("paypal", BODY, stripe_headers, [STRIPE_SECRET], now=NOW)


def test_generated_standard_secret_is_whsec_and_base64_of_at_least_24_random_bytes() -> None:
    secrets = {generate_secret("standard") for _ in range(20)}
    assert len(secrets) == 20
    for secret in secrets:
        assert secret.startswith("whsec_")
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        assert len(key) >= 24
    secret = secrets.pop()
    headers = reference_standard_headers(BODY, secret, NOW)
    assert verify_standard(BODY, headers, [secret], now=NOW) == MSG_ID


def test_generated_stripe_secret_is_whsec_and_works_with_the_stripe_library() -> None:
    secrets = {generate_secret("stripe") for _ in range(20)}
    assert len(secrets) == 20
    secret = secrets.pop()
    assert secret.startswith("whsec_")
    assert len(secret) >= len("whsec_") + 32
    now = int(time.time())
    header = sign_stripe(BODY, secret, now)
    assert stripe.WebhookSignature.verify_header(BODY, header, secret, 300) is True


def test_generating_a_secret_for_an_unknown_gateway_fails() -> None:
    with pytest.raises(ValueError, match="unknown gateway"):
        generate_secret("paypal")
