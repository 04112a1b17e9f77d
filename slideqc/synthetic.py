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

import cv2
import numpy as np

from slideqc.output.files import atomic_write_bytes

# Optical-density vectors of the two stains (Ruifrok & Johnston), RGB order.
HEMATOXYLIN_OD = np.array([0.650, 0.704, 0.286], dtype=np.float32)
EOSIN_OD = np.array([0.072, 0.990, 0.105], dtype=np.float32)
GLASS_OD = np.float32(0.02)

DESIGN_DOWNSAMPLE = 32  # resolution of the tissue and blur layout fields
TRUTH_DOWNSAMPLE = 16  # resolution of the ground-truth mask PNGs
BLOCK_WIDTH = 4096  # level-0 columns rendered at once (bounds memory)
WRITE_BUFFER = 32 * 2**20  # bytes of tiles tifffile gathers before compressing them
LARGE_LAYOUT_SIGMA = 80  # design pixels: smoother layout noise is made on a coarser grid and steepened


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

    def __post_init__(self) -> None:
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
    return _Layout(tissue_field, sigma_field, region_sigmas)


# --- rendering -------------------------------------------------------------------------


def _design_coords(start: int, count: int) -> np.ndarray:
    return (np.arange(start, start + count) + 0.5) / DESIGN_DOWNSAMPLE - 0.5


