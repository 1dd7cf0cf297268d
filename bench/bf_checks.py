"""The Black Friday invariants: one function each, run from a table, against the event store.

Every check reads the truth from PostgreSQL directly (never through the API): the event
streams replayed by a fresh application, the inbox table, the read-model tables. Each
returns a :class:`Result`: ``ok`` is ``True``, ``False`` (a violation, with what was
found) or ``None`` when the feature it needs is not in this build (reported as not
checked, never as a pass).
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from eventsourcing.persistence import StoredEvent

from adapters.audit_events import chained, stored_event_shape
from api.controllers.orders import ORDER_ID_NAMESPACE
from bench.bf_load import Evidence, OrderRecord
from domain.application import Daybook
from domain.audit import GENESIS_HASH, digest_message
from domain.gateway import payment_id
from domain.inventory import InventoryItem, inventory_item_id
from domain.orders import Order
from domain.payments import Payment
from projections import compare
from projections.registry import all_projections
from projections.state import AggregateStateProjection

EXAMPLES_MAX = 5

# Where an order can go from each status (CONTRACT.md "Statuses"; domain/orders/aggregate.py).
_NEXT: dict[str, set[str]] = {
    "reserved": {"paid", "cancelled", "expired"},
    "cancelled": {"paid", "paid_unfulfillable"},
    "expired": {"paid", "paid_unfulfillable"},
    "paid": {"partially_refunded", "refunded", "disputed"},
    "partially_refunded": {"refunded", "disputed", "paid", "paid_unfulfillable"},
    "refunded": {"partially_refunded", "disputed", "paid", "paid_unfulfillable"},
    "paid_unfulfillable": {"partially_refunded", "refunded", "disputed"},
    "disputed": set(),
}
PAID_FAMILY = {"paid", "partially_refunded", "refunded", "disputed", "paid_unfulfillable"}
STORY_STATUS = {0: "refunded", 1: "disputed", 2: "partially_refunded", 3: "partially_refunded", 4: "partially_refunded"}


def reachable(start: str) -> set[str]:
    """Every status an order in ``start`` can be in later (``start`` included)."""
    seen, todo = {start}, [start]
    while todo:
        for following in _NEXT.get(todo.pop(), set()):
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen


@dataclass
class Result:
    """One invariant's outcome."""

    name: str
    ok: bool | None
    detail: str
    examples: list[str] = field(default_factory=list)


@dataclass
class Run:
    """What the checks read: the clients' evidence, the database, an application that replays."""

    evidence: Evidence
    database_url: str
    app: Daybook
    extras: dict[str, Any] = field(default_factory=dict)
    _orders: dict[uuid.UUID, Any] = field(default_factory=dict)

    def order(self, order_id: uuid.UUID) -> Order | None:
        """The order replayed from its events (cached)."""
        if order_id not in self._orders:
            self._orders[order_id] = self.app.replay(order_id)
        found = self._orders[order_id]
        return found if isinstance(found, Order) else None


def _result(name: str, problems: list[str], checked: str) -> Result:
    if problems:
        return Result(name, False, f"{len(problems)} violation(s); {checked}", problems[:EXAMPLES_MAX])
    return Result(name, True, checked)


def acknowledged_orders(run: Run) -> Result:
    """Every 201 order is in the event store, as placed, in the status last shown or a later one."""
    problems: list[str] = []
    for record in run.evidence.orders.values():
        problems.extend(_order_problems(run, record))
    unresolved = len(run.evidence.unresolved_orders)
    return _result(
        "every acknowledged order present (state last seen or later)",
        problems,
        f"{len(run.evidence.orders)} orders acknowledged; {unresolved} never answered (may exist or not)",
    )


def _order_problems(run: Run, record: OrderRecord) -> list[str]:
    order_id = uuid.UUID(record.order_id)
    if order_id != uuid.uuid5(ORDER_ID_NAMESPACE, f"{record.merchant_id}:{record.key}"):
        return [f"order {order_id}: not the id of its key {record.key}"]
    order = run.order(order_id)
    if order is None:
        return [f"order {order_id}: acknowledged 201, not in the event store"]
    problems = []
    lines = {line.sku: line.quantity for line in order.lines}
    if lines != dict(record.lines) or order.total.amount != record.total:
        problems.append(f"order {order_id}: lines {lines} total {order.total.amount}, placed {record.lines}")
    status = order.status.value
    for seen in record.seen:
        if status not in reachable(seen):
            problems.append(f"order {order_id}: is {status}, a client was shown {seen} (history {record.seen})")
    return problems


