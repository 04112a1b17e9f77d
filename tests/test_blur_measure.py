"""The focus measures against ground truth on pale stains and fine blur, and the normalized one's invariance.

Bounds are tighter than the 5 % rescan decision they serve; the figures they
come from are in docs/blur_measure.md (benchmarks/calibrate_blur_measure.py).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from slideqc import algorithms, qc, synthetic, tiled
from tests.conftest import CACHE

SIZE = dict(width=4096, height=3072)  # 40x: a 1024 x 768 blur work level, ~1 s to make


def _spec(name: str, **kw) -> synthetic.SlideSpec:
    return synthetic.SlideSpec(name=f"{name}.svs", **SIZE, **kw)


SPECS = {
    "pale_sharp": _spec("pale_sharp", seed=11, stain=0.25),
    "pale_blurred": _spec("pale_blurred", seed=11, stain=0.25, blurred_fraction=0.3, blur_sigma_um=(2.0, 2.0)),
    "faint_sharp": _spec("faint_sharp", seed=11, stain=0.15),
    "too_faint": _spec("too_faint", seed=11, stain=0.1, blurred_fraction=0.3, blur_sigma_um=(2.0, 2.0)),
    "one_micron": _spec("one_micron", seed=23, blurred_fraction=0.3, blur_sigma_um=(1.0, 1.0)),
    "near_the_line": _spec("near_the_line", seed=20, blurred_fraction=0.05, blur_sigma_um=(2.0, 2.0)),
}


@pytest.fixture(scope="module")
def slides():
    paths = synthetic.write_set(list(SPECS.values()), CACHE / "blur_measure")
    return dict(zip(SPECS, paths, strict=True))


def _qc(path, measure: str = "normalized"):
    """Tissue, contrast and blur of a slide as the QC measures it; the blur with ``measure`` at its default threshold."""
    s = qc.segment_tissue(qc.load_slide(path))
    found = tiled.measure_blur(s, s.blur_work_size, s.masks["tissue"], 7.0, None, measure=measure)
    return s, qc.judge(s), found


@pytest.mark.parametrize("name, bound", [("pale_sharp", 3.0), ("faint_sharp", 3.0)])
def test_sharp_pale_tissue_is_not_blurry(slides, name, bound):
    truth = synthetic.read_truth(slides[name])
    assert truth.percent_blurry == 0.0
    s, reason, found = _qc(slides[name])
    assert s.found[qc.Tissue].fraction == pytest.approx(truth.tissue_fraction, abs=0.05)  # the tissue is found
    assert 100 * found.fraction < bound
    assert reason == ""


def test_the_laplacian_reads_pale_sharp_tissue_as_blurry(slides):
    """Why the normalized measure exists: HistoQC's fixed threshold follows the stain, not the focus."""
    _, _, found = _qc(slides["pale_sharp"], measure="laplacian")
    assert 100 * found.fraction > 50


@pytest.mark.parametrize("name, points", [("pale_blurred", 2.5), ("one_micron", 2.0), ("near_the_line", 1.5)])
def test_blurred_tissue_matches_the_truth(slides, name, points):
    path = slides[name]
    truth = synthetic.read_truth(path)
    s, reason, found = _qc(path)
    assert 100 * found.fraction == pytest.approx(truth.percent_blurry, abs=points)
    assert reason == ""
    # Where it says blurry is where the blur is: inside the measured tissue the masks agree.
    true_tissue, true_blur = synthetic.read_truth_masks(path)
    blur = algorithms.resize_mask(found.mask, true_tissue.shape)
    inner = algorithms.erode(algorithms.resize_mask(s.masks["tissue"], true_tissue.shape) & true_tissue, 2)
    assert (blur[inner] == true_blur[inner]).mean() > 0.95


def test_tissue_too_faint_to_judge_is_reported(slides):
    """At 10 % of the usual stain the noise hides a 2 µm blur: the slide must say it cannot judge, not pass."""
    truth = synthetic.read_truth(slides["too_faint"])
    s, reason, found = _qc(slides["too_faint"])
    assert s.found[qc.Tissue].fraction == pytest.approx(truth.tissue_fraction, abs=0.05)
    assert reason.startswith("tissue too faint to judge its focus")
    assert s.found[qc.Tissue].stain_contrast < 12  # gray levels: 10 % of the usual stain's ~70


def _tissue_like(shape=(240, 320), seed=5, blur_px: float = 0.0) -> np.ndarray:
    """RGB uint8 stain-like texture with detail at 1 to 12 px and ~120 gray levels of contrast."""
    rng = np.random.default_rng(seed)
    density = sum(
        cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), s) * s for s in (1.0, 3.0, 12.0)
    )
    density = (density - density.min()) / np.ptp(density)
    rgb = np.stack([255 - 120 * density, 255 - 200 * density, 255 - 90 * density], axis=-1)
    if blur_px:
        rgb = cv2.GaussianBlur(rgb, (0, 0), blur_px)
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


INSIDE = (slice(30, -30), slice(30, -30))  # away from the border's reflection


@pytest.mark.parametrize("seed", [5, 6])
@pytest.mark.parametrize("k", [0.35, 0.5, 0.7])
def test_normalized_measure_ignores_the_stains_contrast(k, seed):
    """Scaling the stain's absorbance (255 - rgb) by k leaves the normalized response as it was.

    Exactly so in real numbers; in 8 bits the scaled image is rounded again, and that
    rounding is new fine detail, worth a few percent at a third of the contrast.
    (Where a blur has left little but the rounding and the sensor's noise, the measure
    reads that noise: such slides cannot be judged, see settings.JudgeLimits.)
    """
    rgb = _tissue_like(seed=seed)
    scaled = (255 - np.clip(np.round(k * (255 - rgb.astype(np.float32))), 0, 255)).astype(np.uint8)
    base = algorithms.blur_response(rgb, 3.0, measure="normalized")[INSIDE]
    change = np.abs(algorithms.blur_response(scaled, 3.0, measure="normalized")[INSIDE] / base - 1)
    assert np.median(change) < 0.05
    assert np.percentile(change, 99) < 0.15
    # The Laplacian measure, for comparison, scales with k.
    lap = algorithms.blur_response(rgb, 3.0, measure="laplacian")[INSIDE]
    lap_scaled = algorithms.blur_response(scaled, 3.0, measure="laplacian")[INSIDE]
    assert np.median(lap_scaled / lap) == pytest.approx(k, rel=0.1)


def test_normalized_measure_falls_with_blur():
    sharp = algorithms.blur_response(_tissue_like(), 3.0, measure="normalized")[INSIDE]
    blurred = algorithms.blur_response(_tissue_like(blur_px=2.0), 3.0, measure="normalized")[INSIDE]
    assert np.median(sharp) > 2 * np.median(blurred)
    assert np.percentile(sharp, 5) > np.percentile(blurred, 95)


def test_measures_are_named_and_refused_when_unknown():
    assert algorithms.DEFAULT_MEASURE in algorithms.MEASURES
    assert set(algorithms.DEFAULT_THRESHOLDS) == set(algorithms.MEASURES)
    with pytest.raises(ValueError, match="measure must be one of"):
        algorithms.blur_response(_tissue_like(), 3.0, measure="tenengrad")