def _nearest_design(grid: np.ndarray, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    yi = np.clip((np.arange(y0, y0 + h)) // DESIGN_DOWNSAMPLE, 0, grid.shape[0] - 1)
    xi = np.clip((np.arange(x0, x0 + w)) // DESIGN_DOWNSAMPLE, 0, grid.shape[1] - 1)
    return grid[yi][:, xi]


def _draw_nuclei(canvas: np.ndarray, y0: int, x0: int, spec: SlideSpec, layout: _Layout) -> None:
    """Hematoxylin density of nuclei (filled anti-aliased ellipses) into ``canvas``."""
    cell = 10.0 / spec.mpp  # one candidate nucleus per 10 µm square
    h, w = canvas.shape
    cy0, cx0 = math.floor(y0 / cell) - 1, math.floor(x0 / cell) - 1
    cy1, cx1 = math.floor((y0 + h) / cell) + 1, math.floor((x0 + w) / cell) + 1
    iy, ix = np.meshgrid(np.arange(cy0, cy1 + 1), np.arange(cx0, cx1 + 1), indexing="ij")
    iy, ix = iy.ravel(), ix.ravel()
    u = [_hash_uniform(ix, iy, spec.seed, channel) for channel in range(6)]
    cy = (iy + 0.15 + 0.7 * u[0]) * cell
    cx = (ix + 0.15 + 0.7 * u[1]) * cell
    gy = np.clip(cy / DESIGN_DOWNSAMPLE - 0.5, 0, layout.tissue_field.shape[0] - 1.000001)
    gx = np.clip(cx / DESIGN_DOWNSAMPLE - 0.5, 0, layout.tissue_field.shape[1] - 1.000001)
    in_tissue = layout.tissue_field[gy.astype(int), gx.astype(int)] > 0.05
    keep = in_tissue & (u[2] < 0.55)
    scale = 16  # sub-pixel precision for cv2.ellipse (4 fractional bits)
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
    if _is_glass(layout, ry0, rx0, rh, rw):
        return _render_glass(spec, y0, x0, h, w), np.zeros((h, w), bool), np.zeros((h, w), bool)

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
    if spec.stain != 1.0:  # (skipped at 1.0 so the usual slides keep their exact pixels)
        eosin, hematoxylin = eosin * np.float32(spec.stain), hematoxylin * np.float32(spec.stain)
    od = GLASS_OD + eosin[..., None] * EOSIN_OD + hematoxylin[..., None] * HEMATOXYLIN_OD
    rgb = np.float32(255.0) * np.exp(-od)

    sigma_um = _nearest_design(layout.sigma_field, ry0, rx0, rh, rw)
    for sigma in sorted(set(layout.region_sigmas)):
        where = sigma_um == sigma
        if where.any():
            blurred = cv2.GaussianBlur(rgb, (0, 0), sigma / spec.mpp, borderType=cv2.BORDER_REFLECT)
            np.copyto(rgb, blurred, where=where[..., None])

    rgb = _add_sensor_noise(rgb[margin : margin + h, margin : margin + w], spec, y0, x0)
    tissue = tissue_level[margin : margin + h, margin : margin + w] > 0
    blurred_mask = sigma_um[margin : margin + h, margin : margin + w] > 0
    return rgb, tissue, blurred_mask


def _add_sensor_noise(rgb: np.ndarray, spec: SlideSpec, y0: int, x0: int) -> np.ndarray:
    """``rgb`` (float32) plus the sensor noise of the block at (y0, x0), rounded to uint8."""
    noise = np.empty(rgb.shape, np.float32)
    # OpenCV's generator is per thread and ~10x faster than numpy's; tuples of ints hash
    # reproducibly, so each block's noise is the same in any thread, in any run.
    cv2.setRNGSeed(hash((spec.seed, y0, x0)) & 0x7FFFFFFF)
    cv2.randn(noise, 0.0, 1.5)
    noise += rgb
    noise += 0.5
    return np.clip(noise, 0, 255, out=noise).astype(np.uint8)


def _is_glass(layout: _Layout, y0: int, x0: int, h: int, w: int) -> bool:
    """True when no tissue reaches level-0 region [y0, y0+h) x [x0, x0+w), margins included.

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


def _render_glass(spec: SlideSpec, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """Bare glass: what _render_block draws where there is no tissue, ~20x faster.

    Real slides are mostly glass, so this is most of a big slide's pixels.
    """
    glass = np.full((h, w, 3), np.float32(255.0) * np.exp(-GLASS_OD), np.float32)
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
    """The tiles of ``image`` in TIFF order, partial ones padded with white glass."""
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
        """The level back from disk, ``rows`` at a time."""
        height, width = self.shape
        with open(self.path, "rb") as handle:
            for top in range(0, height, rows):
                strip = np.empty((min(rows, height - top), width, 3), np.uint8)
                handle.readinto(memoryview(strip).cast("B"))
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
            common = dict(
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
    truth = Truth(
        tissue_fraction=counts["tissue"] / (W * H),
        percent_blurry=100.0 * counts["blurred"] / tissue_total,
        blur_sigma_um=sorted(set(layout.region_sigmas)),
        mask_downsample=t_ds,
        spec={k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(spec).items()},
    )
    stem = dest.with_suffix("")
    cv2.imwrite(f"{stem}.tissue_truth.png", truth_tissue.astype(np.uint8) * 255)
    cv2.imwrite(f"{stem}.blur_truth.png", truth_blur.astype(np.uint8) * 255)
    atomic_write_bytes(Path(f"{stem}.truth.json"), json.dumps(asdict(truth), indent=2).encode())
    return truth


def read_truth(slide_path: str | Path) -> Truth | None:
    """The ground truth written beside a synthetic slide, or None for a real slide."""
    path = Path(f"{Path(slide_path).with_suffix('')}.truth.json")
    if not path.is_file():
        return None
    return Truth(**json.loads(path.read_text(encoding="utf-8")))


def read_truth_masks(slide_path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """The true (tissue, blurred tissue) masks as bool arrays at the truth downsample."""
    stem = Path(slide_path).with_suffix("")
    tissue = cv2.imread(f"{stem}.tissue_truth.png", cv2.IMREAD_GRAYSCALE) > 127
    blur = cv2.imread(f"{stem}.blur_truth.png", cv2.IMREAD_GRAYSCALE) > 127
    return tissue, blur


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
