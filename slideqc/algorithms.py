"""The QC algorithms: pure functions on numpy arrays, no file I/O.

Images are RGB ``uint8`` arrays of shape (rows, cols, 3); masks are ``bool``
arrays of shape (rows, cols). Sizes are in pixels of the array they are given.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass

import cv2
import numpy as np

# Below this Otsu threshold (on inverted 8-bit gray) the image holds no stain
# worth calling tissue: Otsu then only splits the glass's noise in two.
MIN_TISSUE_DARKNESS = 20


def to_gray(rgb: np.ndarray) -> np.ndarray:
    """Luminance of an RGB uint8 image as float32 in [0, 1]."""
    _check_rgb(rgb)
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0


def tissue_mask(rgb: np.ndarray, dilation_radius: int = 1) -> np.ndarray:
    """Tissue versus glass: grayscale, invert, Otsu threshold, dilate.

    Parameters
    ----------
    rgb : (rows, cols, 3) uint8
        The slide at the tissue work size (typically 1.25x, 8 µm per pixel).
    dilation_radius : int, >= 0
        Radius in pixels of the disk that closes small gaps at the tissue's
        edge. Kept small: every pixel of dilation adds glass to the tissue.

    Returns
    -------
    (rows, cols) bool, True on tissue. All False when the image is blank.
    """
    if dilation_radius < 0:
        raise ValueError(f"dilation_radius must be >= 0, got {dilation_radius}")
    inverted = 255 - cv2.cvtColor(_check_rgb(rgb), cv2.COLOR_RGB2GRAY)
    threshold, mask = cv2.threshold(inverted, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    if threshold < MIN_TISSUE_DARKNESS:
        return np.zeros(inverted.shape, bool)
    if dilation_radius > 0:
        size = 2 * dilation_radius + 1
        disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        mask = cv2.dilate(mask, disk)
    return mask > 0


def blur_response(rgb: np.ndarray, blur_radius: float) -> np.ndarray:
    """Local sharpness: the absolute Laplacian of the gray image, Gaussian-smoothed.

    Parameters
    ----------
    rgb : (rows, cols, 3) uint8
        The slide at the blur work size.
    blur_radius : float, > 0
        Sigma in pixels of the Gaussian that averages the Laplacian.

    Returns
    -------
    (rows, cols) float32, >= 0; in-focus H&E tissue gives large values.
    """
    if not blur_radius > 0:
        raise ValueError(f"blur_radius must be > 0, got {blur_radius}")
    laplacian = np.abs(cv2.Laplacian(to_gray(rgb), cv2.CV_32F, ksize=1))
    return cv2.GaussianBlur(laplacian, (0, 0), float(blur_radius))


def blur_mask(rgb: np.ndarray, blur_radius: float, blur_threshold: float) -> np.ndarray:
    """Blurry pixels: where :func:`blur_response` is at or below ``blur_threshold``.

    ``blur_threshold`` is in (0, 1], in units of gray level per pixel (gray in [0, 1]).
    Returns a (rows, cols) bool mask, True where blurry.
    """
    if not 0 < blur_threshold <= 1:
        raise ValueError(f"blur_threshold must be in (0, 1], got {blur_threshold}")
    return blur_response(rgb, blur_radius) <= blur_threshold


def blur_context(blur_radius: float) -> int:
    """Pixels of context (>= 1) each side of a tile for :func:`blur_response` to be exact there.

    OpenCV's float Gaussian of sigma ``blur_radius`` (pixels) reaches
    ``round(8 * sigma + 1) // 2`` pixels (4 sigma), and the Laplacian one more:
    a tile read with this much context gives, inside it, the very values the
    whole image gives. It also covers the erosion of :func:`measurable_tissue`.
    """
    if not blur_radius > 0:
        raise ValueError(f"blur_radius must be > 0, got {blur_radius}")
    gaussian_reach = (round(8 * float(blur_radius) + 1) | 1) // 2
    return max(gaussian_reach + 1, round(2 * blur_radius))


def measurable_tissue(tissue: np.ndarray, blur_radius: float) -> np.ndarray:
    """The tissue where blur can be measured: ``tissue`` eroded by ``2 * blur_radius`` pixels.

    ``tissue`` is a bool mask at the blur resolution. :func:`blur_response`
    averages the Laplacian over a Gaussian of sigma ``blur_radius``, so within two
    sigmas of the tissue's edge it mixes in flat glass and would call sharp
    tissue blurry. Outside the array counts as glass.
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
        """Counts of bool masks of one shape: blurry pixels, tissue, measurable tissue."""
        return cls(int(np.count_nonzero(blurry & inner)), int(np.count_nonzero(inner)),
                   int(np.count_nonzero(blurry & tissue)), int(np.count_nonzero(tissue)))

    def __add__(self, other: BlurCounts) -> BlurCounts:
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
    """The fraction (0 to 1) of the tissue that is blurry, measured at ``blurry``'s resolution.

    ``tissue`` (any resolution) is resized to ``blurry``'s shape and eroded by
    ``2 * blur_radius`` pixels (:func:`measurable_tissue`); when nothing is left
    the tissue is measured whole. Returns 0.0 when there is no tissue.
    """
    tissue = resize_mask(tissue, blurry.shape)
    return BlurCounts.of(blurry, tissue, measurable_tissue(tissue, blur_radius)).fraction


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """A bool mask eroded by a disk of ``radius`` pixels (>= 0)."""
    if radius <= 0 or not mask.any():
        return mask
    if mask.all():  # common inside big tissue: only the array's border (glass beyond it) erodes it
        inner = np.zeros(mask.shape, bool)
        inner[radius:-radius, radius:-radius] = True
        return inner
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.erode(mask.astype(np.uint8), disk, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0


def nearest_index(source_length: int, length: int, start: int = 0, stop: int | None = None) -> np.ndarray:
    """For output indices ``start``..``stop`` of an axis resized from ``source_length`` to ``length``
    pixels, the source index each takes by nearest neighbour (int64), exactly as OpenCV's
    ``INTER_NEAREST`` picks it, so a window of a resized mask can be made without the rest.
    """
    stop = length if stop is None else stop
    step = 1.0 / (length / source_length)  # OpenCV's own arithmetic, so the floors agree
    return np.minimum(np.floor(np.arange(start, stop) * step).astype(np.int64), source_length - 1)


def resize_mask(mask: np.ndarray, shape: tuple[int, int],
                window: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A bool mask resized to ``shape`` (rows, cols) by nearest neighbour.

    With ``window`` = (top, left, rows, cols), in pixels of ``shape``, only that
    part of the resized mask is made: the same pixels as cropping the whole.
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
    source = mask[row_index[0]:row_index[-1] + 1, col_index[0]:col_index[-1] + 1]
    source = np.repeat(source, np.bincount(col_index - col_index[0]), axis=1)
    return np.repeat(source, np.bincount(row_index - row_index[0]), axis=0)


def bin_sums(mask: np.ndarray, row_bins: np.ndarray, col_bins: np.ndarray) -> np.ndarray:
    """Counts of True pixels of ``mask`` per bin, for coarsening a mask by area.

    ``row_bins`` (``col_bins``) gives each row (column) of ``mask`` its bin: a
    non-decreasing int array whose steps are 0 or 1. Returns int32 counts of
    shape (number of row bins, number of column bins), starting at the first bin.
    """
    return _sum_bins(_sum_bins(mask.view(np.uint8), row_bins, axis=0), col_bins, axis=1)


def _sum_bins(values: np.ndarray, bins: np.ndarray, axis: int) -> np.ndarray:
    starts = np.flatnonzero(np.diff(bins, prepend=bins[0] - 1))
    sizes = np.diff(starts, append=len(bins))
    size = int(sizes[0])
    if len(sizes) > 1 and (sizes[:-1] == size).all() and sizes[-1] <= size:
        # Equal bins (an integer ratio), the last maybe cut short: a reshape, ~20x faster.
        cut = (len(sizes) - 1) * size
        whole, last = (values[(slice(None),) * axis + (part,)] for part in (slice(0, cut), slice(cut, None)))
        shape = values.shape[:axis] + (len(sizes) - 1, size) + values.shape[axis + 1:]
        return np.concatenate([whole.reshape(shape).sum(axis=axis + 1, dtype=np.int32),
                               last.sum(axis=axis, keepdims=True, dtype=np.int32)], axis=axis)
    return np.add.reduceat(values, starts, axis=axis, dtype=np.int32)


def area_fraction(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The fraction (0 to 1) of each output pixel covered by ``mask``, at ``shape``."""
    return cv2.resize(mask.astype(np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)


def fraction_of(mask: np.ndarray, within: np.ndarray) -> float:
    """The fraction (0 to 1) of the True pixels of ``within`` that are True in ``mask``.

    ``mask`` is resized to ``within``'s shape when they differ. Returns 0.0
    when ``within`` is empty.
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
