"""Black Friday, short: the deployment under load and one fault of each kind keeps every invariant.

``bench/blackfriday.py --short`` for a minute: ``daybook api`` (two processes), ``daybook
worker`` and ``daybook projections`` on a PostgreSQL and a Redis of the run's own, with
shoppers, merchants and a gateway retrying every unanswered request with its key, while
API processes, the whole API, the worker and the projection runner are killed with
``kill -9``, Redis is restarted and flushed, PostgreSQL is restarted and every database
connection is dropped. Asserts the invariants, not the speed.
"""

from __future__ import annotations

import pytest

from bench import bf_checks
from bench.blackfriday import Config, render, run

pytestmark = pytest.mark.slow

ALWAYS_CHECKED = {
    bf_checks.acknowledged_orders.__name__,
    bf_checks.no_oversell.__name__,
    bf_checks.webhooks_exactly_once.__name__,
    bf_checks.read_models_equal_rebuild.__name__,
    bf_checks.audit_chain.__name__,
    bf_checks.sse_every_event_once.__name__,
    bf_checks.contract_answers.__name__,
}


@pytest.mark.timeout(900)
def test_a_minute_of_black_friday_under_every_kind_of_fault_violates_no_invariant() -> None:
    config = Config(duration_s=60, shoppers=12, merchants=2, seed=14, short=True)
    lines: list[str] = []
    report = run(config, out=lines.append)
    table = render(report, config)
    print(table)  # the table, for whoever reads a failure

    assert not report.fault_errors, report.fault_errors
    assert all(count >= 1 for count in report.faults.values()), report.faults
    assert report.violations == [], table
    by_check = dict(zip([check.__name__ for check in bf_checks.CHECKS], report.results, strict=True))
    assert all(by_check[name].ok is True for name in ALWAYS_CHECKED), table
    # The faults landed on traffic: some requests went unanswered and were sent again.
    assert sum(endpoint.no_answer for endpoint in report.evidence.endpoints.values()) > 0, table
    assert len(report.evidence.orders) > 50, table
    assert len(report.evidence.stories) > 10, table