def no_oversell(run: Run) -> Result:
    """Each SKU's events replayed one by one keep 0 ≤ reserved ≤ on_hand; stock agrees with orders and clients."""
    problems: list[str] = []
    holds_of: dict[str, set[str]] = {}
    events = 0
    for merchant in run.evidence.merchants:
        for sku in merchant.hot_skus + merchant.cold_skus:
            found, held, count = _sku_problems(run, merchant.merchant_id, sku)
            problems.extend(found)
            holds_of[f"{merchant.merchant_id}:{sku}"] = held
            events += count
    for record in run.evidence.orders.values():
        for sku, _ in record.lines:
            if record.order_id not in holds_of.get(f"{record.merchant_id}:{sku}", set()):
                problems.append(f"order {record.order_id}: acknowledged, never held {sku}")
    skus = sum(len(m.hot_skus) + len(m.cold_skus) for m in run.evidence.merchants)
    return _result("no oversell on any SKU (events replayed)", problems, f"{skus} SKUs, {events} events replayed")


def _sku_problems(run: Run, merchant_id: str, sku: str) -> tuple[list[str], set[str], int]:
    """Problems of one SKU, the orders it ever held, and how many events it has."""
    problems: list[str] = []
    item: Any = None
    received = adjusted = 0
    fate: dict[str, tuple[str, int]] = {}
    count = 0
    for count, event in enumerate(run.app.events.get(inventory_item_id(uuid.UUID(merchant_id), sku)), start=1):
        try:
            item = event.mutate(item)
        except Exception as error:  # an invariant broken by a stored event
            problems.append(f"{sku}: event {count} ({type(event).__name__}) does not apply: {error!r}")
            return problems, set(fate), count
        assert isinstance(item, InventoryItem)
        if item.on_hand < 0 or not 0 <= item.reserved <= item.on_hand:
            problems.append(f"{sku}: after event {count} on_hand {item.on_hand} reserved {item.reserved}")
        kind = type(event).__name__
        if kind == "StockReceived":
            received += event.quantity
        elif kind == "StockAdjusted":
            adjusted += event.delta
        elif kind in {"StockHeld", "StockCommitted", "StockReleased"}:
            fate[str(event.order_id)] = (kind, event.quantity)
    problems.extend(_stock_agrees_with_clients(run, merchant_id, sku, received, adjusted))
    for order_id, (kind, quantity) in fate.items():
        problems.extend(_fate_agrees_with_order(run, sku, order_id, kind, quantity))
    return problems, set(fate), count


def _stock_agrees_with_clients(run: Run, merchant_id: str, sku: str, received: int, adjusted: int) -> list[str]:
    requests = [r for r in run.evidence.stock if r.merchant_id == merchant_id and r.sku == sku]
    problems = []
    for positive, recorded, what in ((True, received, "received"), (False, adjusted, "adjusted")):
        mine = [r for r in requests if (r.delta > 0) == positive]
        acknowledged = sum(r.delta for r in mine if r.status == 201)
        unknown = sum(r.delta for r in mine if r.status is None)
        low, high = sorted((acknowledged, acknowledged + unknown))
        if not low <= recorded <= high:
            problems.append(f"{sku}: {what} {recorded} in the events, clients were acknowledged {acknowledged}")
    return problems


def _fate_agrees_with_order(run: Run, sku: str, order_id: str, kind: str, quantity: int) -> list[str]:
    order = run.order(uuid.UUID(order_id))
    if order is None:
        return [f"{sku}: holds for order {order_id}, which does not exist"]
    lines = {line.sku: line.quantity for line in order.lines}
    if lines.get(sku) != quantity:
        return [f"{sku}: held {quantity} for order {order_id}, whose line says {lines.get(sku)}"]
    status = order.status.value
    expected = {
        "StockHeld": status == "reserved",
        "StockCommitted": status in PAID_FAMILY and not order.unfulfillable,
        "StockReleased": status in {"cancelled", "expired"} or order.unfulfillable,
    }[kind]
    return [] if expected else [f"{sku}: last stock event of order {order_id} is {kind}, the order is {status}"]


_INBOX = "SELECT gateway, event_id, state, park_reason FROM webhook_inbox WHERE merchant_id = ANY(%s)"


