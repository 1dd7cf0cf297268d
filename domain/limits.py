"""Every bound Daybook enforces, in one place.

The domain checks its inputs against these names, and the API edge builds its request
schemas (and so its OpenAPI document) from the same names, so the two cannot drift
apart. Values come from CONTRACT.md where it gives one; the others are the choices
documented in the README ("Decisions where the contract is silent"). The assertions
at the bottom relate the bounds to each other; they run on import.
"""

from __future__ import annotations

from typing import Final

# Identifiers and text. Patterns match the whole string under both regex dialects that
# read them: Python's ``$`` also matches before a final newline, which ``(?!\n)`` rules
# out; in ECMA-262 (OpenAPI, JSON Schema) that lookahead is a no-op.
SKU_PATTERN: Final = r"^[A-Za-z0-9._-]{1,64}$(?!\n)"
"""A SKU is 1 to 64 characters of ``[A-Za-z0-9._-]``, the whole string."""
SKU_LENGTH_MAX: Final = 64
"""An ISO 4217 currency code: three upper-case letters, the whole string."""
TEXT_PATTERN: Final = r"^[^\x00-\x1f\x7f-\x9f]*$(?!\n)"
"""Free text and ids: no C0 or C1 control character and no DEL."""
TEXT_LENGTH_MAX: Final = 255
"""Free text: ``customer_ref``, an adjustment's ``reason``, a receipt's ``reference``."""
MERCHANT_NAME_LENGTH_MAX: Final = 200
GATEWAY_ID_LENGTH_MAX: Final = 255
"""Gateway references, event ids and refund ids."""
IDEMPOTENCY_KEY_LENGTH_MAX: Final = 255

# Money: integer minor units that fit PostgreSQL ``bigint``; sums stay within it too.
AMOUNT_MAX: Final = 2**63 - 1

# Stock.
RECEIPT_QUANTITY_MAX: Final = 1_000_000_000
"""Units of one receipt."""
ADJUSTMENT_DELTA_MAX: Final = 1_000_000_000
"""The largest correction, either way, of one adjustment."""
ON_HAND_MAX: Final = 2**63 - 1
"""Units of one SKU on hand (a ``bigint`` column of the read model)."""

# Orders.
LINES_MIN: Final = 1
LINES_MAX: Final = 100
LINE_QUANTITY_MIN: Final = 1
LINE_QUANTITY_MAX: Final = 10_000
HOLD_SECONDS_MIN: Final = 60
HOLD_SECONDS_DEFAULT: Final = 900
HOLD_SECONDS_MAX: Final = 86_400
UNIT_PRICE_MAX: Final = AMOUNT_MAX // (LINES_MAX * LINE_QUANTITY_MAX)
"""The highest unit price of an order line (9,223,372,036,854 minor units): every order
within the line bounds then has a total within ``AMOUNT_MAX``, so a request the schema
accepts is never refused for its sum."""

# Positions in the notification log (a ``bigint`` column).
POSITION_MAX: Final = 2**63 - 1
"""The largest position a read may wait for (``X-Daybook-Min-Position``)."""

# Pages.
PAGE_SIZE_DEFAULT: Final = 50
PAGE_SIZE_MAX: Final = 100
EVENT_PAGE_SIZE_MAX: Final = 1_000
"""Pages of events (an order's stream, the audit log) may be larger."""
AUDIT_EXPORT_PAGE_SIZE: Final = 2_000
"""Events read per query while an NDJSON export streams (its memory stays this bounded)."""
TRACE_ID_LENGTH_MAX: Final = 255
"""The longest request or causation id an audit query filters by (gateway ids are this long)."""

ORDER_VALUES_CACHED_MAX: Final = 4_096
"""Distinct order lines, and order totals, an application keeps built (they are frozen and
shared by every order that has them; domain/orders/aggregate.py)."""

# Snapshots (domain/snapshots/): only inventory items have histories long enough to need
# them (a hot SKU gains a million events in minutes; orders and payments stay within tens).
INVENTORY_ITEM_SNAPSHOT_INTERVAL_EVENTS: Final = 1_000
"""Events of an inventory item between two of its snapshots, at least: a cold load then
replays at most about this many events after the latest snapshot."""
SNAPSHOT_STATE_BYTES_PER_EVENT: Final = 256
"""Snapshots of a large state are spaced further apart: after a snapshot of ``n`` bytes,
the next waits at least ``n / 256`` events, so that encoding snapshots costs the hot path
about 256 bytes of encoding per event and snapshots take no more room than the events."""
SNAPSHOT_TRACKED_AGGREGATES_MAX: Final = 100_000
"""Aggregates whose history (version, latest timestamp, last snapshot) a process keeps in
mind to decide when to snapshot them; the least recently used are forgotten past this."""
SNAPSHOT_WRITE_QUEUE_SIZE_MAX: Final = 1_000
"""Snapshots waiting to be written; past this a new snapshot is dropped (the next one of
that aggregate comes an interval later)."""
SNAPSHOT_WRITE_BATCH_SIZE_MAX: Final = 100
"""Snapshots written in one statement."""
SNAPSHOT_CLOSE_TIMEOUT_SECONDS: Final = 5.0
"""How long closing the application waits for its queued snapshots to be written."""

# The audit log of operator and security actions (domain/audit/).
AUDIT_REASON_LENGTH_MAX: Final = 1_000
"""A parked row's reason as the audit log keeps it (the inbox keeps as much)."""
AUDIT_ROWS_PER_EVENT_MAX: Final = 1_000
"""Inbox rows named by one audit event: a larger park or re-drive is several events."""

assert HOLD_SECONDS_MIN <= HOLD_SECONDS_DEFAULT <= HOLD_SECONDS_MAX
assert 1 <= LINES_MIN <= LINES_MAX
assert 1 <= LINE_QUANTITY_MIN <= LINE_QUANTITY_MAX
assert 1 <= PAGE_SIZE_DEFAULT <= PAGE_SIZE_MAX <= EVENT_PAGE_SIZE_MAX <= AUDIT_EXPORT_PAGE_SIZE
assert TRACE_ID_LENGTH_MAX >= GATEWAY_ID_LENGTH_MAX
# An order's total fits its column even at every bound at once: 100 lines of 10,000
# units can each be priced up to AMOUNT_MAX / 10**6 without the sum overflowing, and
# the domain refuses any order whose sum would exceed AMOUNT_MAX.
assert LINES_MAX * LINE_QUANTITY_MAX < AMOUNT_MAX
assert UNIT_PRICE_MAX * LINE_QUANTITY_MAX * LINES_MAX <= AMOUNT_MAX
assert RECEIPT_QUANTITY_MAX <= ON_HAND_MAX
assert ADJUSTMENT_DELTA_MAX <= ON_HAND_MAX
assert str(SKU_LENGTH_MAX) in SKU_PATTERN
assert SNAPSHOT_WRITE_BATCH_SIZE_MAX <= SNAPSHOT_WRITE_QUEUE_SIZE_MAX
assert INVENTORY_ITEM_SNAPSHOT_INTERVAL_EVENTS >= 1
