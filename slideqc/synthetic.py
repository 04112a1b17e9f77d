"""Synthetic whole-slide images with known tissue and blur, for tests and demos.

A slide is an Aperio-style pyramidal SVS (tiled JPEG levels, ``AppMag`` and
``MPP`` in the ImageDescription), so OpenSlide reads it exactly like a scanner's
file. The content is H&E-like: eosin-stained stroma with texture at several
scales and hematoxylin-stained nuclei of realistic size (5 to 9 µm), on white
glass. Chosen regions are out of focus the way a scanner blurs: a Gaussian
whose sigma is given in microns at level 0 (1 to 4 µm is typical), applied to
the level-0 pixels before the pyramid is built.

Everything is procedural and deterministic from a seed, and the slide is
rendered block by block and written tile by tile, so a slide the size of a
real one is made in bounded memory. Beside each slide the ground truth is
written: ``<stem>.truth.json`` (true tissue fraction, true percent blurry) and
the true tissue and blur masks as PNGs at a stated downsample.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal, cast

import cv2
import numpy as np

from slideqc.output.files import atomic_write_bytes

# Optical-density vectors of the two stains (Ruifrok & Johnston), RGB order.
HEMATOXYLIN_OD = np.array([0.650, 0.704, 0.286], dtype=np.float32)
EOSIN_OD = np.array([0.072, 0.990, 0.105], dtype=np.float32)
GLASS_OD = np.float32(0.02)
# DAB (the brown of IHC), Ruifrok & Johnston, RGB order.
DAB_OD = np.array([0.268, 0.570, 0.776], dtype=np.float32)

DESIGN_DOWNSAMPLE = 32  # resolution of the tissue and blur layout fields
TRUTH_DOWNSAMPLE = 16  # resolution of the ground-truth mask PNGs
BLOCK_WIDTH = 4096  # level-0 columns rendered at once (bounds memory)
WRITE_BUFFER = 32 * 2**20  # bytes of tiles tifffile gathers before compressing them
LARGE_LAYOUT_SIGMA = 80  # design pixels: smoother layout noise is made on a coarser grid and steepened


ArtefactKind = Literal["ink", "bubble", "debris", "edge", "fold"]
InkColour = Literal["blue", "green", "black", "red"]
InkShape = Literal["ring", "stroke", "blob"]
ARTEFACT_KINDS: tuple[ArtefactKind, ...] = ("ink", "bubble", "debris", "edge", "fold")

# Optical density of each marker ink at full strength (RGB order): semi-transparent colours, black
# nearly opaque (OD 2.4: ~9 % of the light through). Blue and green absorb red more than green,
# which no histological stain does; red absorbs green and blue, as eosin and DAB do not both.
INK_OD = {
    "blue": (0.90, 0.62, 0.18),
    "green": (0.95, 0.32, 0.70),
    "red": (0.12, 0.95, 0.80),
    "black": (2.4, 2.4, 2.4),
}
ARTEFACT_DOWNSAMPLE = 4  # level-0 pixels per pixel of the artefact maps (1 µm at 40x)
INK_SOFT_EDGE_UM = 6.0  # sigma of the ink's soft edge: the coverslip lies outside the focal plane
RIM_OD = 1.1  # a bubble's rim at its darkest (neutral: refraction, not absorption)
DEBRIS_OD = (1.2, 2.0)  # range of a speck's neutral density
EDGE_OD = 1.0  # a coverslip or slide edge at its darkest
IHC_POSITIVE = 0.4  # share of the cells with DAB on an IHC slide
IHC_EOSIN = 0.1  # eosin on an IHC slide, a multiple of H&E's (a trace: the counterstain is hematoxylin)


@dataclass(frozen=True)
class Artefact:
    """One artefact to draw; sizes in µm, positions as fractions (x, y) of the slide's width and height.

    kind : "ink" (marker on the coverslip), "bubble" (air under the coverslip: thin dark rims),
        "debris" (dark neutral specks, on glass and on tissue), "edge" (a coverslip or slide edge:
        a long straight dark band across the slide), "fold" (tissue over tissue).
    center : where it is; for ``fold``, None puts it at the point deepest inside the tissue. For
        ``bubble`` and ``debris`` the centre of the region they are scattered over.
    size_um : ink: the ring's diameter, the stroke's length or the blob's diameter; bubble: the
        largest bubble's diameter; debris: the largest speck (10 µm is the smallest); fold: its
        length; edge: unused (it crosses the slide).
    width_um : ink: the stroke's width; bubble: the rim's width; edge: the band's width; fold: the
        band's width; debris: unused.
    spread : bubble and debris: the region they are scattered over, a fraction of the slide's
        shorter side (debris: 0 or less scatters over the whole slide).
    count : how many bubbles or specks.
    colour, shape : ink only.
    aspect : the ring's, blob's or bubble's minor to major axis (0 to 1].
    angle_deg : orientation (edge and fold: of the band; ink: of the ellipse or stroke).
    strength : a multiple of the kind's usual optical density.
    shift_um : fold: how far the folded-over copy of the tissue is shifted.
    seed : the random placement of bubbles, specks and strokes.
    """

    kind: ArtefactKind
    center: tuple[float, float] | None = (0.5, 0.5)
    size_um: float = 800.0
    width_um: float = 150.0
    spread: float = 0.5
    count: int = 1
    colour: InkColour = "blue"
    shape: InkShape = "ring"
    aspect: float = 1.0
    angle_deg: float = 0.0
    strength: float = 1.0
    shift_um: float = 60.0
    seed: int = 0

    def __post_init__(self) -> None:
        """Check the fields: a ValueError for an unknown kind, colour or shape, or a size out of range."""
        if self.kind not in ARTEFACT_KINDS:
            raise ValueError(f"artefact kind must be one of {ARTEFACT_KINDS}, got {self.kind!r}")
        if self.colour not in INK_OD:
            raise ValueError(f"ink colour must be one of {tuple(INK_OD)}, got {self.colour!r}")
        if self.shape not in ("ring", "stroke", "blob"):
            raise ValueError(f"ink shape must be ring, stroke or blob, got {self.shape!r}")
        if not (self.size_um > 0 and self.width_um > 0 and 0 < self.aspect <= 1 and self.count >= 1):
            raise ValueError(f"artefact sizes must be > 0, aspect in (0, 1], count >= 1: {self}")


@dataclass(frozen=True)
class SlideSpec:
    """What to draw. Sizes are level-0 pixels; physical sizes are microns."""

    name: str
    width: int = 8192
    height: int = 6144
    magnification: float = 40.0
    mpp: float = 0.25
    blurred_fraction: float = 0.0  # target fraction of the tissue out of focus
    blur_sigma_um: tuple[float, float] = (2.0, 2.0)  # per-region sigma range
    tissue_fraction: float = 0.35  # target fraction of the slide that is tissue
    seed: int = 0
    tile: int = 256
    downsamples: tuple[int, ...] = (1, 4, 16)
    jpeg_quality: int = 85
    write_objective_power: bool = True
    write_mpp: bool = True
    # Stain strength, a multiple of the usual optical density of both stains (1.0 = the usual H&E;
    # 0.25 = a pale, faded or lightly stained section). The glass stays as it is.
    stain: float = 1.0
    # "he": hematoxylin and eosin; "ihc": hematoxylin nuclei and DAB brown in a share of the cells
    # and their membranes, with little eosin.
    stain_kind: Literal["he", "ihc"] = "he"
    # Artefacts drawn on the slide (see Artefact), each with its truth mask.
    artefacts: tuple[Artefact, ...] = ()

    def __post_init__(self) -> None:
        """Check the fields: a ValueError names the first one out of its range (stain, size, blur, downsamples)."""
        if self.stain_kind not in ("he", "ihc"):
            raise ValueError(f"{self.name}: stain_kind must be 'he' or 'ihc', got {self.stain_kind!r}")
        if not self.stain > 0:
            raise ValueError(f"{self.name}: stain must be > 0, got {self.stain}")
        if self.width < self.tile or self.height < self.tile:
            raise ValueError(f"{self.name}: slide must be at least one tile ({self.tile} px)")
        if not 0.0 <= self.blurred_fraction <= 1.0:
            raise ValueError(f"{self.name}: blurred_fraction must be in [0, 1]")
        steps = list(zip(self.downsamples, self.downsamples[1:], strict=False))
        if self.downsamples[:1] != (1,) or any(b <= a or b % a for a, b in steps):
            raise ValueError(
                f"{self.name}: downsamples must start at 1 and each divide the next, got {self.downsamples}"
            )


@dataclass
class Truth:
    """Ground truth written beside a synthetic slide."""

    tissue_fraction: float
    percent_blurry: float
    blur_sigma_um: list[float]
    mask_downsample: int
    spec: dict = field(default_factory=dict)
    # Per artefact kind drawn: {"slide_fraction": share of the slide (0 to 1), "tissue_fraction":
    # share of the tissue (0 to 1)}, from the truth masks. Empty on slides without artefacts.
    artefacts: dict = field(default_factory=dict)
    # Percent blurry of the tissue under no artefact (truth masks); None when no artefact is drawn.
    percent_blurry_clean: float | None = None


# --- deterministic noise -------------------------------------------------------------


def _hash_uniform(ix: np.ndarray, iy: np.ndarray, seed: int, channel: int = 0) -> np.ndarray:
    """Uniform [0, 1) values that depend only on integer lattice coordinates and a seed."""
    with np.errstate(over="ignore"):
        h = (
            ix.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
            ^ iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
            ^ np.uint64((seed * 0x165667B1 + channel * 0x27D4EB2F) & 0xFFFFFFFFFFFFFFFF)
        )
        # splitmix64 finaliser
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _value_noise(y0: int, x0: int, h: int, w: int, cell: float, seed: int) -> np.ndarray:
    """Smooth value noise in [0, 1] over level-0 pixels [y0, y0+h) x [x0, x0+w).

    Continuous across blocks because the lattice values depend only on
    absolute lattice coordinates.
    """
    ly0, lx0 = math.floor(y0 / cell), math.floor(x0 / cell)
    ly1, lx1 = math.floor((y0 + h) / cell) + 2, math.floor((x0 + w) / cell) + 2
    iy, ix = np.meshgrid(np.arange(ly0, ly1), np.arange(lx0, lx1), indexing="ij")
    lattice = _hash_uniform(ix, iy, seed).astype(np.float32)
    ys = (np.arange(y0, y0 + h) + 0.5) / cell - ly0
    xs = (np.arange(x0, x0 + w) + 0.5) / cell - lx0
    return _bilinear(lattice, ys, xs, smooth=True)


def _bilinear(grid: np.ndarray, ys: np.ndarray, xs: np.ndarray, smooth: bool = False) -> np.ndarray:
    """Separable (bi)linear interpolation of ``grid`` at fractional rows ``ys``, columns ``xs``."""
    ys = np.clip(ys, 0, grid.shape[0] - 1.000001)
    xs = np.clip(xs, 0, grid.shape[1] - 1.000001)
    yi, xi = ys.astype(np.int64), xs.astype(np.int64)
    wy, wx = (ys - yi).astype(np.float32), (xs - xi).astype(np.float32)
    if smooth:  # smoothstep weights remove the lattice's visible creases
        wy, wx = wy * wy * (3 - 2 * wy), wx * wx * (3 - 2 * wx)
    rows = grid[yi] * (1 - wy)[:, None] + grid[yi + 1] * wy[:, None]
    return rows[:, xi] * (1 - wx)[None, :] + rows[:, xi + 1] * wx[None, :]


# --- layout: where the tissue is, and where it is out of focus -----------------------


@dataclass
class _Layout:
    tissue_field: np.ndarray  # design grid, tissue where > 0
    sigma_field: np.ndarray  # design grid, blur sigma in µm, 0 where in focus
    region_sigmas: list[float]
    artefacts: _ArtefactMaps | None = None


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian-smoothed white noise of ``shape``, normalised to mean 0 and std 1."""
    factor = math.ceil(sigma / 16) if sigma > LARGE_LAYOUT_SIGMA else 1
    # A Gaussian of sigma s costs ~8 s taps per pixel: a big slide's layout (s > 200) took
    # minutes, so smooth a coarser grid and interpolate (the demo and benchmark sets keep
    # their exact layouts: their sigmas are below the cut).
    small = (math.ceil(shape[0] / factor), math.ceil(shape[1] / factor))
    noise = rng.standard_normal(small).astype(np.float32)
    smooth = cv2.GaussianBlur(noise, (0, 0), sigma / factor, borderType=cv2.BORDER_REFLECT)
    if factor > 1:
        smooth = cv2.resize(smooth, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)
    return (smooth - smooth.mean()) / (smooth.std() + 1e-9)


