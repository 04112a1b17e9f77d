"""The pure QC algorithms on small arrays with known answers."""

import numpy as np
import pytest

from slideqc import algorithms


def _stained(shape=(200, 300), seed=0):
    """Glass with a textured stained square in the middle: rows 50-149, cols 100-199."""
    rng = np.random.default_rng(seed)
    image = np.full(shape + (3,), 240, np.uint8)
    texture = rng.integers(60, 200, size=(100, 100, 3)).astype(np.uint8)
    image[50:150, 100:200] = texture
    return image


def test_tissue_mask_finds_the_stained_square():
    mask = algorithms.tissue_mask(_stained(), dilation_radius=0)
    truth = np.zeros(mask.shape, bool)
    truth[50:150, 100:200] = True
    assert (mask == truth).mean() > 0.99


def test_tissue_mask_dilation_grows_by_radius():
    bare = algorithms.tissue_mask(_stained(), dilation_radius=0)
    grown = algorithms.tissue_mask(_stained(), dilation_radius=2)
    assert grown.sum() > bare.sum()
    assert grown[48, 150] and not bare[48, 150]
    assert not grown[45, 150]


def test_tissue_mask_is_empty_on_blank_glass():
    rng = np.random.default_rng(1)
    glass = (240 + rng.integers(-2, 3, size=(100, 100, 3))).astype(np.uint8)
    assert not algorithms.tissue_mask(glass).any()


def test_blur_mask_separates_sharp_from_smooth():
    image = _stained()
    import cv2

    smooth = cv2.GaussianBlur(image, (0, 0), 6)
    both = image.copy()
    both[:, 150:] = smooth[:, 150:]
    blurry = algorithms.blur_mask(both, blur_radius=3, blur_threshold=0.05)
    assert not blurry[60:140, 105:140].any()  # sharp texture
    assert blurry[60:140, 165:195].all()  # the same texture, smoothed


def test_blurry_fraction_ignores_the_tissue_rim():
    blurry = np.zeros((100, 100), bool)
    blurry[:, :10] = True  # a blurry rim along one edge of the tissue
    tissue = np.ones((100, 100), bool)
    assert algorithms.blurry_fraction(blurry, tissue, blur_radius=7) == 0.0
    blurry[:, :50] = True
    assert algorithms.blurry_fraction(blurry, tissue, blur_radius=7) == pytest.approx(36 / 72, abs=0.02)


def test_fraction_of_resizes_and_handles_empty():
    mask = np.zeros((10, 10), bool)
    mask[:5] = True
    within = np.ones((20, 20), bool)
    assert algorithms.fraction_of(mask, within) == pytest.approx(0.5)
    assert algorithms.fraction_of(mask, np.zeros((5, 5), bool)) == 0.0


@pytest.mark.parametrize("radius, threshold", [(0, 0.05), (-1, 0.05), (7, 0), (7, 1.5)])
def test_invalid_parameters_are_refused(radius, threshold):
    with pytest.raises(ValueError):
        algorithms.blur_mask(_stained(), radius, threshold)


def test_non_rgb_input_is_refused():
    with pytest.raises(ValueError, match="RGB uint8"):
        algorithms.tissue_mask(np.zeros((10, 10), np.uint8))
