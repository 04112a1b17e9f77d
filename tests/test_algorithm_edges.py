"""The algorithms at their edges, each against a value worked out by hand or a property.

Written for the survivors of mutation testing (docs/mutation.md): boundaries (a window of one
row, a radius of 0, classes exactly the minimum apart), the messages of bad input, and
properties any focus measure keeps (no direction is preferred; a tile read with
``blur_context`` pixels of context is exact and needs every one of them).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from slideqc import algorithms, tiled

MEASURES = algorithms.MEASURES


def gray_image(values: np.ndarray) -> np.ndarray:
    """An RGB uint8 image whose three channels are ``values`` (so its gray level is ``values``)."""
    return np.repeat(np.asarray(values, np.uint8)[..., None], 3, axis=2)


def texture(shape=(160, 160), seed=3) -> np.ndarray:
    """Random tissue-like texture: every pixel differs from its neighbours."""
    return gray_image(np.random.default_rng(seed).integers(60, 200, shape))


# --- gray levels and tissue -------------------------------------------------------------


def test_gray_spans_zero_to_one():
    assert algorithms.to_gray(gray_image([[255, 0, 51]])).tolist() == [[1.0, 0.0, pytest.approx(0.2)]]


def test_an_image_that_is_not_rgb_uint8_is_refused():
    with pytest.raises(ValueError, match="expected an RGB uint8 image"):
        algorithms.to_gray(np.zeros((4, 4, 4), np.uint8))  # RGBA
    with pytest.raises(ValueError, match="expected an RGB uint8 image"):
        algorithms.to_gray(np.zeros((4, 4, 3), np.float32))


def test_classes_exactly_the_minimum_apart_are_tissue():
    """Otsu's classes 8 gray levels apart (MIN_TISSUE_SEPARATION) are tissue; 7 apart are glass's noise."""
    minimum = algorithms.MIN_TISSUE_SEPARATION
    for step, found in ((minimum, True), (minimum - 1, False)):
        values = np.full((20, 20), 200)
        values[:, :10] = 200 - step  # the left half darker: tissue
        mask = algorithms.tissue_mask(gray_image(values), dilation_radius=0)
        assert mask.dtype == bool and mask.shape == (20, 20)
        if found:
            assert mask[:, :10].all() and not mask[:, 10:].any()
        else:
            assert not mask.any()


def test_blank_glass_gives_an_empty_bool_mask():
    mask = algorithms.tissue_mask(gray_image(np.full((20, 30), 230)))
    assert mask.dtype == bool and mask.shape == (20, 30) and not mask.any()


def test_a_negative_dilation_is_refused():
    with pytest.raises(ValueError, match=r"^dilation_radius must be >= 0, got -1$"):
        algorithms.tissue_mask(gray_image(np.full((20, 20), 200)), dilation_radius=-1)


def test_stain_contrast_by_hand():
    values = np.full((10, 10), 220)
    values[:, :4] = 150
    tissue = np.zeros((10, 10), bool)
    tissue[:, :4] = True
    assert algorithms.stain_contrast(gray_image(values), tissue) == 70.0
    assert algorithms.stain_contrast(gray_image(np.full((10, 10), 220)), tissue) == 0.0  # as pale as the glass
    lighter = values.copy()
    lighter[:, :4] = 240  # "tissue" paler than the glass: no contrast, not a negative one
    assert algorithms.stain_contrast(gray_image(lighter), tissue) == 0.0


@pytest.mark.parametrize("fill", [False, True])  # no tissue, or nothing but tissue: nothing to compare
def test_stain_contrast_without_glass_or_tissue_is_zero_and_quiet(fill):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "mean of empty slice" in the log
        assert algorithms.stain_contrast(gray_image(np.full((10, 10), 150)), np.full((10, 10), fill)) == 0.0


# --- the focus measure ---------------------------------------------------------------------


@pytest.mark.parametrize("measure", MEASURES)
def test_no_direction_is_preferred(measure):
    """Turning the image turns the response: the measure's windows are square (radii 0.5 and 7)."""
    rgb = texture((90, 70))
    for radius in (0.5, 7.0):
        turned = algorithms.blur_response(np.ascontiguousarray(rgb.transpose(1, 0, 2)), radius, measure=measure)
        np.testing.assert_allclose(turned, algorithms.blur_response(rgb, radius, measure=measure).T, atol=1e-6)