def _make_layout(spec: SlideSpec) -> _Layout:
    rng = np.random.default_rng(spec.seed)
    gh = math.ceil(spec.height / DESIGN_DOWNSAMPLE) + 1
    gw = math.ceil(spec.width / DESIGN_DOWNSAMPLE) + 1
    scale = min(gh, gw)
    # Tissue: a few large pieces, kept off the slide's edges.
    field_ = _smooth_noise((gh, gw), scale / 9, rng)
    yy, xx = np.meshgrid(np.linspace(-1, 1, gh), np.linspace(-1, 1, gw), indexing="ij")
    field_ -= 2.5 * np.maximum(np.abs(yy), np.abs(xx)) ** 6
    threshold = np.quantile(field_, 1.0 - spec.tissue_fraction)
    # The tissue's soft edge and its rim without nuclei are set by the field's slope, which
    # falls as the pieces grow with the slide: steepen big layouts back to that of a
    # LARGE_LAYOUT_SIGMA one, or a real-size slide gets a rim of blank stroma 100 µm wide.
    steepen = max(1.0, scale / 9 / LARGE_LAYOUT_SIGMA)
    tissue_field = ((field_ - threshold) * steepen).astype(np.float32)

    # Blur: smooth regions inside the tissue covering the target fraction of it.
    sigma_field = np.zeros((gh, gw), np.float32)
    region_sigmas: list[float] = []
    tissue = tissue_field > 0
    if spec.blurred_fraction > 0 and tissue.any():
        blur_noise = _smooth_noise((gh, gw), scale / 7, rng)
        cut = np.quantile(blur_noise[tissue], 1.0 - spec.blurred_fraction)
        # Imported here, not at the top: scikit-image takes ~1 s to import, and every QC process
        # imports this module for read_truth.
        from skimage.measure import label

        regions = label(blur_noise >= cut, connectivity=2)
        for region_id in range(1, regions.max() + 1):
            sigma = float(rng.uniform(*spec.blur_sigma_um))
            sigma_field[regions == region_id] = round(sigma, 2)
            region_sigmas.append(round(sigma, 2))
    layout = _Layout(tissue_field, sigma_field, region_sigmas)
    if spec.artefacts:
        layout.artefacts = _artefact_maps(
            spec.artefacts, spec.width, spec.height, spec.mpp, ARTEFACT_DOWNSAMPLE, partial(_tissue_level_at, layout)
        )
    return layout


