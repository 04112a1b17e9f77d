"""Every QC setting in one place: its name, default, unit and valid range.

The command line (:mod:`slideqc.cli`), the Prefect flows' Parameters, the
results table and the report all take their settings from :class:`QCSettings`,
so a default is written once, here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

from BaseImage import SettingError, WorkSize

# SettingError is raised here too (QCSettings), so it is importable from here.
__all__ = [
    "BATCH_SIZE",
    "DEFAULTS",
    "JUDGE_LIMITS",
    "JudgeLimits",
    "QCSettings",
    "SettingError",
    "SettingKind",
    "cannot_judge_reason",
    "recut_needed",
    "rescan_needed",
]

SettingKind = Literal["work size", "number"]  # how a setting's value is checked (QCSettings.__post_init__)


def _setting(
    default: Any,
    help: str,
    *,
    kind: SettingKind = "number",
    unit: str = "",
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
) -> Any:
    return field(default=default, metadata=dict(help=help, kind=kind, unit=unit, low=low, high=high, low_open=low_open))


def _check_number(name: str, value: object, low: float, high: float, low_open: bool = False) -> None:
    try:
        number = float(value)  # type: ignore[arg-type]  # anything float() takes; the rest is refused below
    except (TypeError, ValueError):
        raise SettingError(name, f"{value!r} is not a number") from None
    ok = not math.isnan(number) and (number > low if low_open else number >= low) and number <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise SettingError(name, f"must be in {bracket}{low:g}, {high:g}], got {value!r}")


@dataclass(frozen=True)
class QCSettings:
    """The QC settings, with the workshop's defaults. Validated on creation (SettingError names the setting)."""

    image_work_size: str = _setting(
        "1.25x",
        "work size for tissue segmentation: a magnification ('1.25x') or pixels ('1000')",
        kind="work size",
        unit="magnification or pixels",
    )
    artefact_work_size: str = _setting(
        "1.25x",
        "work size for finding artefacts (marker ink, air bubbles, debris, coverslip edges, folds)",
        kind="work size",
        unit="magnification or pixels",
    )
    blur_work_size: str = _setting(
        "10x",
        "work size for blur detection; blur is only visible at higher magnification",
        kind="work size",
        unit="magnification or pixels",
    )
    blur_radius: float = _setting(
        7.0,
        "size of the window the focus measure averages over (a box of the spread of a Gaussian of this sigma), "
        "in pixels at the blur work size",
        unit="pixels",
        low=0,
        high=100,
        low_open=True,
    )
    blur_threshold: float = _setting(
        0.05,
        "in (0, 1]: a focus measure (|Laplacian| at the reference contrast) at or below this is blurry",
        low=0,
        high=1,
        low_open=True,
    )
    blur_max: float = _setting(
        0.05,
        "fraction of the tissue (0.05 = 5%%) above which a slide needs a rescan",
        unit="fraction of the tissue",
        low=0,
        high=1,
    )

    fold_max: float = _setting(
        0.10,
        "fraction of the tissue (0.10 = 10%%) folded over itself above which a slide needs a re-cut "
        "(a rescan cannot fix a fold)",
        unit="fraction of the tissue",
        low=0,
        high=1,
    )

    def __post_init__(self) -> None:
        """Check every setting: a SettingError names the first one out of its range or not a work size."""
        for setting in fields(self):
            value, meta = getattr(self, setting.name), setting.metadata
            if meta["kind"] == "work size":
                WorkSize.parse(value, setting.name)
            else:
                _check_number(setting.name, value, meta["low"], meta["high"], meta["low_open"])

    def as_dict(self) -> dict[str, Any]:
        """Return every setting by name, as a flow takes them as parameters."""
        return asdict(self)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """Every setting's name, in order."""
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> QCSettings:
        """Return the settings among ``values`` (a flow's parameters, say), the defaults for the others.

        Names in ``values`` that are not settings are left out, so a flow can pass all its parameters.
        """
        return cls(**{name: values[name] for name in cls.names() if name in values})


DEFAULTS = QCSettings()

# Slides per flow run for the scripts that check a folder as several flow runs (the Prefect 1
# extra pipeline_prefect_batches.py, the Prefect 3 server path): a flow run keeps its task runs'
# states until it ends (~50 KB a slide in Prefect 1's mapped flow), so a batch bounds that, and
# 32 slides keep each flow run's start-up cost (a second or two) small against its QC.
BATCH_SIZE = 32


def recut_needed(fold_fraction: float, fold_max: float) -> bool:
    """Return True when more than ``fold_max`` of the tissue is folded over itself: the re-cut rule (both 0 to 1).

    A fold is in the section itself: scanning it again cannot help; the lab cuts a new section.
    Exactly at the limit is not a re-cut.
    """
    return fold_fraction > fold_max