@pytest.mark.parametrize("measure", MEASURES)
@pytest.mark.parametrize("radius", [0.5, 2.0, 7.0])
def test_the_context_is_exact_and_needed(measure, radius):
    """A tile read with blur_context pixels each side gives the whole image's response; one pixel less does not."""
    rgb = texture()
    whole = algorithms.blur_response(rgb, radius, measure=measure)
    context = algorithms.blur_context(radius, measure)
    assert context >= 1
    core = slice(70, 90)

    def tile(reach: int) -> np.ndarray:
        read = slice(core.start - reach, core.stop + reach)
        return algorithms.blur_response(rgb[read, read], radius, measure=measure)[reach:-reach, reach:-reach]

    np.testing.assert_allclose(tile(context), whole[core, core], rtol=1e-6, atol=1e-7)
    if algorithms.blur_context(radius, measure) > 2 * radius:  # when the measure's reach sets it
        assert not np.allclose(tile(context - 1), whole[core, core], rtol=1e-6, atol=1e-7)


def test_the_context_covers_the_erosion():
    """measurable_tissue erodes 2 * blur_radius: the context is at least that (it is read with the tile)."""
    for measure in MEASURES:
        for radius in (0.5, 2.0, 7.0, 30.0):
            assert algorithms.blur_context(radius, measure) >= round(2 * radius)


@pytest.mark.parametrize("radius, width", [(7.0, 25), (0.2, 3), (0.5, 3), (2.0, 7)])
def test_the_normalized_window_is_the_documented_box(radius, width):
    """One dark dot on glass: the normalized response is non-zero over the box (2 * round(sqrt(3) r) + 1 px)
    around the Laplacian's cross, so on the dot's row over ``width + 2`` pixels."""
    values = np.full((101, 101), 230)
    values[50, 50] = 30
    response = algorithms.blur_response(gray_image(values), radius, measure="normalized")
    assert np.count_nonzero(response[50] > 1e-6) == width + 2


@pytest.mark.parametrize(
    "radius, measure, context",
    [
        (0.85, "normalized", 2),  # box 3 (round(1.47) = 1): two half-widths of 1
        (2.0, "normalized", 6),  # box 7: 2 x 3
        (7.0, "normalized", 24),  # box 25: 2 x 12
        (0.85, "laplacian", 5),  # Gaussian reach round(7.8) | 1 = 9 -> 4, the Laplacian 1 more
        (2.0, "laplacian", 9),  # round(17) | 1 = 17 -> 8, + 1
    ],
)
def test_the_context_by_hand(radius, measure, context):
    """The documented reach of each measure; the erosion's 2 r (round(1.7) = 2 at 0.85) never needs more."""
    assert algorithms.blur_context(radius, measure) == context


def checkerboard(size: int) -> np.ndarray:
    return gray_image(255 * (np.add.outer(np.arange(size), np.arange(size)) % 2))


@pytest.mark.parametrize("radius", [0.5, 2.0, 18.5])
def test_the_normalized_response_of_a_checkerboard_by_hand(radius):
    """Black and white pixels alternating: |Laplacian| = 4 (gray 0 to 1) at every pixel; an odd box of
    n pixels centred on either colour holds (n + 1) / 2 of it, so every pixel is (n - 1) / (2 n) from its
    box mean, and that is the contrast: the response is 4 * 2 n / (n - 1) * REFERENCE_CONTRAST everywhere,
    up to the float32 result. At 18.5 px the box is 65 px wide and the contrast's sums pass 2 ** 31."""
    width = 2 * round(np.sqrt(3) * radius) + 1
    n = width * width
    assert radius != 18.5 or 255 * n * (n - 1) / 2 > 2**31
    response = algorithms.blur_response(checkerboard(80), radius, measure="normalized")
    expected = 8 * n / (n - 1) * algorithms.REFERENCE_CONTRAST
    np.testing.assert_allclose(response, expected, rtol=1e-6)


def test_nearly_flat_glass_is_measured_against_the_contrast_floor():
    """One pixel a gray level above flat glass: far below the floor of contrast (1e-4 of the gray range), so
    the response at the pixel is its mean |Laplacian| over the box (4 + 4 x 1 levels: 8 / 255 / n) divided by
    the floor, times REFERENCE_CONTRAST. With a box of 25 px (r = 7) the true contrast there is
    2 (n - 1) / n ** 2 / 255 = 1.25e-5."""
    values = np.full((60, 60), 128)
    values[30, 30] = 129
    n = 25 * 25
    response = algorithms.blur_response(gray_image(values), 7.0, measure="normalized")
    expected = 8 / 255 / n / algorithms.CONTRAST_FLOOR * algorithms.REFERENCE_CONTRAST
    assert response[30, 30] == pytest.approx(expected, rel=1e-4)  # the floor is rounded up by 6e-6


