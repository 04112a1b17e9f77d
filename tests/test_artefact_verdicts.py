"""Verdicts that stay honest on slides with artefacts: the QC end to end against the drawn truth.

The artefacts' own masks are checked in tests/test_artefacts.py (area and IoU per kind); here the
slide's numbers and its status: blur judged on the tissue free of artefacts, a fold that needs a
re-cut, and a slide whose artefacts leave too little tissue to judge.
"""

from __future__ import annotations

import pytest

from slideqc import qc, synthetic
from slideqc.output import results
from slideqc.synthetic import Artefact, SlideSpec
from tests.conftest import _cached_set
from tests.helpers import only_run_dir, run_script

SHARP = [f"art_{kind}" for kind in synthetic.ARTEFACT_SET] + ["art_ihc_ink_black"]
BLURRED = ["art_blurred_ink_bubble", "art_blurred_debris_fold"]
TWIN = {name: "art_ihc_clean" if "ihc" in name else "art_clean" for name in SHARP}
# Beyond the artefact set: a fold over a third of the tissue, and a green blot over nine tenths of it.
VERDICT_SPECS = [
    SlideSpec(
        name="wide_fold.svs",
        seed=synthetic.ARTEFACT_SEED,
        artefacts=(Artefact("fold", center=None, size_um=1400, width_um=450, angle_deg=30, shift_um=60),),
    ),
    SlideSpec(
        name="inked_over.svs",
        seed=synthetic.ARTEFACT_SEED,
        artefacts=(Artefact("ink", center=(0.5, 0.5), size_um=1700, shape="blob", aspect=0.8, colour="green"),),
    ),
]


@pytest.fixture(scope="module")
def artefact_dir():
    return _cached_set("artefacts_v1", synthetic.artefact_specs())


@pytest.fixture(scope="module")
def verdict_dir():
    return _cached_set("verdicts_v1", VERDICT_SPECS)


def row_of(path) -> results.SlideResult:
    return results.result_from_slide(qc.run_steps(path, tile_threads=1), blur_max=0.05)


@pytest.fixture(scope="module")
def rows(artefact_dir) -> dict[str, results.SlideResult]:
    return {p.stem: row_of(p) for p in sorted(artefact_dir.glob("*.svs"))}


@pytest.mark.parametrize("name", SHARP)
def test_a_sharp_slide_with_an_artefact_is_judged_as_its_clean_twin(name, rows):
    row, twin = rows[name], rows[TWIN[name]]
    assert row.status == "ok", (row.status, row.reason, row.percent_blurry)
    assert row.percent_blurry == pytest.approx(twin.percent_blurry, abs=1.5)  # the tolerance
    # Ink and debris on the glass no longer count as tissue (before: 3 to 28 points more than the twin).
    assert row.tissue_fraction == pytest.approx(twin.tissue_fraction, abs=0.03)
    assert row.artefacts_found and row.usable_percent < 100


@pytest.mark.parametrize("name", BLURRED)
def test_a_blurred_slide_with_artefacts_is_judged_on_its_clean_tissue(name, rows, artefact_dir):
    truth = synthetic.read_truth(artefact_dir / f"{name}.svs")
    row = rows[name]
    assert row.status == "rescan"
    assert row.percent_blurry == pytest.approx(truth.percent_blurry_clean, abs=2.0)  # the tolerance


@pytest.mark.parametrize("name", ["art_clean", "art_ihc_clean", "art_faint_15", "art_faint_25"])
def test_a_slide_without_artefacts_reports_none(name, rows):
    row = rows[name]
    assert not row.artefacts_found and row.usable_percent == 100.0 and row.recut is False


def test_a_fold_over_a_third_of_the_tissue_needs_a_recut(verdict_dir):
    truth = synthetic.read_truth(verdict_dir / "wide_fold.svs")
    folded = 100 * truth.artefacts["fold"]["tissue_fraction"]
    assert folded > 30  # the slide is what it should be: well over fold_max (10 %)
    row = row_of(verdict_dir / "wide_fold.svs")
    assert row.status == "recut" and row.recut is True and row.fold_max == 0.1
    assert row.fold_percent == pytest.approx(folded, rel=0.2)  # found area within 20 % of the truth's


def test_artefacts_over_most_of_the_tissue_leave_it_unjudged(verdict_dir):
    truth = synthetic.read_truth(verdict_dir / "inked_over.svs")
    assert truth.artefacts["ink"]["tissue_fraction"] > 0.9  # the blot covers nine tenths of the section
    row = row_of(verdict_dir / "inked_over.svs")
    assert row.status == "cannot judge" and row.rescan is None and row.recut is None
    assert row.reason.startswith("too little tissue free of artefacts: ")
    assert row.usable_percent < 25  # JudgeLimits.min_usable_share


def test_a_batch_says_each_verdict_everywhere(artefact_dir, verdict_dir, tmp_path):
    """pipeline.py on a folder of them: the statuses in results.tsv, the summary line and run.json."""
    data = tmp_path / "data"
    data.mkdir()
    for source in (artefact_dir / "art_ink_blue.svs", verdict_dir / "wide_fold.svs", verdict_dir / "inked_over.svs"):
        (data / source.name).symlink_to(source)
    proc = run_script("pipeline.py", "--data-dir", str(data), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 5, proc.stderr[-2000:]  # 5: some slides cannot be judged, none failed
    run_dir = only_run_dir(tmp_path / "out")
    statuses = {r["file_name"]: r["status"] for r in results.read_results(run_dir / "results.tsv")}
    assert statuses == {"art_ink_blue.svs": "ok", "wide_fold.svs": "recut", "inked_over.svs": "cannot judge"}
    assert "3 slide(s): 1 passed (ok), 0 RESCAN, 1 RE-CUT, 1 cannot be judged, 0 failed" in proc.stdout
    assert "wide_fold.svs: artefacts: fold " in proc.stderr and "-> RECUT (a fold)" in proc.stderr  # the log
