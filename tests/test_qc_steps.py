"""The QC steps' contracts, in process, against values worked out by hand.

Written for the survivors of mutation testing (docs/mutation.md): which setting a bad work
size names, the smallest slide that can be segmented, the log line's numbers, the
judge's limits, the one-line error messages.
"""

from __future__ import annotations

import copy
import errno
import time

import numpy as np
import openslide
import pytest

from BaseImage import SettingError, SlideError
from slideqc import qc, synthetic
from slideqc.settings import JudgeLimits
from tests.conftest import CACHE


def small_slide(width: int) -> synthetic.SlideSpec:
    # 40x: 1.25x is a downsample of 32, so `width` / 32 px wide at the tissue work size.
    return synthetic.SlideSpec(name=f"narrow_{width}.svs", width=width, height=768, seed=5)


@pytest.fixture
def segmented(demo_slides):
    return qc.segment_tissue(qc.load_slide(demo_slides[0]))


@pytest.mark.parametrize("setting", ["image_work_size", "blur_work_size"])
def test_a_bad_work_size_names_its_setting(demo_slides, setting):
    with pytest.raises(ValueError, match=rf"^{setting}: 'abc' is not a work size"):
        qc.load_slide(demo_slides[0], **{setting: "abc"})


def test_the_smallest_slide_that_can_be_segmented():
    """16 px a side at the tissue work size is enough (MIN_WORK_PIXELS); 15 is not, and the message says both sizes."""
    fits, narrow = synthetic.write_set([small_slide(512), small_slide(480)], CACHE / "small")
    assert qc.load_slide(fits).work_shape(qc.load_slide(fits).image_work_size) == (24, 16)
    with pytest.raises(SlideError) as refused:
        qc.load_slide(narrow)
    assert str(refused.value) == (
        "narrow_480.svs: too small: 480x768 px is 15x24 px at image_work_size 1.25x; at least 16 px per side are needed"
    )


def test_the_load_time_is_the_time_it_took(demo_slides):
    started = time.perf_counter()
    s = qc.load_slide(demo_slides[0])
    took = time.perf_counter() - started
    assert 0 <= s.timings["load"] <= took


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_no_stain_contrast_without_glass_or_tissue(demo_slides, monkeypatch, fraction):
    """A slide all glass or all tissue has nothing to compare its stain with: None, not a number."""
    monkeypatch.setattr(qc.algorithms, "tissue_mask", lambda image: np.full(image.shape[:2], bool(fraction)))
    s = qc.segment_tissue(qc.load_slide(demo_slides[0]))
    assert s.found[qc.Tissue].fraction == fraction and s.found[qc.Tissue].stain_contrast is None


def test_blur_needs_the_tissue_mask_first(demo_slides):
    s = qc.load_slide(demo_slides[0])
    with pytest.raises(
        SlideError, match=rf"^{s.name}: blur detection needs the tissue mask; run segment_tissue first$"
    ):
        qc.detect_blur(s)


def test_the_blur_threshold_given_is_used(demo_slides):
    """At the highest threshold (1) nearly all tissue reads blurry; the ~30 % slide reads far less by default."""
    path = demo_slides[1]
    default = qc.detect_blur(qc.segment_tissue(qc.load_slide(path)), tile_threads=1)
    highest = qc.detect_blur(qc.segment_tissue(qc.load_slide(path)), blur_threshold=1.0, tile_threads=1)
    assert highest.settings_used["blur_threshold"] == 1.0
    assert default.found[qc.Blur].fraction < 0.5 < 0.9 < highest.found[qc.Blur].fraction


def test_a_coarse_blur_work_size_cannot_be_judged(demo_slides):
    """256 px on the long side of an 8192 px slide at 0.25 µm: 8 µm per pixel, over the 4 µm limit."""
    s = qc.segment_tissue(qc.load_slide(demo_slides[0], blur_work_size="256"))
    assert qc.judge(s).startswith("cannot judge blur at 8 µm per pixel (at most 4 µm is needed)")
    s.found.add(qc.Blur(fraction=0.5, tiles_read=0, tiles_total=0))
    assert qc.needs_rescan(s, 0.05) is False


def test_the_judge_uses_the_limits_given(segmented):
    assert qc.judge(segmented) == ""
    assert qc.judge(segmented, JudgeLimits(min_tissue_fraction=0.99)).startswith("no tissue: ")


def test_the_log_line_by_hand(segmented):
    s = copy.copy(segmented)
    s.found.add(qc.Tissue(fraction=0.25, stain_contrast=70.0))
    s.found.add(qc.Blur(fraction=0.125, tiles_read=1, tiles_total=1))
    assert qc.describe(s, blur_max=0.125) == f"{s.name}: tissue 25.0 % of the slide, 12.5 % of the tissue blurry"
    assert (
        qc.describe(s, blur_max=0.124) == f"{s.name}: tissue 25.0 % of the slide, 12.5 % of the tissue blurry -> RESCAN"
    )


# --- one-line error messages ------------------------------------------------------------------


def no_room(code, filename=None):
    error = OSError(code, "No space left on device")
    error.filename = filename
    return error


@pytest.mark.parametrize(
    "error, message",
    [
        (SlideError("empty file", "a.svs"), "a.svs: empty file"),  # names its slide: said once
        (SettingError("blur_max", "bad value"), "a.svs: blur_max: bad value"),  # names its setting
        (SlideError("empty file"), "a.svs: empty file"),
        (SlideError("two\n   lines"), "a.svs: two lines"),
        (openslide.OpenSlideError("bad tile"), "a.svs: OpenSlide cannot read the slide (corrupt tile?): bad tile"),
        (MemoryError(), "a.svs: out of memory; try a smaller work size"),
        (
            no_room(errno.ENOSPC, "/run/x.png"),
            "a.svs: no space left on the disk writing /run/x.png; free some space and run again",
        ),
        (no_room(errno.EDQUOT), "a.svs: no space left on the disk; free some space and run again"),
        (OSError(errno.EACCES, "Permission denied"), "a.svs: PermissionError: [Errno 13] Permission denied"),
        (RuntimeError("boom in /data/in/a.svs"), "a.svs: RuntimeError: boom in a.svs"),  # the path shortened
        (RuntimeError(), "a.svs: RuntimeError: RuntimeError"),  # no text: its type
        (ValueError("no name"), "a.svs: ValueError: no name"),
    ],
)
def test_error_messages_by_hand(error, message):
    assert qc.error_message("/data/in/a.svs", error) == message