def rescan_needed(blurry_fraction: float, blur_max: float) -> bool:
    """Return True when more than ``blur_max`` of the tissue is blurry: the rescan rule, written only here.

    Parameters
    ----------
    blurry_fraction : float, 0 to 1
        The blurry share of the tissue.
    blur_max : float, 0 to 1
        The largest blurry share that passes; exactly at the limit is not a rescan.

    Returns
    -------
    bool
        Whether the slide needs a rescan.

    Examples
    --------
    >>> from slideqc.settings import rescan_needed
    >>> rescan_needed(0.06, blur_max=0.05), rescan_needed(0.05, blur_max=0.05)
    (True, False)
    """
    return blurry_fraction > blur_max


@dataclass(frozen=True)
class JudgeLimits:
    """When the QC cannot judge a slide at all (its row's status is then ``cannot judge``, never ``ok``)."""

    # Blank glass, or a fleck of dust: below this fraction of the slide (0 to 1) there is no
    # tissue whose focus could be judged. Real sections cover a few % of a slide at the least.
    min_tissue_fraction: float = 0.005
    # The blur step needs cells to look sharp or soft: beyond this many µm per pixel at the blur
    # work size (10x is 1 µm/px) a nucleus (5 to 10 µm) is a pixel or two and blur cannot show.
    max_blur_mpp: float = 4.0
    # Tissue whose stain stands fewer gray levels (8-bit, algorithms.stain_contrast) from the glass
    # than this is too faint to judge its focus: the scanner's noise is then as large as the detail
    # a 1 to 2 µm blur removes, and blurred tissue reads partly sharp. Usual H&E ~70, a quarter of
    # the stain ~21, 15 % ~13. Measured (docs/blur_measure.md): at 13 levels 30 % blurred reads
    # 28.5, at 10 levels 24, at 9 levels 18; sharp tissue never reads blurry.
    min_stain_contrast: float = 12.0
    # Artefacts (ink, bubbles, debris, edges, folds) are left out of the tissue whose focus is
    # judged. With less than this share of the tissue (0 to 1) left, what remains is a few edges
    # between artefacts, too little to stand for the slide: clean the slide and scan it again.
    min_usable_share: float = 0.25


JUDGE_LIMITS = JudgeLimits()


def cannot_judge_reason(
    tissue_fraction: float | None,
    blur_mpp: float | None,
    limits: JudgeLimits = JUDGE_LIMITS,
    *,
    stain_contrast: float | None = None,
    usable_share: float | None = None,
) -> str:
    """Return why a measured slide cannot be judged ("" when it can): the rule, written once.

    Parameters
    ----------
    tissue_fraction : float, 0 to 1, or None
        The share of the slide that is tissue (None counts as no tissue).
    blur_mpp : float or None
        µm per pixel at the blur work size; None when the slide does not state its
        pixel size (then it is not judged on it).
    limits : JudgeLimits
        The least tissue, the coarsest blur pixel, the faintest stain and the least tissue
        free of artefacts that can be judged.
    stain_contrast : float, >= 0, or None
        The tissue's, in 8-bit gray levels (None: not measured).
    usable_share : float, 0 to 1, or None
        The share of the tissue free of artefacts (None: not measured).

    Returns
    -------
    str
        One line with the reason and what to do, or "" when the slide can be judged.
    """
    if tissue_fraction is None or tissue_fraction < limits.min_tissue_fraction:
        found = 0.0 if tissue_fraction is None else 100 * tissue_fraction
        return (
            f"no tissue: {found:.2f} % of the slide is tissue (at least "
            f"{100 * limits.min_tissue_fraction:g} % is needed); check the slide has a section on it"
        )
    if blur_mpp is not None and blur_mpp > limits.max_blur_mpp:
        return (
            f"cannot judge blur at {blur_mpp:g} µm per pixel (at most {limits.max_blur_mpp:g} µm is needed); "
            "the slide states too coarse a pixel size: rescan it, or check its scanner settings"
        )
    # Before the stain's strength: measured on what the artefacts leave, which may be a sliver.
    if usable_share is not None and usable_share < limits.min_usable_share:
        return (
            f"too little tissue free of artefacts: {100 * usable_share:.0f} % of the tissue is free of ink, "
            f"bubbles, debris and folds (at least {100 * limits.min_usable_share:g} % is needed); "
            "clean the slide or its coverslip and scan it again"
        )
    if stain_contrast is not None and stain_contrast < limits.min_stain_contrast:
        return (
            f"tissue too faint to judge its focus: the stain stands {stain_contrast:.0f} gray levels "
            f"from the glass (at least {limits.min_stain_contrast:g} are needed); check it by eye"
        )
    return ""
