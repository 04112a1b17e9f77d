"""The QC algorithms: pure functions on numpy arrays, no file I/O.

Images are RGB ``uint8`` arrays of shape (rows, cols, 3); masks are ``bool``
arrays of shape (rows, cols). Sizes are in pixels of the array they are given.
"""

from __future__ import annotations

import math
from dataclasses import astuple, dataclass
from typing import Literal, get_args

import cv2
import numpy as np

# Otsu always splits an image in two; on bare glass it splits the glass's noise. Tissue is there
# only when the darker class is darker than the lighter one by this many gray levels (8-bit): bare
# glass with +-2 levels of noise splits ~2.5 apart, H&E ~70, a section stained at a quarter of the
# usual strength ~20 and at 15 % ~13. (A fixed floor on the Otsu threshold itself, 20 levels, lost
# every section paler than ~35 % of the usual stain: the glass's own darkness is not the tissue's.)
MIN_TISSUE_SEPARATION = 8


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """Return the luminance of an RGB uint8 image as float32 in [0, 1].

    Parameters
    ----------
    rgb : (rows, cols, 3) uint8
        An RGB image, 0 to 255 per channel.

    Returns
    -------
    (rows, cols) float32
        The gray level, 0 (black) to 1 (white): OpenCV's luminance divided by 255.

    Examples
    --------
    >>> import numpy as np
    >>> from slideqc.algorithms import to_gray
    >>> to_gray(np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8))
    array([[0., 1.]], dtype=float32)
    """
    _check_rgb(rgb)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def tissue_mask(rgb: np.ndarray, dilation_radius: int = 1, *, ignore: np.ndarray | None = None) -> np.ndarray:
    """Return the tissue versus the glass: grayscale, invert, Otsu threshold, dilate.

    Parameters
    ----------
    rgb : (rows, cols, 3) uint8
        The slide at the tissue work size (typically 1.25x, 8 µm per pixel).
    dilation_radius : int, >= 0
        Radius in pixels of the disk that closes small gaps at the tissue's
        edge. Kept small: every pixel of dilation adds glass to the tissue.
    ignore : (rows, cols) bool, optional
        Pixels left out of choosing the threshold (marker ink, say: black ink is
        darker than any stain, and with it Otsu splits ink from everything else).
        The threshold is then applied to every pixel.

    Returns
    -------
    (rows, cols) bool
        True on tissue. All False when the image is blank: when Otsu's two classes
        lie fewer than :data:`MIN_TISSUE_SEPARATION` gray levels apart, so that pale
        sections (a quarter of the usual stain) are still found.

    Examples
    --------
    A 2 x 2 px section (gray level 100) on glass (255): the darker class is 155
    levels darker, so it is tissue; a disk of radius 1 adds the pixels next to it.

    >>> import numpy as np
    >>> from slideqc.algorithms import tissue_mask
    >>> rgb = np.full((4, 4, 3), 255, np.uint8)
    >>> rgb[1:3, 1:3] = 100
    >>> tissue_mask(rgb, dilation_radius=0).astype(int)
    array([[0, 0, 0, 0],
           [0, 1, 1, 0],
           [0, 1, 1, 0],
           [0, 0, 0, 0]])
    >>> tissue_mask(rgb).astype(int)
    array([[0, 1, 1, 0],
           [1, 1, 1, 1],
           [1, 1, 1, 1],
           [0, 1, 1, 0]])
    >>> bool(tissue_mask(np.full((4, 4, 3), 255, np.uint8)).any())  # bare glass
    False

    A pale section (gray level 160) beside a wide band of black ink (10): Otsu alone
    splits the ink from the rest and loses the section; with the ink ignored, the
    threshold falls between section and glass again (the ink itself stays above it).

    >>> rgb = np.full((4, 4, 3), 255, np.uint8)
    >>> rgb[2:, 2:] = 160
    >>> rgb[:2] = 10
    >>> tissue_mask(rgb, dilation_radius=0).astype(int)[2:]
    array([[0, 0, 0, 0],
           [0, 0, 0, 0]])
    >>> ink = np.zeros((4, 4), bool)
    >>> ink[:2] = True
    >>> tissue_mask(rgb, dilation_radius=0, ignore=ink).astype(int)[2:]
    array([[0, 0, 1, 1],
           [0, 0, 1, 1]])
    """
    if dilation_radius < 0:
        raise ValueError(f"dilation_radius must be >= 0, got {dilation_radius}")
    inverted = 255 - cv2.cvtColor(_check_rgb(rgb), cv2.COLOR_RGB2GRAY)
    if ignore is None:
        _, mask = cv2.threshold(inverted, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        chosen = inverted
    else:
        chosen = inverted[~ignore]
        if chosen.size == 0:
            return np.zeros(inverted.shape, bool)
        threshold, _ = cv2.threshold(chosen.reshape(1, -1), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        _, mask = cv2.threshold(inverted, threshold, 255, cv2.THRESH_BINARY)
        chosen = chosen[None]
    darker = mask > 0 if ignore is None else (mask > 0)[~ignore][None]
    if darker.all() or not darker.any() or (chosen[darker].mean() - chosen[~darker].mean() < MIN_TISSUE_SEPARATION):
        return np.zeros(inverted.shape, bool)
    if dilation_radius > 0:
        size = 2 * dilation_radius + 1
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        mask = cv2.dilate(mask, disk)
    return mask > 0


# The blur measures by name (see blur_response). "laplacian" is HistoQC's and the workshop's
# lessons'; "normalized" divides out the stain's contrast, so pale tissue is judged like dark.
Measure = Literal["laplacian", "normalized"]
MEASURES: tuple[Measure, ...] = get_args(Measure)
DEFAULT_MEASURE: Measure = "normalized"
# Blurry at or below these values of blur_response (gray level per pixel, see there), at the
# 10x blur work size and blur radius 7 px: both measures share the scale and the threshold,
# chosen on synthetic slides by benchmarks/calibrate_blur_measure.py (docs/blur_measure.md).
DEFAULT_THRESHOLDS: dict[Measure, float] = {"laplacian": 0.05, "normalized": 0.05}
# The local contrast that "normalized" rescales every pixel's neighbourhood to: the mean absolute
# deviation of the gray level (0 to 1) of in-focus H&E at 10x is about this (median 0.08, 5th
# percentile 0.06 on the synthetic slides), so on ordinary
# stains the two measures read alike and share their threshold (docs/blur_measure.md).
REFERENCE_CONTRAST = 0.07
# The local contrast is floored here (gray level, 0 to 1: 1/40 of an 8-bit level) so that flat
# regions give 0 / floor = 0 (blurry), not 0 / 0: bare glass at 10x is often one gray level.
# In-focus H&E at 10x has ~0.08 (median), 800x more. Applied to the contrast's integer box sum
# (see _normalized_response), rounded up to a whole sum: 1.000006e-4 with the default 25 px box.
CONTRAST_FLOOR = 1e-4


def blur_response(rgb: np.ndarray, blur_radius: float, *, measure: Measure = DEFAULT_MEASURE) -> np.ndarray:
    """Return the local sharpness of the gray image around each pixel.

    Parameters
    ----------
    rgb : (rows, cols, 3) uint8
        The slide at the blur work size.
    blur_radius : float, > 0
        Size in pixels of the neighbourhood each pixel's value is averaged over: the
        sigma of a Gaussian ("laplacian") or a box of the same spread ("normalized").
    measure : {"normalized", "laplacian"}
        ``"laplacian"`` (HistoQC's): the absolute Laplacian of the gray image (0 to 1),
        Gaussian-smoothed. Its size follows the stain's contrast as much as the focus:
        sharp tissue stained at a quarter of the usual strength reads like blur.
        ``"normalized"`` (the default): the mean absolute Laplacian over a box of
        ``2 * round(sqrt(3) * blur_radius) + 1`` pixels, divided by the mean absolute
        deviation of the gray level from its own box mean (the local contrast) and
        multiplied by :data:`REFERENCE_CONTRAST`: the Laplacian the neighbourhood would
        have at the reference contrast. Scaling the stain's contrast (``255 - rgb``
        times any factor) or the brightness leaves it unchanged; a blur lowers it
        because it removes the fine detail first and the coarse contrast last.

    Returns
    -------
    (rows, cols) float32, >= 0
        In gray level per pixel (gray in [0, 1]); in-focus H&E gives ~0.08 with
        either measure, a 2 µm blur ~0.015 to 0.03. Exact away from the border: a
        tile read with :func:`blur_context` pixels of context gives the values the
        whole image gives.

    Examples
    --------
    A flat image has no detail: 0 everywhere, with either measure.

    >>> import numpy as np
    >>> from slideqc.algorithms import blur_response
    >>> flat = np.full((5, 5, 3), 128, np.uint8)
    >>> float(blur_response(flat, 1.0).max()), float(blur_response(flat, 1.0, measure="laplacian").max())
    (0.0, 0.0)

    An edge between glass (245) and stain (195), and the same edge with the stain
    twice as dark (``255 - rgb`` doubled: 235 and 135): "normalized" reads both alike.

    >>> edge = np.full((9, 9, 3), 245, np.uint8)
    >>> edge[:, 4:] = 195
    >>> darker = np.full((9, 9, 3), 235, np.uint8)
    >>> darker[:, 4:] = 135
    >>> bool(np.array_equal(blur_response(edge, 1.0), blur_response(darker, 1.0)))
    True
    """
    if not blur_radius > 0:
        raise ValueError(f"blur_radius must be > 0, got {blur_radius}")
    if _check_measure(measure) == "laplacian":
        laplacian = np.abs(cv2.Laplacian(to_gray(rgb), cv2.CV_32F, ksize=1))
        return cv2.GaussianBlur(laplacian, (0, 0), float(blur_radius))
    return _normalized_response(cv2.cvtColor(_check_rgb(rgb), cv2.COLOR_RGB2GRAY), _box_width(blur_radius))


def _normalized_response(gray: np.ndarray, width: int) -> np.ndarray:
    """Return the "normalized" measure of an 8-bit gray image with boxes of ``width`` px (see blur_response).

    Box sums, not means, of the integer gray levels: OpenCV sums integers exactly and ~2x faster
    than floats, and n * (gray - box mean) = n * gray - box sum is an integer too, so every sum is
    exact (a tile gives the whole image's values bit for bit) and the only rounding is the last
    division. In gray levels 0 to 1, with n = width ** 2 pixels per box: the mean |Laplacian| is
    fine / (255 n), the local contrast spread / (255 n ** 2), so their ratio is n * fine / spread.
    """
    n = width * width
    box, border = (width, width), cv2.BORDER_REFLECT_101
    # int32 holds the contrast's sums (up to 255 n ** 2) for boxes up to 53 px; float64 sums
    # integers exactly beyond that.
    depth = cv2.CV_32S if 255 * n * n < 2**31 else cv2.CV_64F
    laplacian = cv2.Laplacian(gray, cv2.CV_16S, ksize=1)  # -1020..1020, exact
    fine = cv2.boxFilter(
        np.abs(laplacian, out=laplacian).view(np.uint16), depth, box, normalize=False, borderType=border
    )
    sums = cv2.boxFilter(gray, depth, box, normalize=False, borderType=border)
    # numpy's and OpenCV's cheapest forms, measured: numpy for uint8 times a number into int32,
    # OpenCV for the floor (a whole sum: the contrast floor rounded up) and the division.
    deviation = cv2.absdiff(np.multiply(gray, n, dtype=sums.dtype), sums)
    spread = cv2.boxFilter(deviation, depth, box, dst=sums, normalize=False, borderType=border)
    floor = math.ceil(CONTRAST_FLOOR * 255 * n * n)
    contrast = cv2.max(spread, floor)  # type: ignore[call-overload]  # OpenCV takes a number as src2; its stubs list arrays only
    return cv2.divide(fine, contrast, scale=REFERENCE_CONTRAST * n, dtype=cv2.CV_32F)


def blur_mask(
    rgb: np.ndarray, blur_radius: float, blur_threshold: float | None = None, *, measure: Measure = DEFAULT_MEASURE
) -> np.ndarray:
    """Return the blurry pixels: where :func:`blur_response` is at or below ``blur_threshold``.

    Parameters
    ----------
    rgb : (rows, cols, 3) uint8
        The slide at the blur work size.
    blur_radius : float, > 0
        The neighbourhood of :func:`blur_response`, in pixels.
    blur_threshold : float in (0, 1], optional
        In gray level per pixel (gray in [0, 1]); None takes the measure's
        :data:`DEFAULT_THRESHOLDS` (0.05 for both measures).
    measure : {"normalized", "laplacian"}
        See :func:`blur_response`.

    Returns
    -------
    (rows, cols) bool
        True where blurry.

    Examples
    --------
    A flat image is blurry everywhere (its response is 0, at or below any threshold).

    >>> import numpy as np
    >>> from slideqc.algorithms import blur_mask
    >>> bool(blur_mask(np.full((3, 3, 3), 200, np.uint8), 1.0).all())
    True
    """
    if blur_threshold is None:
        blur_threshold = DEFAULT_THRESHOLDS[_check_measure(measure)]
    if not 0 < blur_threshold <= 1:
        raise ValueError(f"blur_threshold must be in (0, 1], got {blur_threshold}")
    return blur_response(rgb, blur_radius, measure=measure) <= blur_threshold


def blur_context(blur_radius: float, measure: Measure = DEFAULT_MEASURE) -> int:
    """Return the pixels of context (>= 1) each side of a tile for :func:`blur_response` to be exact there.

    "laplacian": OpenCV's float Gaussian of sigma ``blur_radius`` (pixels) reaches
    ``round(8 * sigma + 1) // 2`` pixels (4 sigma), and the Laplacian one more.
    "normalized": the contrast is a box mean of deviations from a box mean, two box
    half-widths; the Laplacian's box needs one half-width and a pixel. A tile read
    with this much context gives, inside it, the very values the whole image gives.
    It also covers the erosion of :func:`measurable_tissue` (``2 * blur_radius``).

    Parameters
    ----------
    blur_radius : float, > 0
        The neighbourhood of :func:`blur_response`, in pixels.
    measure : {"normalized", "laplacian"}
        See :func:`blur_response`.

    Returns
    -------
    int, >= 1
        Pixels of context on each side of a tile.

    Examples
    --------
    At the default radius, 7 px: "normalized" boxes are 2 * round(sqrt(3) * 7) + 1 = 25 px,
    two half-widths of 12 px; the Gaussian reaches round(8 * 7 + 1) // 2 = 28 px, and one more.

    >>> from slideqc.algorithms import blur_context
    >>> blur_context(7.0), blur_context(7.0, "laplacian")
    (24, 29)
    """
    if not blur_radius > 0:
        raise ValueError(f"blur_radius must be > 0, got {blur_radius}")
    if _check_measure(measure) == "laplacian":
        reach = (round(8 * float(blur_radius) + 1) | 1) // 2 + 1
    else:
        half = _box_width(blur_radius) // 2
        reach = max(2 * half, half + 1)
    return max(reach, round(2 * blur_radius))


def _box_width(blur_radius: float) -> int:
    """Return the side in pixels of a box with the spread of a Gaussian of sigma ``blur_radius``: 2 * round(sqrt(3) * r) + 1."""
    return 2 * max(1, round(math.sqrt(3.0) * float(blur_radius))) + 1


def _check_measure(measure: Measure) -> Measure:
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {', '.join(MEASURES)}; got {measure!r}")
    return measure


def stain_contrast(rgb: np.ndarray, tissue: np.ndarray, *, ignore: np.ndarray | None = None) -> float:
    """Return how far the tissue's stain stands out from the glass: 8-bit gray levels, >= 0.

    The median gray level of the glass minus that of the tissue, on any work size
    (the tissue work size is enough: 1.25x). H&E at the usual strength gives ~70;
    at a quarter of it ~21, at 15 % ~13. The QC cannot judge the focus of tissue
    fainter than :attr:`slideqc.settings.JudgeLimits.min_stain_contrast`.

    Parameters
    ----------
    rgb : (rows, cols, 3) uint8
        The slide at any work size.
    tissue : bool array
        The tissue mask, resized to ``rgb``'s rows and columns when it differs.
    ignore : bool array, optional
        Pixels that are neither (marker ink, debris: their gray says nothing of the
        stain), resized like ``tissue``.

    Returns
    -------
    float, >= 0
        In 8-bit gray levels (0 to 255); 0.0 when the image has no tissue or no glass
        (then there is nothing to compare it with).

    Examples
    --------
    >>> import numpy as np
    >>> from slideqc.algorithms import stain_contrast
    >>> rgb = np.full((2, 2, 3), 230, np.uint8)
    >>> rgb[0, 0] = 160
    >>> stain_contrast(rgb, np.array([[True, False], [False, False]]))
    70.0
    >>> ink = np.array([[False, False], [False, True]])
    >>> rgb[1, 1] = 20  # black ink on the glass: left out, not taken for glass
    >>> stain_contrast(rgb, np.array([[True, False], [False, False]]), ignore=ink)
    70.0
    """
    gray = cv2.cvtColor(_check_rgb(rgb), cv2.COLOR_RGB2GRAY)
    tissue = resize_mask(tissue, gray.shape)
    glass = ~tissue
    if ignore is not None:
        ignored = resize_mask(ignore, gray.shape)
        tissue, glass = tissue & ~ignored, glass & ~ignored
    if not tissue.any() or not glass.any():
        return 0.0
    return max(0.0, float(np.median(gray[glass])) - float(np.median(gray[tissue])))


def measurable_tissue(tissue: np.ndarray, blur_radius: float) -> np.ndarray:
    """Return the tissue where blur can be measured: ``tissue`` eroded by ``2 * blur_radius`` pixels.

    :func:`blur_response` averages the Laplacian over a Gaussian of sigma
    ``blur_radius``, so within two sigmas of the tissue's edge it mixes in flat
    glass and would call sharp tissue blurry.

    Parameters
    ----------
    tissue : (rows, cols) bool
        The tissue mask at the blur resolution.
    blur_radius : float, > 0
        The neighbourhood of :func:`blur_response`, in pixels.

    Returns
    -------
    (rows, cols) bool
        The tissue at least ``round(2 * blur_radius)`` pixels from glass; outside the
        array counts as glass.

    Examples
    --------
    >>> import numpy as np
    >>> from slideqc.algorithms import measurable_tissue
    >>> measurable_tissue(np.ones((7, 7), bool), 1.0).astype(int)
    array([[0, 0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0],
           [0, 0, 1, 1, 1, 0, 0],
           [0, 0, 1, 1, 1, 0, 0],
           [0, 0, 1, 1, 1, 0, 0],
           [0, 0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0]])
    """
    return erode(tissue, round(2 * blur_radius))


@dataclass(frozen=True)
class BlurCounts:
    """Pixel counts at the blur resolution from which the blurry fraction is taken.

    Counts add up, so a slide measured tile by tile sums its tiles' counts and
    gets the fraction the whole image gives. ``inner`` is the measurable
    tissue (:func:`measurable_tissue`), ``tissue`` all of it.
    """

    blurry_inner: int = 0
    inner: int = 0
    blurry_tissue: int = 0
    tissue: int = 0

    @classmethod
    def of(cls, blurry: np.ndarray, tissue: np.ndarray, inner: np.ndarray) -> BlurCounts:
        """Count the True pixels of bool masks of one shape: blurry pixels, tissue, measurable tissue.

        Parameters
        ----------
        blurry, tissue, inner : (rows, cols) bool
            The blurry pixels, the tissue and the measurable tissue, at one resolution.

        Returns
        -------
        BlurCounts
            The blurry pixels within ``inner`` and within ``tissue``, and the pixels of each.

        Examples
        --------
        One blurry pixel of four, all of them tissue and measurable:

        >>> import numpy as np
        >>> from slideqc.algorithms import BlurCounts
        >>> everywhere = np.ones((2, 2), bool)
        >>> counts = BlurCounts.of(np.array([[True, False], [False, False]]), everywhere, everywhere)
        >>> counts, counts.fraction
        (BlurCounts(blurry_inner=1, inner=4, blurry_tissue=1, tissue=4), 0.25)
        >>> (counts + counts).fraction  # two such tiles
        0.25
        """
        return cls(
            int(np.count_nonzero(blurry & inner)),
            int(np.count_nonzero(inner)),
            int(np.count_nonzero(blurry & tissue)),
            int(np.count_nonzero(tissue)),
        )

    def __add__(self, other: BlurCounts) -> BlurCounts:
        """Return the counts of both, added field by field (the counts of two tiles together)."""
        return BlurCounts(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    @property
    def uses_inner(self) -> bool:
        """False when no tissue is left after erosion: it is thinner than the blur window, so measured whole."""
        return self.inner > 0

    @property
    def fraction(self) -> float:
        """The fraction (0 to 1) of the measurable tissue that is blurry; 0.0 without tissue."""
        if self.uses_inner:
            return self.blurry_inner / self.inner
        return self.blurry_tissue / self.tissue if self.tissue else 0.0


def blurry_fraction(blurry: np.ndarray, tissue: np.ndarray, blur_radius: float) -> float:
    """Return the fraction (0 to 1) of the tissue that is blurry, measured at ``blurry``'s resolution.

    Parameters
    ----------
    blurry : (rows, cols) bool
        The blurry pixels (:func:`blur_mask`).
    tissue : bool array
        The tissue at any resolution: resized to ``blurry``'s shape, then eroded by
        ``2 * blur_radius`` pixels (:func:`measurable_tissue`); when nothing is
        left the tissue is measured whole.
    blur_radius : float, > 0
        The neighbourhood of :func:`blur_response`, in pixels.

    Returns
    -------
    float, 0 to 1
        The blurry share of the measurable tissue; 0.0 when there is no tissue.

    Examples
    --------
    A 4 x 4 px slide all tissue, its top-left 2 x 2 px blurry. Eroded by 1 px, the
    measurable tissue is the central 2 x 2 px, of which one pixel is blurry:

    >>> import numpy as np
    >>> from slideqc.algorithms import blurry_fraction
    >>> blurry = np.zeros((4, 4), bool)
    >>> blurry[:2, :2] = True
    >>> blurry_fraction(blurry, np.ones((4, 4), bool), blur_radius=0.5)
    0.25
    """
    tissue = resize_mask(tissue, blurry.shape)
    return BlurCounts.of(blurry, tissue, measurable_tissue(tissue, blur_radius)).fraction


# The erosion of measurable_tissue is by a disk of radius 14 at the defaults. One erosion by
# OpenCV's 29 x 29 ellipse was 11 to 15 % of the QC; erosions by a disk of radius 2, repeated, cost
# a quarter of it. OpenCV's 5 x 5 ellipse is 5 pixels wide but 3 tall at its sides, so it
# alternates with its transpose: the sum holds the Euclidean disk of the radius, reaches exactly
# the radius along the rows and columns and ~6 % beyond it at most in between (at radius 14: 665
# pixels against the ellipse's 641, all of the ellipse among them).
_DISK_2 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
_DISK_2_TURNED = np.ascontiguousarray(_DISK_2.T)
_CROSS = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))  # the disk of radius 1, for an odd radius


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """Return a bool mask eroded by a disk of ``radius`` pixels; outside the array counts as False.

    The disk is the sum of ``radius // 2`` disks of radius 2 and, for an odd ``radius``, one of
    radius 1 (see ``_DISK_2``): it holds the Euclidean disk, and a rectangle shrinks by exactly
    ``radius`` on every side.

    Parameters
    ----------
    mask : (rows, cols) bool
        The mask to erode.
    radius : int, >= 0
        In pixels; 0 returns ``mask`` itself.

    Returns
    -------
    (rows, cols) bool
        The pixels whose whole disk lies in ``mask``.

    Examples
    --------
    A 3 x 3 px square shrinks by 1 px on every side:

    >>> import numpy as np
    >>> from slideqc.algorithms import erode
    >>> square = np.zeros((5, 5), bool)
    >>> square[1:4, 1:4] = True
    >>> erode(square, 1).astype(int)
    array([[0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0],
           [0, 0, 1, 0, 0],
           [0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0]])
    """
    if radius <= 0 or not mask.any():
        return mask
    if mask.all():  # common inside big tissue: only the array's border (glass beyond it) erodes it
        inner = np.zeros(mask.shape, bool)
        inner[radius:-radius, radius:-radius] = True
        return inner
    eroded: np.ndarray = mask.view(np.uint8)  # 0 and 1 in and out: viewed as bool again without a copy
    twos = radius // 2
    for kernel, times in ((_DISK_2, (twos + 1) // 2), (_DISK_2_TURNED, twos // 2), (_CROSS, radius % 2)):
        if times:
            eroded = cv2.erode(eroded, kernel, iterations=times, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return eroded.view(bool)


def nearest_index(source_length: int, length: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Return the source index that each output index takes by nearest neighbour.

    For output indices ``start``..``stop`` of an axis resized from ``source_length`` to ``length``
    pixels, exactly as OpenCV's ``INTER_NEAREST`` picks them, so a window of a resized mask can be
    made without the rest.

    Parameters
    ----------
    source_length, length : int, >= 1
        The axis's length in pixels before and after resizing.
    start, stop : int, optional
        The output indices wanted, ``start`` included, ``stop`` not (default: all of them).

    Returns
    -------
    (stop - start,) int64
        Source indices, 0 to ``source_length - 1``, never decreasing.

    Examples
    --------
    Halving takes every other pixel (floor of 2 i); doubling takes each pixel twice:

    >>> from slideqc.algorithms import nearest_index
    >>> nearest_index(4, 2)
    array([0, 2])
    >>> nearest_index(2, 4)
    array([0, 0, 1, 1])
    """
    stop = length if stop is None else stop
    step = 1.0 / (length / source_length)  # OpenCV's own arithmetic, so the floors agree
    return np.minimum(np.floor(np.arange(start, stop) * step).astype(np.int64), source_length - 1)


def resize_mask(
    mask: np.ndarray, shape: tuple[int, int], window: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Return a bool mask resized to ``shape`` by nearest neighbour.

    Parameters
    ----------
    mask : (rows, cols) bool
        The mask to resize.
    shape : (rows, cols)
        The size wanted, in pixels.
    window : (top, left, rows, cols), optional
        In pixels of ``shape``: only that part of the resized mask is made, the
        same pixels as cropping the whole.

    Returns
    -------
    bool array
        Of ``shape``, or of the window's (rows, cols); ``mask`` itself when it has ``shape`` already.

    Examples
    --------
    >>> import numpy as np
    >>> from slideqc.algorithms import resize_mask
    >>> resize_mask(np.array([[True, False]]), (2, 4)).astype(int)
    array([[1, 1, 0, 0],
           [1, 1, 0, 0]])
    >>> resize_mask(np.array([[True, False]]), (2, 4), window=(0, 1, 1, 2)).astype(int)
    array([[1, 0]])
    """
    if window is None:
        if mask.shape == tuple(shape):
            return mask
        window = (0, 0, *shape)
    top, left, rows, cols = window
    if rows <= 0 or cols <= 0:
        return np.zeros((max(rows, 0), max(cols, 0)), bool)
    row_index = nearest_index(mask.shape[0], shape[0], top, top + rows)
    col_index = nearest_index(mask.shape[1], shape[1], left, left + cols)
    # The indices never decrease, so the result repeats each source row (column) as often as
    # it is picked: row copies instead of a per-pixel gather, ~10x faster on a tile.
    source = mask[row_index[0] : row_index[-1] + 1, col_index[0] : col_index[-1] + 1]
    source = np.repeat(source, np.bincount(col_index - col_index[0]), axis=1)
    return np.repeat(source, np.bincount(row_index - row_index[0]), axis=0)


def bin_sums(mask: np.ndarray, row_bins: np.ndarray, col_bins: np.ndarray) -> np.ndarray:
    """Count the True pixels of ``mask`` per bin, for coarsening a mask by area.

    Parameters
    ----------
    mask : (rows, cols) bool
        The mask to count.
    row_bins, col_bins : int arrays of length rows, cols
        Each row's (column's) bin: non-decreasing, in steps of 0 or 1.

    Returns
    -------
    (row bins, column bins) int32
        The True pixels of each bin, starting at the first bin.

    Examples
    --------
    Two rows in one bin, four columns in two bins of two: 2 x 2 = 4 pixels each.

    >>> import numpy as np
    >>> from slideqc.algorithms import bin_sums
    >>> bin_sums(np.ones((2, 4), bool), np.array([0, 0]), np.array([0, 0, 1, 1]))
    array([[4, 4]], dtype=int32)
    """
    # A row bin counts at most the mask's rows: uint16 sums there cost ~half of int32 ones from uint8.
    rows_dtype = np.uint16 if mask.shape[0] < 2**16 else np.int32
    return _sum_bins(_sum_bins(mask.view(np.uint8), row_bins, axis=0, dtype=rows_dtype), col_bins, axis=1)


def _sum_bins(values: np.ndarray, bins: np.ndarray, axis: int, dtype=np.int32) -> np.ndarray:
    starts = np.flatnonzero(np.diff(bins, prepend=bins[0] - 1))
    sizes = np.diff(starts, append=len(bins))
    size = int(sizes[0])
    if len(sizes) > 1 and (sizes[:-1] == size).all() and sizes[-1] <= size:
        # Equal bins (an integer ratio), the last maybe cut short: a reshape, ~20x faster.
        cut = (len(sizes) - 1) * size
        whole, last = (values[(slice(None),) * axis + (part,)] for part in (slice(0, cut), slice(cut, None)))
        shape = values.shape[:axis] + (len(sizes) - 1, size) + values.shape[axis + 1 :]
        return np.concatenate(
            [whole.reshape(shape).sum(axis=axis + 1, dtype=dtype), last.sum(axis=axis, keepdims=True, dtype=dtype)],
            axis=axis,
        )
    return np.add.reduceat(values, starts, axis=axis, dtype=dtype)


def area_fraction(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Return the fraction (0 to 1) of each output pixel covered by ``mask``, at ``shape``.

    Parameters
    ----------
    mask : (rows, cols) bool
        The mask to resize.
    shape : (rows, cols)
        The size wanted, in pixels: OpenCV's area interpolation when it is smaller.

    Returns
    -------
    shape float32, 0 to 1
        The share of each output pixel's area that is True in ``mask``.

    Examples
    --------
    >>> import numpy as np
    >>> from slideqc.algorithms import area_fraction
    >>> area_fraction(np.array([[True, False], [False, False]]), (1, 1))
    array([[0.25]], dtype=float32)
    """
    return cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def fraction_of(mask: np.ndarray, within: np.ndarray) -> float:
    """Return the fraction (0 to 1) of the True pixels of ``within`` that are True in ``mask``.

    Parameters
    ----------
    mask : bool array
        Resized to ``within``'s shape when they differ (a pixel counts when at least
        half of it is covered).
    within : (rows, cols) bool
        The pixels to take the fraction of.

    Returns
    -------
    float, 0 to 1
        0.0 when ``within`` is empty.

    Examples
    --------
    >>> import numpy as np
    >>> from slideqc.algorithms import fraction_of
    >>> corner = np.array([[True, False], [False, False]])
    >>> fraction_of(corner, np.ones((2, 2), bool)), fraction_of(corner, np.zeros((2, 2), bool))
    (0.25, 0.0)
    """
    total = int(within.sum())
    if total == 0:
        return 0.0
    if mask.dtype != bool:
        raise TypeError("mask must be a bool array")
    if mask.shape != within.shape:
        mask = area_fraction(mask, within.shape) >= 0.5
    return float((mask & within).sum()) / total


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (rows, cols, 3), got {rgb.dtype} {rgb.shape}")
    return rgb
