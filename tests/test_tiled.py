"""Blur measured tile by tile: the same answer as the whole image, glass never read, bounded memory."""

from __future__ import annotations

import importlib.util
import platform
import subprocess
import sys

import numpy as np
import pytest

from slideqc import algorithms, qc, synthetic, tiled
from slideqc.settings import QCSettings
from tests.conftest import CACHE, ROOT

PARAMS = QCSettings()
SMALL_TILE = 128  # blur work pixels: a 1024 x 768 work level becomes 8 x 6 tiles


@pytest.fixture(scope="module")
def moderate_slide():
    """4096 x 3072 px at 40x, half its tissue blurred, in large regions that cross many tile seams."""
    spec = synthetic.SlideSpec(
        name="moderate.svs",
        width=4096,
        height=3072,
        blurred_fraction=0.5,
        blur_sigma_um=(1.5, 3.0),
        tissue_fraction=0.3,
        seed=12,
    )
    return synthetic.write_set([spec], CACHE / "tiled")[0]


def _tissue(path, blur_work_size=PARAMS.blur_work_size):
    return qc.segment_tissue(qc.load_slide(path, PARAMS.image_work_size, blur_work_size))


def _untiled(s, blur_work_size=PARAMS.blur_work_size):
    """The whole-image algorithm: the blur work level read at once, as before tiling."""
    image = s.get_image(blur_work_size)
    blurry = algorithms.blur_mask(image, PARAMS.blur_radius, PARAMS.blur_threshold)
    tissue = algorithms.resize_mask(s.masks["tissue"], blurry.shape)
    inner = algorithms.measurable_tissue(tissue, PARAMS.blur_radius)
    return blurry, inner, algorithms.blurry_fraction(blurry, s.masks["tissue"], PARAMS.blur_radius)


def _measure(s, tile_size=SMALL_TILE, workers=1, blur_work_size=PARAMS.blur_work_size):
    return tiled.measure_blur(
        s,
        blur_work_size,
        s.masks["tissue"],
        PARAMS.blur_radius,
        PARAMS.blur_threshold,
        tile_size=tile_size,
        workers=workers,
    )


def test_tiles_equal_the_whole_image_across_seams(moderate_slide):
    s = _tissue(moderate_slide)
    blurry, inner, whole = _untiled(s)
    counted = blurry & inner
    # The test means something only if blurry tissue lies on both sides of tile seams.
    across_columns = sum(
        int((counted[:, x - 1] & counted[:, x]).sum()) for x in range(SMALL_TILE, counted.shape[1], SMALL_TILE)
    )
    across_rows = sum(int((counted[y - 1] & counted[y]).sum()) for y in range(SMALL_TILE, counted.shape[0], SMALL_TILE))
    assert across_columns > 200 and across_rows > 200
    truth = synthetic.read_truth(moderate_slide).percent_blurry
    assert 100 * whole == pytest.approx(truth, abs=5)

    found = _measure(s)
    assert found.tiles_total == 48 and found.tiles_read < found.tiles_total
    assert found.shape == blurry.shape
    # 10x is a pyramid level of this slide, so the tiles are exact crops: not merely close.
    assert found.fraction == whole
    assert found.counts == algorithms.BlurCounts.of(
        blurry, algorithms.resize_mask(s.masks["tissue"], blurry.shape), inner
    )
    assert np.array_equal(found.mask, algorithms.area_fraction(counted, s.masks["tissue"].shape) >= 0.5)
    # One tile is the untiled algorithm.
    assert _measure(s, tile_size=4096).fraction == whole


def test_tiles_resized_from_a_level_stay_within_a_tenth_of_a_point(moderate_slide):
    """At 8x (between the pyramid's levels) each tile is read from level 1 and resized on its own."""
    s = _tissue(moderate_slide, "8x")
    _, _, whole = _untiled(s, "8x")
    found = _measure(s, blur_work_size="8x")
    assert found.tiles_read > 4
    assert 100 * found.fraction == pytest.approx(100 * whole, abs=0.1)


def test_detect_blur_stores_the_counted_blur_relative_to_tissue(moderate_slide):
    s = qc.detect_blur(_tissue(moderate_slide), PARAMS.blur_radius, PARAMS.blur_threshold)
    assert s.masks["blur"].shape == s.masks["tissue"].shape
    assert not (s.masks["blur"] & ~s.masks["tissue"]).any()
    [step] = s.mask_steps
    assert step.name == "blur"
    assert step.removed_fraction == pytest.approx(algorithms.fraction_of(s.masks["blur"], s.masks["tissue"]))
    assert s.work_shape(s.blur_work_size) == (768, 1024)
    assert (s.settings_used["blur_radius"], s.settings_used["blur_threshold"]) == (
        PARAMS.blur_radius,
        PARAMS.blur_threshold,
    )
    assert s.timings["blur"] > 0


