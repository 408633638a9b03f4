"""The fault campaign, short: ``python -m exesdb start`` as an OS process, appender and
subscriber processes speaking KurrentDB's protocol (kurrentdbclient), at least 20 SIGKILLs
of the server among other faults (SIGSTOP/SIGCONT, a full disk where a tmpfs can be
mounted, a client killed mid-call, hostile connections), and the store checked after every
round (see :mod:`benchmarks.faults`): every acknowledged event stored exactly once where it
was acknowledged, streams and ``$all`` gapless and ordered, the subscriber's deliveries an
in-order prefix of ``$all``, and every restart after a kill reported as one.

The figures are recorded as the test's ``figures`` property, which the test session
prints at its end (``tests/conftest.py``), so CI's log shows them.
"""

from __future__ import annotations

import pytest

from benchmarks.faults import run_campaign

SEED = 20261206
KILLS = 20


@pytest.mark.slow
def test_a_seeded_fault_campaign_loses_duplicates_and_reorders_nothing(tmp_path,
                                                                      record_property):
    report = run_campaign(tmp_path, SEED, kills=KILLS, appenders=2, disk_size="64m")
    record_property("figures", report.summary())
    print(report.summary())
    assert report.kills >= KILLS
    assert report.acknowledged > 0 and report.delivered > 0
    assert (report.lost, report.duplicated) == (0, 0)
    assert report.violations == []
    if report.faults["full"] and "tmpfs" in report.disk:
        assert report.full_disk_refused > 0  # the full disk was met, and refused cleanly
