"""Artefacts on a slide: marker ink, air bubbles, debris, coverslip and slide edges, tissue folds.

Pure functions on arrays (the algorithms layer: NumPy, OpenCV, SciPy only; no files, no
settings). Everything works in optical density (OD, ``ln(glass / pixel)`` per RGB channel), where
stains add: every pixel is unmixed (Ruifrok & Johnston) into hematoxylin, a second stain (eosin
on H&E, DAB on IHC: whichever fits the slide's tissue better) and a third vector, which is
*neutral* grey for the dark kinds (debris, bubble rims, edges, black ink: they absorb all colours
alike) and the ink's own colour for coloured ink (blue, green, red: they absorb red more than
green, or green and blue together, which no histological stain does). What lies on the coverslip
adds its OD to the tissue's, so the unmixing finds it over glass and over tissue alike, and tells
which of its pixels lie over tissue (stain left after the artefact's own part is taken out).

Sizes are given in µm (areas in mm²) and converted with the image's µm per pixel, so the same
defaults hold at any work size (1.25x to 2.5x: docs/artefacts.md measures both).

Memory: per-pixel features are computed in row strips of :data:`STRIP_ROWS` rows (plus the
context the smoothing needs) and kept as uint8 / uint16 / bool maps, so the float32 work arrays
(OD, unmixed amounts: ~120 bytes per pixel) exist for one strip at a time. Peak measured with
tracemalloc on a 6250 x 5000 px image (a 100k x 80k px slide at 2.5x): 33 bytes per pixel of the
image besides ``rgb`` (~1 GB); at the chosen 1.25x the same slide is 3125 x 2500 px (~260 MB).
On images of one or two strips the strip dominates: 57 to 87 bytes per pixel.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from scipy import ndimage  # type: ignore[import-untyped]  # SciPy ships no types; scipy-stubs is not pinned here

from slideqc.algorithms import resize_mask

ArtefactKind = Literal["ink", "bubble", "debris", "edge", "fold"]
KINDS: tuple[ArtefactKind, ...] = typing.get_args(ArtefactKind)
ON_COVERSLIP: tuple[ArtefactKind, ...] = ("ink", "bubble", "debris", "edge")  # may lie on glass


def _unit(vector) -> np.ndarray:
    vector = np.asarray(vector, np.float64)
    return vector / np.linalg.norm(vector)


# Stain OD vectors, RGB order (Ruifrok & Johnston), and the neutral grey of what absorbs all colours.
HEMATOXYLIN = _unit([0.650, 0.704, 0.286])
EOSIN = _unit([0.072, 0.990, 0.105])
DAB = _unit([0.268, 0.570, 0.776])
NEUTRAL = _unit([1.0, 1.0, 1.0])

# The work size these defaults were measured at and the QC should read the image at: 1.25x, where
# the tissue is found (its image is already read), ~4x cheaper than 2.5x and within the issue's
# tolerances for every kind (docs/artefacts.md). The sizes below are in µm, so 2.5x works too.
WORK_SIZE = "1.25x"

OD_SCALE = 32  # the uint8 feature maps hold OD x OD_SCALE: 1/32 OD steps, up to ~8 OD
FINE_OD_SCALE = 1024  # the smoothed stain map (uint16) holds OD x FINE_OD_SCALE
STRIP_ROWS = 512  # rows of the image whose float features are held at once (bounds memory)
SECOND_STAIN_STEPS = 11  # candidates on the eosin-to-DAB arc (steps of a tenth)
GLASS_PERCENTILE = 99.0  # per channel: the glass's brightness (most slides are more than 1 % glass)

# --- the defaults (all keyword options of find_artefacts) ------------------------------------------
# Coloured ink. Seeds: pixels whose OD lies outside the cone of hematoxylin, the second stain and
# grey by more than this angle (the sine of the residual's share of the OD): blue and green ink lie
# 25 to 40 degrees out, red 15 to 20; stained tissue within ~6 (JPEG and the averaging of a work
# pixel mix colours a little), faint tissue noisier, hence also a least OD.
INK_MIN_ANGLE_DEG = 12.0
INK_MIN_OD = 0.3  # norm of the OD vector of a seed: ink at half strength still has ~0.5
INK_SEED_MIN_AREA_MM2 = 0.005  # a colour is ink only with this much seed (a 80 µm blob): dye specks are less
INK_MIN_AREA_MM2 = 0.02  # an ink component at least this big (a 160 µm blob; a stroke is 100 µm wide or more)
# The ink mask holds a component's pixels with at least this share of its typical amount (its 90th
# percentile): the half of a soft edge, where its truth is drawn.
INK_LEVEL = 0.5
INK_BRIDGE_UM = 250.0  # ink over tissue is kept within a closing of this radius of its seeds
# Dark neutral (per-channel grey OD after the stains are unmixed): debris, bubble rims, edges and
# black ink. 0.45 is where a dark speck (OD 1.2 to 2) covers half of a pixel; stained tissue, all
# in the stains' cone, unmixes to less than 0.1 of grey (0.25 in its darkest nuclei at 2.5x).
NEUTRAL_MIN_OD = 0.45
BLACK_INK_MIN_AREA_MM2 = 0.06  # a dark neutral blot bigger than this is black ink (debris is < 0.04)
DEBRIS_MIN_AREA_UM2 = 60.0  # the smallest speck (~9 µm across)
# A speck is this dark (grey OD per channel) at its darkest pixel: debris is OD 1.2 to 2 (99 % of the
# synthetic debris' area passes at 1.25x), while the dark fibres at the edge of CMU-1's tissue that
# unmix to a little grey peak at 0.5 to 0.6.
DEBRIS_MIN_PEAK_OD = 0.9
EDGE_MIN_LENGTH_UM = 1000.0  # an edge is a long straight band...
EDGE_MAX_WIDTH_UM = 250.0  # ...this thin at most...
EDGE_MIN_FILL = 0.5  # ...filling this share of its bounding rectangle
BUBBLE_MIN_DIAMETER_UM = 60.0
BUBBLE_MAX_RIM_UM = 60.0  # a bubble's rim is thin (10 to 30 µm); a black ink ring is 100 µm or more
BUBBLE_MIN_HOLE_RATIO = 2.0  # the inside of a closed rim is this many times the rim's own area
BUBBLE_MIN_ROUNDNESS = 0.5  # 4 pi area / perimeter² of the filled rim (a circle 1, an ellipse 2:1 ~0.85)
# Fold: stain OD (smoothed over FOLD_SMOOTH_UM) at least FOLD_RATIO times the tissue's median; a fold
# doubles it, and 1.5 is where the folded-over layer covers half (the truth's edge).
FOLD_RATIO = 1.5
FOLD_SMOOTH_UM = 25.0
FOLD_MIN_AREA_MM2 = 0.02
# A fold has the tissue's own mix of stains (measured: its hematoxylin share within +0.035 of the
# tissue's median on the synthetic folds); CMU-1's dark epidermis, 1.5 to 2.2 times the median OD,
# has +0.09 to +0.14 more hematoxylin. Regions this far above the median share are not folds.
FOLD_MAX_EXTRA_HEMATOXYLIN = 0.06
# Dark grey stays within this angle of the cone of hematoxylin, the second stain and grey.
DARK_MAX_ANGLE_DEG = 6.0
STAIN_MIN_OD = 0.08  # an artefact pixel with this much stain left under it lies over tissue
# Around ink, this far, nothing is grey debris or fold: the ink's soft edge (out of the focal plane,
# ~10 µm) is below its mask's level but still coloured.
INK_EDGE_UM = 20.0


@dataclass(frozen=True)
class Artefacts:
    """What :func:`find_artefacts` found: one bool mask per kind, at the image's shape.

    ``tissue`` is the tissue mask given, less the coverslip artefacts that lie on glass (ink on
    glass is not tissue); tissue under an artefact stays tissue.
    """

    ink: np.ndarray
    bubble: np.ndarray
    debris: np.ndarray
    edge: np.ndarray
    fold: np.ndarray
    tissue: np.ndarray

    def of(self, kind: ArtefactKind) -> np.ndarray:
        """Return the mask of one kind.

        Examples
        --------
        >>> empty = np.zeros((2, 2), bool)
        >>> found = Artefacts(empty, empty, empty | True, empty, empty, empty)
        >>> int(found.of("debris").sum())
        4
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        return getattr(self, kind)

    def union(self) -> np.ndarray:
        """Where any kind was found.

        Examples
        --------
        >>> empty = np.zeros((1, 3), bool)
        >>> ink = np.array([[True, False, False]])
        >>> Artefacts(ink, empty, empty, empty, empty, empty).union().tolist()
        [[True, False, False]]
        """
        return np.logical_or.reduce([self.of(kind) for kind in KINDS])


