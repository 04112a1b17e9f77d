"""Artefact detection against the ground truth drawn with the artefacts (slideqc/synthetic.py).

Tolerances are the issue's (27): found area within 20 % of the truth's, IoU >= 0.7 with the truth
mask, at the artefact work size. "No artefact" means a found area below NONE_SHARE of the slide
for every kind: the smallest artefact in the set covers at least 20 times that (checked from the
truth, test_none_is_far_below_the_smallest_artefact).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from BaseImage import BaseImage
from slideqc import algorithms, qc, synthetic
from slideqc.artefacts import KINDS, ON_COVERSLIP, WORK_SIZE, Artefacts, find_artefacts, over_tissue
from slideqc.output import results

from .conftest import CACHE

AREA_TOLERANCE = 0.20  # the issue: found area within 20 % of the truth area
MIN_IOU = 0.7  # the issue: overlap with the truth mask
NONE_SHARE = 0.001  # "no artefact": less than 0.1 % of the slide per kind
TISSUE_WORK_SIZE = "1.25x"  # where the QC finds tissue (Otsu on gray), as the QC step will pass it

WITH_ARTEFACTS = [f"art_{kind}" for kind in synthetic.ARTEFACT_SET] + [
    "art_ihc_ink_black",
    "art_blurred_ink_bubble",
    "art_blurred_debris_fold",
]
WITHOUT_ARTEFACTS = ["art_clean", "art_ihc_clean", "art_faint_15", "art_faint_25"]


@pytest.fixture(scope="session")
def artefact_dir() -> Path:
    folder = CACHE / "artefacts_v1"
    synthetic.write_set(synthetic.artefact_specs(), folder)
    return folder


@pytest.fixture(scope="session")
def painted_ring(real_slide: Path, tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("painted") / "cmu_blue_ring.svs"
    synthetic.paint_artefacts(real_slide, dest, synthetic.REAL_SLIDE_RING)
    return dest


def _found(path: Path) -> tuple[Artefacts, tuple[int, int]]:
    slide = BaseImage(path)
    rgb = slide.get_image(WORK_SIZE)
    tissue = algorithms.tissue_mask(slide.get_image(TISSUE_WORK_SIZE))
    return find_artefacts(rgb, tissue, slide.microns_per_pixel(WORK_SIZE)), rgb.shape[:2]


def _truth_at(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A truth mask at the work size: the work pixels at least half covered."""
    return algorithms.area_fraction(mask, shape) >= 0.5


def _assert_matches(found: np.ndarray, truth: np.ndarray, label: str) -> None:
    ratio = found.sum() / truth.sum()
    iou = (found & truth).sum() / (found | truth).sum()
    assert abs(ratio - 1) <= AREA_TOLERANCE, f"{label}: found area {ratio:.3f} x the truth's"
    assert iou >= MIN_IOU, f"{label}: IoU {iou:.3f}"


@pytest.mark.parametrize("name", WITH_ARTEFACTS)
def test_each_artefact_is_found_as_drawn(artefact_dir: Path, name: str):
    path = artefact_dir / f"{name}.svs"
    truth = synthetic.read_artefact_masks(path)
    assert truth, f"{name} has no truth masks"
    found, shape = _found(path)
    for kind in KINDS:
        if kind in truth:
            _assert_matches(found.of(kind), _truth_at(truth[kind], shape), f"{name} {kind}")
        else:
            assert found.of(kind).mean() < NONE_SHARE, f"{name}: {kind} found on {100 * found.of(kind).mean():.2f} %"


@pytest.mark.parametrize("name", WITHOUT_ARTEFACTS)
def test_clean_twins_and_faint_stains_have_none(artefact_dir: Path, name: str):
    found, _ = _found(artefact_dir / f"{name}.svs")
    for kind in KINDS:
        assert found.of(kind).mean() < NONE_SHARE, f"{name}: {kind} found on {100 * found.of(kind).mean():.2f} %"


def test_none_is_far_below_the_smallest_artefact(artefact_dir: Path):
    shares = [
        share["slide_fraction"]
        for name in WITH_ARTEFACTS
        for share in synthetic.read_truth(artefact_dir / f"{name}.svs").artefacts.values()
    ]
    assert min(shares) >= 20 * NONE_SHARE


