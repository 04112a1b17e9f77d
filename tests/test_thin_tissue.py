"""Tissue thinner than the blur window is measured, not counted as 0 % blurry."""

from __future__ import annotations

import numpy as np
import pytest

from slideqc import algorithms

RADIUS = 7.0  # the default blur radius: the erosion takes 14 pixels off every edge


def strip(width: int, shape=(200, 300)) -> np.ndarray:
    tissue = np.zeros(shape, bool)
    tissue[50:150, 100 : 100 + width] = True
    return tissue


@pytest.mark.parametrize("width", [4, 10, 27])  # narrower than the 2 x 14 px the erosion removes
def test_thin_tissue_all_blurry_reads_all_blurry(width):
    tissue = strip(width)
    assert not algorithms.measurable_tissue(tissue, RADIUS).any()  # nothing left after the erosion
    assert algorithms.blurry_fraction(np.ones(tissue.shape, bool), tissue, RADIUS) == 1.0
    assert algorithms.blurry_fraction(np.zeros(tissue.shape, bool), tissue, RADIUS) == 0.0


def test_thin_tissue_half_blurry_reads_half():
    tissue = strip(10)
    blurry = np.zeros(tissue.shape, bool)
    blurry[:100, :] = True  # the strip's top half: rows 50 to 99 of 50 to 149
    assert algorithms.blurry_fraction(blurry, tissue, RADIUS) == pytest.approx(0.5)


def test_wide_tissue_is_measured_inside_its_edge():
    """Wide tissue: only the eroded inside counts (the edge mixes in glass), by hand on a 100 x 100 block."""
    tissue = np.zeros((200, 200), bool)
    tissue[50:150, 50:150] = True
    blurry = np.zeros(tissue.shape, bool)
    blurry[50:150, 50:64] = True  # a 14 px blurry band on the left edge: all of it inside the eroded rim
    assert algorithms.blurry_fraction(blurry, tissue, RADIUS) == 0.0
    blurry[90:110, 90:110] = True  # 400 blurry pixels in the middle
    inner = algorithms.measurable_tissue(tissue, RADIUS).sum()
    assert algorithms.blurry_fraction(blurry, tissue, RADIUS) == pytest.approx(400 / inner)


def test_outside_the_image_counts_as_glass():
    """Tissue cut by the image's edge is eroded from that edge too: the blur window there sees no tissue."""
    tissue = np.zeros((40, 40), bool)
    tissue[:20, :20] = True  # a block in the corner, touching the top and left edges
    inner = algorithms.erode(tissue, 3)
    expected = np.zeros((40, 40), bool)
    expected[3:17, 3:17] = True  # 3 pixels off every side, the image's edges included (a disk of radius 3)
    assert np.array_equal(inner, expected)
