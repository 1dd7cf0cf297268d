"""``daybook audit export`` and ``daybook audit verify`` (the ``audit`` group; ``replay`` joins it).

Export reads the database (configured, or the embedded one under ``DAYBOOK_HOME``) and
appends one canonical JSON event per line; run again on the same file it resumes after
the file's last whole line. Verify needs nothing but the file (and the digest, if
given): no database, no configuration. It exits 0 only when every event's hash is its
content's, every ``prev_hash`` the hash before it, and the digest's signature holds for
the chain's hash at its position; otherwise it prints the first bad position and why.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import msgspec

from adapters.audit_events import canonical, decode_line
from adapters.audit_signing import signature_holds
from daybook.audit_export import export
from domain.audit import GENESIS_HASH, ChainVerifier, Mismatch
from domain.audit.chain import is_hash

TAIL_BYTES_MAX = 1 << 20
"""How far from the end of an export its last line is looked for (an event is far smaller)."""
DIGEST_FIELDS = ("merchant_id", "position", "hash", "signed_at", "signature", "public_key")


@click.group("audit")
def audit() -> None:
    """Auditors' tools: export a merchant's chained events; verify an export offline."""


# --- export ------------------------------------------------------------------------------


def last_exported_position(path: Path) -> int:
    """The position of the file's last whole line (0 for none); a partial last line is cut off.

    Raises:
        click.ClickException: the last whole line is not an exported event.
    """
    if not path.exists() or path.stat().st_size == 0:
        return 0
    with path.open("r+b") as file:
        size = file.seek(0, os.SEEK_END)
        start = max(0, size - TAIL_BYTES_MAX)
        file.seek(start)
        tail = file.read()
        whole = tail.rfind(b"\n")
        if whole + 1 < len(tail):  # an interrupted write: drop the partial line
            file.truncate(start + whole + 1)
        if whole < 0:
            return 0
        previous = tail.rfind(b"\n", 0, whole)
        line = tail[previous + 1 : whole]
    try:
        position = decode_line(line)["position"]
    except (msgspec.DecodeError, KeyError, TypeError) as error:
        raise click.ClickException(f"{path}: the last line is not an exported event ({error})") from error
    if not isinstance(position, int):
        raise click.ClickException(f"{path}: the last line has no position")
    return position


@audit.command("export")
@click.option("--merchant", "merchant_id", type=click.UUID, required=True, help="The merchant whose events to export.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="NDJSON file.")
@click.option("--after", type=click.IntRange(min=0), default=None, help="Start after this position (default: resume).")
@click.option(
    "--digest-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also save the latest signed digest within the export (for `daybook audit verify --digest`).",
)
def export_command(merchant_id: uuid.UUID, out: Path, after: int | None, digest_out: Path | None) -> None:
    """Export a merchant's chained events to FILE.ndjson, one per line; resumes an existing file."""
    resumed = last_exported_position(out)
    if after is not None and resumed and after != resumed:
        raise click.UsageError(f"{out} already ends at position {resumed}; drop --after to resume, or use a new file")
    start = resumed or (after or 0)
    report = export(merchant_id, out, start, digest_out)
    click.echo(
        f"exported {report.events:,} events of merchant {merchant_id} to {out} "
        f"(positions {start + 1 if report.events else start}..{report.last_position}, "
        f"{report.events_per_second:,.0f} events/s)",
        err=True,
    )
    if digest_out is not None:
        if report.digest_position is None:
            click.echo("no signed digest yet within the export: none saved", err=True)
        else:
            click.echo(f"saved the digest of position {report.digest_position} to {digest_out}", err=True)


# --- verify ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Digest:
    """A digest as saved from ``GET /v1/audit/digest``."""

    merchant_id: str
    position: int
    hash: str
    signature: str
    public_key: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """What verifying a file found."""

    events: int
    first_position: int | None
    last_position: int
    last_hash: str
    mismatch: Mismatch | None