def webhooks_exactly_once(run: Run) -> Result:
    """Every delivery acknowledged, stored once, processed; each payment's amounts are its distinct facts'."""
    problems: list[str] = []
    with psycopg.connect(run.database_url) as conn:
        rows = conn.execute(_INBOX, ([uuid.UUID(m.merchant_id) for m in run.evidence.merchants],)).fetchall()
    inbox = {(gateway, event_id): (state, reason) for gateway, event_id, state, reason in rows}
    facts = 0
    for story in run.evidence.stories:
        payment = story.story
        for event_id in sorted(story.unanswered):
            problems.append(f"{payment.gateway_ref}: delivery {event_id} never answered 200")
        for event_id, answers in story.answers.items():
            facts += 1
            if set(answers) - {"accepted", "duplicate"}:
                problems.append(f"{payment.gateway_ref}: delivery {event_id} answered {answers}")
            state, reason = inbox.get((payment.gateway, event_id), ("missing", None))
            if state != "processed":
                problems.append(f"{payment.gateway_ref}: inbox row of {event_id} is {state} {reason or ''}")
        if not story.unanswered:
            problems.extend(_payment_problems(run, story))
    parked = sum(1 for state, _ in inbox.values() if state != "processed")
    return _result(
        "every accepted webhook applied exactly once",
        problems,
        f"{len(run.evidence.stories)} payments, {facts} distinct deliveries, {len(inbox)} inbox rows "
        f"({parked} not processed)",
    )


def _payment_problems(run: Run, story: Any) -> list[str]:
    payment_story = story.story
    pid = payment_id(uuid.UUID(story.merchant_id), payment_story.gateway, payment_story.gateway_ref)
    payment = run.app.replay(pid)
    if not isinstance(payment, Payment):
        return [f"{payment_story.gateway_ref}: payment {pid} not in the event store"]
    problems = []
    total = payment_story.total
    want = (total, total, story.expected_refunded, STORY_STATUS[story.variant])
    have = (payment.amount_authorized, payment.amount_captured, payment.amount_refunded, payment.status.value)
    if have != want:
        problems.append(f"{payment_story.gateway_ref}: (authorized, captured, refunded, status) {have}, facts {want}")
    recorded = Counter(
        (type(event).__name__, event.event_id, getattr(event, "refund_id", None))
        for event in run.app.events.get(pid)
        if hasattr(event, "event_id")
    )
    problems.extend(f"{payment_story.gateway_ref}: {fact} recorded {n} times" for fact, n in recorded.items() if n > 1)
    order = run.order(uuid.UUID(payment_story.order_id))
    if order is None or order.amount_captured.amount != total or order.status.value not in PAID_FAMILY:
        state = None if order is None else (order.status.value, order.amount_captured.amount)
        problems.append(f"{payment_story.gateway_ref}: order {payment_story.order_id} is {state}, captured {total}")
    return problems


_QUARANTINED = "SELECT projection, quarantine_key FROM projection_quarantine"


def read_models_equal_rebuild(run: Run) -> Result:
    """Every row of every read model is what replaying its aggregate gives; nothing quarantined."""
    problems: list[str] = []
    rows = 0
    with psycopg.connect(run.database_url) as conn:
        quarantined = conn.execute(_QUARANTINED).fetchall()
        problems.extend(f"{name}: aggregate {key} quarantined" for name, key in quarantined)
        for projection in all_projections(run.app):
            if not isinstance(projection, AggregateStateProjection):
                continue
            rows += len(compare.table_rows(conn, projection))
            problems.extend(
                f"{d.projection} {d.key} {d.column}: table {d.actual!r}, events {d.expected!r}"
                for d in compare.differences(run.app, conn, projection)
            )
    return _result("every read model equal to a rebuild", problems, f"{rows} rows compared with their events")


_EVENTS = "SELECT notification_id, originator_id, originator_version, topic, state FROM daybook_events ORDER BY 1"
_CHAIN = "SELECT position, hash, prev_hash FROM audit_chain WHERE merchant_id = %s ORDER BY position"
_LAST_DIGEST = (
    "SELECT position, hash, signature, public_key FROM audit_digests WHERE merchant_id = %s "
    "ORDER BY position DESC LIMIT 1"
)


