"""Every results.tsv column against values known from the slide's own making, on a slide that is not square."""

from __future__ import annotations

import pytest

from slideqc import qc, synthetic
from slideqc.output import results, run
from tests.conftest import CACHE

# 40x, 0.25 µm per pixel, 6144 wide and 2048 high: 1.25x is a downsample of 32, 10x of 4.
SPEC = synthetic.SlideSpec(
    name="wide_40x.svs", width=6144, height=2048, blurred_fraction=0.3, blur_sigma_um=(2.0, 3.0), seed=77
)


@pytest.fixture
def row(tmp_path):
    """The slide checked in this process, its row written and read back.

    In every test, not once per module: mutation testing runs only the tests that called
    the mutated function, and a module fixture's calls count for its first test alone.
    """
    slide = synthetic.write_set([SPEC], CACHE / "columns")[0]
    run_dir = tmp_path
    s = qc.run_steps(slide, tile_threads=1)
    results.write_results(run_dir, [run.save_slide(s, 0.05, run_dir)])
    (found,) = results.read_results(run_dir / "results.tsv")
    return found, synthetic.read_truth(slide)


def test_identity_and_size_columns(row):
    found, _ = row
    # 30 % of its tissue is blurry in truth: a rescan
    assert found["file_name"] == "wide_40x.svs" and found["status"] == "rescan" and found["error"] == ""
    assert found["format"] == "aperio"
    assert float(found["objective_power"]) == 40.0 and float(found["mpp"]) == 0.25
    assert (found["width"], found["height"]) == ("6144", "2048")  # width first: the long side


def test_work_size_columns(row):
    found, _ = row
    assert found["image_work_size"] == "1.25x" and found["tissue_pixels"] == "192x64"  # 6144 / 32 x 2048 / 32
    assert float(found["tissue_mpp"]) == 8.0  # 0.25 µm x 32
    assert found["blur_work_size"] == "10x" and found["blur_pixels"] == "1536x512"  # / 4
    assert float(found["blur_mpp"]) == 1.0
    assert found["artefact_work_size"] == "1.25x" and found["artefact_pixels"] == "192x64"  # as the tissue's
    assert float(found["artefact_mpp"]) == 8.0


def test_measurement_columns_against_the_truth(row):
    found, truth = row
    # The 1.25x mask is dilated by one 8 µm pixel (tissue_mask): on a slide 64 pixels high that adds
    # ~4 points of the slide, never takes any away.
    assert truth.tissue_fraction <= float(found["tissue_fraction"]) <= truth.tissue_fraction + 0.05
    assert float(found["percent_blurry"]) == pytest.approx(truth.percent_blurry, abs=2.5)
    assert found["rescan"] == "true" and float(found["blur_max"]) == 0.05  # ~30 % blurred, over 5 %
    assert found["outputs"] == "slides/wide_40x"


def test_seconds_columns(row):
    found, _ = row
    steps = {k: float(found[f"seconds_{k}"]) for k in ("load", "tissue", "artefacts", "blur", "save")}
    assert steps["load"] >= 0  # opening a cached slide can take less than the 1 ms the column keeps
    assert all(steps[k] > 0 for k in ("tissue", "artefacts", "blur", "save"))
    assert float(found["seconds_total"]) == pytest.approx(sum(steps.values()), abs=0.002)  # rounded to 1 ms each
    # The blur step reads and filters 64 times the tissue step's pixels: it is the slower one.
    assert steps["blur"] > steps["tissue"]


# --- each column's rounding and each cell's text, by hand -------------------------------------


@pytest.fixture
def measured(demo_slides):
    """A demo slide through tissue segmentation, its measurements then set to values with many digits."""
    s = qc.segment_tissue(qc.load_slide(demo_slides[0]))
    s.mpp = 0.2468013579  # 40x: 1.25x is a downsample of 32, 10x of 4
    s.found.add(qc.Tissue(fraction=0.123456789, stain_contrast=s.found[qc.Tissue].stain_contrast))
    s.found.add(qc.Blur(fraction=0.0123456789, tiles_read=1, tiles_total=1))
    none = qc.Share(0.0, 0.0)
    s.found.add(
        qc.Artefacts(
            work_size="2.5x",
            pixels="512x384",
            mpp=3.9488217264,
            ink=qc.Share(of_tissue=0.0123456789, on_glass=0.00987654321),
            bubble=none,
            debris=none,
            edge=none,
            fold=qc.Share(of_tissue=0.0555555, on_glass=0.0),
            usable_share=0.932098765,
            recut=False,
        )
    )
    s.ran_with(fold_max=0.1)
    s.timings = {"load": 0.00123456, "tissue": 1.23456789, "artefacts": 0.0456789, "blur": 2.3456789, "save": 0.0005999}
    return s


def test_each_column_is_rounded_as_documented(measured):
    row = results.result_from_slide(measured, 0.05)
    assert row.tissue_mpp == 7.8976 and row.blur_mpp == 0.9872  # 0.2468013579 x 32 = 7.89764..., x 4 = 0.98720...
    assert row.tissue_fraction == 0.1235 and row.percent_blurry == 1.23  # 4 digits; percent to 2
    assert (row.seconds_load, row.seconds_tissue, row.seconds_blur, row.seconds_save) == (0.001, 1.235, 2.346, 0.001)
    assert row.seconds_artefacts == 0.046 and row.artefact_mpp == 3.9488  # 1 ms; µm per pixel to 4 digits
    assert (row.ink_percent, row.ink_glass_percent, row.fold_percent) == (1.23, 0.99, 5.56)  # percent to 2
    assert row.bubble_percent == 0.0 and row.usable_percent == 93.21 and row.recut is False
    assert row.seconds_total == 3.628  # 3.62776 s in all, to 1 ms
    assert row.outputs == "" and row.rescan is False


def test_results_cells_by_hand(tmp_path):
    rows = [
        results.SlideResult("=1+2.svs", rescan=False, format="two\nlines", error="one\n  line", mpp=0.5),
        results.SlideResult("'quoted.svs", status="rescan", rescan=True, tissue_fraction=None),
        results.SlideResult("plain.svs", format="cr\r\nlf"),
    ]
    path = results.write_results(tmp_path, rows)
    raw = path.read_bytes().decode("utf-8")
    assert "\r\n" not in raw.replace('"cr\r\nlf"', "")  # rows end in \n alone
    assert raw.startswith("\t".join(results.COLUMNS) + "\n")
    # Sorted by name: ' sorts before =. A ' doubled; None empty; a formula marked as text; the error one line.
    line = next(line for line in raw.split("\n") if line.startswith("''quoted.svs\t"))
    cells = dict(zip(results.COLUMNS, line.split("\t"), strict=True))
    assert {k: v for k, v in cells.items() if v} == {"file_name": "''quoted.svs", "status": "rescan", "rescan": "true"}
    assert '\n\'=1+2.svs\tok\tone line\t"two\nlines"\t\t0.5\t' in raw
    assert raw.count("\tfalse\t") == 1
    back = results.read_results(path)
    assert [r["file_name"] for r in back] == ["'quoted.svs", "=1+2.svs", "plain.svs"]
    assert [r["rescan"] for r in back] == ["true", "false", ""]
    assert back[1]["error"] == "one line" and back[1]["format"] == "two\nlines" and back[2]["format"] == "cr\r\nlf"
