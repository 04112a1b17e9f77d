"""The QC steps on a BaseImage: load, tissue, blur, rescan decision.

Each step takes the per-slide object and returns it with a mask or a value
added, so the same functions serve the plain scripts, the Prefect tasks and
the tests. The algorithms themselves live in :mod:`slideqc.algorithms`.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import openslide

from BaseImage import BaseImage, SlideError, WorkSize
from slideqc import algorithms, tiled

log = logging.getLogger("slideqc")

MIN_WORK_PIXELS = 16  # a tissue image smaller than this on a side cannot be segmented
THUMBNAIL_SIDE = 1024  # longest side of the thumbnail kept with each slide, pixels


@dataclass(frozen=True)
class QCParams:
    """The QC settings, with the workshop's defaults. Validated on creation."""

    image_work_size: str = "1.25x"
    blur_work_size: str = "10x"
    blur_radius: float = 7.0
    blur_threshold: float = 0.05
    blur_max: float = 0.05

    def __post_init__(self) -> None:
        WorkSize.parse(self.image_work_size, "image_work_size")
        WorkSize.parse(self.blur_work_size, "blur_work_size")
        _check_number("blur_radius", self.blur_radius, low=0, low_open=True, high=100)
        _check_number("blur_threshold", self.blur_threshold, low=0, low_open=True, high=1)
        _check_number("blur_max", self.blur_max, low=0, high=1)

    def as_dict(self) -> dict:
        return asdict(self)


def _check_number(name: str, value: float, low: float, high: float, low_open: bool = False) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {value!r} is not a number") from None
    ok = (number > low if low_open else number >= low) and number <= high
    if not ok or number != number:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}: must be in {bracket}{low:g}, {high:g}], got {value!r}")


@contextmanager
def timed(s: BaseImage, step: str):
    started = time.perf_counter()
    try:
        yield
    finally:
        s.timings[step] = s.timings.get(step, 0.0) + time.perf_counter() - started


def load_slide(path: str | Path, image_work_size: str = "1.25x", blur_work_size: str = "10x") -> BaseImage:
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
            f"image_work_size {tissue_size.text}; at least {MIN_WORK_PIXELS} px per side are needed")
    s.results["image_work_size"] = tissue_size.text
    s.results["blur_work_size"] = blur_size.text
    s.timings["load"] = time.perf_counter() - started
    return s


def segment_tissue(s: BaseImage) -> BaseImage:
    """Tissue mask at the image work size; records the tissue fraction."""
    with timed(s, "tissue"):
        work_size = s.results["image_work_size"]
        image = s.get_image(work_size)
        tissue = algorithms.tissue_mask(image)
        s.set_mask("tissue", tissue)
        s.results["tissue_shape"] = image.shape[:2]
        # Kept with the slide (small) so the pictures never need the slide read again.
        s.thumbnail_image = s.thumbnail(THUMBNAIL_SIDE)
        s.results["tissue_fraction"] = float(tissue.mean())
    return s


def detect_blur(s: BaseImage, blur_radius: float = 7.0, blur_threshold: float = 0.05) -> BaseImage:
    """Blur at the blur work size, tile by tile; records the fraction of the tissue that is blurry.

    The blur work level is never held whole (see :mod:`slideqc.tiled`): tiles
    with tissue are read with enough context for the result to be the whole
    image's, in parallel threads, and tiles of bare glass are not read at all.
    """
    if "tissue" not in s.masks:
        raise SlideError(f"{s.name}: blur detection needs the tissue mask; run segment_tissue first")
    with timed(s, "blur"):
        found = tiled.measure_blur(s, s.results["blur_work_size"], s.masks["tissue"], blur_radius, blur_threshold)
        s.results["blur_shape"] = found.shape
        s.results["blurry_fraction"] = found.fraction
        # The blurry pixels that were counted, kept at the tissue resolution: enough for
        # pictures, small to pass between processes.
        s.set_mask("blur", found.mask, relative_to="tissue")
    # The last step that reads pixels: let go of the OpenSlide handle and its tile cache (tens
    # of MB), as a flow keeps every slide's object until the run ends. Reopened if ever needed.
    s.close()
    return s


def needs_rescan(s: BaseImage, blur_max: float = 0.05) -> bool:
    """True when more than ``blur_max`` (a fraction, 0.05 = 5 %) of the tissue is blurry."""
    rescan = s.results["blurry_fraction"] > blur_max
    s.results["rescan"] = rescan
    return rescan


def describe(s: BaseImage) -> str:
    """One line for the log: what the QC found."""
    text = (f"{s.name}: tissue {100 * s.results['tissue_fraction']:.1f} % of the slide, "
            f"{100 * s.results['blurry_fraction']:.1f} % of the tissue blurry")
    return text + (" -> RESCAN" if s.results.get("rescan") else "")


def error_message(path: str | Path, error: BaseException) -> str:
    """A one-line error that names the slide, for the log and the slide's row in results.tsv.

    SlideErrors already say what is wrong in a lab person's words; anything
    else is an unexpected failure and keeps its type, so it can be looked up.
    """
    name = Path(path).name
    text = " ".join(str(error).replace(str(path), name).split()) or type(error).__name__
    if isinstance(error, SlideError | ValueError) and text.startswith(name):
        return text
    if isinstance(error, SlideError):
        return f"{name}: {text}"
    if isinstance(error, openslide.OpenSlideError):  # raised past BaseImage: still a slide problem
        return f"{name}: OpenSlide cannot read the slide (corrupt tile?): {text}"
    if isinstance(error, MemoryError):
        return f"{name}: out of memory; try a smaller work size"
    return f"{name}: {type(error).__name__}: {text}"