def test_tissue_free_tiles_are_never_read(moderate_slide):
    s = _tissue(moderate_slide)
    before = len(s.reads)
    found = _measure(s)
    reads = s.reads[before:]
    assert len(reads) == found.tiles_read < found.tiles_total
    level = s.level_for(PARAMS.blur_work_size)
    downsample = s.level_downsamples[level]
    shape = found.shape
    for read in reads:
        assert read.level == level
        left, top = (round(v / downsample) for v in read.location)  # level 1 is the work level here
        window = (top, left, read.size[1], read.size[0])
        assert algorithms.resize_mask(s.masks["tissue"], shape, window).any(), read


def test_threads_give_exactly_the_serial_result(moderate_slide):
    s = _tissue(moderate_slide)
    serial = _measure(s, workers=1)
    threaded = _measure(s, workers=4)
    assert threaded.counts == serial.counts
    assert threaded.fraction == serial.fraction
    assert np.array_equal(threaded.mask, serial.mask)


def test_tile_threads_are_each_slides_share_of_the_cores():
    assert tiled.threads_per_slide(1, cpus=8) == 8
    assert tiled.threads_per_slide(3, cpus=8) == 2  # 3 slides x 2 threads <= 8 cores
    assert tiled.threads_per_slide(16, cpus=8) == 1  # never none
    assert tiled.threads_per_slide() >= 1


def test_tile_threads_given_are_used_and_give_the_same_result(moderate_slide, monkeypatch):
    """The runner's tile_threads reach the thread pool; no environment variable is read."""
    import concurrent.futures

    sizes = []
    real_pool = concurrent.futures.ThreadPoolExecutor

    def recording_pool(max_workers=None, **kwargs):
        sizes.append(max_workers)
        return real_pool(max_workers=max_workers, **kwargs)

    monkeypatch.setattr(tiled, "ThreadPoolExecutor", recording_pool)
    one = qc.detect_blur(_tissue(moderate_slide), PARAMS.blur_radius, PARAMS.blur_threshold, tile_threads=1)
    three = qc.detect_blur(_tissue(moderate_slide), PARAMS.blur_radius, PARAMS.blur_threshold, tile_threads=3)
    assert sizes == [1, 3]
    assert one.found[qc.Blur].fraction == three.found[qc.Blur].fraction
    with pytest.raises(ValueError, match="workers must be >= 1"):
        qc.detect_blur(_tissue(moderate_slide), PARAMS.blur_radius, PARAMS.blur_threshold, tile_threads=0)


