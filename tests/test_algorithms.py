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
    # The Laplacian measure only: smoothing white noise by 6 px leaves ~2 gray levels of contrast,
    # where the 8-bit rounding is most of the detail left and the normalized measure reads it as
    # such (tests/test_blur_measure.py judges that one on tissue-like slides).
    blurry = algorithms.blur_mask(both, blur_radius=3, blur_threshold=0.05, measure="laplacian")
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


@pytest.mark.parametrize(
    "source, shape", [((37, 53), (296, 424)), ((100, 80), (33, 251)), ((7, 9), (7, 9)), ((64, 48), (1000, 777))]
)
def test_resize_mask_windows_are_opencv_nearest_crops(source, shape):
    import cv2

    mask = np.random.default_rng(2).random(source) > 0.5
    whole = cv2.resize(mask.astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
    assert np.array_equal(algorithms.resize_mask(mask, shape), whole)
    top, left, rows, cols = shape[0] // 3, shape[1] // 4, shape[0] // 2, shape[1] // 2
    window = algorithms.resize_mask(mask, shape, (top, left, rows, cols))
    assert np.array_equal(window, whole[top : top + rows, left : left + cols])


@pytest.mark.parametrize("ratio, offset", [(8, 0), (8, 3), (3, 5), (1, 0)])
def test_bin_sums_count_per_bin(ratio, offset):
    mask = np.random.default_rng(3).random((61, 45)) > 0.4
    row_bins = (np.arange(61) + offset) // ratio
    col_bins = algorithms.nearest_index(20, 45)
    expected = np.zeros((row_bins[-1] - row_bins[0] + 1, 20), int)
    np.add.at(expected, (row_bins[:, None] - row_bins[0], col_bins[None, :]), mask)
    assert np.array_equal(algorithms.bin_sums(mask, row_bins, col_bins), expected)


@pytest.mark.parametrize("measure", algorithms.MEASURES)
@pytest.mark.parametrize("radius", [1.5, 3, 7])
def test_blur_context_makes_a_tile_exact(radius, measure):
    image = _stained((160, 200))
    whole = algorithms.blur_response(image, radius, measure=measure)
    c = algorithms.blur_context(radius, measure)
    tile = algorithms.blur_response(image[60 - c : 100 + c, 80 - c : 140 + c], radius, measure=measure)[c:-c, c:-c]
    assert np.array_equal(tile, whole[60:100, 80:140])


def test_erode_of_a_full_mask_erodes_only_from_the_border():
    import cv2

    for radius in (1, 5, 14):
        full = np.ones((40, 50), bool)
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        expected = cv2.erode(full.astype(np.uint8), disk, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0
        assert np.array_equal(algorithms.erode(full, radius), expected)
