"""The QC steps on a BaseImage, and the one ordered list of them (:data:`STEPS`).

Each step takes the per-slide object and returns it with a mask or a value
added (HistoQC's shape: ``(s, settings...) -> s``), so the same functions serve
the plain scripts, the Prefect tasks and the tests. What a step finds is a
frozen dataclass of its own, stored in ``s.found`` (:class:`Tissue`,
:class:`Blur`); a step that finds something not to judge the focus on narrows
the usable tissue (``s.exclude``), which is all the blur step reads.

:data:`STEPS` lists the steps in order and :func:`run_steps` runs them on a
slide with its settings: every runner that is not a lesson calls it, so a new
step reaches all of them. The lessons keep one visible task per step, in the
same order (tests/test_steps_in_lessons.py checks both). A step's settings are
its parameters that are named like a field of :class:`~slideqc.settings.QCSettings`.
The algorithms themselves live in :mod:`slideqc.algorithms`.
"""

from __future__ import annotations

import errno
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, get_args

import cv2
import numpy as np
import openslide

from BaseImage import BaseImage, SettingError, SlideError, WorkSize, display_name
from slideqc import algorithms, artefacts, tiled
from slideqc.artefacts import KINDS as ARTEFACT_KINDS
from slideqc.artefacts import ArtefactKind
from slideqc.settings import (
    DEFAULTS,
    JUDGE_LIMITS,
    JudgeLimits,
    QCSettings,
    cannot_judge_reason,
    recut_needed,
    rescan_needed,
)

log = logging.getLogger("slideqc")

MIN_WORK_PIXELS = 16  # a tissue image smaller than this on a side cannot be segmented
# A bad slide's errors: said in one line (the log keeps tracebacks for anything else: a bug).
SLIDE_ERRORS = (SlideError, openslide.OpenSlideError, OSError, MemoryError)
NO_ROOM = (errno.ENOSPC, errno.EDQUOT)  # a full disk or quota: not the slide's fault
NO_ROOM_TEXT = "no space left on the disk"  # said in a slide's error; the run stops on it (exit 4)


@dataclass(frozen=True)
class Tissue:
    """What the tissue step found."""

    fraction: float  # of the slide, 0 to 1
    stain_contrast: float | None  # the glass minus the tissue, 8-bit gray levels; None: nothing to compare


@dataclass(frozen=True)
class Share:
    """How much of a slide one kind of artefact covers."""

    of_tissue: float  # of the tissue, 0 to 1: over the section, left out of the focus verdict
    on_glass: float  # of the slide, 0 to 1: beside the section (ink, bubbles, debris, edges on bare glass)


@dataclass(frozen=True)
class Artefacts:
    """What the artefact step found: each kind's share, and the tissue left to judge."""

    work_size: str  # the artefact work size it looked at
    pixels: str  # cols x rows of that image
    mpp: float | None  # µm per pixel of that image (None: the slide does not say)
    ink: Share
    bubble: Share
    debris: Share
    edge: Share
    fold: Share
    usable_share: float  # of the tissue, 0 to 1: free of every kind, what blur is judged on
    recut: bool  # the fold's share of the tissue is above fold_max: the lab re-cuts the section

    def share(self, kind: ArtefactKind) -> Share:
        """Return the share of one kind (``"ink"``, ``"bubble"``, ...)."""
        return getattr(self, kind)

    @property
    def found(self) -> tuple[ArtefactKind, ...]:
        """The kinds present on the slide (over the tissue or on the glass)."""
        return tuple(k for k in ARTEFACT_KINDS if self.share(k).of_tissue > 0 or self.share(k).on_glass > 0)


@dataclass(frozen=True)
class Blur:
    """What the blur step found."""

    fraction: float  # of the usable tissue that is blurry, 0 to 1
    tiles_read: int  # tiles of the blur work level read (those with usable tissue)
    tiles_total: int


