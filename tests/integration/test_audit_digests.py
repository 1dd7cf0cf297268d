"""Signed digests of each merchant's chain: when they are signed, what they hold, the key."""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.audit_signing import load_or_create_signing_key, public_key_bytes, signature_holds
from domain.application import Daybook
from projections.audit_chain import AuditChainProjection
from projections.audit_digests import DigestSigner
from tests.integration.audit_support import chain_rows, chain_up, daybook_on, some_history

if TYPE_CHECKING:
    pass


@pytest.fixture
def daybook(own_database: str) -> Iterator[Daybook]:
    with daybook_on(own_database) as app:
        yield app


def digests(database_url: str, merchant_id: uuid.UUID) -> list[tuple[int, str, str, str]]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT position, hash, signature, public_key FROM audit_digests WHERE merchant_id = %s ORDER BY position",
            (merchant_id,),
        ).fetchall()
    return [(row[0], bytes(row[1]).hex(), bytes(row[2]).hex(), bytes(row[3]).hex()) for row in rows]


def test_the_first_batch_of_a_merchant_is_signed_then_every_interval_of_events(
    daybook: Daybook, own_database: str
) -> None:
    merchant_id = uuid.uuid4()
    key = Ed25519PrivateKey.generate()
    signer = DigestSigner(key, interval_seconds=3600, interval_events=10)
    some_history(daybook, merchant_id, 2)
    chain_up(daybook, own_database, signer=signer)
    first = digests(own_database, merchant_id)
    some_history(daybook, merchant_id, 1)  # fewer than 10 more events: not yet due
    chain_up(daybook, own_database, signer=signer)
    assert digests(own_database, merchant_id) == first
    some_history(daybook, merchant_id, 9)
    chain_up(daybook, own_database, signer=signer, batch_size=10_000)

    signed = digests(own_database, merchant_id)
    chain = {row[0]: bytes(row[1]).hex() for row in chain_rows(own_database, merchant_id)}
    assert len(first) == 1
    assert len(signed) == 2
    assert signed[-1][0] == max(chain)
    for position, hash_hex, signature, public_key in signed:
        assert chain[position] == hash_hex
        assert public_key == public_key_bytes(key).hex()
        assert signature_holds(public_key, signature, str(merchant_id), position, hash_hex)


def test_a_digest_does_not_verify_for_another_position_hash_merchant_or_key(
    daybook: Daybook, own_database: str
) -> None:
    merchant_id = uuid.uuid4()
    some_history(daybook, merchant_id, 1)
    chain_up(
        daybook, own_database, signer=DigestSigner(Ed25519PrivateKey.generate(), interval_seconds=1, interval_events=1)
    )
    ((position, hash_hex, signature, public_key),) = digests(own_database, merchant_id)
    other_key = public_key_bytes(Ed25519PrivateKey.generate()).hex()
    assert signature_holds(public_key, signature, str(merchant_id), position, hash_hex)
    assert not signature_holds(public_key, signature, str(merchant_id), position + 1, hash_hex)
    assert not signature_holds(public_key, signature, str(merchant_id), position, "0" * 64)
    assert not signature_holds(public_key, signature, str(uuid.uuid4()), position, hash_hex)
    assert not signature_holds(other_key, signature, str(merchant_id), position, hash_hex)
    assert not signature_holds(public_key, "zz", str(merchant_id), position, hash_hex)


def test_the_sweep_signs_the_last_events_of_a_merchant_quiet_for_the_interval(
    daybook: Daybook, own_database: str
) -> None:
    merchant_id = uuid.uuid4()
    signer = DigestSigner(Ed25519PrivateKey.generate(), interval_seconds=3600, interval_events=1_000)
    some_history(daybook, merchant_id, 1)
    chain_up(daybook, own_database, signer=signer)
    some_history(daybook, merchant_id, 1)
    chain_up(daybook, own_database, signer=signer)
    with psycopg.connect(own_database, autocommit=True) as conn:
        assert signer.sweep(conn, AuditChainProjection.default_name) == 0  # signed within the interval
        conn.execute("UPDATE audit_chain_heads SET digest_at = digest_at - %s", (timedelta(hours=2),))
        assert signer.sweep(conn, AuditChainProjection.default_name) == 1
        assert signer.sweep(conn, AuditChainProjection.default_name) == 0  # nothing new since
    assert digests(own_database, merchant_id)[-1][0] == chain_rows(own_database, merchant_id)[-1][0]


def test_the_signing_key_is_generated_once_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-signing-key.pem"
    key = load_or_create_signing_key(path)
    again = load_or_create_signing_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert public_key_bytes(key) == public_key_bytes(again)
    assert list(path.parent.iterdir()) == [path]