def test_ink_on_glass_is_not_tissue_and_tissue_under_it_stays(artefact_dir: Path):
    path = artefact_dir / "art_ink_blue.svs"
    found, shape = _found(path)
    ink = _truth_at(synthetic.read_artefact_masks(path)["ink"], shape)
    true_tissue = _truth_at(synthetic.read_truth_masks(path)[0], shape)
    # The truth of which ink pixels lie over tissue is the tissue truth. Judged on the ink found
    # and true, 2 px (20 µm at 1.25x) away from the tissue's edge, where the 5 x 5 px median decides.
    ink &= found.ink
    glass = algorithms.erode(~true_tissue, 2)
    inside = algorithms.erode(true_tissue, 2)
    assert (found.tissue & ink & glass).sum() <= 0.1 * (ink & glass).sum()
    assert (found.tissue & ink & inside).sum() >= 0.95 * (ink & inside).sum()


def test_the_real_slide_has_no_artefact(real_slide: Path):
    found, _ = _found(real_slide)
    for kind in KINDS:
        assert found.of(kind).mean() < NONE_SHARE, f"CMU-1-Small-Region: {kind} on {100 * found.of(kind).mean():.2f} %"


def test_a_blue_ring_painted_on_the_real_slide_is_found_and_passes(painted_ring: Path):
    """The issue's example: a sharp real slide with a blue ring around its tissue is no longer sent to a rescan.

    Not the synthetic tolerance: where the ring crosses CMU-1's dense epidermis, whose hematoxylin
    lies ~15 degrees from the blue ink's colour, unmixing cannot part them, and 0.77 of the ring's
    area is found (IoU 0.74; docs/artefacts.md). The bounds below are that, no looser, and the
    verdict is what the lab reads.
    """
    found, shape = _found(painted_ring)
    truth = _truth_at(synthetic.read_artefact_masks(painted_ring)["ink"], shape)
    ratio = found.ink.sum() / truth.sum()
    iou = (found.ink & truth).sum() / (found.ink | truth).sum()
    assert 0.75 <= ratio <= 1.2 and iou >= 0.7, (ratio, iou)
    row = results.result_from_slide(qc.run_steps(painted_ring, tile_threads=1), blur_max=0.05)
    assert row.status == "ok" and row.ink_percent > 0  # was RESCAN, 23.4 % "blurry" (the issue's table)


def test_painted_slide_keeps_the_source_magnification_and_pixel_size(painted_ring: Path, real_slide: Path):
    painted, source = BaseImage(painted_ring), BaseImage(real_slide)
    assert painted.dimensions == source.dimensions
    assert (painted.objective_power, painted.mpp) == (source.objective_power, source.mpp)
    assert painted.level_downsamples[:3] == pytest.approx((1.0, 4.0, 16.0), rel=0.01)


# --- small functions on hand-made arrays -----------------------------------------------------------

GLASS = 250  # the synthetic slides' glass: 255 exp(-0.02)
MPP = 4.0  # 2.5x


def _paint(rgb: np.ndarray, mask: np.ndarray, od) -> None:
    """Multiply the light through ``mask`` by exp(-od), as a layer of that OD on the coverslip does."""
    rgb[mask] = np.round(rgb[mask] * np.exp(-np.asarray(od, float))).astype(np.uint8)


def _glass(shape=(300, 300)) -> np.ndarray:
    return np.full((*shape, 3), GLASS, np.uint8)


def test_a_drawn_circle_rim_is_a_bubble_filled():
    rgb = _glass()
    rim = np.zeros(rgb.shape[:2], np.uint8)
    cv2.circle(rim, (150, 150), 60, 1, 3)  # a 3 px (12 µm) rim around a 480 µm disk
    _paint(rgb, rim > 0, [1.0, 1.0, 1.0])
    disk = np.zeros_like(rim)
    cv2.circle(disk, (150, 150), 61, 1, -1)
    found = find_artefacts(rgb, rim > 0, MPP)
    _assert_matches(found.bubble, disk > 0, "drawn bubble")
    assert not found.tissue.any()  # a rim on glass is not tissue