def _tissue_level_at(layout: _Layout, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Return the tissue level (> 0 in tissue) at level-0 rows ``ys`` by columns ``xs`` (pixel centres)."""
    return _bilinear(layout.tissue_field, (ys + 0.5) / DESIGN_DOWNSAMPLE - 0.5, (xs + 0.5) / DESIGN_DOWNSAMPLE - 0.5)


# --- artefacts: drawn once per slide on a grid of ARTEFACT_DOWNSAMPLE, interpolated per block ----------


@dataclass
class _ArtefactMaps:
    downsample: int  # level-0 pixels per map pixel
    coverslip_od: np.ndarray | None  # (3, rows, cols) float32: OD added after the focus blur
    fold_alpha: np.ndarray | None  # (rows, cols) float32: weight of the folded-over copy of the tissue
    fold_shift: tuple[int, int]  # level-0 (rows, cols) the folded-over copy is taken from
    truth: dict[str, np.ndarray]  # kind -> bool (rows, cols)

    def window(self, grid: np.ndarray, y0: int, x0: int, h: int, w: int) -> np.ndarray | None:
        """``grid`` bilinearly interpolated at level-0 region [y0, y0+h) x [x0, x0+w); None when all 0 there."""
        d = self.downsample
        gy0, gx0 = max(0, y0 // d - 1), max(0, x0 // d - 1)
        if not grid[gy0 : (y0 + h) // d + 2, gx0 : (x0 + w) // d + 2].any():
            return None
        ys = (np.arange(y0, y0 + h) + 0.5) / d - 0.5
        xs = (np.arange(x0, x0 + w) + 0.5) / d - 0.5
        return _bilinear(grid, ys, xs)

    def coverslip_block(self, y0: int, x0: int, h: int, w: int) -> np.ndarray | None:
        """(h, w, 3) float32 coverslip OD of a level-0 block, or None where there is none."""
        if self.coverslip_od is None:
            return None
        channels = [self.window(channel, y0, x0, h, w) for channel in self.coverslip_od]
        if all(c is None for c in channels):
            return None
        return np.stack([np.zeros((h, w), np.float32) if c is None else c for c in channels], axis=-1)


def _artefact_maps(
    artefacts: tuple[Artefact, ...], width: int, height: int, mpp: float, downsample: int, tissue_level_at=None
) -> _ArtefactMaps:
    """Draw ``artefacts`` on a grid of ``downsample`` level-0 pixels of ``mpp`` µm.

    ``tissue_level_at(ys, xs)`` gives the tissue level at level-0 pixel centres (folds need it;
    None for a real slide, which cannot be given folds).
    """
    rows, cols = math.ceil(height / downsample), math.ceil(width / downsample)
    um = mpp * downsample  # µm per grid pixel
    coverslip = np.zeros((3, rows, cols), np.float32)
    fold_alpha, fold_shift = None, (0, 0)
    truth: dict[str, np.ndarray] = {}
    short_side = min(rows, cols)

    def soft(shape_mask: np.ndarray, sigma_um: float) -> np.ndarray:
        return cv2.GaussianBlur(shape_mask, (0, 0), max(sigma_um / um, 0.3))

    def add_truth(kind: str, mask: np.ndarray) -> None:
        truth[kind] = truth[kind] | mask if kind in truth else mask

    for index, art in enumerate(artefacts):
        rng = np.random.default_rng([art.seed, index])
        cx, cy = (0.5, 0.5) if art.center is None else art.center
        center = np.array([cx * cols, cy * rows])
        canvas = np.zeros((rows, cols), np.float32)
        if art.kind == "ink":
            radius = art.size_um / 2 / um
            axes = (radius, radius * art.aspect)
            thickness = max(1, round(art.width_um / um))
            if art.shape == "ring":
                _ellipse(canvas, center, (axes[0] - thickness / 2, axes[1] - thickness / 2), art.angle_deg, thickness)
            elif art.shape == "blob":
                _ellipse(canvas, center, axes, art.angle_deg, -1)
            else:  # a gentle S-shaped stroke of the stated length
                t = np.linspace(-0.5, 0.5, 200)
                along, across = t * 2 * radius, 0.12 * 2 * radius * np.sin(2 * np.pi * t + rng.uniform(0, np.pi))
                turn = math.radians(art.angle_deg)
                points = center + np.stack(
                    [
                        along * math.cos(turn) - across * math.sin(turn),
                        along * math.sin(turn) + across * math.cos(turn),
                    ],
                    axis=1,
                )
                cv2.polylines(canvas, [np.round(points * 16).astype(np.int32)], False, 1.0, thickness, cv2.LINE_AA, 4)
            alpha = soft(canvas, INK_SOFT_EDGE_UM)
            add_truth("ink", alpha > 0.5)
            # Marker ink is laid down unevenly, but smoothly: +-10 % over a few hundred µm.
            unevenness = 0.9 + 0.2 * _value_noise(0, 0, rows, cols, 300.0 / um, art.seed + 11)
            alpha *= unevenness * np.float32(art.strength)
            for channel, od in enumerate(INK_OD[art.colour]):
                coverslip[channel] += alpha * np.float32(od)
        elif art.kind == "bubble":
            filled = np.zeros((rows, cols), np.float32)
            placed: list[tuple[np.ndarray, float]] = []
            for _ in range(art.count):
                for _attempt in range(200):
                    radius = art.size_um / 2 / um * rng.uniform(0.55, 1.0)
                    where = center + (rng.uniform(-0.5, 0.5, 2) * art.spread * short_side)
                    inside = radius < where[0] < cols - radius and radius < where[1] < rows - radius
                    if inside and all(np.hypot(*(where - c)) > radius + r + 20 / um for c, r in placed):
                        break
                placed.append((where, radius))
                axes = (radius, radius * rng.uniform(art.aspect, 1.0))
                angle = rng.uniform(0, 180)
                rim = max(1, round(art.width_um / um))
                _ellipse(canvas, where, (axes[0] - rim / 2, axes[1] - rim / 2), angle, rim)
                _ellipse(filled, where, axes, angle, -1)
            add_truth("bubble", soft(filled, 1.0) > 0.5)
            coverslip += soft(canvas, 2.0)[None] * np.float32(RIM_OD * art.strength)
        elif art.kind == "debris":
            for _ in range(art.count):
                size = math.exp(rng.uniform(math.log(10.0), math.log(max(art.size_um, 10.0)))) / um
                if art.spread > 0:
                    where = center + rng.uniform(-0.5, 0.5, 2) * art.spread * short_side
                else:
                    where = rng.uniform(0.03, 0.97, 2) * (cols, rows)
                # An irregular polygon: 9 corners at 70 to 100 % of the radius.
                turns = np.sort(rng.uniform(0, 2 * np.pi, 9))
                radii = size / 2 * rng.uniform(0.7, 1.0, 9) * np.where(np.arange(9) % 2, rng.uniform(0.5, 1.0), 1.0)
                corners = where + np.stack([radii * np.cos(turns), radii * np.sin(turns)], axis=1)
                speck = np.zeros_like(canvas)
                cv2.fillPoly(speck, [np.round(corners * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
                canvas = np.maximum(canvas, speck * np.float32(rng.uniform(*DEBRIS_OD) / DEBRIS_OD[1]))
            alpha = soft((canvas > 0).astype(np.float32) * canvas, 1.0)
            add_truth("debris", soft((canvas > 0).astype(np.float32), 1.0) > 0.5)
            coverslip += alpha[None] * np.float32(DEBRIS_OD[1] * art.strength)
        elif art.kind == "edge":
            turn = math.radians(art.angle_deg)
            reach = 2 * (rows + cols)
            direction = np.array([math.cos(turn), math.sin(turn)])
            ends = [center - reach * direction, center + reach * direction]
            thickness = max(1, round(art.width_um / um))
            start, end = (tuple(int(v) for v in np.round(e * 16)) for e in ends)
            cv2.line(canvas, start, end, 1.0, thickness, cv2.LINE_AA, 4)
            alpha = soft(canvas, 3.0)
            add_truth("edge", alpha > 0.5)
            coverslip += alpha[None] * np.float32(EDGE_OD * art.strength)
        else:  # fold: tissue over tissue, drawn at render time from a shifted copy of the tissue
            if tissue_level_at is None:
                raise ValueError("a fold can only be drawn on a synthetic slide (it needs the tissue's own layers)")
            grid_ys = np.arange(rows) * downsample + downsample / 2 - 0.5
            grid_xs = np.arange(cols) * downsample + downsample / 2 - 0.5
            tissue_level = tissue_level_at(grid_ys, grid_xs)
            if art.center is None:  # the point deepest inside the tissue
                depth = cv2.distanceTransform((tissue_level > 0).astype(np.uint8), cv2.DIST_L2, 5)
                deepest_row, deepest_col = np.unravel_index(int(np.argmax(depth)), depth.shape)
                center = np.array([deepest_col, deepest_row], float)
            _ellipse(canvas, center, (art.size_um / 2 / um, art.width_um / 2 / um), art.angle_deg, -1)
            turn = math.radians(art.angle_deg + 90)
            shift_px = art.shift_um / mpp
            fold_shift = (round(shift_px * math.sin(turn)), round(shift_px * math.cos(turn)))
            shifted_level = tissue_level_at(grid_ys + fold_shift[0], grid_xs + fold_shift[1])
            in_both = (tissue_level > 0) & (shifted_level > 0)
            alpha = soft(canvas, 5.0) * in_both.astype(np.float32) * np.float32(art.strength)
            fold_alpha = alpha if fold_alpha is None else np.maximum(fold_alpha, alpha)
            add_truth("fold", alpha > 0.5 * art.strength)
    return _ArtefactMaps(
        downsample=downsample,
        coverslip_od=coverslip if coverslip.any() else None,
        fold_alpha=fold_alpha,
        fold_shift=fold_shift,
        truth=truth,
    )


def _ellipse(canvas: np.ndarray, center: np.ndarray, axes, angle: float, thickness: int) -> None:
    """Draw an anti-aliased ellipse (outline of ``thickness`` px, or filled with -1) of value 1, sub-pixel placed."""
    cv2.ellipse(
        canvas,
        (int(round(center[0] * 16)), int(round(center[1] * 16))),
        (max(1, int(round(axes[0] * 16))), max(1, int(round(axes[1] * 16)))),
        float(angle),
        0,
        360,
        1.0,
        thickness,
        cv2.LINE_AA,
        4,
    )


# --- rendering -------------------------------------------------------------------------


def _design_coords(start: int, count: int) -> np.ndarray:
    return (np.arange(start, start + count) + 0.5) / DESIGN_DOWNSAMPLE - 0.5


def _nearest_design(grid: np.ndarray, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    yi = np.clip((np.arange(y0, y0 + h)) // DESIGN_DOWNSAMPLE, 0, grid.shape[0] - 1)
    xi = np.clip((np.arange(x0, x0 + w)) // DESIGN_DOWNSAMPLE, 0, grid.shape[1] - 1)
    return grid[yi][:, xi]


def _draw_nuclei(canvas: np.ndarray, y0: int, x0: int, spec: SlideSpec, layout: _Layout, dab: bool = False) -> None:
    """Hematoxylin density of nuclei (filled anti-aliased ellipses) into ``canvas``.

    With ``dab``, the DAB density of the positive cells instead: a share (IHC_POSITIVE) of the
    same cells, each a membrane ring around its nucleus and a paler cytoplasm.
    """
    cell = 10.0 / spec.mpp  # one candidate nucleus per 10 µm square
    h, w = canvas.shape
    cy0, cx0 = math.floor(y0 / cell) - 1, math.floor(x0 / cell) - 1
    cy1, cx1 = math.floor((y0 + h) / cell) + 1, math.floor((x0 + w) / cell) + 1
    grid_y, grid_x = np.meshgrid(np.arange(cy0, cy1 + 1), np.arange(cx0, cx1 + 1), indexing="ij")
    iy, ix = grid_y.ravel(), grid_x.ravel()
    u = [_hash_uniform(ix, iy, spec.seed, channel) for channel in range(6)]
    cy = (iy + 0.15 + 0.7 * u[0]) * cell
    cx = (ix + 0.15 + 0.7 * u[1]) * cell
    gy = np.clip(cy / DESIGN_DOWNSAMPLE - 0.5, 0, layout.tissue_field.shape[0] - 1.000001)
    gx = np.clip(cx / DESIGN_DOWNSAMPLE - 0.5, 0, layout.tissue_field.shape[1] - 1.000001)
    in_tissue = layout.tissue_field[gy.astype(int), gx.astype(int)] > 0.05
    keep = in_tissue & (u[2] < 0.55)
    scale = 16  # sub-pixel precision for cv2.ellipse (4 fractional bits)
    if dab:
        positive = keep & (_hash_uniform(ix, iy, spec.seed, 6) < IHC_POSITIVE)
        for yy, xx, ra, ang in zip(
            cy[positive] - y0,
            cx[positive] - x0,
            (2.6 + 1.8 * u[3][positive]) / spec.mpp,
            u[5][positive] * 180.0,
            strict=True,
        ):
            centre, axes = (int(xx * scale), int(yy * scale)), (int(1.9 * ra * scale), int(1.6 * ra * scale))
            cv2.ellipse(canvas, centre, axes, float(ang), 0, 360, 0.3, -1, cv2.LINE_AA, 4)
            cv2.ellipse(canvas, centre, axes, float(ang), 0, 360, 0.9, max(1, round(1.0 / spec.mpp)), cv2.LINE_AA, 4)
        return
    for yy, xx, ra, rb, ang, dens in zip(
        cy[keep] - y0,
        cx[keep] - x0,
        (2.6 + 1.8 * u[3][keep]) / spec.mpp,
        (2.6 + 1.8 * u[4][keep]) / spec.mpp * 0.8,
        u[5][keep] * 180.0,
        0.75 + 0.5 * u[3][keep] * u[4][keep],
        strict=True,
    ):
        cv2.ellipse(
            canvas,
            (int(xx * scale), int(yy * scale)),
            (int(ra * scale), int(rb * scale)),
            float(ang),
            0,
            360,
            float(dens),
            -1,
            cv2.LINE_AA,
            4,
        )


def _render_block(spec: SlideSpec, layout: _Layout, y0: int, x0: int, h: int, w: int):
    """RGB uint8 pixels of level-0 region [y0, y0+h) x [x0, x0+w), with true masks."""
    sigma_max_px = max(layout.region_sigmas, default=0.0) / spec.mpp
    margin = int(math.ceil(4 * sigma_max_px)) + 2
    ry0, rx0, rh, rw = y0 - margin, x0 - margin, h + 2 * margin, w + 2 * margin
    maps = layout.artefacts
    coverslip = maps.coverslip_block(y0, x0, h, w) if maps is not None else None
    if _is_glass(layout, ry0, rx0, rh, rw):
        return _render_glass(spec, y0, x0, h, w, coverslip), np.zeros((h, w), bool), np.zeros((h, w), bool)

    tissue_level, eosin, hematoxylin, dab = _stain_layers(spec, layout, ry0, rx0, rh, rw)
    fold = None if maps is None or maps.fold_alpha is None else maps.window(maps.fold_alpha, ry0, rx0, rh, rw)
    if fold is not None:  # tissue over tissue: the section's own stain, shifted, added (before the focus blur)
        assert maps is not None  # fold is None without maps
        dy, dx = maps.fold_shift
        _, eosin_over, hematoxylin_over, dab_over = _stain_layers(spec, layout, ry0 + dy, rx0 + dx, rh, rw)
        eosin = eosin + fold * eosin_over
        hematoxylin = hematoxylin + fold * hematoxylin_over
        if dab is not None:
            dab = dab + fold * dab_over
    od = GLASS_OD + eosin[..., None] * EOSIN_OD + hematoxylin[..., None] * HEMATOXYLIN_OD
    if dab is not None:
        od += dab[..., None] * DAB_OD
    rgb = np.float32(255.0) * np.exp(-od)

    sigma_um = _nearest_design(layout.sigma_field, ry0, rx0, rh, rw)
    for sigma in sorted(set(layout.region_sigmas)):
        where = sigma_um == sigma
        if where.any():
            blurred = cv2.GaussianBlur(rgb, (0, 0), sigma / spec.mpp, borderType=cv2.BORDER_REFLECT)
            np.copyto(rgb, blurred, where=where[..., None])

    rgb = rgb[margin : margin + h, margin : margin + w]
    if coverslip is not None:  # on the coverslip: after the focus blur, before the sensor noise
        rgb = rgb * np.exp(-coverslip)
    rgb = _add_sensor_noise(rgb, spec, y0, x0)
    tissue = tissue_level[margin : margin + h, margin : margin + w] > 0
    blurred_mask = sigma_um[margin : margin + h, margin : margin + w] > 0
    return rgb, tissue, blurred_mask


def _stain_layers(spec: SlideSpec, layout: _Layout, ry0: int, rx0: int, rh: int, rw: int):
    """Return the tissue level and the stain densities (eosin, hematoxylin, DAB or None) of a level-0 region."""
    tissue_level = _bilinear(layout.tissue_field, _design_coords(ry0, rh), _design_coords(rx0, rw))
    # A soft edge a few pixels wide, as real tissue has; the truth is level > 0.
    alpha = np.clip(tissue_level * 40.0 + 0.5, 0.0, 1.0)
    coarse = _value_noise(ry0, rx0, rh, rw, 40.0 / spec.mpp, spec.seed + 1)
    medium = _value_noise(ry0, rx0, rh, rw, 9.0 / spec.mpp, spec.seed + 2)
    # Two lattices of unrelated pitch, so no grid shows through.
    fine = 0.5 * (
        _value_noise(ry0, rx0, rh, rw, 2.6 / spec.mpp, spec.seed + 3)
        + _value_noise(ry0 + 7, rx0 + 13, rh, rw, 4.1 / spec.mpp, spec.seed + 4)
    )
    # Collagen fibres: bands with fairly sharp edges and pale gaps between them.
    fibres = 1.0 / (1.0 + np.exp(np.float32(-16.0) * (fine + np.float32(0.4) * medium - np.float32(0.7))))
    eosin = alpha * (0.08 + 0.25 * coarse + 0.45 * fibres)
    nuclei = np.zeros((rh, rw), np.float32)
    _draw_nuclei(nuclei, ry0, rx0, spec, layout)
    hematoxylin = alpha * (0.04 + 0.05 * medium + nuclei * (0.55 + 0.35 * fine))
    dab = None
    if spec.stain_kind == "ihc":
        # IHC: a counterstain of hematoxylin, little eosin, DAB brown in a share of the cells.
        eosin = eosin * np.float32(IHC_EOSIN)
        cells = np.zeros((rh, rw), np.float32)
        _draw_nuclei(cells, ry0, rx0, spec, layout, dab=True)
        dab = alpha * cells * (0.7 + 0.3 * fine)
    if spec.stain != 1.0:  # (skipped at 1.0 so the usual slides keep their exact pixels)
        eosin, hematoxylin = eosin * np.float32(spec.stain), hematoxylin * np.float32(spec.stain)
        if dab is not None:
            dab = dab * np.float32(spec.stain)
    return tissue_level, eosin, hematoxylin, dab


def _add_sensor_noise(rgb: np.ndarray, spec: SlideSpec, y0: int, x0: int) -> np.ndarray:
    """``rgb`` (float32) plus the sensor noise of the block at (y0, x0), rounded to uint8."""
    noise = np.empty(rgb.shape, np.float32)
    # OpenCV's generator is per thread and ~10x faster than numpy's; tuples of ints hash
    # reproducibly, so each block's noise is the same in any thread, in any run.
    cv2.setRNGSeed(hash((spec.seed, y0, x0)) & 0x7FFFFFFF)
    cv2.randn(noise, 0.0, 1.5)  # type: ignore[call-overload]  # OpenCV takes numbers for mean and stddev; its stubs list arrays only
    noise += rgb
    noise += 0.5
    return np.clip(noise, 0, 255, out=noise).astype(np.uint8)


def _is_glass(layout: _Layout, y0: int, x0: int, h: int, w: int) -> bool:
    """Return True when no tissue reaches level-0 region [y0, y0+h) x [x0, x0+w), margins included.

    The tissue level there interpolates the design cells around it, so it is at
    most their maximum; below -1/80 the tissue's opacity is 0 (see _render_block).
    """
    rows, cols = layout.tissue_field.shape
    gy0, gx0 = (
        max(0, min(n - 1, math.floor(c[0]))) for c, n in ((_design_coords(y0, 1), rows), (_design_coords(x0, 1), cols))
    )
    gy1, gx1 = (
        max(0, min(n - 1, math.floor(c[0]) + 1)) + 1
        for c, n in ((_design_coords(y0 + h - 1, 1), rows), (_design_coords(x0 + w - 1, 1), cols))
    )
    return bool(layout.tissue_field[gy0:gy1, gx0:gx1].max() <= -1.0 / 80)


def _render_glass(spec: SlideSpec, y0: int, x0: int, h: int, w: int, coverslip: np.ndarray | None = None) -> np.ndarray:
    """Bare glass: what _render_block draws where there is no tissue, ~20x faster.

    Real slides are mostly glass, so this is most of a big slide's pixels. ``coverslip``: the
    OD of the artefacts on the coverslip there, if any.
    """
    glass = np.full((h, w, 3), np.float32(255.0) * np.exp(-GLASS_OD), np.float32)
    if coverslip is not None:
        glass *= np.exp(-coverslip)
    return _add_sensor_noise(glass, spec, y0, x0)


# --- writing ----------------------------------------------------------------------------


def _aperio_description(spec: SlideSpec, width: int, height: int) -> str:
    fields = [
        f"Aperio Image Library v12.0.16 \r\n{width}x{height} [0,0 {width}x{height}] "
        f"({spec.tile}x{spec.tile}) JPEG/RGB Q={spec.jpeg_quality}"
    ]
    if spec.write_objective_power:
        fields.append(f"AppMag = {spec.magnification:g}")
    if spec.write_mpp:
        fields.append(f"MPP = {spec.mpp:.4f}")
    fields += [f"Filename = {spec.name}", "ScanScope ID = SYNTHETIC"]
    return "|".join(fields)


def _tiles(image: np.ndarray, tile: int) -> Iterator[np.ndarray]:
    """Yield the tiles of ``image`` in TIFF order, partial ones padded with white glass."""
    h, w = image.shape[:2]
    for ty in range(0, h, tile):
        for tx in range(0, w, tile):
            t = image[ty : ty + tile, tx : tx + tile]
            if t.shape[0] != tile or t.shape[1] != tile:
                t = np.pad(t, ((0, tile - t.shape[0]), (0, tile - t.shape[1]), (0, 0)), constant_values=255)
            yield t


class _LevelFile:
    """One pyramid level below level 0, made strip by strip from the level above, kept on disk.

    Rows arrive in order; each ``factor`` of them become one row here (an area
    average, OpenCV's INTER_AREA at an integer factor). The level is written to
    a raw file with plain writes and read back strip by strip, so it never sits
    in memory (a memory map would count every page it touches).
    """

    def __init__(self, path: Path, factor: int, shape: tuple[int, int]) -> None:
        self.path, self.factor, self.shape = path, factor, shape
        self.rows_written = 0
        self._pending: np.ndarray | None = None
        self._file = open(path, "wb")  # noqa: SIM115 - closed in finish()

    def add(self, rows: np.ndarray) -> np.ndarray:
        """Take the next rows of the level above; return the rows of this level they completed."""
        if self._pending is not None:
            rows = np.concatenate([self._pending, rows])
        whole = rows.shape[0] // self.factor * self.factor
        self._pending = rows[whole:] if whole < rows.shape[0] else None
        height, width = self.shape
        count = min(whole // self.factor, height - self.rows_written)
        if count <= 0:
            return rows[:0, :width]
        done = cv2.resize(
            rows[: count * self.factor, : width * self.factor], (width, count), interpolation=cv2.INTER_AREA
        )
        self._file.write(np.ascontiguousarray(done).tobytes())
        self.rows_written += count
        return done

    def finish(self) -> None:
        self._file.close()

    def strips(self, rows: int) -> Iterator[np.ndarray]:
        """Yield the level back from disk, ``rows`` at a time."""
        height, width = self.shape
        with open(self.path, "rb") as handle:
            for top in range(0, height, rows):
                strip = np.empty((min(rows, height - top), width, 3), np.uint8)
                handle.readinto(strip.data.cast("B"))
                yield strip


def _render_strip(spec: SlideSpec, layout: _Layout, y0: int):
    """Level-0 rows [y0, y0 + tile) of the slide: RGB, pixel counts, true masks at the truth downsample."""
    h = min(spec.tile, spec.height - y0)
    strip = np.empty((h, spec.width, 3), np.uint8)
    tissue_rows = np.zeros((h // TRUTH_DOWNSAMPLE, spec.width // TRUTH_DOWNSAMPLE), bool)
    blur_rows = np.zeros_like(tissue_rows)
    tissue_count = blurred_count = 0
    for x0 in range(0, spec.width, BLOCK_WIDTH):
        w = min(BLOCK_WIDTH, spec.width - x0)
        rgb, tissue, blurred = _render_block(spec, layout, y0, x0, h, w)
        strip[:, x0 : x0 + w] = rgb
        if not tissue.any():
            continue
        tissue_count += int(np.count_nonzero(tissue))
        blurred_count += int(np.count_nonzero(tissue & blurred))
        tx, tw = x0 // TRUTH_DOWNSAMPLE, w // TRUTH_DOWNSAMPLE
        truth_shape = tissue_rows[:, tx : tx + tw].shape
        tissue_rows[:, tx : tx + tw] = (
            _downsample(tissue.astype(np.float32), TRUTH_DOWNSAMPLE)[: truth_shape[0], : truth_shape[1]] >= 0.5
        )
        blur_rows[:, tx : tx + tw] = (
            _downsample((tissue & blurred).astype(np.float32), TRUTH_DOWNSAMPLE)[: truth_shape[0], : truth_shape[1]]
            >= 0.5
        )
    return strip, tissue_count, blurred_count, tissue_rows, blur_rows


def _downsample(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)


def _ordered_ahead(pool: ThreadPoolExecutor, fn, items, ahead: int) -> Iterator:
    """``pool.map(fn, items)`` with at most ``ahead`` results pending, so memory stays bounded."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def write_slide(spec: SlideSpec, dest: Path, workers: int | None = None) -> Truth:
    """Render ``spec`` into ``dest`` (an .svs path) and write its ground truth beside it.

    Memory is bounded by a few strips of level 0 (one tile row by the slide's
    width each, rendered by ``workers`` threads, default the CPU count): each
    strip is written as tiles and averaged down into the smaller levels, which
    wait on disk beside ``dest`` and are then written strip by strip too. An
    80k x 60k slide is made in well under 1 GB.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    layout = _make_layout(spec)
    W, H, tile = spec.width, spec.height, spec.tile
    t_ds = TRUTH_DOWNSAMPLE
    truth_tissue = np.zeros((H // t_ds, W // t_ds), bool)
    truth_blur = np.zeros_like(truth_tissue)
    counts = {"tissue": 0, "blurred": 0}
    workers = workers or os.cpu_count() or 1

    scratch = tempfile.TemporaryDirectory(prefix="synthetic-", dir=dest.parent)
    levels: list[_LevelFile] = []
    for previous, factor in itertools.pairwise(spec.downsamples):
        if H // factor < 1 or W // factor < 1:
            break
        levels.append(
            _LevelFile(Path(scratch.name) / f"level{factor}.raw", factor // previous, (H // factor, W // factor))
        )

    def level0_tiles(pool: ThreadPoolExecutor) -> Iterator[np.ndarray]:
        render = partial(_render_strip, spec, layout)
        for y0, (strip, tissue, blurred, tissue_rows, blur_rows) in zip(
            range(0, H, tile), _ordered_ahead(pool, render, range(0, H, tile), workers), strict=True
        ):
            counts["tissue"] += tissue
            counts["blurred"] += blurred
            ty = y0 // t_ds
            truth_tissue[ty : ty + tissue_rows.shape[0]] = tissue_rows[: truth_tissue.shape[0] - ty]
            truth_blur[ty : ty + blur_rows.shape[0]] = blur_rows[: truth_blur.shape[0] - ty]
            rows = strip
            for level in levels:
                rows = level.add(rows)
            yield from _tiles(strip, tile)

    import tifffile  # here, not at the top: QC processes import this module only for read_truth

    tmp_path = dest.with_name(f".{dest.name}.partial")
    try:
        with (
            tifffile.TiffWriter(tmp_path, bigtiff=W * H * 3 > 2**31) as tif,
            ThreadPoolExecutor(max_workers=workers) as pool,
        ):
            common: dict[str, Any] = dict(
                tile=(tile, tile),
                photometric="rgb",
                compression="jpeg",
                compressionargs={"level": spec.jpeg_quality},
                metadata=None,
                maxworkers=workers,
                buffersize=WRITE_BUFFER,
            )
            tif.write(
                level0_tiles(pool),
                shape=(H, W, 3),
                dtype=np.uint8,
                description=_aperio_description(spec, W, H),
                **common,
            )
            for level in levels:
                level.finish()
                height, width = level.shape
                strips = level.strips(tile)
                tif.write(
                    (t for strip in strips for t in _tiles(strip, tile)),
                    shape=(height, width, 3),
                    dtype=np.uint8,
                    subfiletype=1,
                    description=f"Aperio Image Library v12.0.16 \r\n{W}x{H} -> {width}x{height}",
                    **common,
                )
        os.replace(tmp_path, dest)
    finally:
        for level in levels:
            level.finish()
        scratch.cleanup()
        if tmp_path.exists():
            tmp_path.unlink()

    tissue_total = max(counts["tissue"], 1)
    spec_fields = asdict(spec)
    if not spec.artefacts:  # as before artefacts existed, so old and new truth files of clean slides agree
        del spec_fields["artefacts"]
    truth = Truth(
        tissue_fraction=counts["tissue"] / (W * H),
        percent_blurry=100.0 * counts["blurred"] / tissue_total,
        blur_sigma_um=sorted(set(layout.region_sigmas)),
        mask_downsample=t_ds,
        spec={k: (list(v) if isinstance(v, tuple) else v) for k, v in spec_fields.items()},
    )
    stem = dest.with_suffix("")
    cv2.imwrite(f"{stem}.tissue_truth.png", truth_tissue.astype(np.uint8) * 255)
    cv2.imwrite(f"{stem}.blur_truth.png", truth_blur.astype(np.uint8) * 255)
    if layout.artefacts is not None:
        masks = _truth_masks(layout.artefacts, truth_tissue.shape, t_ds // ARTEFACT_DOWNSAMPLE)
        truth.artefacts = _write_artefact_masks(stem, masks, truth_tissue)
        clean = ~np.logical_or.reduce(list(masks.values()))
        truth.percent_blurry_clean = (
            100.0 * float((truth_blur & clean).sum()) / max(int((truth_tissue & clean).sum()), 1)
        )
    atomic_write_bytes(Path(f"{stem}.truth.json"), json.dumps(asdict(truth), indent=2).encode())
    return truth


def read_truth(slide_path: str | Path) -> Truth | None:
    """Return the ground truth written beside a synthetic slide, or None for a real slide."""
    path = Path(f"{Path(slide_path).with_suffix('')}.truth.json")
    if not path.is_file():
        return None
    return Truth(**json.loads(path.read_text(encoding="utf-8")))


def read_truth_masks(slide_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Return the true (tissue, blurred tissue) masks as bool arrays at the truth downsample."""
    stem = Path(slide_path).with_suffix("")
    tissue = _read_mask(f"{stem}.tissue_truth.png")
    blur = _read_mask(f"{stem}.blur_truth.png")
    return tissue, blur


def _read_mask(path: str) -> np.ndarray:
    """Return a truth PNG as a bool mask: its pixels above 127."""
    # cv2.imread gives None for a missing or unreadable file, and the comparison then raises a TypeError.
    return cast(np.ndarray, cv2.imread(path, cv2.IMREAD_GRAYSCALE)) > 127


def _truth_masks(maps: _ArtefactMaps, shape: tuple[int, int], factor: int) -> dict[str, np.ndarray]:
    """Return the artefact maps' truth, area-averaged down by ``factor`` to ``shape`` (rows, cols): half covered is in."""
    masks = {}
    for kind, mask in maps.truth.items():
        whole = mask[: shape[0] * factor, : shape[1] * factor].astype(np.float32)
        small = cv2.resize(whole, (shape[1], shape[0]), interpolation=cv2.INTER_AREA) if factor > 1 else whole
        masks[kind] = small >= 0.5
    return masks


def _write_artefact_masks(stem: Path, masks: dict[str, np.ndarray], tissue: np.ndarray | None) -> dict:
    """Write ``<stem>.<kind>_truth.png`` per kind; return each kind's share of the slide and of ``tissue``."""
    shares = {}
    for kind, mask in masks.items():
        cv2.imwrite(f"{stem}.{kind}_truth.png", mask.astype(np.uint8) * 255)
        on_tissue = None if tissue is None else float((mask & tissue).sum()) / max(int(tissue.sum()), 1)
        shares[kind] = {"slide_fraction": float(mask.mean()), "tissue_fraction": on_tissue}
    return shares


def read_artefact_masks(slide_path: str | Path) -> dict[str, np.ndarray]:
    """Return the true artefact masks written beside a slide (synthetic or painted), by kind, as bool arrays.

    Only the kinds drawn on it are there; at the slide's truth downsample (``Truth.mask_downsample``,
    or ``mask_downsample`` in ``<stem>.artefact_truth.json`` for a painted slide).
    """
    stem = Path(slide_path).with_suffix("")
    masks: dict[str, np.ndarray] = {}
    for kind in ARTEFACT_KINDS:
        path = Path(f"{stem}.{kind}_truth.png")
        if path.is_file():
            masks[kind] = _read_mask(str(path))
    return masks


MAX_PAINT_PIXELS = 64 * 2**20  # paint_artefacts reads level 0 whole: small slides only


def paint_artefacts(source: str | Path, dest: str | Path, artefacts: tuple[Artefact, ...]) -> dict:
    """Paint coverslip artefacts onto a real slide's level 0; write a pyramidal SVS and their truth.

    ``source`` must be small (level 0 at most MAX_PAINT_PIXELS, e.g. CMU-1-Small-Region): its
    level 0 is read whole. The artefacts are drawn as on a synthetic slide, at level 0's own
    pixel size (folds cannot be painted: they need the tissue's own layers). ``dest`` gets the
    source's magnification and µm per pixel, levels at downsamples 1, 4 and 16, and beside it
    ``<stem>.<kind>_truth.png`` at the downsample that is 2.5x (TRUTH_DOWNSAMPLE at 40x) and
    ``<stem>.artefact_truth.json``. Returns that JSON's content (per kind its share of the slide).
    """
    import openslide
    import tifffile

    source, dest = Path(source), Path(dest)
    slide = openslide.OpenSlide(str(source))
    width, height = slide.dimensions
    if width * height > MAX_PAINT_PIXELS:
        raise ValueError(f"{source.name}: level 0 is {width}x{height} px, too big to paint (small slides only)")
    magnification = float(slide.properties.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER, 40))
    mpp = float(slide.properties[openslide.PROPERTY_NAME_MPP_X])
    rgb = np.asarray(slide.read_region((0, 0), 0, (width, height)).convert("RGB"), dtype=np.float32)
    slide.close()
    maps = _artefact_maps(tuple(artefacts), width, height, mpp, 1)
    if maps.coverslip_od is not None:
        rgb *= np.exp(-np.moveaxis(maps.coverslip_od, 0, -1))
    level0 = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    spec = SlideSpec(name=dest.name, width=width, height=height, magnification=magnification, mpp=mpp)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(dest) as tif:
        common: dict[str, Any] = dict(tile=(spec.tile, spec.tile), photometric="rgb", compression="jpeg", metadata=None)
        common["compressionargs"] = {"level": spec.jpeg_quality}
        tif.write(
            _tiles(level0, spec.tile),
            shape=level0.shape,
            dtype=np.uint8,
            description=_aperio_description(spec, width, height),
            **common,
        )
        for factor in spec.downsamples[1:]:
            level = _downsample(level0, factor)
            tif.write(
                _tiles(level, spec.tile),
                shape=level.shape,
                dtype=np.uint8,
                subfiletype=1,
                description=f"Aperio Image Library v12.0.16 \r\n{width}x{height} -> {level.shape[1]}x{level.shape[0]}",
                **common,
            )
    truth_downsample = max(1, round(TRUTH_DOWNSAMPLE * magnification / 40.0))
    shape = (height // truth_downsample, width // truth_downsample)
    stem = dest.with_suffix("")
    result = {
        "mask_downsample": truth_downsample,
        "source": source.name,
        "artefacts": _write_artefact_masks(stem, _truth_masks(maps, shape, truth_downsample), None),
    }
    atomic_write_bytes(Path(f"{stem}.artefact_truth.json"), json.dumps(result, indent=2).encode())
    return result


# --- ready-made sets --------------------------------------------------------------------

DEMO_FRACTIONS = (0.0, 0.3, 0.7)


def demo_specs(n: int = 3, seed: int = 2021) -> list[SlideSpec]:
    """``n`` demo slides cycling through 0 %, ~30 % and ~70 % of the tissue out of focus."""
    specs = []
    for i in range(n):
        fraction = DEMO_FRACTIONS[i % len(DEMO_FRACTIONS)]
        specs.append(
            SlideSpec(
                name=f"synthetic_{i + 1:02d}_blur{round(fraction * 100):02d}.svs",
                blurred_fraction=fraction,
                blur_sigma_um=(1.5, 3.0),
                seed=seed + i,
            )
        )
    return specs


def benchmark_specs(n: int = 8, seed: int = 7) -> list[SlideSpec]:
    """Larger slides for benchmarks: about 20k x 15k pixels at 40x."""
    return [
        SlideSpec(
            name=f"bench_{i + 1:02d}.svs",
            width=20480,
            height=15360,
            blurred_fraction=DEMO_FRACTIONS[i % 3],
            blur_sigma_um=(1.5, 3.0),
            seed=seed + i,
            downsamples=(1, 4, 16, 32),
        )
        for i in range(n)
    ]


def big_specs(seed: int = 2021) -> list[SlideSpec]:
    """Slides the size of real ones, mostly glass as real slides are.

    One like OpenSlide's CMU-1 (46000 x 32914 px at 20x, levels at downsamples
    1, 4, 16) and one of a full 40x scan (80000 x 60000 px, 4.8 gigapixels).
    Bare glass renders ~20x faster than tissue (see _render_glass), which is
    what keeps their generation to minutes.
    """
    return [
        SlideSpec(
            name="big_01_cmu1_size_20x.svs",
            width=46000,
            height=32914,
            magnification=20.0,
            mpp=0.499,
            blurred_fraction=0.3,
            blur_sigma_um=(1.5, 3.0),
            tissue_fraction=0.2,
            seed=seed,
            downsamples=(1, 4, 16),
        ),
        SlideSpec(
            name="big_02_80k_40x.svs",
            width=80000,
            height=60000,
            blurred_fraction=0.3,
            blur_sigma_um=(1.5, 3.0),
            tissue_fraction=0.12,
            seed=seed + 1,
            downsamples=(1, 4, 16, 64),
        ),
    ]


def write_set(specs: list[SlideSpec], dest: Path, overwrite: bool = False) -> list[Path]:
    """Write every slide in ``specs`` into ``dest``, skipping those already complete."""
    paths = []
    for spec in specs:
        path = Path(dest) / spec.name
        if overwrite or not (path.is_file() and read_truth(path) is not None):
            write_slide(spec, path)
        paths.append(path)
    return paths


# The artefact set: demo-size sharp slides (2 x 1.5 mm at 40x) of one layout, each with one kind
# of artefact, beside their clean twin (same seed, nothing drawn).
ARTEFACT_SEED = 32
ARTEFACT_SET: dict[str, tuple[Artefact, ...]] = {
    "ink_blue": (Artefact("ink", center=(0.72, 0.70), size_um=800, width_um=120, aspect=0.85, colour="blue"),),
    "ink_green": (Artefact("ink", center=(0.30, 0.55), size_um=900, width_um=150, aspect=0.8, colour="green"),),
    "ink_red": (
        Artefact("ink", center=(0.50, 0.86), size_um=1500, width_um=120, shape="stroke", angle_deg=5, colour="red"),
    ),
    "ink_black": (Artefact("ink", center=(0.72, 0.70), size_um=800, width_um=120, aspect=0.85, colour="black"),),
    "bubble": (Artefact("bubble", center=(0.5, 0.45), size_um=450, width_um=12, spread=0.8, count=4, aspect=0.8),),
    "debris": (Artefact("debris", center=None, size_um=200, spread=0.0, count=80),),
    "edge": (Artefact("edge", center=(0.5, 0.3), width_um=40, angle_deg=8),),
    "fold": (Artefact("fold", center=None, size_um=700, width_um=180, angle_deg=30, shift_um=60),),
}


def artefact_specs(seed: int = ARTEFACT_SEED) -> list[SlideSpec]:
    """Slides for the artefact tests and calibration (16 demo-size slides, ~7 s each to make).

    ``art_<kind>.svs`` for each entry of ARTEFACT_SET on sharp H&E (ink in each of four colours)
    and ``art_clean.svs``, their twin; ``art_ihc_ink_black.svs`` and its twin ``art_ihc_clean.svs``;
    ``art_blurred_*``, ~30 % of the tissue out of focus under artefacts; ``art_faint_*``, faint
    stains (0.15 and 0.25 of the usual) without artefacts.
    """

    def spec(name: str, **fields) -> SlideSpec:
        return SlideSpec(name=f"art_{name}.svs", seed=seed, **fields)

    specs = [spec(kind, artefacts=artefacts) for kind, artefacts in ARTEFACT_SET.items()]
    specs += [
        spec("clean"),
        spec("ihc_ink_black", stain_kind="ihc", artefacts=ARTEFACT_SET["ink_black"]),
        spec("ihc_clean", stain_kind="ihc"),
        spec(
            "blurred_ink_bubble",
            blurred_fraction=0.3,
            blur_sigma_um=(1.5, 3.0),
            # The bubbles kept off the ring: where they overlap, the ink hides part of a rim.
            artefacts=ARTEFACT_SET["ink_blue"]
            + (Artefact("bubble", center=(0.3, 0.3), size_um=350, width_um=12, spread=0.4, count=3, aspect=0.8),),
        ),
        spec(
            "blurred_debris_fold",
            blurred_fraction=0.3,
            blur_sigma_um=(1.5, 3.0),
            artefacts=ARTEFACT_SET["debris"] + ARTEFACT_SET["fold"],
        ),
        spec("faint_15", stain=0.15),
        spec("faint_25", stain=0.25),
    ]
    return specs


# The example: a blue marker ring drawn around the tissue of CMU-1-Small-Region (2220 x 2967
# px at 0.499 µm/px: 1.11 x 1.48 mm).
REAL_SLIDE_RING = (
    Artefact("ink", center=(0.5, 0.5), size_um=1400, width_um=110, aspect=0.72, angle_deg=90, colour="blue", seed=5),
)
