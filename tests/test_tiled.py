"""Blur measured tile by tile: the same answer as the whole image, glass never read, bounded memory."""

from __future__ import annotations

import importlib.util
import platform
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
    spec = synthetic.SlideSpec(name="moderate.svs", width=4096, height=3072, blurred_fraction=0.5,
                               blur_sigma_um=(1.5, 3.0), tissue_fraction=0.3, seed=12)
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
    return tiled.measure_blur(s, blur_work_size, s.masks["tissue"], PARAMS.blur_radius, PARAMS.blur_threshold,
                              tile_size=tile_size, workers=workers)


def test_tiles_equal_the_whole_image_across_seams(moderate_slide):
    s = _tissue(moderate_slide)
    blurry, inner, whole = _untiled(s)
    counted = blurry & inner
    # The test means something only if blurry tissue lies on both sides of tile seams.
    across_columns = sum(int((counted[:, x - 1] & counted[:, x]).sum())
                         for x in range(SMALL_TILE, counted.shape[1], SMALL_TILE))
    across_rows = sum(int((counted[y - 1] & counted[y]).sum()) for y in range(SMALL_TILE, counted.shape[0], SMALL_TILE))
    assert across_columns > 200 and across_rows > 200
    truth = synthetic.read_truth(moderate_slide).percent_blurry
    assert 100 * whole == pytest.approx(truth, abs=5)

    found = _measure(s)
    assert found.tiles_total == 48 and found.tiles_read < found.tiles_total
    assert found.shape == blurry.shape
    # 10x is a pyramid level of this slide, so the tiles are exact crops: not merely close.
    assert found.fraction == whole
    assert found.counts == algorithms.BlurCounts.of(blurry, algorithms.resize_mask(s.masks["tissue"], blurry.shape),
                                                    inner)
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
    assert (s.blur_radius, s.blur_threshold) == (PARAMS.blur_radius, PARAMS.blur_threshold)
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
    assert one.blurry_fraction == three.blurry_fraction
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
    spec = synthetic.SlideSpec(name="big_40k.svs", width=40960, height=30720, blurred_fraction=0.3,
                               blur_sigma_um=(1.5, 3.0), tissue_fraction=0.08, seed=40, downsamples=(1, 4, 16, 64))
    [path] = synthetic.write_set([spec], CACHE / "tiled")
    truth = synthetic.read_truth(path)
    code = ("import resource, sys; from slideqc import qc; "
            f"s = qc.detect_blur(qc.segment_tissue(qc.load_slide({str(path)!r}))); "
            "print(100 * s.blurry_fraction, len(s.reads))")
    child = _benchmark_module().run_measured([sys.executable, "-c", code])
    assert child.returncode == 0, child.stderr
    percent, reads = child.stdout.split()
    assert float(percent) == pytest.approx(truth.percent_blurry, abs=5)
    assert int(reads) > 1
    print(f"big slide: {percent} % blurry (truth {truth.percent_blurry:.1f}), peak {child.max_rss / 2**20:.0f} MB")
    assert 0 < child.max_rss < BIG_SLIDE_MEMORY, f"{child.max_rss / 2**20:.0f} MB"


def test_freed_memory_is_kept_where_the_c_library_is_glibc():
    """The malloc settings of the tile loop: in force on glibc, refused quietly elsewhere, asked once."""
    expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert tiled.keep_freed_memory() is expected
    assert tiled.keep_freed_memory() is expected
