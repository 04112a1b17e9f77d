"""A persisted result is found again only for the same slide file and the same measuring settings."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import pytest

from slideqc import prefect1
from slideqc.output.cache import MEASURED_WITH, default_cache_dir, slide_key
from slideqc.settings import DEFAULTS, QCSettings

# Another valid value of every setting (by hand).
OTHER = {
    "image_work_size": "2.5x",
    "artefact_work_size": "2.5x",
    "blur_work_size": "20x",
    "blur_radius": 5.0,
    "blur_threshold": 0.04,
    "blur_max": 0.1,
    "fold_max": 0.2,
}


@pytest.fixture
def slide(demo_slides, tmp_path):
    copy = tmp_path / demo_slides[0].name
    shutil.copy2(demo_slides[0], copy)
    return copy


def test_every_setting_is_listed_once():
    assert set(OTHER) == {f.name for f in fields(QCSettings)}
    assert set(MEASURED_WITH) == set(OTHER) - {"blur_max"}  # blur_max decides after measuring


@pytest.mark.parametrize("name", list(OTHER))
def test_a_measuring_setting_changes_the_key(slide, name):
    settings = DEFAULTS.as_dict()
    changed = {**settings, name: OTHER[name]}
    same = slide_key(slide, settings) == slide_key(slide, changed)
    assert same is (name == "blur_max")


def test_the_same_file_and_settings_give_the_same_key(slide):
    assert slide_key(slide, DEFAULTS.as_dict()) == slide_key(str(slide), dict(DEFAULTS.as_dict()))
    assert slide_key(slide, DEFAULTS.as_dict()).startswith(slide.stem)


def test_a_replaced_slide_changes_the_key(slide):
    before = slide_key(slide, DEFAULTS.as_dict())
    stat = slide.stat()
    os.utime(slide, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # copied again: a new mtime
    touched = slide_key(slide, DEFAULTS.as_dict())
    assert touched != before
    with open(slide, "ab") as handle:  # same mtime, other size
        handle.write(b"\0")
    os.utime(slide, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert slide_key(slide, DEFAULTS.as_dict()) not in (before, touched)


def test_another_path_changes_the_key(slide, tmp_path):
    twin = tmp_path / "elsewhere" / slide.name
    twin.parent.mkdir()
    shutil.copy2(slide, twin)
    assert slide_key(twin, DEFAULTS.as_dict()) != slide_key(slide, DEFAULTS.as_dict())


def test_a_missing_slide_still_gets_a_key_that_changes_when_it_appears(tmp_path):
    """A slide not there (yet): no size or mtime to hash, but a key; once it is written, another key."""
    missing = tmp_path / "later.svs"
    before = slide_key(missing, DEFAULTS.as_dict())
    assert before.startswith("later-")
    missing.write_bytes(b"slide")
    assert slide_key(missing, DEFAULTS.as_dict()) != before


def test_the_default_cache_folder():
    assert default_cache_dir() == Path("output") / ".qc-cache"
    assert default_cache_dir("runs") == Path("runs") / ".qc-cache"


def test_a_key_is_the_name_and_sixteen_hex_digits(slide):
    assert re.fullmatch(rf"{re.escape(slide.stem)}-[0-9a-f]{{16}}", slide_key(slide, DEFAULTS.as_dict()))


# --- Prefect 1's targets: the folder a persisted step result is looked for in -----------------


def test_a_target_is_under_the_cache_folder_per_slide_and_step(slide, tmp_path):
    load, blur = prefect1.slide_target("load"), prefect1.slide_target("blur")
    settings = {**DEFAULTS.as_dict(), "cache_dir": str(tmp_path / "cache")}
    found = Path(load(file_name=str(slide), **settings))
    assert found.name == "load.pickle" and found.parent.parent == (tmp_path / "cache").resolve()
    assert found.parent.name.startswith(slide.stem + "-")
    # A later step gets the slide object, not its file name: the same slide, the same folder.
    later = Path(blur(s=SimpleNamespace(path=str(slide)), **settings))
    assert later.parent == found.parent and later.name == "blur.pickle"


def test_a_target_without_a_cache_folder_is_the_default_one(slide):
    found = Path(prefect1.slide_target("load")(file_name=str(slide), cache_dir=None, **DEFAULTS.as_dict()))
    assert found.parent.parent == default_cache_dir().resolve()


@pytest.mark.parametrize("name", list(OTHER))
def test_a_target_changes_with_every_measuring_setting(slide, tmp_path, name):
    target = prefect1.slide_target("tissue")
    settings = {**DEFAULTS.as_dict(), "cache_dir": str(tmp_path)}
    same = target(file_name=str(slide), **settings) == target(file_name=str(slide), **{**settings, name: OTHER[name]})
    assert same is (name == "blur_max")


def test_a_target_changes_when_the_slide_is_replaced(slide, tmp_path):
    target = prefect1.slide_target("load")
    before = target(file_name=str(slide), cache_dir=str(tmp_path), **DEFAULTS.as_dict())
    stat = slide.stat()
    os.utime(slide, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert target(file_name=str(slide), cache_dir=str(tmp_path), **DEFAULTS.as_dict()) != before
