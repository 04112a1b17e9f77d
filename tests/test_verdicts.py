"""The rescan rule at, just below and just above the limit, in every place a verdict is made and shown.

The expectation is the rule as the README states it, by hand: a slide is flagged when
*more than* ``blur_max`` of its tissue is blurry; exactly at the limit it is not.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest

from slideqc import cli, qc
from slideqc.output import report, results
from slideqc.settings import DEFAULTS, QCSettings, rescan_needed

LIMIT = 0.05
# (blurry fraction, flagged?) by hand: at the limit no, a hair above yes, a hair below no.
CASES = [(0.05, False), (0.0500001, True), (0.0499999, False), (0.0, False), (1.0, True)]


@pytest.fixture(scope="module")
def checked(demo_slides):
    """A slide through every QC step (its measured fraction is then set to each case)."""
    return qc.run_steps(demo_slides[0], tile_threads=1)


@pytest.mark.parametrize("fraction, flagged", CASES)
def test_the_rule(fraction, flagged):
    assert rescan_needed(fraction, LIMIT) is flagged


@pytest.mark.parametrize("fraction, flagged", CASES)
def test_every_place_a_verdict_is_made_and_shown(checked, fraction, flagged):
    s = copy.deepcopy(checked)
    s.found.add(replace(s.found[qc.Blur], fraction=fraction))
    assert qc.needs_rescan(s, LIMIT) is flagged  # the QC step
    assert qc.describe(s).endswith(" -> RESCAN") is flagged  # the log line
    row = results.result_from_slide(s, LIMIT)
    assert row.rescan is flagged and row.blur_max == LIMIT  # the results row
    assert row.percent_blurry == round(100 * fraction, 2)
    table = cli.summary_table([row])  # the summary printed at the end
    assert table.splitlines()[1].endswith("RESCAN" if flagged else "ok")
    page = report.render_report([row], QCSettings(blur_max=LIMIT))  # the report
    assert f"<tr class='{'rescan' if flagged else 'ok'}'" in page
    assert f"id='count-rescan'>{int(flagged)}<" in page


def test_the_limit_is_the_setting_not_a_constant(checked):
    s = copy.deepcopy(checked)
    s.found.add(replace(s.found[qc.Blur], fraction=0.2))
    assert results.result_from_slide(s, 0.25).rescan is False
    assert results.result_from_slide(s, 0.15).rescan is True
    assert DEFAULTS.blur_max == LIMIT  # the README's 5 %


def test_a_slide_that_cannot_be_judged_is_never_flagged(checked):
    s = copy.deepcopy(checked)
    # No tissue: a blur figure means nothing.
    s.found.add(replace(s.found[qc.Tissue], fraction=0.0))
    s.found.add(replace(s.found[qc.Blur], fraction=1.0))
    assert qc.needs_rescan(s, LIMIT) is False
    row = results.result_from_slide(s, LIMIT)
    assert row.status == results.CANNOT_JUDGE and row.rescan is None and row.error.startswith(f"{s.name}: no tissue")