def test_a_drawn_line_across_is_an_edge():
    rgb = _glass()
    line = np.zeros(rgb.shape[:2], np.uint8)
    cv2.line(line, (0, 100), (299, 130), 1, 8)  # 32 µm wide, 1.2 mm long
    _paint(rgb, line > 0, [1.0, 1.0, 1.0])
    found = find_artefacts(rgb, line > 0, MPP)
    _assert_matches(found.edge, line > 0, "drawn edge")
    assert not (found.debris | found.bubble | found.ink).any()


def test_blue_over_he_is_ink_and_stays_tissue():
    """A patch of H&E colour (hematoxylin 0.4, eosin 0.5) half under a blue ink blot."""
    rgb = _glass()
    tissue = np.zeros(rgb.shape[:2], bool)
    tissue[:, 150:] = True
    stain = 0.4 * np.array([0.650, 0.704, 0.286]) + 0.5 * np.array([0.072, 0.990, 0.105])
    _paint(rgb, tissue, stain)
    blot = np.zeros(rgb.shape[:2], np.uint8)
    cv2.circle(blot, (150, 150), 80, 1, -1)
    _paint(rgb, blot > 0, synthetic.INK_OD["blue"])
    found = find_artefacts(rgb, tissue | (blot > 0), MPP)
    _assert_matches(found.ink, blot > 0, "blue blot")
    under = (blot > 0) & tissue
    assert found.tissue[under].mean() > 0.95  # the tissue under the ink stays tissue
    assert not found.tissue[(blot > 0) & ~tissue].any()  # the ink on glass is not


def test_over_tissue_reads_the_stain_left():
    mask = np.ones((5, 20), bool)
    stain = np.zeros((5, 20), np.uint8)
    stain[:, 10:] = 10  # 10 / 32 = 0.31 OD of stain on the right
    assert over_tissue(mask, stain).sum() == 5 * 10


def test_artefacts_masks_by_kind():
    masks = {kind: np.zeros((2, 2), bool) for kind in KINDS}
    masks["fold"][0, 0] = True
    found = Artefacts(**masks, tissue=np.ones((2, 2), bool))
    assert found.union().sum() == 1 and found.of("fold")[0, 0]
    assert set(ON_COVERSLIP) == set(KINDS) - {"fold"}
    with pytest.raises(ValueError):
        found.of("smudge")


# --- the synthetic artefacts themselves ------------------------------------------------------------


def test_truth_shares_agree_with_the_masks(artefact_dir: Path):
    path = artefact_dir / "art_bubble.svs"
    truth = synthetic.read_truth(path)
    tissue, blur = synthetic.read_truth_masks(path)
    bubble = synthetic.read_artefact_masks(path)["bubble"]
    assert truth.artefacts["bubble"]["slide_fraction"] == pytest.approx(bubble.mean())
    assert truth.artefacts["bubble"]["tissue_fraction"] == pytest.approx((bubble & tissue).sum() / tissue.sum())
    assert truth.percent_blurry_clean == 0.0 and not blur.any()


def test_blurred_truth_on_clean_tissue(artefact_dir: Path):
    path = artefact_dir / "art_blurred_debris_fold.svs"
    truth = synthetic.read_truth(path)
    tissue, blur = synthetic.read_truth_masks(path)
    union = np.logical_or.reduce(list(synthetic.read_artefact_masks(path).values()))
    expected = 100 * (blur & ~union).sum() / (tissue & ~union).sum()
    assert truth.percent_blurry_clean == pytest.approx(expected)
    assert 20 < truth.percent_blurry_clean < 40  # ~30 % asked


def test_old_truth_files_still_read(tmp_path: Path):
    (tmp_path / "old.truth.json").write_text(
        '{"tissue_fraction": 0.3, "percent_blurry": 1.0, "blur_sigma_um": [], "mask_downsample": 16, "spec": {}}'
    )
    truth = synthetic.read_truth(tmp_path / "old.svs")
    assert truth.artefacts == {} and truth.percent_blurry_clean is None


def test_an_artefact_free_spec_draws_no_artefact_layer():
    spec = synthetic.SlideSpec(name="x.svs", width=1024, height=768, seed=3)
    assert synthetic._make_layout(spec).artefacts is None
    with pytest.raises(ValueError):
        synthetic.Artefact("smudge")
    with pytest.raises(ValueError):
        synthetic.SlideSpec(name="y.svs", stain_kind="pap")
