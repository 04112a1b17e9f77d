"""Blur measured tile by tile: the blur work level is never held whole.

At 10x a real slide (100k x 80k px at 40x) is 25k x 20k px, 1.5 GB of RGB.
:func:`measure_blur` cuts the blur work level into square tiles of
``tile_size`` work pixels (512) and, for each tile whose own area holds tissue,
reads it with :func:`~slideqc.algorithms.blur_context` pixels of context each
side (the reach of the focus measure's filters, which also covers the tissue
erosion), so the blur response inside the tile is the one the
whole image gives. Per tile it counts the blurry and the measurable tissue
pixels at the blur resolution (:class:`~slideqc.algorithms.BlurCounts`) and
bins the counted blurry pixels down to the tissue mask's resolution; the
slide's fraction is taken from the summed counts, exactly as
:func:`~slideqc.algorithms.blurry_fraction` takes it from the whole image.

Tiles with no tissue in their own area are never read: no pixel of them could
be counted, and on real slides most of the glass is empty.

Parallelism
-----------
Tiles are measured on a thread pool (OpenCV and OpenSlide release the GIL) of
``workers`` threads, by default one per CPU. The runner decides: a runner that
checks several slides side by side passes each its share of the cores
(:func:`threads_per_slide`), so slides x tile threads stays at the core count.
Inside :func:`tiles_on` the tiles go to a Dask cluster's workers instead, one task
a tile (:func:`measure_tile_at`): each worker opens the slide itself and sends back
the tile's counts (extras/pipeline_prefect_dask_tiles.py).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import functools
import os
import platform
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from BaseImage import BaseImage, WorkSize
from slideqc import algorithms

# Work pixels per tile side. Smaller tiles skip more glass but compute more context (29 px a side:
# +24 % at 512, +12 % at 1024); on the mostly-glass big slides 512 measured fastest (1.2 to 1.9x
# faster than 2048, benchmarks/big_slides.py). ~1 MB of RGB, ~6 MB in flight per tile.
TILE_SIZE = 512


# glibc's malloc settings (mallopt(3)) for the tile loop. By default it hands a freed block of more
# than ~2.6 MB at the top of the heap back to the system, and each tile's arrays (~1.3 MB each, a
# dozen) then come back as fresh pages the kernel must fault in and zero: profiled, that was half
# the blur step's compute. Kept instead, up to these sizes; blocks above the mmap threshold (a
# whole work image) are still returned at once. Fixing either setting turns off glibc's own
# adjustment of both, so both are set.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_BYTES = 64 * 1024 * 1024
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's largest on 64-bit
_malloc_tuned: bool | None = None  # not tried yet


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed memory for the next tile (see above); tried once per process.

    Returns whether the settings are in force: False where the C library is not glibc.
    """
    global _malloc_tuned
    if _malloc_tuned is None:
        _malloc_tuned = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(None)
            _malloc_tuned = bool(
                libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                and libc.mallopt(_M_TRIM_THRESHOLD, KEEP_FREED_BYTES)
            )
    return _malloc_tuned


