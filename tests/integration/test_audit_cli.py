"""``daybook audit export`` and offline ``daybook audit verify``: what holds, and every tampering reported."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
import pytest
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import audit_store
from adapters.audit_signing import public_key_bytes, sign_digest
from daybook.audit_cli import load_digest, verify_file
from daybook.cli import main
from domain.application import Daybook
from projections.audit_digests import DigestSigner
from tests.conftest import fresh_database
from tests.integration.audit_support import chain_up, daybook_on, some_history

if TYPE_CHECKING:
    from tests.conftest import Servers

KEY = Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def own_database(servers: Servers) -> Iterator[str]:
    with fresh_database(servers) as url:
        yield url


@pytest.fixture(scope="module")
def daybook(own_database: str) -> Iterator[Daybook]:
    with daybook_on(own_database) as app:
        yield app


def chain(daybook: Daybook, database_url: str) -> None:
    chain_up(daybook, database_url, signer=DigestSigner(KEY, interval_seconds=3600, interval_events=1))


def chained_history(daybook: Daybook, database_url: str, orders: int) -> uuid.UUID:
    """A new merchant with ``orders`` orders, all chained."""
    merchant_id = uuid.uuid4()
    some_history(daybook, merchant_id, orders)
    chain(daybook, database_url)
    return merchant_id


def run(database_url: str, redis_url: str, *args: str) -> Result:
    env = {"DAYBOOK_DATABASE_URL": database_url, "DAYBOOK_REDIS_URL": redis_url}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def export(database_url: str, redis_url: str, merchant_id: uuid.UUID, out: Path, *extra: str) -> Result:
    result = run(database_url, redis_url, "audit", "export", "--merchant", str(merchant_id), "--out", str(out), *extra)
    assert result.exit_code == 0, result.output
    return result


def verify(path: Path, *extra: str) -> Result:
    # No configuration at all: whatever the environment names is not even looked at.
    env = {"DAYBOOK_DATABASE_URL": "postgresql://nobody@256.0.0.1/none", "DAYBOOK_HOME": "/nonexistent"}
    return CliRunner().invoke(main, ["audit", "verify", str(path), *extra], env=env, catch_exceptions=False)


def first_bad_position(result: Result) -> int:
    assert result.exit_code == 1, result.output
    line = next(line for line in result.output.splitlines() if line.startswith("first bad position: "))
    return int(line.removeprefix("first bad position: "))


@pytest.fixture(scope="module")
def exported(
    daybook: Daybook, own_database: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """A merchant's export and its digest, among other merchants' events."""
    merchant_id = uuid.uuid4()
    some_history(daybook, uuid.uuid4(), 2)
    some_history(daybook, merchant_id, 6)
    some_history(daybook, uuid.uuid4(), 1)
    some_history(daybook, merchant_id, 2)
    chain(daybook, own_database)
    directory = tmp_path_factory.mktemp("export")
    out, digest = directory / "events.ndjson", directory / "digest.json"
    export(own_database, redis_url, merchant_id, out, "--digest-out", str(digest))
    return {"merchant_id": merchant_id, "file": out, "digest": digest, "lines": out.read_bytes().splitlines(True)}


def write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def position_of(line: bytes) -> int:
    return int(json.loads(line)["position"])


def test_an_export_verifies_offline_with_its_digest(exported: dict[str, Any]) -> None:
    result = verify(exported["file"], "--digest", str(exported["digest"]))
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"ok: {len(exported['lines'])} events")
    digest = json.loads(exported["digest"].read_text())
    assert digest["position"] == position_of(exported["lines"][-1])
    assert {json.loads(line)["data"]["merchant_id"] for line in exported["lines"]} == {str(exported["merchant_id"])}


def test_an_interrupted_export_resumes_after_its_last_whole_line(
    daybook: Daybook, own_database: str, redis_url: str, exported: dict[str, Any], tmp_path: Path
) -> None:
    lines = exported["lines"]
    partial = write(tmp_path / "partial.ndjson", [*lines[:3], lines[3][:20]])
    export(own_database, redis_url, exported["merchant_id"], partial)
    assert partial.read_bytes().splitlines(True) == lines
    some_history(daybook, exported["merchant_id"], 1)
    chain(daybook, own_database)
    export(own_database, redis_url, exported["merchant_id"], partial)
    grown = partial.read_bytes().splitlines(True)
    assert grown[: len(lines)] == lines
    assert len(grown) > len(lines)
    assert verify(partial).exit_code == 0


def test_a_byte_changed_in_a_stored_event_is_reported_by_the_offline_verify_at_its_position(
    daybook: Daybook, own_database: str, redis_url: str, tmp_path: Path
) -> None:
    merchant_id = chained_history(daybook, own_database, 3)
    with psycopg.connect(own_database) as conn:
        (position,) = conn.execute(
            "SELECT max(position) FROM audit_chain WHERE merchant_id = %s", (merchant_id,)
        ).fetchone() or (0,)
        (placed,) = conn.execute(
            "SELECT min(notification_id) FROM daybook_events e JOIN audit_chain c ON c.position = e.notification_id "
            "WHERE c.merchant_id = %s AND e.topic LIKE %s",
            (merchant_id, "%Order.Placed"),
        ).fetchone() or (0,)
        conn.execute(
            "UPDATE daybook_events SET state = "
            "overlay(state placing '7'::bytea from position('Zo'::bytea in state) + 4) WHERE notification_id = %s",
            (placed,),
        )
    rows = {row[0]: row for row in read_rows(own_database, merchant_id)}
    assert rows[placed][7] is None, "a stored event changed since it was chained is read from its state"
    out = tmp_path / "tampered.ndjson"
    export(own_database, redis_url, merchant_id, out)
    assert len(out.read_bytes().splitlines()) >= 3
    assert first_bad_position(verify(out)) == placed
    assert placed < position


def read_rows(database_url: str, merchant_id: uuid.UUID) -> list[audit_store.Row]:
    with psycopg.connect(database_url, autocommit=True) as conn, audit_store.merchant_scope(conn, merchant_id):
        return audit_store.event_rows(conn, 0, 10_000)


def test_an_export_made_from_the_chain_s_shapes_has_the_bytes_of_one_decoded_from_the_stored_events(
    daybook: Daybook, own_database: str, redis_url: str, tmp_path: Path
) -> None:
    merchant_id = chained_history(daybook, own_database, 4)
    rows = read_rows(own_database, merchant_id)
    assert rows
    assert all(row[7] is not None and row[6] is None for row in rows), "every unchanged event is read as its shape"
    from_shapes = tmp_path / "shapes.ndjson"
    export(own_database, redis_url, merchant_id, from_shapes)
    with psycopg.connect(own_database) as conn:
        conn.execute("UPDATE audit_chain SET shape = NULL WHERE merchant_id = %s", (merchant_id,))
    assert all(row[7] is None and row[6] is not None for row in read_rows(own_database, merchant_id))
    decoded = tmp_path / "decoded.ndjson"
    export(own_database, redis_url, merchant_id, decoded)
    assert from_shapes.read_bytes() == decoded.read_bytes()
    assert verify(from_shapes).exit_code == 0


def test_a_chained_shape_changed_in_the_table_is_not_exported(
    daybook: Daybook, own_database: str, redis_url: str, tmp_path: Path
) -> None:
    merchant_id = chained_history(daybook, own_database, 3)
    before = tmp_path / "before.ndjson"
    export(own_database, redis_url, merchant_id, before)
    with psycopg.connect(own_database) as conn:
        (changed,) = conn.execute(
            "UPDATE audit_chain SET shape = overlay(shape placing '7'::bytea from position('Zo'::bytea in shape) + 4) "
            "WHERE position = (SELECT max(position) FROM audit_chain WHERE merchant_id = %s "
            "AND position('Zo'::bytea in shape) > 0) RETURNING position",
            (merchant_id,),
        ).fetchone() or (0,)
    rows = {row[0]: row for row in read_rows(own_database, merchant_id)}
    assert rows[changed][7] is None, "its shape is not used"
    assert rows[changed][6] is not None, "it is read from its stored state"
    after = tmp_path / "after.ndjson"
    export(own_database, redis_url, merchant_id, after)
    assert after.read_bytes() == before.read_bytes()
    assert verify(after).exit_code == 0


def test_an_event_deleted_from_the_store_is_reported_at_its_position(
    daybook: Daybook, own_database: str, redis_url: str, tmp_path: Path
) -> None:
    merchant_id = chained_history(daybook, own_database, 2)
    with psycopg.connect(own_database) as conn:
        (deleted,) = conn.execute(
            "SELECT min(position) + 1 FROM audit_chain WHERE merchant_id = %s", (merchant_id,)
        ).fetchone() or (0,)
        conn.execute("DELETE FROM daybook_events WHERE notification_id = %s", (deleted,))
    out = tmp_path / "deleted.ndjson"
    export(own_database, redis_url, merchant_id, out)
    result = verify(out)
    assert first_bad_position(result) == deleted
    assert "not in the event store" in result.output


def test_a_line_deleted_from_the_file_is_reported(exported: dict[str, Any], tmp_path: Path) -> None:
    lines = exported["lines"]
    assert first_bad_position(verify(write(tmp_path / "f", lines[:2] + lines[3:]))) == position_of(lines[3])


def test_two_swapped_lines_are_reported(exported: dict[str, Any], tmp_path: Path) -> None:
    lines = exported["lines"]
    swapped = [lines[0], lines[2], lines[1], *lines[3:]]
    assert first_bad_position(verify(write(tmp_path / "f", swapped))) == position_of(lines[2])


def test_a_truncated_file_is_reported(exported: dict[str, Any], tmp_path: Path) -> None:
    lines = exported["lines"]
    result = verify(write(tmp_path / "f", [*lines[:4], lines[4][: len(lines[4]) // 2]]))
    assert first_bad_position(result) == position_of(lines[3])
    assert "truncated" in result.output


def test_a_digest_signed_by_another_key_is_rejected(exported: dict[str, Any], tmp_path: Path) -> None:
    digest = json.loads(exported["digest"].read_text())
    other = Ed25519PrivateKey.generate()
    forged = {
        **digest,
        "signature": sign_digest(other, digest["merchant_id"], digest["position"], digest["hash"]).hex(),
    }
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    result = verify(exported["file"], "--digest", str(tmp_path / "forged.json"))
    assert first_bad_position(result) == digest["position"]
    assert "signature does not hold" in result.output
    # Re-signed with its own key too: only a pinned key tells.
    (tmp_path / "own.json").write_text(json.dumps({**forged, "public_key": public_key_bytes(other).hex()}))
    assert verify(exported["file"], "--digest", str(tmp_path / "own.json")).exit_code == 0
    pinned = verify(exported["file"], "--digest", str(tmp_path / "own.json"), "--public-key", digest["public_key"])
    assert "signed by another key" in pinned.output
    assert pinned.exit_code == 1


def test_a_digest_whose_position_lies_past_the_end_of_the_file_is_reported(
    exported: dict[str, Any], tmp_path: Path
) -> None:
    lines = exported["lines"]
    result = verify(write(tmp_path / "f", lines[:-2]), "--digest", str(exported["digest"]))
    assert first_bad_position(result) == position_of(lines[-3])
    assert "past the end of the file" in result.output


def test_a_digest_of_another_chain_hash_is_reported(exported: dict[str, Any], tmp_path: Path) -> None:
    digest = json.loads(exported["digest"].read_text())
    other_hash = "ab" * 32
    signature = sign_digest(KEY, digest["merchant_id"], digest["position"], other_hash).hex()
    (tmp_path / "d.json").write_text(json.dumps({**digest, "hash": other_hash, "signature": signature}))
    assert first_bad_position(verify(exported["file"], "--digest", str(tmp_path / "d.json"))) == digest["position"]


def leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths to every scalar in an event (data and metadata included)."""
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in leaves(item, (*path, key))]
    if isinstance(value, list):
        return [leaf for index, item in enumerate(value) for leaf in leaves(item, (*path, index))]
    return [path]


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_field_change_of_any_exported_event_is_detected(
    exported: dict[str, Any], tmp_path: Path, data: st.DataObject
) -> None:
    lines = exported["lines"]
    index = data.draw(st.integers(0, len(lines) - 1), label="line")
    event = json.loads(lines[index])
    path = data.draw(st.sampled_from(leaves(event)), label="field")
    old = event
    for part in path:
        old = old[part]
    scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=70) | st.just("0" * 64)
    new = data.draw(scalars.filter(lambda value: value != old or type(value) is not type(old)), label="value")
    changed = replaced(event, path, new)
    line = json.dumps(changed, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    path_file = write(tmp_path / f"changed-{uuid.uuid4().hex}.ndjson", [*lines[:index], line, *lines[index + 1 :]])
    outcome = verify_file(path_file, load_digest(exported["digest"]))
    assert outcome.mismatch is not None