@contextmanager
def timed(s: BaseImage, step: StepName) -> Iterator[None]:
    """Add the seconds the block takes to ``s.timings[step]``."""
    started = time.perf_counter()
    try:
        yield
    finally:
        s.timings[step] = s.timings.get(step, 0.0) + time.perf_counter() - started


def load_slide(
    path: str | Path, image_work_size: str = DEFAULTS.image_work_size, blur_work_size: str = DEFAULTS.blur_work_size
) -> BaseImage:
    """Open a slide and check that both work sizes can be used on it.

    Parameters
    ----------
    path : str or Path
        The slide file (anything OpenSlide reads).
    image_work_size, blur_work_size : str
        Where tissue and blur are found: a magnification (``"1.25x"``) or a longest
        side in pixels (``"2000"``); the tissue image needs at least
        :data:`MIN_WORK_PIXELS` px per side.

    Returns
    -------
    BaseImage
        The slide, its work sizes set. A SlideError says why a slide cannot be used.
    """
    started = time.perf_counter()
    s = BaseImage(path)
    tissue_size = WorkSize.parse(image_work_size, "image_work_size")
    blur_size = WorkSize.parse(blur_work_size, "blur_work_size")
    rows, cols = s.work_shape(tissue_size)
    s.work_shape(blur_size)  # fails early, naming the slide, when the size cannot be resolved
    if min(rows, cols) < MIN_WORK_PIXELS:
        raise SlideError(
            f"too small: {s.dimensions[0]}x{s.dimensions[1]} px is {cols}x{rows} px at "
            f"image_work_size {tissue_size.text}; at least {MIN_WORK_PIXELS} px per side are needed",
            s.name,
        )
    s.image_work_size, s.blur_work_size = tissue_size, blur_size
    s.ran_with(image_work_size=tissue_size.text, blur_work_size=blur_size.text)
    s.timings["load"] = time.perf_counter() - started
    return s


def segment_tissue(s: BaseImage) -> BaseImage:
    """Tissue mask at the image work size (:class:`Tissue`); the usable tissue starts as all of it."""
    with timed(s, "tissue"):
        image = s.get_image(s.image_work_size)
        tissue = algorithms.tissue_mask(image)
        s.set_tissue(tissue)
        fraction = float(tissue.mean())
        # Against the glass: a slide that is tissue from edge to edge has none to compare with.
        contrast = algorithms.stain_contrast(image, tissue) if 0 < fraction < 1 else None
        s.found.add(Tissue(fraction, contrast))
    return s


# A slide that does not state its pixel size: µm per pixel taken as a 40x scan's (0.25 at level 0)
# scaled to the work size, so the artefact sizes (in µm) stay in proportion.
NOMINAL_LEVEL0_MPP = 0.25
# A kind that covers less than this of the tissue and of the slide (0 to 1) is not reported nor
# left out: a speck or two of dust (each an 8 µm pixel at 1.25x) changes no verdict, and a lab
# reads "debris" on its cleanest slides as noise. The smallest artefact of the tests covers 3 %.
MIN_REPORTED_SHARE = 0.0005