def threads_per_slide(slides_at_once: int = 1, cpus: int | None = None) -> int:
    """Return the tile threads per slide when ``slides_at_once`` slides run together: CPUs // slides, at least 1.

    Parameters
    ----------
    slides_at_once : int, >= 1
        Slides checked at the same time (a value below 1 counts as 1).
    cpus : int, optional
        The CPUs to share (default: ``os.cpu_count()``).

    Returns
    -------
    int, >= 1
        Threads for one slide's tiles.
    """
    return max(1, (cpus or os.cpu_count() or 1) // max(1, slides_at_once))


@dataclass(frozen=True)
class Tile:
    """One tile: its own area ``core`` and the ``read`` area with context, as (top, left, rows, cols)."""

    core: tuple[int, int, int, int]
    read: tuple[int, int, int, int]

    @property
    def core_in_read(self) -> tuple[slice, slice]:
        """The core's rows and columns within the read area, as slices of the read tile."""
        top, left, rows, cols = self.core
        dy, dx = top - self.read[0], left - self.read[1]
        return slice(dy, dy + rows), slice(dx, dx + cols)


def tiles(shape: tuple[int, int], tile_size: int, context: int) -> Iterator[Tile]:
    """Return the row-major tiles of ``tile_size`` covering ``shape``, each read with ``context`` px each side.

    Parameters
    ----------
    shape : (rows, cols)
        The blur work level's size, in pixels.
    tile_size : int, >= 1
        A tile's side in pixels (the last row and column of tiles may be smaller).
    context : int, >= 0
        Pixels read beyond each side of a tile's own area, clipped at the image's edge.

    Yields
    ------
    Tile
        Its own area (``core``) and the area read (``read``), as (top, left, rows, cols) in pixels.
    """
    rows, cols = shape
    for top in range(0, rows, tile_size):
        for left in range(0, cols, tile_size):
            bottom, right = min(top + tile_size, rows), min(left + tile_size, cols)
            y0, x0 = max(0, top - context), max(0, left - context)
            y1, x1 = min(rows, bottom + context), min(cols, right + context)
            yield Tile((top, left, bottom - top, right - left), (y0, x0, y1 - y0, x1 - x0))


def plan(
    shape: tuple[int, int],
    tissue: np.ndarray,
    blur_radius: float,
    tile_size: int = TILE_SIZE,
    measure: algorithms.Measure = algorithms.DEFAULT_MEASURE,
) -> tuple[list[Tile], list[Tile]]:
    """Return (the tiles to read, all tiles) of a blur work level of ``shape``, given the tissue mask.

    A tile without tissue in its own area has no pixel to count, so it is not
    read: its context alone (:func:`~slideqc.algorithms.blur_context`) never
    adds a counted pixel, hence no dilation of the tissue is needed.

    Parameters
    ----------
    shape : (rows, cols)
        The blur work level's size, in pixels.
    tissue : bool array
        The tissue (or usable tissue) mask, at any resolution.
    blur_radius : float, > 0
        The focus measure's neighbourhood, in pixels of the blur work level.
    tile_size : int, >= 1
        A tile's side in pixels.
    measure : {"normalized", "laplacian"}
        The focus measure (:func:`~slideqc.algorithms.blur_response`): it sets the context.

    Returns
    -------
    (list of Tile, list of Tile)
        The tiles with tissue in their own area, and every tile, both row-major.
    """
    all_tiles = list(tiles(shape, tile_size, algorithms.blur_context(blur_radius, measure)))
    wanted = [t for t in all_tiles if algorithms.resize_mask(tissue, shape, t.core).any()]
    return wanted, all_tiles


@dataclass
class BlurResult:
    """What :func:`measure_blur` found on a slide."""

    counts: algorithms.BlurCounts
    mask: np.ndarray  # bool, at the tissue mask's shape: the blurry pixels that were counted
    shape: tuple[int, int]  # the blur work level's (rows, cols)
    tiles_read: int
    tiles_total: int

    @property
    def fraction(self) -> float:
        """The fraction (0 to 1) of the tissue that is blurry."""
        return self.counts.fraction


@dataclass
class TileResult:
    """What one tile adds: its pixel counts and its counted blurry pixels per bin of the tissue mask."""

    counts: algorithms.BlurCounts
    top: int  # first bin row and column of the sums
    left: int
    counted: np.ndarray  # counted blurry pixels per bin: in eroded tissue, or in tissue when none is left


@dataclass(frozen=True)
class _Grid:
    """The blur work level's shape and each of its rows' and columns' bin in the tissue mask."""

    shape: tuple[int, int]
    bins_shape: tuple[int, int]
    row_bins: np.ndarray
    col_bins: np.ndarray

    @classmethod
    def of(cls, shape: tuple[int, int], tissue_shape: tuple[int, int]) -> _Grid:
        # Counted blurry pixels are binned to the tissue mask's pixels (or to the blur pixels
        # themselves when those are coarser): each blur pixel goes to the tissue pixel it took
        # its tissue value from.
        bins_shape = (min(shape[0], tissue_shape[0]), min(shape[1], tissue_shape[1]))
        return cls(
            shape,
            bins_shape,
            algorithms.nearest_index(bins_shape[0], shape[0]),
            algorithms.nearest_index(bins_shape[1], shape[1]),
        )


def _measure_tile(
    s: BaseImage,
    work_size: WorkSize,
    grid: _Grid,
    tissue: np.ndarray,
    tile: Tile,
    blur_radius: float,
    blur_threshold: float | None,
    measure: algorithms.Measure,
) -> TileResult:
    rgb = s.read_work_region(work_size, tile.read)
    inside = tile.core_in_read
    blurry = algorithms.blur_mask(rgb, blur_radius, blur_threshold, measure=measure)[inside]
    del rgb
    tissue_read = algorithms.resize_mask(tissue, grid.shape, tile.read)
    inner = algorithms.measurable_tissue(tissue_read, blur_radius)[inside]
    tissue_core = tissue_read[inside]
    top, left, rows, cols = tile.core
    rb, cb = grid.row_bins[top : top + rows], grid.col_bins[left : left + cols]
    counts = algorithms.BlurCounts.of(blurry, tissue_core, inner)
    # The slide counts its eroded tissue if any tile has some (BlurCounts.fraction), and then
    # only such tiles add counted pixels: each tile bins one mask, the one that can count.
    counted = blurry & (inner if counts.uses_inner else tissue_core)
    return TileResult(counts, int(rb[0]), int(cb[0]), algorithms.bin_sums(counted, rb, cb))


@functools.lru_cache(maxsize=2)
def _opened(path: str, stamp: tuple[int, int]) -> BaseImage:
    return BaseImage(path)  # ``stamp`` (size, mtime): a slide file replaced is opened again


def measure_tile_at(
    path: str,
    work_size: str,
    tissue: np.ndarray,
    tile: Tile,
    blur_radius: float,
    blur_threshold: float | None = None,
    measure: algorithms.Measure = algorithms.DEFAULT_MEASURE,
) -> TileResult:
    """Measure one tile of the slide at ``path`` where this runs.

    The slide is opened here (and kept open for the next tile), so a Dask worker is sent the
    path and the tile's window, never pixels.

    The same measurement as :func:`measure_blur`'s, tile for tile.
    """
    stat = os.stat(path)
    s = _opened(path, (stat.st_size, stat.st_mtime_ns))
    size = WorkSize.parse(work_size)
    return _measure_tile(
        s, size, _Grid.of(s.work_shape(size), tissue.shape), tissue, tile, blur_radius, blur_threshold, measure
    )


# The Dask client that measure_blur sends its tiles to, when one is set (tiles_on): per thread and task.
_tile_client: contextvars.ContextVar = contextvars.ContextVar("tile_client", default=None)


@contextlib.contextmanager
def tiles_on(client) -> Iterator[None]:
    """Measure the tiles on the workers of the Dask ``client`` inside this block.

    :func:`measure_blur` then uses the ``distributed.Client``'s workers instead of threads here: one
    task per tile (:func:`measure_tile_at`),
    the tissue mask sent once to every worker, the counts summed here in tile order as the threads'
    are, so the result is the same to the last bit.
    """
    token = _tile_client.set(client)
    try:
        yield
    finally:
        _tile_client.reset(token)


def _tiles_on_dask(client, s: BaseImage, work_size: WorkSize, tissue, wanted, blur_radius, blur_threshold, measure):
    mask = client.scatter(tissue, broadcast=True)
    futures = client.map(
        measure_tile_at,
        [str(s.path)] * len(wanted),
        [work_size.text] * len(wanted),
        [mask] * len(wanted),
        wanted,
        [blur_radius] * len(wanted),
        [blur_threshold] * len(wanted),
        [measure] * len(wanted),
        pure=False,
    )
    try:
        return client.gather(futures)
    finally:
        client.cancel([*futures, mask])


def measure_blur(
    s: BaseImage,
    work_size: str | WorkSize,
    tissue: np.ndarray,
    blur_radius: float,
    blur_threshold: float | None = None,
    tile_size: int = TILE_SIZE,
    workers: int | None = None,
    *,
    measure: algorithms.Measure = algorithms.DEFAULT_MEASURE,
) -> BlurResult:
    """Measure the blur of slide ``s`` at ``work_size`` tile by tile; serial and threaded runs give identical results.

    Parameters
    ----------
    s : BaseImage
        The slide, loaded.
    work_size : str or WorkSize
        The blur work size (``"10x"``, or a longest side in pixels).
    tissue : bool array
        The tissue to judge (the usable tissue), at any resolution: the tissue mask's.
    blur_radius : float, > 0
        The focus measure's neighbourhood, in pixels of the blur work size.
    blur_threshold : float in (0, 1], optional
        Blurry at or below this, in gray level per pixel; None takes the measure's
        :data:`~slideqc.algorithms.DEFAULT_THRESHOLDS`.
    tile_size : int, >= 1
        A tile's side, in pixels of the blur work size.
    workers : int, optional
        Threads reading and measuring tiles (default: one per CPU).
    measure : {"normalized", "laplacian"}
        The focus measure (:func:`~slideqc.algorithms.blur_response`).

    Returns
    -------
    BlurResult
        The pixel counts (its ``fraction`` is 0 to 1), the counted blurry pixels at the
        tissue mask's shape, the blur work level's shape and the tiles read of all.

    Serial and threaded runs give identical results, and so do a Dask cluster's workers
    inside :func:`tiles_on`.
    """
    if tile_size < 1:
        raise ValueError(f"tile_size must be >= 1, got {tile_size}")
    keep_freed_memory()
    work_size = WorkSize.parse(work_size) if not isinstance(work_size, WorkSize) else work_size  # once, not per tile
    grid = _Grid.of(s.work_shape(work_size), tissue.shape)
    shape, bins_shape, row_bins, col_bins = grid.shape, grid.bins_shape, grid.row_bins, grid.col_bins
    wanted, all_tiles = plan(shape, tissue, blur_radius, tile_size, measure)

    def measure_tile(tile: Tile) -> TileResult:
        return _measure_tile(s, work_size, grid, tissue, tile, blur_radius, blur_threshold, measure)

    workers = threads_per_slide() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    counts = algorithms.BlurCounts()
    sums_inner = np.zeros(bins_shape, np.int32)
    sums_tissue = np.zeros(bins_shape, np.int32)
    client = _tile_client.get()
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(wanted)))) as pool:
        # map() hands results back in tile order, so threads and serial sum them identically.
        if client is not None and wanted:
            results = _tiles_on_dask(client, s, work_size, tissue, wanted, blur_radius, blur_threshold, measure)
        else:
            results = pool.map(measure_tile, wanted) if workers > 1 else map(measure_tile, wanted)
        for r in results:
            counts += r.counts
            rows, cols = r.counted.shape
            sums = sums_inner if r.counts.uses_inner else sums_tissue
            sums[r.top : r.top + rows, r.left : r.left + cols] += r.counted
    # A bin is blurry when at least half of its blur pixels were counted blurry.
    per_bin = np.outer(np.bincount(row_bins, minlength=bins_shape[0]), np.bincount(col_bins, minlength=bins_shape[1]))
    counted = sums_inner if counts.uses_inner else sums_tissue
    mask = algorithms.resize_mask(2 * counted >= per_bin, tissue.shape)
    return BlurResult(counts, mask, shape, len(wanted), len(all_tiles))
