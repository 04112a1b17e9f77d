"""The QC steps on a BaseImage: load, tissue, blur, rescan decision.

Each step takes the per-slide object and returns it with a mask or a value
added, so the same functions serve the plain scripts, the Prefect tasks and
the tests. The algorithms themselves live in :mod:`slideqc.algorithms`.
"""

from __future__ import annotations

import errno
import logging
import time
from contextlib import contextmanager
from pathlib import Path

import openslide

from BaseImage import BaseImage, SlideError, WorkSize, display_name
from slideqc import algorithms, tiled
from slideqc.settings import DEFAULTS, JUDGE_LIMITS, JudgeLimits, cannot_judge_reason, rescan_needed

log = logging.getLogger("slideqc")

MIN_WORK_PIXELS = 16  # a tissue image smaller than this on a side cannot be segmented
# A bad slide's errors: said in one line (the log keeps tracebacks for anything else: a bug).
SLIDE_ERRORS = (SlideError, openslide.OpenSlideError, OSError, MemoryError)
NO_ROOM = (errno.ENOSPC, errno.EDQUOT)  # a full disk or quota: not the slide's fault
NO_ROOM_TEXT = "no space left on the disk"  # in a slide's error: the run stops (cli.Run.add), exit 4


@contextmanager
def timed(s: BaseImage, step: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        s.timings[step] = s.timings.get(step, 0.0) + time.perf_counter() - started


def load_slide(
    path: str | Path, image_work_size: str = DEFAULTS.image_work_size, blur_work_size: str = DEFAULTS.blur_work_size
) -> BaseImage:
    """Open a slide and check that both work sizes can be used on it."""
    started = time.perf_counter()
    s = BaseImage(path)
    tissue_size = WorkSize.parse(image_work_size, "image_work_size")
    blur_size = WorkSize.parse(blur_work_size, "blur_work_size")
    rows, cols = s.work_shape(tissue_size)
    s.work_shape(blur_size)  # fails early, naming the slide, when the size cannot be resolved
    if min(rows, cols) < MIN_WORK_PIXELS:
        raise SlideError(
            f"{s.name}: too small: {s.dimensions[0]}x{s.dimensions[1]} px is {cols}x{rows} px at "
            f"image_work_size {tissue_size.text}; at least {MIN_WORK_PIXELS} px per side are needed"
        )
    s.image_work_size, s.blur_work_size = tissue_size, blur_size
    s.timings["load"] = time.perf_counter() - started
    return s


def segment_tissue(s: BaseImage) -> BaseImage:
    """Tissue mask at the image work size; records the tissue fraction."""
    with timed(s, "tissue"):
        image = s.get_image(s.image_work_size)
        tissue = algorithms.tissue_mask(image)
        s.set_mask("tissue", tissue)
        s.tissue_fraction = float(tissue.mean())
        # Against the glass: a slide that is tissue from edge to edge has none to compare with.
        s.stain_contrast = algorithms.stain_contrast(image, tissue) if 0 < s.tissue_fraction < 1 else None
    return s


def detect_blur(
    s: BaseImage,
    blur_radius: float = DEFAULTS.blur_radius,
    blur_threshold: float = DEFAULTS.blur_threshold,
    tile_threads: int | None = None,
) -> BaseImage:
    """Blur at the blur work size, tile by tile; records the fraction of the tissue that is blurry.

    The blur work level is never held whole (see :mod:`slideqc.tiled`): tiles
    with tissue are read with enough context for the result to be the whole
    image's, on ``tile_threads`` threads (default: one per CPU; a runner that
    checks slides side by side passes its share), and tiles of bare glass are not read.
    """
    if "tissue" not in s.masks:
        raise SlideError(f"{s.name}: blur detection needs the tissue mask; run segment_tissue first")
    with timed(s, "blur"):
        found = tiled.measure_blur(
            s, s.blur_work_size, s.masks["tissue"], blur_radius, blur_threshold, workers=tile_threads
        )
        s.blur_radius, s.blur_threshold, s.blurry_fraction = blur_radius, blur_threshold, found.fraction
        # The blurry pixels that were counted, kept at the tissue resolution: enough for
        # pictures, small to pass between processes.
        s.set_mask("blur", found.mask, removed_fraction=algorithms.fraction_of(found.mask, s.masks["tissue"]))
    # The last step that measures: let go of the OpenSlide handle, its tile cache (tens of MB)
    # and the tissue work image, as a flow keeps every slide's object until the run ends. The
    # pictures reopen the slide for its thumbnail.
    s.close()
    return s


def needs_rescan(s: BaseImage, blur_max: float = DEFAULTS.blur_max) -> bool:
    """True when more than ``blur_max`` (a fraction, 0.05 = 5 %) of the tissue is blurry.

    A slide that cannot be judged (:func:`judge`) is never sent to a rescan for blur: its
    row says why it cannot be judged instead, and ``rescan`` stays None.
    """
    s.rescan = None if judge(s) else rescan_needed(s.blurry_fraction, blur_max)
    return bool(s.rescan)


def judge(s: BaseImage, limits: JudgeLimits = JUDGE_LIMITS) -> str:
    """Why the QC cannot judge this slide ("" when it can): the one place that decides it.

    A slide with (almost) no tissue has nothing to judge, a blur work size
    coarser than ``limits.max_blur_mpp`` µm per pixel cannot show blur, and tissue
    stained too faintly (``limits.min_stain_contrast``) hides it in the
    scanner's noise: such a slide's row gets the status ``cannot judge`` with this
    reason, never ``ok`` and never a confident rescan.
    """
    s.cannot_judge = cannot_judge_reason(
        s.tissue_fraction, s.microns_per_pixel(s.blur_work_size), limits, stain_contrast=s.stain_contrast
    )
    return s.cannot_judge


def describe(s: BaseImage) -> str:
    """One line for the log: what the QC found."""
    text = (
        f"{s.name}: tissue {100 * s.tissue_fraction:.1f} % of the slide, "
        f"{100 * s.blurry_fraction:.1f} % of the tissue blurry"
    )
    return text + (" -> RESCAN" if s.rescan else "")


def error_message(path: str | Path, error: BaseException) -> str:
    """A one-line error that names the slide, for the log and the slide's row in results.tsv.

    SlideErrors already say what is wrong in a lab person's words; anything
    else is an unexpected failure and keeps its type, so it can be looked up.
    """
    name = display_name(Path(path).name)
    text = display_name(" ".join(str(error).replace(str(path), name).split())) or type(error).__name__
    if isinstance(error, SlideError | ValueError) and text.startswith(name):
        return text
    if isinstance(error, SlideError):
        return f"{name}: {text}"
    if isinstance(error, openslide.OpenSlideError):  # raised past BaseImage: still a slide problem
        return f"{name}: OpenSlide cannot read the slide (corrupt tile?): {text}"
    if isinstance(error, MemoryError):
        return f"{name}: out of memory; try a smaller work size"
    if isinstance(error, OSError) and error.errno in NO_ROOM:
        where = f" writing {display_name(str(error.filename))}" if error.filename else ""
        return f"{name}: {NO_ROOM_TEXT}{where}; free some space and run again"
    return f"{name}: {type(error).__name__}: {text}"