def find_artefacts(
    s: BaseImage, artefact_work_size: str = DEFAULTS.artefact_work_size, fold_max: float = DEFAULTS.fold_max
) -> BaseImage:
    """Marker ink, air bubbles, debris, coverslip edges and folds (:class:`Artefacts`), left out of the tissue.

    At the artefact work size (:func:`slideqc.artefacts.find_artefacts`): what lies on
    bare glass stops counting as tissue (ink on glass is not a section), and every kind
    is taken out of the usable tissue that the blur step judges. A fold over more than
    ``fold_max`` of the tissue marks the slide for a re-cut.
    """
    if s.USABLE not in s.masks:
        raise SlideError("artefact detection needs the tissue mask; run segment_tissue first", s.name)
    with timed(s, "artefacts"):
        size = WorkSize.parse(artefact_work_size, "artefact_work_size")
        rows, cols = s.work_shape(size)
        mpp = s.microns_per_pixel(size)
        nominal = mpp if mpp is not None else NOMINAL_LEVEL0_MPP * s.dimensions[0] / cols
        image = s.get_image(size)
        tissue = s.masks[s.TISSUE]
        found = artefacts.find_artefacts(image, tissue, nominal)
        if found.union().mean() >= MIN_REPORTED_SHARE:
            # The tissue again, with Otsu's threshold chosen without the artefacts' pixels: black ink
            # is darker than any stain, and with it the tissue step split ink from everything else.
            tissue_image = s.get_image(s.image_work_size)
            ignore = algorithms.resize_mask(found.union(), tissue.shape)
            again = algorithms.tissue_mask(tissue_image, ignore=ignore)
            if again.any() and not np.array_equal(again, tissue):
                tissue = again
                s.set_tissue(tissue)
                fraction = float(tissue.mean())
                contrast = algorithms.stain_contrast(tissue_image, tissue, ignore=ignore) if fraction < 1 else None
                s.found.add(Tissue(fraction, contrast))
                found = artefacts.find_artefacts(image, tissue, nominal)
        if size.text != s.image_work_size.text:
            s.drop_image(size)  # only the tissue work image is kept (the pictures reuse it)
        # What lies on glass is not tissue: taken out where it covers most of a tissue pixel. Only
        # that is taken (never the tissue mask sent there and back: the two shapes need not divide).
        on_glass = algorithms.resize_mask(tissue, found.tissue.shape) & ~found.tissue
        if on_glass.any():
            covered = cv2.resize(on_glass.astype(np.float32), tissue.shape[::-1], interpolation=cv2.INTER_AREA)
            s.set_tissue(tissue & ~(covered >= 0.5))
            s.found.add(replace(s.found[Tissue], fraction=float(s.masks[s.TISSUE].mean())))
        tissue_pixels = int(np.count_nonzero(found.tissue))
        shares = {}
        for kind in ARTEFACT_KINDS:
            mask = found.of(kind)
            over = int(np.count_nonzero(mask & found.tissue))
            share = Share(
                of_tissue=over / tissue_pixels if tissue_pixels else 0.0,
                on_glass=int(np.count_nonzero(mask & ~found.tissue)) / mask.size,
            )
            if max(share.of_tissue, share.on_glass) < MIN_REPORTED_SHARE:
                mask, share = np.zeros_like(mask), Share(0.0, 0.0)
            s.exclude(kind, mask)
            shares[kind] = share
        total = int(np.count_nonzero(s.masks[s.TISSUE]))
        usable_share = int(np.count_nonzero(s.usable)) / total if total else 0.0
        s.ran_with(artefact_work_size=size.text, fold_max=fold_max)
        s.found.add(
            Artefacts(
                work_size=size.text,
                pixels=f"{cols}x{rows}",
                mpp=mpp,
                **shares,
                usable_share=usable_share,
                recut=recut_needed(shares["fold"].of_tissue, fold_max),
            )
        )
    return s