@pytest.mark.parametrize("radius", [0, -1.0])
def test_a_radius_must_be_positive(radius):
    for call in (lambda: algorithms.blur_response(texture((20, 20)), radius), lambda: algorithms.blur_context(radius)):
        with pytest.raises(ValueError, match=rf"^blur_radius must be > 0, got {radius}$"):
            call()


def test_a_radius_below_one_is_allowed():
    assert algorithms.blur_response(texture((20, 20)), 0.5).shape == (20, 20)
    assert algorithms.blur_context(0.5) >= 1


def test_the_threshold_is_at_most_one_and_blurry_includes_it():
    rgb = texture((40, 40))
    response = algorithms.blur_response(rgb, 2.0)
    assert algorithms.blur_mask(rgb, 2.0, 1.0).shape == (40, 40)  # 1 is allowed
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match=rf"^blur_threshold must be in \(0, 1\], got {bad}$"):
            algorithms.blur_mask(rgb, 2.0, bad)
    # "At or below": a threshold equal to a pixel's response calls that pixel blurry.
    at = float(np.sort(response[(response > 0) & (response <= 1)].ravel())[len(response) // 2])
    mask = algorithms.blur_mask(rgb, 2.0, at)
    assert mask[response == np.float32(at)].all() and (mask == (response <= np.float32(at))).all()


def test_an_unknown_measure_is_named():
    with pytest.raises(ValueError, match=r"^measure must be one of laplacian, normalized; got 'sobel'$"):
        algorithms.blur_context(7.0, "sobel")


# --- masks -----------------------------------------------------------------------------------


def test_erosion_by_hand():
    """A 21 x 21 block eroded by a disk of radius 3 is the 15 x 15 block inside it, centred."""
    mask = np.zeros((40, 40), bool)
    mask[10:31, 5:26] = True
    expected = np.zeros_like(mask)
    expected[13:28, 8:23] = True
    assert (algorithms.erode(mask, 3) == expected).all()


@pytest.mark.parametrize("radius", [1, 2, 3, 7, 14, 15])
def test_erosion_holds_the_disk_and_reaches_the_radius_along_the_axes(radius):
    """One glass pixel in tissue: the erosion takes away a disk around it that holds every pixel within
    ``radius`` (Euclidean), reaches exactly ``radius`` along the rows and columns, and not much more."""
    size = 4 * radius + 3
    c = size // 2
    mask = np.ones((size, size), bool)
    mask[c, c] = False
    removed = ~algorithms.erode(mask, radius)[c - radius - 1 : c + radius + 2, c - radius - 1 : c + radius + 2]
    y, x = np.mgrid[-radius - 1 : radius + 2, -radius - 1 : radius + 2]
    assert removed[x**2 + y**2 <= radius**2].all()
    assert not removed[(np.abs(x) > radius) | (np.abs(y) > radius)].any()
    if radius >= 7:  # small digital disks are coarse; large ones stay close to the true area
        assert removed.sum() <= 1.1 * np.pi * radius**2


def test_erosion_treats_outside_the_array_as_glass():
    mask = np.zeros((30, 30), bool)
    mask[:, :20] = True  # touches the top, bottom and left edges
    expected = np.zeros_like(mask)
    expected[4:26, 4:16] = True
    assert (algorithms.erode(mask, 4) == expected).all()
    full = np.ones((12, 10), bool)
    expected = np.zeros_like(full)
    expected[2:10, 2:8] = True
    assert (algorithms.erode(full, 2) == expected).all()


def test_erosion_by_zero_changes_nothing():
    for mask in (np.ones((6, 6), bool), np.eye(6, dtype=bool), np.zeros((6, 6), bool)):
        assert (algorithms.erode(mask, 0) == mask).all()
    assert not algorithms.erode(np.zeros((6, 6), bool), 2).any()


@pytest.mark.parametrize(
    "window, shape", [((0, 0, 0, 5), (0, 5)), ((0, 0, 5, 0), (5, 0)), ((2, 3, -2, 4), (0, 4)), ((2, 3, 4, -1), (4, 0))]
)
def test_an_empty_window_is_empty(window, shape):
    found = algorithms.resize_mask(np.ones((4, 4), bool), (10, 10), window)
    assert found.shape == shape and found.dtype == bool


def test_a_window_of_one_row_or_column_is_that_part_of_the_whole():
    mask = np.random.default_rng(1).random((7, 9)) > 0.5
    whole = algorithms.resize_mask(mask, (20, 25))
    # By hand: nearest neighbour from 7 rows to 20 takes source row floor(i * 7 / 20).
    assert (
        whole == mask[np.floor(np.arange(20) * 7 / 20).astype(int)][:, np.floor(np.arange(25) * 9 / 25).astype(int)]
    ).all()
    for window in ((5, 3, 1, 10), (0, 7, 12, 1), (19, 24, 1, 1)):
        top, left, rows, cols = window
        assert (algorithms.resize_mask(mask, (20, 25), window) == whole[top : top + rows, left : left + cols]).all()


def naive_bin_sums(mask, row_bins, col_bins):
    """By a loop: the True pixels of ``mask`` in each (row bin, column bin), bins counted from the first."""
    rows = range(row_bins[0], row_bins[-1] + 1)
    cols = range(col_bins[0], col_bins[-1] + 1)
    return np.array([[int(mask[np.ix_(row_bins == r, col_bins == c)].sum()) for c in cols] for r in rows])


def bins(*sizes, first=0):
    return np.repeat(np.arange(first, first + len(sizes)), sizes)


@pytest.mark.parametrize(
    "row_sizes, col_sizes",
    [
        ((2, 2, 2), (3, 3, 1)),  # equal bins; the last cut short
        ((1, 2, 2), (2, 2, 3)),  # first short; last longer: not an integer ratio
        ((3, 3, 3, 3), (5,)),  # one bin
        ((2, 3, 2), (1, 1, 1, 1)),  # one pixel per bin
        ((2, 2, 1, 2), (4, 4, 4)),
    ],
)
def test_bin_sums_by_hand(row_sizes, col_sizes):
    row_bins, col_bins = bins(*row_sizes, first=3), bins(*col_sizes)
    mask = np.random.default_rng(sum(row_sizes) * 10 + sum(col_sizes)).random((len(row_bins), len(col_bins))) > 0.4
    found = algorithms.bin_sums(mask, row_bins, col_bins)
    assert found.dtype == np.int32
    assert (found == naive_bin_sums(mask, row_bins, col_bins)).all()


@pytest.mark.parametrize("row_sizes", [(2**16 - 1,), (2**16,), (2**16, 2**16), (3, 2**17)])
def test_bin_sums_of_a_bin_taller_than_a_uint16_count(row_sizes):
    """A row bin of 65,536 or more True pixels is counted in full (a 16-bit count would wrap to 0)."""
    row_bins, col_bins = bins(*row_sizes), bins(1, 2)
    found = algorithms.bin_sums(np.ones((len(row_bins), 3), bool), row_bins, col_bins)
    assert found.tolist() == [[size, 2 * size] for size in row_sizes]


def test_fraction_of_counts_a_pixel_half_covered():
    within = np.ones((1, 2), bool)
    half = np.array([[True, False, True, True]])  # 1 x 4 onto 1 x 2: the first pixel half covered, the second whole
    assert algorithms.fraction_of(half, within) == 1.0
    assert algorithms.fraction_of(np.array([[True, False, False, False]]), within) == 0.5


def test_fraction_of_needs_a_bool_mask():
    with pytest.raises(TypeError, match=r"^mask must be a bool array$"):
        algorithms.fraction_of(np.ones((2, 2), np.uint8), np.ones((2, 2), bool))


# --- tiles -------------------------------------------------------------------------------------


def test_tiles_by_hand():
    """A 5 x 5 level in tiles of 2 with 1 px of context: cores start at 0, 2, 4."""
    found = list(tiled.tiles((5, 5), 2, 1))
    assert [t.core for t in found[:4]] == [(0, 0, 2, 2), (0, 2, 2, 2), (0, 4, 2, 1), (2, 0, 2, 2)]
    assert found[4].read == (1, 1, 4, 4) and found[-1].core == (4, 4, 1, 1) and len(found) == 9


def test_threads_per_slide(monkeypatch):
    assert tiled.threads_per_slide(cpus=8) == 8  # one slide at a time: every CPU
    assert tiled.threads_per_slide(3, cpus=8) == 2 and tiled.threads_per_slide(16, cpus=8) == 1
    monkeypatch.setattr(tiled.os, "cpu_count", lambda: 6)
    assert tiled.threads_per_slide() == 6 and tiled.threads_per_slide(2) == 3
    monkeypatch.setattr(tiled.os, "cpu_count", lambda: None)  # unknown: one thread
    assert tiled.threads_per_slide() == 1
