"""The QC algorithms: pure functions on numpy arrays, no file I/O.

Images are RGB ``uint8`` arrays of shape (rows, cols, 3); masks are ``bool``
arrays of shape (rows, cols). Sizes are in pixels of the array they are given.
"""

from __future__ import annotations

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


def blurry_fraction(blurry: np.ndarray, tissue: np.ndarray, blur_radius: float) -> float:
    """The fraction (0 to 1) of the tissue that is blurry, measured at ``blurry``'s resolution.

    ``tissue`` (any resolution) is resized to ``blurry``'s shape and eroded by
    ``2 * blur_radius`` pixels: :func:`blur_response` averages the Laplacian over
    a Gaussian of sigma ``blur_radius``, so within two sigmas of the tissue's edge
    it mixes in flat glass and would call sharp tissue blurry. Returns 0.0 when no
    tissue is left.
    """
    inner = erode(resize_mask(tissue, blurry.shape), round(2 * blur_radius))
    if not inner.any():  # tissue thinner than the blur window: measure it whole
        inner = resize_mask(tissue, blurry.shape)
    return fraction_of(blurry, inner)


def erode(mask: np.ndarray, radius: int) -> np.ndarray:
    """A bool mask eroded by a disk of ``radius`` pixels (>= 0)."""
    if radius <= 0:
        return mask
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.erode(mask.astype(np.uint8), disk, borderType=cv2.BORDER_CONSTANT, borderValue=0) > 0


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A bool mask resized to ``shape`` (rows, cols) by nearest neighbour."""
    if mask.shape == tuple(shape):
        return mask
    resized = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return resized > 0


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