def detect_blur(
    s: BaseImage,
    blur_radius: float = DEFAULTS.blur_radius,
    blur_threshold: float = DEFAULTS.blur_threshold,
    tile_threads: int | None = None,
) -> BaseImage:
    """Find the blur at the blur work size, tile by tile, on the usable tissue (:class:`Blur`).

    The blur work level is never held whole (see :mod:`slideqc.tiled`): tiles
    with usable tissue are read with enough context for the result to be the whole
    image's, and the other tiles are not read.

    Parameters
    ----------
    s : BaseImage
        The slide, its tissue found (:func:`segment_tissue`).
    blur_radius : float, > 0
        The focus measure's neighbourhood, in pixels of the blur work size.
    blur_threshold : float in (0, 1]
        Blurry at or below this focus value, in gray level per pixel.
    tile_threads : int, optional
        Threads for the tiles (default: one per CPU; a runner that checks slides
        side by side passes its share).

    Returns
    -------
    BaseImage
        ``s``, with its :class:`Blur` (the blurry fraction, 0 to 1) and its "blur" mask.
    """
    if s.USABLE not in s.masks:
        raise SlideError("blur detection needs the tissue mask; run segment_tissue first", s.name)
    usable = s.usable
    with timed(s, "blur"):
        found = tiled.measure_blur(s, s.blur_work_size, usable, blur_radius, blur_threshold, workers=tile_threads)
        s.ran_with(blur_radius=blur_radius, blur_threshold=blur_threshold)
        s.found.add(Blur(found.fraction, found.tiles_read, found.tiles_total))
        # The blurry pixels that were counted, kept at the tissue resolution: enough for
        # pictures, small to pass between processes.
        s.set_mask("blur", found.mask, removed_fraction=algorithms.fraction_of(found.mask, s.masks[s.TISSUE]))
    # The last step that measures: let go of the OpenSlide handle, its tile cache (tens of MB)
    # and the tissue work image, as a flow keeps every slide's object until the run ends. The
    # pictures reopen the slide for its thumbnail.
    s.close()
    return s


StepName = Literal["load", "tissue", "artefacts", "blur"]  # the names of STEPS, in order (a test checks)
STEP_NAMES: tuple[StepName, ...] = get_args(StepName)


@dataclass(frozen=True)
class Step:
    """One QC step: its name and its function ``(s or path, settings...) -> s``."""

    name: StepName
    function: Callable[..., BaseImage]

    @property
    def settings(self) -> tuple[str, ...]:
        """The QC settings the step takes: its parameters named like a field of QCSettings."""
        names = QCSettings.names()
        return tuple(p for p in inspect.signature(self.function).parameters if p in names)

    def run(self, s: BaseImage | str | Path, settings: QCSettings, tile_threads: int | None = None) -> BaseImage:
        """Run the step on ``s`` (a path for the load step) with its settings from ``settings``."""
        values = {name: getattr(settings, name) for name in self.settings}
        if "tile_threads" in inspect.signature(self.function).parameters:
            values["tile_threads"] = tile_threads
        return self.function(s, **values)


# The QC, in order: every runner that is not a lesson runs exactly these (run_steps), and every
# lesson has one task per step, in this order. The decision (judge, needs_rescan) and the pictures
# come after, from what these found.
STEPS: tuple[Step, ...] = (
    Step("load", load_slide),
    Step("tissue", segment_tissue),
    Step("artefacts", find_artefacts),
    Step("blur", detect_blur),
)


def run_steps(path: str | Path, settings: QCSettings = DEFAULTS, tile_threads: int | None = None) -> BaseImage:
    """Every step of :data:`STEPS` on the slide at ``path``, in order, with ``settings``."""
    s: BaseImage | str | Path = path
    for step in STEPS:
        s = step.run(s, settings, tile_threads)
    assert isinstance(s, BaseImage)
    return s


def needs_rescan(s: BaseImage, blur_max: float = DEFAULTS.blur_max) -> bool:
    """Return True when more than ``blur_max`` (a fraction, 0.05 = 5 %) of the usable tissue is blurry.

    A slide that cannot be judged (:func:`judge`) is never sent to a rescan for blur: its
    row says why it cannot be judged instead.
    """
    return not judge(s) and rescan_needed(s.found[Blur].fraction, blur_max)


def judge(s: BaseImage, limits: JudgeLimits = JUDGE_LIMITS) -> str:
    """Why the QC cannot judge this slide ("" when it can): the one place that decides it.

    A slide with (almost) no tissue has nothing to judge, a blur work size
    coarser than ``limits.max_blur_mpp`` µm per pixel cannot show blur, and tissue
    stained too faintly (``limits.min_stain_contrast``) hides it in the
    scanner's noise: such a slide's row gets the status ``cannot judge`` with this
    reason, never ``ok`` and never a confident rescan.
    """
    tissue = s.found[Tissue]
    found = s.found.get(Artefacts)
    # A fold that needs a re-cut is the verdict even when it leaves little tissue to judge.
    usable_share = found.usable_share if found is not None and not found.recut else None
    return cannot_judge_reason(
        tissue.fraction,
        s.microns_per_pixel(s.blur_work_size),
        limits,
        stain_contrast=tissue.stain_contrast,
        usable_share=usable_share,
    )


