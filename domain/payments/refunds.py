"""How a payment's refunds add up: each refund id once, reversed ones not at all, totals by what they total."""

from __future__ import annotations

from collections.abc import Mapping, Set

Reversal = tuple[int, str | None]
"""A reversed refund: its amount, and the refunds total that counted it (if any)."""


def fold_reversal(known: Reversal | None, amount: int, total_ref: str | None) -> Reversal:
    """A refund's reversal with one more report folded in, whatever the order of the reports.

    The largest amount reported, and the first total (alphabetically) any report named.
    """
    if known is None:
        return amount, total_ref
    refs = [ref for ref in (known[1], total_ref) if ref is not None]
    return max(known[0], amount), min(refs, default=None)


def counted_refunds(
    refund_amounts: Mapping[str, Set[int]], refund_totals: Set[str], reversed_refunds: Mapping[str, Reversal]
) -> dict[str, int]:
    """Refund id (or total's key) → the amount that counts, for the refunds a payment recorded.

    Args:
        refund_amounts: every amount reported per refund id or total's key.
        refund_totals: the keys that are running totals rather than one refund each.
        reversed_refunds: refunds that failed later, by refund id.
    """
    counted = {
        refund_id: max(amounts) for refund_id, amounts in refund_amounts.items() if refund_id not in reversed_refunds
    }
    for refund_id, (amount, total_ref) in reversed_refunds.items():
        # A failed refund the gateway only ever counted inside a total comes off that total.
        if total_ref in counted and total_ref in refund_totals and refund_id not in refund_amounts:
            counted[total_ref] -= amount
    return {refund_id: amount for refund_id, amount in counted.items() if amount > 0}
