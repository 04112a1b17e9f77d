"""Shared fixtures: synthetic slides with ground truth, made once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from slideqc import synthetic

ROOT = Path(__file__).resolve().parents[1]

# Slides are cached between sessions here (make clean leaves them; they are deterministic).
CACHE = Path(os.environ.get("SLIDEQC_TEST_CACHE", ROOT / ".pytest_cache" / "slides"))


def _cached_set(name: str, specs: list[synthetic.SlideSpec]) -> Path:
    folder = CACHE / name
    synthetic.write_set(specs, folder)
    return folder


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """Folder with the three demo slides (0 %, ~30 %, ~70 % of the tissue blurred)."""
    return _cached_set("demo", synthetic.demo_specs(3))


@pytest.fixture(scope="session")
def demo_slides(demo_dir: Path) -> list[Path]:
    return sorted(demo_dir.glob("*.svs"))


@pytest.fixture
def demo_copy(tmp_path: Path, demo_dir: Path) -> Path:
    """A private copy of the demo folder that a test may add bad files to."""
    folder = tmp_path / "data"
    shutil.copytree(demo_dir, folder)
    return folder


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The intake's folders: a scanner folder and a shared folder (made), an output folder (not made yet)."""
    scanner, shared, out = tmp_path / "scanner", tmp_path / "shared", tmp_path / "out"
    scanner.mkdir()
    shared.mkdir()
    return scanner, shared, out