def load_digest(path: Path) -> Digest:
    """The digest in ``path``.

    Raises:
        click.ClickException: it is not a digest.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise click.ClickException(f"{path}: not a digest ({error})") from error
    if not isinstance(data, dict) or any(name not in data for name in DIGEST_FIELDS):
        raise click.ClickException(f"{path}: a digest has the fields {', '.join(DIGEST_FIELDS)}")
    position = data["position"]
    if not isinstance(position, int) or isinstance(position, bool) or position < 1 or not is_hash(data["hash"]):
        raise click.ClickException(f"{path}: the digest's position or hash is malformed")
    fields = {name: str(data[name]) for name in ("merchant_id", "hash", "signature", "public_key")}
    return Digest(position=position, **fields)


def verify_file(path: Path, digest: Digest | None, start_hash: str = GENESIS_HASH) -> Outcome:
    """Verifies the export in ``path`` as a chain starting from ``start_hash``, and against ``digest``."""
    verifier = ChainVerifier(start_hash=start_hash)
    first: int | None = None
    digest_met = False
    with path.open("rb", buffering=1 << 20) as file:
        for number, line in enumerate(file, start=1):
            event = _event_of(line, number, verifier)
            if event is None:
                break
            if "error" in event or "hash" not in event or "prev_hash" not in event:
                verifier.check(event)  # reports the error the export stated, or what is missing
                break
            if verifier.check(event, _canonical_body(event)) is not None:
                break
            first = first if first is not None else event["position"]
            if digest is not None:
                reason = _against_digest(event, digest, digest_met)
                if reason is not None:
                    verifier.fail(event["position"], reason)
                    break
                digest_met = digest_met or event["position"] == digest.position
    if verifier.ok and verifier.events_checked == 0:
        verifier.fail(0, "the file holds no event")
    if verifier.ok and digest is not None and not digest_met:
        last = verifier.last_position
        verifier.fail(
            last,
            f"the digest's position {digest.position} lies past the end of the file (last position {last}): "
            "events are missing",
        )
    return Outcome(verifier.events_checked, first, verifier.last_position, verifier.last_hash, verifier.mismatch)


def _canonical_body(event: dict[str, Any]) -> bytes:
    """The canonical JSON of ``event`` without its chain fields (taken out and put back: no copy)."""
    stated_hash, prev_hash = event.pop("hash"), event.pop("prev_hash")
    body = canonical(event)
    event["hash"], event["prev_hash"] = stated_hash, prev_hash
    return body


def _event_of(line: bytes, number: int, verifier: ChainVerifier) -> dict[str, Any] | None:
    where = verifier.last_position
    if not line.endswith(b"\n"):
        verifier.fail(where, f"line {number} is cut short (no end of line): the file is truncated")
        return None
    try:
        event = decode_line(line)
    except msgspec.DecodeError as error:
        verifier.fail(where, f"line {number} is not one JSON value ({error}): the file is damaged or truncated")
        return None
    if not isinstance(event, dict):
        verifier.fail(where, f"line {number} is not a JSON object")
        return None
    return event


def _against_digest(event: dict[str, Any], digest: Digest, digest_met: bool) -> str | None:
    """Why ``event`` (whose chain held) contradicts the digest, if it does."""
    position = event["position"]
    data = event.get("data")
    if not isinstance(data, dict) or data.get("merchant_id") != digest.merchant_id:
        return f"the event is not of the digest's merchant ({digest.merchant_id})"
    if position == digest.position and event["hash"] != digest.hash:
        return "the chain's hash at the digest's position is not the digest's hash"
    if position > digest.position and not digest_met:
        return f"no event at the digest's position {digest.position}"
    return None


@audit.command("verify")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--digest", "digest_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None)
@click.option("--public-key", default=None, help="Accept only digests signed by this key (hex), e.g. one you pinned.")
@click.option(
    "--after-hash", default=GENESIS_HASH, show_default="the genesis", help="The hash before the file's first event."
)
def verify_command(file: Path, digest_path: Path | None, public_key: str | None, after_hash: str) -> None:
    """Verify FILE.ndjson (an export) offline: the hash chain, and the digest's signature if given."""
    if not is_hash(after_hash):
        raise click.BadParameter("64 lower-case hex digits", param_hint="--after-hash")
    digest = load_digest(digest_path) if digest_path else None
    if digest is not None:
        if public_key is not None and digest.public_key != public_key.lower():
            _fail(digest.position, f"the digest is signed by another key ({digest.public_key}) than {public_key}")
        if not signature_holds(digest.public_key, digest.signature, digest.merchant_id, digest.position, digest.hash):
            _fail(digest.position, "the digest's signature does not hold (signed by another key, or changed)")
    outcome = verify_file(file, digest, after_hash)
    if outcome.mismatch is not None:
        _fail(outcome.mismatch.position, outcome.mismatch.reason, checked=outcome.events)
    click.echo(
        f"ok: {outcome.events:,} events, positions {outcome.first_position}..{outcome.last_position}, "
        f"last hash {outcome.last_hash}"
    )
    if digest is not None:
        click.echo(f"digest of position {digest.position} signed by {digest.public_key}: holds")


def _fail(position: int, reason: str, *, checked: int | None = None) -> None:
    if checked is not None:
        click.echo(f"{checked:,} events held before the first bad one")
    click.echo(f"first bad position: {position}")
    click.echo(f"reason: {reason}")
    sys.exit(1)
