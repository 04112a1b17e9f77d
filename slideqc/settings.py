"""Every QC setting in one place: its name, default, unit and valid range.

The command line (:mod:`slideqc.cli`), the Prefect flows' Parameters, the
results table and the report all take their settings from :class:`QCSettings`,
so a default is written once, here.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from BaseImage import WorkSize


def _setting(default, help: str, unit: str = "", low: float | None = None, high: float | None = None,
             low_open: bool = False):
    return field(default=default, metadata=dict(help=help, unit=unit, low=low, high=high, low_open=low_open))


def _check_number(name: str, value, low: float, high: float, low_open: bool = False) -> None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {value!r} is not a number") from None
    ok = not math.isnan(number) and (number > low if low_open else number >= low) and number <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name}: must be in {bracket}{low:g}, {high:g}], got {value!r}")


@dataclass(frozen=True)
class QCSettings:
    """The QC settings, with the workshop's defaults. Validated on creation (ValueError names the setting)."""

    image_work_size: str = _setting(
        "1.25x", "work size for tissue segmentation: a magnification ('1.25x') or pixels ('1000')",
        unit="magnification or pixels")
    blur_work_size: str = _setting(
        "10x", "work size for blur detection; blur is only visible at higher magnification",
        unit="magnification or pixels")
    blur_radius: float = _setting(
        7.0, "sigma of the Gaussian over the Laplacian, in pixels at the blur work size",
        unit="pixels", low=0, high=100, low_open=True)
    blur_threshold: float = _setting(
        0.05, "in (0, 1]: smoothed |Laplacian| at or below this is blurry",
        low=0, high=1, low_open=True)
    blur_max: float = _setting(
        0.05, "fraction of the tissue (0.05 = 5%%) above which a slide needs a rescan",
        unit="fraction of the tissue", low=0, high=1)

    def __post_init__(self) -> None:
        for setting in fields(self):
            value = getattr(self, setting.name)
            if setting.metadata["unit"] == "magnification or pixels":
                WorkSize.parse(value, setting.name)
            else:
                _check_number(setting.name, value, **{k: setting.metadata[k] for k in ("low", "high", "low_open")})

    def as_dict(self) -> dict:
        return asdict(self)


DEFAULTS = QCSettings()


def rescan_needed(blurry_fraction: float, blur_max: float) -> bool:
    """The rescan rule, the one place it is written: more than ``blur_max`` of the tissue is blurry.

    Both are fractions of the tissue (0 to 1); exactly at the limit is not a rescan.
    """
    return blurry_fraction > blur_max