def needs_recut(s: BaseImage) -> bool:
    """Return True when a fold covers more of the tissue than the artefact step's ``fold_max`` (a re-cut)."""
    found = s.found.get(Artefacts)
    return found is not None and found.recut and not judge(s)


def describe(s: BaseImage, blur_max: float = DEFAULTS.blur_max) -> str:
    """One line for the log: what the QC found, and RESCAN when the slide needs one."""
    text = (
        f"{s.name}: tissue {100 * s.found[Tissue].fraction:.1f} % of the slide, "
        f"{100 * s.found[Blur].fraction:.1f} % of the tissue blurry"
    )
    found = s.found.get(Artefacts)
    if found is not None and found.found:
        text += (
            ", artefacts "
            + ", ".join(f"{kind} {100 * found.share(kind).of_tissue:.1f} %" for kind in found.found)
            + f" of the tissue ({100 * found.usable_share:.1f} % left to judge)"
        )
    if needs_recut(s):
        return text + " -> RECUT (a fold)"
    return text + (" -> RESCAN" if needs_rescan(s, blur_max) else "")


def describe_artefacts(s: BaseImage) -> str:
    """One line for the log: the artefacts found and the share of the tissue left to judge."""
    found = s.found[Artefacts]
    if not found.found:
        return f"{s.name}: no artefacts"
    kinds = ", ".join(
        f"{kind} {100 * found.share(kind).of_tissue:.1f} % of the tissue"
        + (f" and {100 * found.share(kind).on_glass:.1f} % of the glass" if found.share(kind).on_glass else "")
        for kind in found.found
    )
    return f"{s.name}: artefacts: {kinds}; {100 * found.usable_share:.1f} % of the tissue left to judge" + (
        " -> RECUT (a fold)" if found.recut else ""
    )


def error_reason(path: str | Path, error: BaseException) -> str:
    """Return what went wrong with the slide at ``path``, in one line without the slide's name.

    SlideErrors say what is wrong in a lab person's words, a SettingError names its
    setting; anything else is an unexpected failure and keeps its type, so it can be
    looked up. The slide's path in the text is shortened to its name.
    """
    name = display_name(Path(path).name)
    if isinstance(error, SlideError):
        text = error.reason
    elif isinstance(error, SettingError):
        text = f"{error.setting}: {error.reason}"
    else:
        text = str(error)
    text = display_name(" ".join(text.replace(str(path), name).split())) or type(error).__name__
    if isinstance(error, SlideError | SettingError):
        return text
    if isinstance(error, openslide.OpenSlideError):  # raised past BaseImage: still a slide problem
        return f"OpenSlide cannot read the slide (corrupt tile?): {text}"
    if isinstance(error, MemoryError):
        return "out of memory; try a smaller work size"
    if isinstance(error, OSError) and error.errno in NO_ROOM:
        where = f" writing {display_name(str(error.filename))}" if error.filename else ""
        return f"{NO_ROOM_TEXT}{where}; free some space and run again"
    return f"{type(error).__name__}: {text}"


def no_room_path(error: BaseException) -> str | None:
    """Return the path a full disk (or quota) could not take when ``error`` is that, else None ("" when unnamed)."""
    if isinstance(error, OSError) and error.errno in NO_ROOM:
        return display_name(str(error.filename)) if error.filename else ""
    return None


def error_message(path: str | Path, error: BaseException) -> str:
    """Return a one-line error that names the slide, for the log: ``<slide>: <error_reason>``."""
    return f"{display_name(Path(path).name)}: {error_reason(path, error)}"
