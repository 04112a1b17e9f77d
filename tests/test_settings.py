"""The settings' validation and the cannot-judge rule: every message and every boundary, by hand."""

from __future__ import annotations

import math
from dataclasses import fields

import pytest

from slideqc import settings
from slideqc.settings import DEFAULTS, JUDGE_LIMITS, JudgeLimits, QCSettings, cannot_judge_reason


def test_defaults_are_the_workshops():
    assert DEFAULTS.as_dict() == {
        "image_work_size": "1.25x",
        "artefact_work_size": "1.25x",
        "blur_work_size": "10x",
        "blur_radius": 7.0,
        "blur_threshold": 0.05,
        "blur_max": 0.05,
        "fold_max": 0.1,
    }


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(blur_max=2), "blur_max: must be in [0, 1], got 2"),
        (dict(blur_max=-0.01), "blur_max: must be in [0, 1], got -0.01"),
        (dict(blur_threshold=0), "blur_threshold: must be in (0, 1], got 0"),
        (dict(blur_threshold=1.5), "blur_threshold: must be in (0, 1], got 1.5"),
        (dict(blur_radius=0), "blur_radius: must be in (0, 100], got 0"),
        (dict(blur_radius=101), "blur_radius: must be in (0, 100], got 101"),
        (dict(blur_radius="abc"), "blur_radius: 'abc' is not a number"),
        (dict(blur_radius=None), "blur_radius: None is not a number"),
        (dict(blur_max=math.nan), "blur_max: must be in [0, 1], got nan"),
        (dict(fold_max=1.5), "fold_max: must be in [0, 1], got 1.5"),
        (dict(artefact_work_size="2.5"), "artefact_work_size: '2.5' is not a work size"),
        (dict(image_work_size="abc"), "image_work_size: 'abc' is not a work size"),
        (dict(blur_work_size="0x"), "blur_work_size: magnification must be > 0, got '0x'"),
        (dict(blur_work_size="8"), "blur_work_size: pixel size must be >= 16, got '8'"),
    ],
)
def test_a_bad_value_names_its_setting(kwargs, message):
    with pytest.raises(ValueError) as error:
        QCSettings(**kwargs)
    assert str(error.value).startswith(message)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(blur_max=0),
        dict(blur_max=1),
        dict(blur_threshold=1),
        dict(blur_radius=100),
        dict(blur_radius=0.001),
        dict(image_work_size="1000"),
        dict(blur_work_size="16"),
    ],
)
def test_the_ends_of_each_range_are_allowed(kwargs):
    assert QCSettings(**kwargs).as_dict()[next(iter(kwargs))] == next(iter(kwargs.values()))


def test_judge_limits_by_hand():
    assert JUDGE_LIMITS == JudgeLimits(min_tissue_fraction=0.005, max_blur_mpp=4.0, min_stain_contrast=12.0)


@pytest.mark.parametrize(
    "tissue, mpp, contrast, reason",
    [
        (0.005, 1.0, 70.0, ""),  # every limit exactly met: judged
        (0.5, 4.0, 12.0, ""),
        (0.5, None, None, ""),  # unknown pixel size and contrast: not judged on them
        (
            0.0049,
            1.0,
            70.0,
            "no tissue: 0.49 % of the slide is tissue (at least 0.5 % is needed); check the slide has a section on it",
        ),
        (
            None,
            1.0,
            70.0,
            "no tissue: 0.00 % of the slide is tissue (at least 0.5 % is needed); check the slide has a section on it",
        ),
        (
            0.5,
            4.01,
            70.0,
            "cannot judge blur at 4.01 µm per pixel (at most 4 µm is needed); the slide states too "
            "coarse a pixel size: rescan it, or check its scanner settings",
        ),
        (
            0.5,
            1.0,
            11.9,
            "tissue too faint to judge its focus: the stain stands 12 gray levels from the glass "
            "(at least 12 are needed); check it by eye",
        ),
        (
            0.0,
            9.0,
            1.0,
            "no tissue: 0.00 % of the slide is tissue (at least 0.5 % is needed); check the slide has a section on it",
        ),  # the first reason wins
        (
            0.5,
            9.0,
            1.0,
            "cannot judge blur at 9 µm per pixel (at most 4 µm is needed); the slide states too "
            "coarse a pixel size: rescan it, or check its scanner settings",
        ),
    ],
)
def test_cannot_judge_reasons(tissue, mpp, contrast, reason):
    assert cannot_judge_reason(tissue, mpp, stain_contrast=contrast) == reason


def test_cannot_judge_follows_the_limits_given():
    strict = JudgeLimits(min_tissue_fraction=0.2, max_blur_mpp=0.5, min_stain_contrast=80)
    assert cannot_judge_reason(0.1, 0.25, strict).startswith("no tissue: 10.00 %")
    assert cannot_judge_reason(0.3, 1.0, strict).startswith("cannot judge blur at 1 µm")
    assert cannot_judge_reason(0.3, 0.25, strict, stain_contrast=70).startswith("tissue too faint")
    assert cannot_judge_reason(0.3, 0.25, strict, stain_contrast=80) == ""


def test_each_settings_range_and_unit_by_hand():
    """What the command line's help and the checks read from each field (the README's ranges)."""
    found = {
        f.name: (f.default, f.metadata["unit"], f.metadata["low"], f.metadata["high"], f.metadata["low_open"])
        for f in fields(QCSettings)
    }
    assert found == {
        "image_work_size": ("1.25x", "magnification or pixels", None, None, False),
        "artefact_work_size": ("1.25x", "magnification or pixels", None, None, False),
        "blur_work_size": ("10x", "magnification or pixels", None, None, False),
        "blur_radius": (7.0, "pixels", 0, 100, True),
        "blur_threshold": (0.05, "", 0, 1, True),
        "blur_max": (0.05, "fraction of the tissue", 0, 1, False),
        "fold_max": (0.1, "fraction of the tissue", 0, 1, False),
    }
    assert all(f.metadata["help"] for f in fields(QCSettings))


def test_a_setting_field_keeps_what_it_is_given():
    """The fields above are made when the module is imported; this checks the maker itself, in the test."""
    made = settings._setting(3, "some help", unit="u", low=0, high=1, low_open=True)
    assert made.default == 3
    assert dict(made.metadata) == {
        "help": "some help",
        "kind": "number",
        "unit": "u",
        "low": 0,
        "high": 1,
        "low_open": True,
    }
    plain = settings._setting("1x", "h", kind="work size")
    assert plain.default == "1x"
    assert dict(plain.metadata) == {
        "help": "h",
        "kind": "work size",
        "unit": "",
        "low": None,
        "high": None,
        "low_open": False,
    }