def _benchmark_module():
    spec = importlib.util.spec_from_file_location("big_slides", ROOT / "benchmarks" / "big_slides.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


# Untiled, the 10x level of this slide (10000 x 7500 px) alone needs ~0.2 GB of RGB and
# ~1.2 GB of float images for the blur; tiled, the whole QC stays well below.
BIG_SLIDE_MEMORY = 1.0 * 2**30


def test_big_slide_in_bounded_memory():
    spec = synthetic.SlideSpec(
        name="big_40k.svs",
        width=40960,
        height=30720,
        blurred_fraction=0.3,
        blur_sigma_um=(1.5, 3.0),
        tissue_fraction=0.08,
        seed=40,
        downsamples=(1, 4, 16, 64),
    )
    [path] = synthetic.write_set([spec], CACHE / "tiled")
    truth = synthetic.read_truth(path)
    code = (
        "import resource, sys; from slideqc import qc; "
        f"s = qc.detect_blur(qc.segment_tissue(qc.load_slide({str(path)!r}))); "
        "print(100 * s.found[qc.Blur].fraction, len(s.reads))"
    )
    child = _benchmark_module().run_measured([sys.executable, "-c", code])
    assert child.returncode == 0, child.stderr
    percent, reads = child.stdout.split()
    assert float(percent) == pytest.approx(truth.percent_blurry, abs=5)
    assert int(reads) > 1
    print(f"big slide: {percent} % blurry (truth {truth.percent_blurry:.1f}), peak {child.max_rss / 2**20:.0f} MB")
    assert 0 < child.max_rss < BIG_SLIDE_MEMORY, f"{child.max_rss / 2**20:.0f} MB"


GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
# mallopt(3)'s parameter numbers, from glibc's <malloc.h>.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


class FakeLibc:
    """A C library whose mallopt records its calls and answers ``answers[param]`` (1: accepted, 0: refused)."""

    def __init__(self, answers=None):
        self.calls: list[tuple[int, int]] = []
        self.answers = answers or {}

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return self.answers.get(param, 1)


@pytest.fixture
def fake_libc(monkeypatch):
    """keep_freed_memory as in a fresh process, on a glibc Linux whose C library is a FakeLibc."""
    libc = FakeLibc()
    monkeypatch.setattr(tiled, "_malloc_tuned", None)
    monkeypatch.setattr(tiled.platform, "system", lambda: "Linux")
    monkeypatch.setattr(tiled.platform, "libc_ver", lambda: ("glibc", "2.36"))
    monkeypatch.setattr(tiled.ctypes, "CDLL", lambda name: libc)
    return libc


def test_freed_memory_is_kept_where_the_c_library_is_glibc():
    """The tile loop's malloc settings: in force on this machine's C library when it is glibc."""
    assert tiled.keep_freed_memory() is GLIBC
    assert tiled.keep_freed_memory() is GLIBC


def test_the_malloc_settings_are_asked_for_once(fake_libc):
    """mmap threshold 32 MiB and trim threshold 64 MiB (the tile loop's comment), asked once per process."""
    assert tiled.keep_freed_memory() is True
    assert tiled.keep_freed_memory() is True
    assert fake_libc.calls == [(M_MMAP_THRESHOLD, 32 * 2**20), (M_TRIM_THRESHOLD, 64 * 2**20)]


@pytest.mark.parametrize("refused", [M_MMAP_THRESHOLD, M_TRIM_THRESHOLD])
def test_a_refused_malloc_setting_is_not_in_force(fake_libc, refused):
    fake_libc.answers[refused] = 0
    assert tiled.keep_freed_memory() is False
    assert tiled.keep_freed_memory() is False
    assert len(fake_libc.calls) <= 2  # not asked again


@pytest.mark.parametrize(
    "system, libc",
    [("Linux", ("", "")), ("Linux", ("musl", "1.2")), ("Darwin", ("", "")), ("Darwin", ("glibc", "2.36"))],
)
def test_without_glibc_on_linux_malloc_is_left_alone(fake_libc, monkeypatch, system, libc):
    """musl (an empty libc_ver on Alpine), macOS: no mallopt to call, the settings are not in force."""
    monkeypatch.setattr(tiled.platform, "system", lambda: system)
    monkeypatch.setattr(tiled.platform, "libc_ver", lambda: libc)
    assert tiled.keep_freed_memory() is False
    assert tiled.keep_freed_memory() is False
    assert fake_libc.calls == []


MALLOC_PROBE = """
import ctypes, sys
from slideqc import tiled

class MallInfo2(ctypes.Structure):  # glibc >= 2.33, mallinfo2(3)
    _fields_ = [(name, ctypes.c_size_t) for name in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
MB = 2 ** 20

def mapped(size):
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(size)
    grew = libc.mallinfo2().hblkhd - before
    libc.free(block)
    return grew >= size

def kept(count, size):
    blocks = [libc.malloc(size) for _ in range(count)]
    in_use = libc.mallinfo2().arena
    for block in blocks:
        libc.free(block)
    return libc.mallinfo2().arena > in_use - size

first = mapped(20 * MB)
tuned = tiled.keep_freed_memory() if sys.argv[1] == "tuned" else None
print(first, tuned, mapped(40 * MB), mapped(24 * MB), kept(4, 14 * MB))
"""


@pytest.mark.skipif(not GLIBC, reason="glibc's malloc settings")
@pytest.mark.parametrize(
    "run, expected", [("tuned", "True True True False True"), ("stock", "True None True True False")]
)
def test_a_block_below_the_mmap_threshold_is_kept_for_the_next_tile(run, expected):
    """In a fresh process, as mallopt(3) documents it. A 20 MiB block is mapped, and handed back when freed
    (stock glibc then raises its thresholds to 20 and 40 MiB); a 40 MiB one, above 32 MiB, is mapped either
    way. With the settings a 24 MiB block comes from the heap, and four 14 MiB ones freed together (56
    MiB) stay there for the next tile; stock glibc maps the 24 MiB block (its thresholds rise to 24 and
    48 MiB) and gives the 56 MiB back."""
    child = subprocess.run([sys.executable, "-c", MALLOC_PROBE, run], capture_output=True, text=True, cwd=ROOT)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == expected.split()
