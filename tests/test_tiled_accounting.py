"""Tile by tile, the counts and the counted-blur mask do not depend on how the level is cut.

Properties, not constants: with tiles whose seams cut through the tissue mask's pixels
(100 blur pixels is 12.5 tissue pixels at 10x over 1.25x), with either focus measure, the
answer is the one a single tile over the whole level gives; tissue thinner than the blur
window is counted whole, in the mask as in the fraction.
"""

from __future__ import annotations

import numpy as np
import pytest

from slideqc import algorithms, qc, tiled

WHOLE = 1 << 14  # one tile over the whole blur work level: no seams


@pytest.fixture(scope="module")
def segmented(demo_slides):
    return qc.segment_tissue(qc.load_slide(demo_slides[1]))  # ~30 % of the tissue blurred


@pytest.mark.parametrize("measure", algorithms.MEASURES)
def test_seams_that_cut_tissue_pixels_change_nothing(segmented, measure):
    def measure_with(tile_size):
        return tiled.measure_blur(
            segmented, "10x", segmented.masks["tissue"], 7.0, tile_size=tile_size, workers=1, measure=measure
        )

    cut, whole = measure_with(100), measure_with(WHOLE)
    assert whole.tiles_total == 1 and cut.tiles_total > 100
    assert cut.counts == whole.counts
    assert (cut.mask == whole.mask).all()
    assert 0.2 < cut.fraction < 0.45  # the slide's ~30 % (its truth is checked in test_ground_truth.py)


def test_thin_tissue_is_counted_whole_in_the_mask_too(segmented, monkeypatch):
    """A strip one tissue pixel wide (8 µm: 8 blur pixels, fewer than the 28 the erosion takes), all blurry."""
    monkeypatch.setattr(tiled.algorithms, "blur_mask", lambda rgb, *args, **kwargs: np.ones(rgb.shape[:2], bool))
    strip = np.zeros_like(segmented.masks["tissue"])
    strip[50:150, 100] = True
    found = tiled.measure_blur(segmented, "10x", strip, 7.0, tile_size=100, workers=1)
    assert found.counts.inner == 0 and found.fraction == 1.0
    assert (found.mask == strip).all()


def test_a_tile_size_below_one_is_refused(segmented):
    with pytest.raises(ValueError, match=r"^tile_size must be >= 1, got 0$"):
        tiled.measure_blur(segmented, "10x", segmented.masks["tissue"], 7.0, tile_size=0)


def test_a_tile_of_one_pixel_is_allowed(segmented):
    """The smallest tile: on a 32 px blur work level, one tile per pixel gives the whole level's counts."""
    one = tiled.measure_blur(segmented, "32", segmented.masks["tissue"], 1.0, tile_size=1, workers=1)
    whole = tiled.measure_blur(segmented, "32", segmented.masks["tissue"], 1.0, tile_size=WHOLE, workers=1)
    assert one.tiles_total == 32 * 24 and one.counts == whole.counts and (one.mask == whole.mask).all()