def audit_chain(run: Run) -> Result:
    """Each merchant's chain, recomputed from the event store alone, is the stored one and its last digest holds.

    With the audit routes in the build, the auditor's own path is checked too (the
    server's verify, an export verified offline against the digest: ``bench/bf_feeds.py``).
    """
    name = "audit chain verifies against the last digest"
    with psycopg.connect(run.database_url) as conn:
        if conn.execute("SELECT to_regclass('audit_chain') IS NOT NULL").fetchone() != (True,):
            return Result(name, None, "not checked: no audit chain in this build")
        events = conn.execute(_EVENTS).fetchall()
        recomputed = _recomputed_chains(run, events)
        problems: list[str] = []
        digests = 0
        for merchant in run.evidence.merchants:
            merchant_id = uuid.UUID(merchant.merchant_id)
            stored = [(p, bytes(h).hex(), bytes(prev).hex()) for p, h, prev in conn.execute(_CHAIN, (merchant_id,))]
            mine = recomputed.get(merchant.merchant_id, [])
            if stored != mine:
                first = next((i for i, (a, b) in enumerate(zip(stored, mine, strict=False)) if a != b), None)
                where = f"first difference at {stored[first] if first is not None else 'the end'}"
                problems.append(f"merchant {merchant_id}: {len(stored)} chained, {len(mine)} recomputed; {where}")
            digest = conn.execute(_LAST_DIGEST, (merchant_id,)).fetchone()
            if digest is None:
                problems.append(f"merchant {merchant_id}: no digest signed")
                continue
            digests += 1
            problems.extend(_digest_problems(merchant.merchant_id, digest, {p: h for p, h, _ in mine}))
    checker = run.extras.get("audit_check")
    extra = checker(run) if checker is not None else None
    if extra is not None and extra.ok is False:
        problems += [extra.detail, *extra.examples]
    chained = sum(len(chain) for chain in recomputed.values())
    detail = (
        f"{len(events)} events in the store, {chained} chained; each merchant's chain recomputed from the store, "
        f"{digests} last digests verified (signature, hash at their position)"
        + (f"; {extra.detail}" if extra is not None else "; the audit routes and CLI are not in this build")
    )
    return _result(name, problems, detail)


def _recomputed_chains(run: Run, events: list[Any]) -> dict[str, list[tuple[int, str, str]]]:
    """Merchant → (position, hash, prev_hash) of each of its events, chained again from the stored events."""
    chains: dict[str, list[tuple[int, str, str]]] = {}
    for position, originator_id, version, topic, state in events:
        shape = stored_event_shape(run.app.mapper, position, StoredEvent(originator_id, version, topic, bytes(state)))
        merchant_id = str(shape["data"].get("merchant_id"))
        chain = chains.setdefault(merchant_id, [])
        prev = chain[-1][1] if chain else GENESIS_HASH
        chain.append((position, chained(shape, prev)["hash"], prev))
    return chains


def _digest_problems(merchant_id: str, digest: Any, hashes: dict[int, str]) -> list[str]:
    position, hash_bytes, signature, public_key = digest
    hash_hex = bytes(hash_bytes).hex()
    problems = []
    try:
        Ed25519PublicKey.from_public_bytes(bytes(public_key)).verify(
            bytes(signature), digest_message(merchant_id, position, hash_hex)
        )
    except InvalidSignature:
        problems.append(f"merchant {merchant_id}: the digest at {position} has a signature that does not verify")
    if hashes.get(position) != hash_hex:
        problems.append(
            f"merchant {merchant_id}: digest at {position} says {hash_hex}, the store {hashes.get(position)}"
        )
    return problems


def sse_every_event_once(run: Run) -> Result:
    """Every SSE client received every event of its merchant once, in order."""
    checker = run.extras.get("sse_check")
    if checker is None:
        return Result("every SSE client saw every event once", None, "not checked: no live feed in this build")
    result: Result = checker(run)
    return result


def contract_answers(run: Run) -> Result:
    """No request was answered 500 or with a status its client could not expect."""
    problems = list(run.evidence.unexpected)
    for label, endpoint in sorted(run.evidence.endpoints.items()):
        if endpoint.statuses.get(500):
            problems.append(f"{label}: {endpoint.statuses[500]} answers 500")
    answered = sum(sum(e.statuses.values()) for e in run.evidence.endpoints.values())
    return _result("every answer one the contract allows (no 500)", problems, f"{answered} answers")


CHECKS: list[Callable[[Run], Result]] = [
    acknowledged_orders,
    no_oversell,
    webhooks_exactly_once,
    read_models_equal_rebuild,
    audit_chain,
    sse_every_event_once,
    contract_answers,
]
"""The table of invariants, in the order they are printed."""


def run_checks(run: Run) -> list[Result]:
    """Every check of :data:`CHECKS`; one that raises is a violation, not a crash of the report."""
    results = []
    for check in CHECKS:
        try:
            results.append(check(run))
        except Exception as error:
            results.append(Result(check.__name__, False, f"the check itself failed: {error!r}"))
    return results