def find_artefacts(
    rgb: np.ndarray,
    tissue: np.ndarray,
    mpp: float,
    *,
    ink_min_angle_deg: float = INK_MIN_ANGLE_DEG,
    ink_min_od: float = INK_MIN_OD,
    ink_seed_min_area_mm2: float = INK_SEED_MIN_AREA_MM2,
    ink_min_area_mm2: float = INK_MIN_AREA_MM2,
    ink_level: float = INK_LEVEL,
    neutral_min_od: float = NEUTRAL_MIN_OD,
    black_ink_min_area_mm2: float = BLACK_INK_MIN_AREA_MM2,
    debris_min_area_um2: float = DEBRIS_MIN_AREA_UM2,
    edge_min_length_um: float = EDGE_MIN_LENGTH_UM,
    edge_max_width_um: float = EDGE_MAX_WIDTH_UM,
    bubble_min_diameter_um: float = BUBBLE_MIN_DIAMETER_UM,
    bubble_max_rim_um: float = BUBBLE_MAX_RIM_UM,
    fold_ratio: float = FOLD_RATIO,
    fold_smooth_um: float = FOLD_SMOOTH_UM,
    fold_min_area_mm2: float = FOLD_MIN_AREA_MM2,
    stain_min_od: float = STAIN_MIN_OD,
) -> Artefacts:
    """Find marker ink, air bubbles, debris, coverslip / slide edges and tissue folds.

    Parameters
    ----------
    rgb : (rows, cols, 3) uint8
        The slide at the artefact work size (1.25x to 2.5x: 8 to 4 µm per pixel).
    tissue : bool array, any shape
        The tissue mask (Otsu on gray, as the QC finds it: it includes ink, debris and rims);
        resized to ``rgb``'s shape by nearest neighbour.
    mpp : float, > 0
        µm per pixel of ``rgb``.
    ink_min_angle_deg : float, degrees in (0, 90)
        A coloured-ink seed lies at least this far outside the cone of the stains and grey.
    ink_min_od : float, OD > 0
        ... and its OD vector is at least this long.
    ink_seed_min_area_mm2, ink_min_area_mm2 : float, mm²
        A colour counts as ink with this much seed; each ink component is at least this big.
    ink_level : float in (0, 1)
        An ink mask holds its pixels with at least this share of the ink's typical amount.
    neutral_min_od : float, OD per channel
        Dark neutral (grey) density that debris, rims, edges and black ink reach.
    black_ink_min_area_mm2 : float, mm²
        A dark neutral blot (not a rim, not an edge) at least this big is black ink; smaller ones
        are debris, down to ``debris_min_area_um2`` (µm²).
    edge_min_length_um, edge_max_width_um : float, µm
        An edge: a dark band at least this long and at most this wide.
    bubble_min_diameter_um, bubble_max_rim_um : float, µm
        A bubble: a closed dark rim at most ``bubble_max_rim_um`` thick around at least
        ``bubble_min_diameter_um``; its mask is the filled rim.
    fold_ratio : float, > 1
        A fold: stain OD at least this many times the tissue's median ...
    fold_smooth_um : float, µm
        ... smoothed by a Gaussian of this sigma, ...
    fold_min_area_mm2 : float, mm²
        ... over at least this area.
    stain_min_od : float, OD
        An artefact pixel lies over tissue when this much stain is left under it.

    Returns
    -------
    Artefacts
        The masks (bool, ``rgb``'s rows and cols) and the tissue less what lies on glass.
        The kinds do not overlap, except that a bubble's filled mask may hold debris.

    Examples
    --------
    A blue ink blot (OD 0.9, 0.62, 0.18), 400 µm across, on glass at 4 µm per pixel:

    >>> rgb = np.full((200, 200, 3), 250, np.uint8)
    >>> blot = np.zeros((200, 200), np.uint8)
    >>> _ = cv2.circle(blot, (100, 100), 50, 1, -1)
    >>> ink_od = np.array([0.90, 0.62, 0.18])
    >>> rgb[blot > 0] = np.round(250 * np.exp(-ink_od)).astype(np.uint8)
    >>> found = find_artefacts(rgb, blot > 0, mpp=4.0)
    >>> bool(abs(int(found.ink.sum()) - int(blot.sum())) < 0.05 * blot.sum())
    True
    >>> bool(found.tissue.any())  # the blot lies on glass: it is not tissue
    False
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (rows, cols, 3), got {rgb.dtype} {rgb.shape}")
    if not mpp > 0:
        raise ValueError(f"mpp must be > 0, got {mpp}")
    shape = rgb.shape[:2]
    tissue = resize_mask(np.asarray(tissue, bool), shape)
    px_per_mm2 = 1e6 / mpp**2
    od_lut = _od_lut(rgb)
    second = _second_stain(rgb, od_lut)
    neutral_basis = np.stack([HEMATOXYLIN, second, NEUTRAL])
    smooth_sigma = fold_smooth_um / mpp
    features = _strip_features(rgb, od_lut, neutral_basis, smooth_sigma, ink_min_angle_deg, ink_min_od)
    neutral, stain, stain_smooth, seeds, in_cone, hematoxylin_share = features

    ink = _coloured_ink(
        rgb,
        od_lut,
        second,
        seeds,
        stain,
        ink_seed_min_area_mm2 * px_per_mm2,
        ink_min_area_mm2 * px_per_mm2,
        ink_level,
        INK_BRIDGE_UM / mpp,
    )
    # The ink's soft edge, below its mask's level, is still coloured: neither grey nor stain.
    ink_edge = _dilate(ink, INK_EDGE_UM / mpp)
    # Grey only: pixels outside the stains' cone (dye specks, ink too small to count) are not debris.
    # Grey on top of stain stays in the cone of the stains and grey; a colour the slide's stains do
    # not fit (a real hematoxylin bluer than Ruifrok's, dye specks) unmixes to grey with a negative
    # stain, out of the cone.
    dark = (neutral >= neutral_min_od * OD_SCALE) & ~ink_edge & in_cone
    kinds = _dark_kinds(
        dark,
        neutral,
        mpp,
        black_ink_min_area_px=black_ink_min_area_mm2 * px_per_mm2,
        debris_min_area_px=debris_min_area_um2 / mpp**2,
        edge_min_length_px=edge_min_length_um / mpp,
        edge_max_width_px=edge_max_width_um / mpp,
        bubble_min_diameter_px=bubble_min_diameter_um / mpp,
        bubble_max_rim_px=bubble_max_rim_um / mpp,
        ink_level=ink_level,
    )
    ink |= kinds["ink"]
    coverslip = ink | kinds["bubble"] | kinds["debris"] | kinds["edge"]
    on_tissue = over_tissue(coverslip, stain, stain_min_od=stain_min_od)
    tissue_left = tissue & ~(coverslip & ~on_tissue)
    # (Debris and rims are only left out, not grown: a fold holding debris stays a fold, holes filled.)
    not_fold = _dilate(ink | kinds["edge"], INK_EDGE_UM / mpp) | dark | kinds["bubble"]
    fold = _folds(stain_smooth, hematoxylin_share, tissue & ~not_fold, fold_ratio, fold_min_area_mm2 * px_per_mm2)
    return Artefacts(
        ink=ink,
        bubble=kinds["bubble"] & ~ink,
        debris=kinds["debris"] & ~ink,
        edge=kinds["edge"] & ~ink,
        fold=fold,
        tissue=tissue_left,
    )


def over_tissue(mask: np.ndarray, stain: np.ndarray, *, stain_min_od: float = STAIN_MIN_OD) -> np.ndarray:
    """Which pixels of an artefact ``mask`` lie over tissue: those with stain left under them.

    Parameters
    ----------
    mask : (rows, cols) bool
        Where an artefact is.
    stain : (rows, cols) uint8
        Stain OD x :data:`OD_SCALE` (hematoxylin plus the second stain, after the artefact's own
        part is unmixed out), as :func:`find_artefacts` computes it.
    stain_min_od : float, OD
        The least stain that is tissue (bare glass under ink gives ~0.02; H&E 0.3 to 1.5, a
        section stained at 15 % of the usual ~0.08).

    Returns
    -------
    (rows, cols) bool, True where ``mask`` is and the stain (median of 5 x 5 px, so the noise of a
    single pixel does not decide) reaches ``stain_min_od``, in regions at least 3 x 3 px.

    Examples
    --------
    >>> mask = np.ones((1, 10), bool)
    >>> stain = np.array([[0] * 5 + [20] * 5], np.uint8)  # OD 0 on the left, 0.6 on the right
    >>> over_tissue(mask, stain).astype(int).tolist()
    [[0, 0, 0, 0, 0, 1, 1, 1, 1, 1]]
    """
    smoothed = cv2.medianBlur(np.ascontiguousarray(stain, np.uint8), 5)
    stained = (smoothed >= stain_min_od * OD_SCALE).view(np.uint8)
    # Opened by a 3 x 3 square: the one-pixel seam at an artefact's soft edge (where a work pixel
    # averages ink and glass, which in OD is not their mix) reads as a trace of stain.
    stained = cv2.morphologyEx(stained, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)).view(bool)
    return mask & stained


# --- features ---------------------------------------------------------------------------------------


def _od_lut(rgb: np.ndarray) -> np.ndarray:
    """(256, 3) float32: the OD of each 8-bit value per channel, relative to the glass's brightness."""
    glass = []
    for channel in range(3):
        histogram = cv2.calcHist([rgb], [channel], None, [256], [0, 256]).ravel()
        cumulative = np.cumsum(histogram) / histogram.sum()
        glass.append(max(float(np.searchsorted(cumulative, GLASS_PERCENTILE / 100.0)), 1.0))
    values = np.maximum(np.arange(256, dtype=np.float64), 0.5)[:, None]
    return np.maximum(np.log(np.array(glass)[None, :] / values), 0.0).astype(np.float32)


