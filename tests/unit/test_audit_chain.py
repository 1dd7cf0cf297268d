"""The audit chain's definition: canonical JSON, hashes, and the incremental verifier."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from adapters.audit_events import canonical, chained, line_of_shape, ndjson_line, with_hashes
from domain.audit import GENESIS_HASH, ChainVerifier, canonical_json, chain_hash, digest_message, event_body

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**63 - 1) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def shape(position: int, **data: Any) -> dict[str, Any]:
    return {
        "position": position,
        "stream_id": "7f9c3b1e-0000-4000-8000-000000000001",
        "stream_type": "Order",
        "version": position,
        "type": "Order.Placed",
        "occurred_at": "2026-01-31T09:30:00.000000Z",
        "data": {"customer_ref": "Zoë ☕", **data},
        "metadata": {"actor": "api_key:abc", "request_id": "req-1"},
    }


def chain_of(*shapes: dict[str, Any]) -> list[dict[str, Any]]:
    events, prev = [], GENESIS_HASH
    for body in shapes:
        event = chained(body, prev)
        events.append(event)
        prev = event["hash"]
    return events


def test_canonical_json_sorts_keys_drops_spaces_and_writes_non_ascii_as_itself() -> None:
    written = canonical_json({"b": 1, "a": ["é", {"d": None, "c": True}]})
    assert written == '{"a":["é",{"c":true,"d":null}],"b":1}'.encode()


@given(json_values)
def test_the_fast_canonical_encoder_writes_the_same_bytes_as_the_definition(value: Any) -> None:
    assert canonical(value) == canonical_json(value)


hex_hashes = st.binary(min_size=32, max_size=32).map(bytes.hex)
# Keys named like the top-level ones, nested in data or metadata, must not mislead it.
shape_keys = st.sampled_from(["metadata", "stream_id", "data", "hash", "prev_hash", "version", "actor"]) | st.text()
shape_values = st.recursive(
    st.none() | st.integers() | st.text(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(shape_keys, children, max_size=4),
    max_leaves=12,
)


@given(
    st.dictionaries(shape_keys, shape_values, max_size=6),
    st.dictionaries(shape_keys, st.text(), max_size=5),
    hex_hashes,
    hex_hashes,
)
def test_a_line_made_from_a_chained_shape_is_the_canonical_json_of_the_whole_event(
    data: dict[str, Any], metadata: dict[str, str], hash_hex: str, prev_hash: str
) -> None:
    body = {**shape(3), "data": data, "metadata": metadata}
    expected = ndjson_line(with_hashes(body, hash_hex, prev_hash))
    assert line_of_shape(canonical(body), hash_hex, prev_hash) == expected


def test_a_line_from_a_shape_not_of_the_chain_s_form_is_still_the_whole_event_s_canonical_json() -> None:
    body = {"position": 4, "data": {"metadata": {"stream_id": "x"}}}
    expected = ndjson_line(with_hashes(body, "ab", "cd"))
    assert line_of_shape(canonical(body), "ab", "cd") == expected


def test_the_hash_is_sha256_of_the_previous_hash_bytes_then_the_canonical_body() -> None:
    body = shape(1)
    plain = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    expected = hashlib.sha256(bytes(32) + plain)
    assert chain_hash(GENESIS_HASH, canonical_json(body)) == expected.hexdigest()
    assert chained(body, GENESIS_HASH)["hash"] == expected.hexdigest()


def test_the_hash_leaves_the_chain_fields_out_of_what_it_hashes() -> None:
    event = chained(shape(1), GENESIS_HASH)
    assert event_body(event) == shape(1)


def test_the_digest_message_is_merchant_position_and_hash_joined_by_colons() -> None:
    assert digest_message("m-1", 42, "ab" * 32) == f"m-1:42:{'ab' * 32}".encode()


def test_an_intact_chain_verifies() -> None:
    verifier = ChainVerifier()
    for event in chain_of(shape(3), shape(7), shape(8)):
        assert verifier.check(event) is None
    assert verifier.ok
    assert (verifier.events_checked, verifier.last_position) == (3, 8)


def test_a_changed_event_is_reported_at_its_position() -> None:
    events = chain_of(shape(3), shape(7), shape(8))
    events[1]["data"]["customer_ref"] = "Zoe ☕"
    verifier = ChainVerifier()
    mismatches = [verifier.check(event) for event in events]
    assert mismatches[0] is None
    assert mismatches[1] is not None
    assert mismatches[1].position == 7
    assert "changed" in mismatches[1].reason
    assert verifier.events_checked == 1


def test_a_missing_event_is_reported_at_the_event_after_it() -> None:
    events = chain_of(shape(3), shape(7), shape(8))
    verifier = ChainVerifier()
    mismatch = next(m for m in map(verifier.check, [events[0], events[2]]) if m)
    assert mismatch.position == 8
    assert "missing" in mismatch.reason


def test_two_swapped_events_are_reported() -> None:
    events = chain_of(shape(3), shape(7), shape(8))
    verifier = ChainVerifier()
    mismatch = next(m for m in map(verifier.check, [events[0], events[2], events[1]]) if m)
    assert mismatch.position == 8


def test_a_chain_that_does_not_start_at_the_genesis_hash_is_reported() -> None:
    events = chain_of(shape(3), shape(7))
    assert ChainVerifier().check(events[1]) is not None
    assert ChainVerifier(start_hash=events[0]["hash"], start_position=3).check(events[1]) is None


def test_an_event_missing_a_field_is_reported_with_the_field() -> None:
    event = chain_of(shape(3))[0]
    del event["metadata"]
    mismatch = ChainVerifier().check(event)
    assert mismatch is not None
    assert mismatch.position == 3
    assert "metadata" in mismatch.reason