def _od(rgb: np.ndarray, od_lut: np.ndarray) -> np.ndarray:
    """(..., 3) float32 OD of uint8 pixels (any leading shape)."""
    if rgb.size == 0:
        return np.zeros(rgb.shape, np.float32)
    flat = np.ascontiguousarray(rgb).reshape(-1, 1, 3)
    return cv2.LUT(flat, od_lut.reshape(1, 256, 3)).reshape(rgb.shape)


def _second_stain(rgb: np.ndarray, od_lut: np.ndarray) -> np.ndarray:
    """Return the slide's second stain: the vector on the arc from eosin to DAB that fits it best.

    The best fits when its plane with hematoxylin holds the stained pixels' colours closest
    (median angle out of the plane).

    Real eosin is bluer than Ruifrok's (scanners and protocols differ); IHC's brown is DAB itself.
    Judged on a sample of the pixels with some OD but not near grey (black ink or debris can be
    most of what Otsu calls tissue).
    """
    pixels = rgb.reshape(-1, 3)
    sample = _od(pixels[:: max(1, pixels.shape[0] // 20000)], od_lut).astype(np.float64)
    length = np.linalg.norm(sample, axis=1)
    greyness = (sample @ NEUTRAL) / np.maximum(length, 1e-6)
    # Every stain absorbs green at least as much as red; blue and green ink do not, and are left out
    # (a ring of ink can be a quarter of the slide).
    keep = (length > 0.15) & (length < 2.0) & (greyness < np.cos(np.radians(12))) & (sample[:, 1] >= sample[:, 0])
    sample, length = sample[keep], length[keep]
    if sample.shape[0] < 100:
        return EOSIN
    best, best_residual = EOSIN, np.inf
    for share in np.linspace(0.0, 1.0, SECOND_STAIN_STEPS):
        stain = _unit((1 - share) * EOSIN + share * DAB)
        normal = _unit(np.cross(HEMATOXYLIN, stain))
        residual = np.median(np.abs(sample @ normal) / length)
        if residual < best_residual - 1e-4:  # ties go to the purer eosin
            best, best_residual = stain, residual
    return best


def _strip_features(rgb, od_lut, basis, smooth_sigma, ink_min_angle_deg, ink_min_od):
    """uint8 maps (x OD_SCALE) of grey OD per channel, stain OD and smoothed stain OD; bool ink seeds."""
    rows, cols = rgb.shape[:2]
    neutral = np.empty((rows, cols), np.uint8)
    stain = np.empty((rows, cols), np.uint8)
    stain_smooth = np.empty((rows, cols), np.uint16)  # finer: a faint section's median is ~0.1 OD
    seeds = np.empty((rows, cols), bool)
    in_cone = np.empty((rows, cols), bool)  # within DARK_MAX_ANGLE_DEG of the cone of the grey basis
    hematoxylin_share = np.empty((rows, cols), np.uint8)  # of the smoothed stain, x 255
    unmix = np.linalg.inv(basis).astype(np.float32)  # od @ unmix: amounts of the basis vectors
    # IHC sections keep a trace of eosin (and H&E ones no DAB): on IHC the seeds lie outside the cone
    # of all four vectors. (Red ink lies close to the eosin-DAB face: on IHC it is not sought.)
    seed_bases = [basis]
    if basis[1] @ DAB > basis[1] @ EOSIN:  # nearer DAB: IHC
        second = basis[1]
        seed_bases += [
            np.stack(triple)
            for triple in ((HEMATOXYLIN, second, EOSIN), (HEMATOXYLIN, EOSIN, NEUTRAL), (second, EOSIN, NEUTRAL))
        ]
    context = int(np.ceil(4 * smooth_sigma)) + 1
    min_sine = np.float32(np.sin(np.radians(ink_min_angle_deg)))
    for top in range(0, rows, STRIP_ROWS):
        bottom = min(rows, top + STRIP_ROWS)
        lo, hi = max(0, top - context), min(rows, bottom + context)
        od = _od(rgb[lo:hi], od_lut)
        amounts = cv2.transform(od, unmix.T)
        stain_od = np.maximum(amounts[..., 0], 0) + np.maximum(amounts[..., 1], 0)
        smooth = cv2.GaussianBlur(stain_od, (0, 0), smooth_sigma, borderType=cv2.BORDER_REFLECT)
        smooth_h = cv2.GaussianBlur(np.maximum(amounts[..., 0], 0), (0, 0), smooth_sigma, borderType=cv2.BORDER_REFLECT)
        inner = slice(top - lo, top - lo + bottom - top)
        grey = amounts[inner, :, 2] * np.float32(NEUTRAL[0])  # per-channel density of the grey part
        neutral[top:bottom] = _quantise(grey)
        stain[top:bottom] = _quantise(stain_od[inner])
        stain_smooth[top:bottom] = np.clip(smooth[inner] * np.float32(FINE_OD_SCALE) + 0.5, 0, 65535).astype(np.uint16)
        # Outside the cone: what the amounts clipped at 0 leave unexplained, as a share of the OD
        # (the least over the cones of seed_bases: their union is the cone of all their vectors).
        od_inner = od[inner]
        length = _length(od_inner)
        hematoxylin_share[top:bottom] = np.clip(
            255 * smooth_h[inner] / np.maximum(smooth[inner], 1e-3) + 0.5, 0, 255
        ).astype(np.uint8)
        residual = None
        for seed_basis in seed_bases:
            if seed_basis is basis:
                seed_amounts = amounts[inner]
            else:
                seed_amounts = cv2.transform(od_inner, np.linalg.inv(seed_basis).T.astype(np.float32))
            explained = cv2.transform(np.maximum(seed_amounts, 0), seed_basis.T.astype(np.float32))
            this = _length(od_inner - explained)
            if seed_basis is basis:
                in_cone[top:bottom] = this <= np.float32(np.sin(np.radians(DARK_MAX_ANGLE_DEG))) * length
            residual = this if residual is None else np.minimum(residual, this)
        assert residual is not None  # seed_bases always holds basis: the loop ran
        seeds[top:bottom] = (length >= ink_min_od) & (residual >= min_sine * length)
    return neutral, stain, stain_smooth, seeds, in_cone, hematoxylin_share


def _length(vectors: np.ndarray) -> np.ndarray:
    """Return the Euclidean length of (rows, cols, 3) float32 vectors."""
    return cv2.magnitude(cv2.magnitude(vectors[..., 0], vectors[..., 1]), vectors[..., 2])


def _dilate(mask: np.ndarray, radius_px: float) -> np.ndarray:
    """``mask`` grown by a disk of ``radius_px`` (rounded; at least 1 px)."""
    size = 2 * max(1, round(radius_px)) + 1
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    return cv2.dilate(mask.view(np.uint8), disk).view(bool)


def _quantise(od: np.ndarray) -> np.ndarray:
    return np.clip(od * np.float32(OD_SCALE) + np.float32(0.5), 0, 255).astype(np.uint8)


# --- coloured ink -----------------------------------------------------------------------------------


def _coloured_ink(rgb, od_lut, second, seeds, stain, seed_min_area_px, min_area_px, level, bridge_px=0) -> np.ndarray:
    """Blue, green or red ink: per colour among the seeds, its amount unmixed from the stains.

    ``stain`` (uint8, OD x OD_SCALE) is updated in place under the ink found: the stain left
    once the ink's own colour is unmixed out (the grey basis reads ink as hematoxylin).
    """
    ink = np.zeros(seeds.shape, bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(seeds.view(np.uint8), connectivity=8)
    colours: list[tuple[np.ndarray, list[int]]] = []  # (unit OD, seed components)
    # Each seed component's mean OD at once (bincount), not one whole-image comparison a component:
    # a clean slide has hundreds of specks of seed.
    seed_labels = labels[seeds]
    seed_od = _od(rgb[seeds], od_lut)
    sums = np.stack([np.bincount(seed_labels, seed_od[:, c], minlength=count) for c in range(3)], axis=1)
    big_enough = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= max(seed_min_area_px / 4, 4))
    for label in big_enough[big_enough > 0]:
        direction = _unit(sums[label])
        for colour, members in colours:
            if direction @ colour > np.cos(np.radians(10)):
                members.append(label)
                break
        else:
            colours.append((direction, [label]))
    for colour, members in colours:
        is_member = np.zeros(count, bool)
        is_member[members] = True
        member_seeds = is_member[labels]
        if member_seeds.sum() < seed_min_area_px:
            continue
        ink_basis = np.stack([HEMATOXYLIN, second, colour])
        amount = _amount_of(rgb, od_lut, ink_basis, 2)
        typical = np.percentile(amount[member_seeds], 90)
        candidate = amount >= max(level * typical, 1)
        if not _components_touching(candidate, member_seeds, min_area_px).any():
            continue  # (most colours of seed on a clean slide: specks of noise; skip the closing below)
        if bridge_px > 0:
            # Where the stain's own colour lies near the ink's (blue ink and a real hematoxylin are
            # ~15 degrees apart), unmixing cannot part them: ink is kept within strokes' reach of its
            # seeds, which bridges a stroke across tissue but not over a whole stained region.
            size = 2 * round(bridge_px) + 1
            disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
            envelope = cv2.morphologyEx(member_seeds.view(np.uint8), cv2.MORPH_CLOSE, disk).view(bool)
            candidate &= envelope
        found = _components_touching(candidate, member_seeds, min_area_px)
        ink |= found
        if found.any():
            under = np.maximum(_amount_of(rgb, od_lut, ink_basis, 0, found), 0) + _amount_of(
                rgb, od_lut, ink_basis, 1, found
            )
            stain[found] = np.minimum(under, 255).astype(np.uint8)
    return ink


def _amount_of(rgb, od_lut, basis, index, where=None) -> np.ndarray:
    """Return a uint8 map (x OD_SCALE) of the amount of ``basis[index]``, unmixed strip by strip.

    With ``where`` (a bool mask), the amount of those pixels only, as a 1-D uint16 array.
    """
    unmix = np.linalg.inv(basis)[:, index].astype(np.float32)
    if where is not None:
        return _quantise(_od(rgb[where], od_lut) @ unmix).astype(np.uint16)
    out = np.empty(rgb.shape[:2], np.uint8)
    for top in range(0, rgb.shape[0], STRIP_ROWS):
        out[top : top + STRIP_ROWS] = _quantise(cv2.transform(_od(rgb[top : top + STRIP_ROWS], od_lut), unmix[None, :]))
    return out


def _components_touching(mask: np.ndarray, seeds: np.ndarray, min_area_px: float) -> np.ndarray:
    """Return the components of ``mask`` (8-connected) that hold a seed pixel and are at least ``min_area_px``."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
    keep = np.zeros(count, bool)
    keep[np.unique(labels[seeds & mask])] = True
    keep[0] = False
    keep &= stats[:, cv2.CC_STAT_AREA] >= min_area_px
    return keep[labels]


# --- the dark neutral kinds -------------------------------------------------------------------------


def _dark_kinds(
    dark,
    neutral,
    mpp,
    *,
    black_ink_min_area_px,
    debris_min_area_px,
    edge_min_length_px,
    edge_max_width_px,
    bubble_min_diameter_px,
    bubble_max_rim_px,
    ink_level,
) -> dict[str, np.ndarray]:
    """Sort the dark neutral components into edges, bubbles (filled), black ink and debris."""
    shape = dark.shape
    kinds = {kind: np.zeros(shape, bool) for kind in ("ink", "bubble", "debris", "edge")}
    # A one-pixel closing first: a thin rim at the work size breaks where it covers half a pixel.
    closed = cv2.morphologyEx(dark.view(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8)).view(bool)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(closed.view(np.uint8), connectivity=8)
    small = stats[:, cv2.CC_STAT_AREA] < black_ink_min_area_px
    small[0] = False
    debris_keep = small & (stats[:, cv2.CC_STAT_AREA] >= debris_min_area_px)
    if count > 1:
        peaks = ndimage.maximum(neutral, labels, np.arange(count))
        debris_keep &= np.asarray(peaks) >= DEBRIS_MIN_PEAK_OD * OD_SCALE
    big_labels = [label for label in range(1, count) if not small[label]]
    # Small components may still be bubbles (a rim is little area around a big inside) or edge pieces.
    rim_candidates = [
        label
        for label in range(1, count)
        if small[label]
        and max(stats[label, cv2.CC_STAT_WIDTH], stats[label, cv2.CC_STAT_HEIGHT]) >= bubble_min_diameter_px
    ]
    for label in big_labels + rim_candidates:
        x, y, w, h = stats[label, :4]
        window = (slice(y, y + h), slice(x, x + w))
        component = labels[window] == label
        area = int(component.sum())
        points = cv2.findNonZero(component.view(np.uint8))
        (_, _), (side_a, side_b), _ = cv2.minAreaRect(points)
        length, width = max(side_a, side_b), max(min(side_a, side_b), 1.0)
        if length >= edge_min_length_px and width <= edge_max_width_px and area >= EDGE_MIN_FILL * length * width:
            kinds["edge"][window] |= component & dark[window]
            debris_keep[label] = False
            continue
        filled = ndimage.binary_fill_holes(component)
        filled_area = int(filled.sum())
        hole = filled_area - area
        contours, _ = cv2.findContours(filled.view(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        perimeter = max(sum(cv2.arcLength(c, True) for c in contours), 1.0)
        roundness = 4 * np.pi * filled_area / perimeter**2
        diameter = 2 * np.sqrt(filled_area / np.pi)
        rim = area / max(np.pi * diameter, 1.0)
        if (
            hole >= BUBBLE_MIN_HOLE_RATIO * area
            and diameter >= bubble_min_diameter_px
            and rim <= bubble_max_rim_px
            and roundness >= BUBBLE_MIN_ROUNDNESS
        ):
            kinds["bubble"][window] |= filled
            debris_keep[label] = False
            continue
        if not small[label]:  # black ink: its pixels at half its typical darkness or more
            values = neutral[window][component]
            level = max(ink_level * np.percentile(values, 90), 1)
            grown = cv2.dilate(component.view(np.uint8), np.ones((5, 5), np.uint8)).view(bool)
            kinds["ink"][window] |= grown & (neutral[window] >= level)
    kinds["debris"] = debris_keep[labels] & dark
    return kinds


# --- folds ------------------------------------------------------------------------------------------


def _folds(stain_smooth, hematoxylin_share, tissue, ratio: float, min_area_px: float) -> np.ndarray:
    """Return the folds: sizeable regions of tissue with ``ratio`` times its median stain OD or more.

    The stain OD is the smoothed one, and the regions have the tissue's own mix of the stains. A fold doubles both stains; dense nuclei and epithelium are dark by hematoxylin: their share of
    hematoxylin lies FOLD_MAX_EXTRA_HEMATOXYLIN or more above the tissue's median share.
    """
    if not tissue.any():
        return np.zeros(tissue.shape, bool)
    median = float(np.median(stain_smooth[tissue]))
    median_share = float(np.median(hematoxylin_share[tissue]))
    same_mix = hematoxylin_share <= median_share + 255 * FOLD_MAX_EXTRA_HEMATOXYLIN
    dense = tissue & (stain_smooth >= max(ratio * median, 1)) & same_mix
    count, labels, stats, _ = cv2.connectedComponentsWithStats(dense.view(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area_px
    keep[0] = False
    folds = keep[labels]
    return ndimage.binary_fill_holes(folds) if folds.any() else folds
