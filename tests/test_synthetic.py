"""The synthetic slides: readable by OpenSlide as Aperio, deterministic, truthful."""

import openslide
import pytest

from slideqc import synthetic


def test_openslide_reads_them_as_aperio(demo_slides):
    slide = openslide.OpenSlide(str(demo_slides[0]))
    assert slide.properties[openslide.PROPERTY_NAME_VENDOR] == "aperio"
    assert slide.properties[openslide.PROPERTY_NAME_OBJECTIVE_POWER] == "40"
    assert float(slide.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.25)
    assert slide.level_downsamples == (1.0, 4.0, 16.0)


def test_same_seed_same_pixels(tmp_path):
    spec = synthetic.SlideSpec(name="a.svs", width=1024, height=768, blurred_fraction=0.3, seed=3)
    first = synthetic.write_slide(spec, tmp_path / "a.svs")
    second = synthetic.write_slide(spec, tmp_path / "b" / "a.svs")
    assert first.percent_blurry == second.percent_blurry
    a = openslide.OpenSlide(str(tmp_path / "a.svs")).read_region((0, 0), 0, (1024, 768))
    b = openslide.OpenSlide(str(tmp_path / "b" / "a.svs")).read_region((0, 0), 0, (1024, 768))
    assert a.tobytes() == b.tobytes()


def test_truth_matches_the_requested_fractions(tmp_path):
    spec = synthetic.SlideSpec(name="t.svs", width=2048, height=1536, blurred_fraction=0.5, seed=9)
    truth = synthetic.write_slide(spec, tmp_path / "t.svs")
    assert truth.percent_blurry == pytest.approx(50, abs=6)
    assert truth.tissue_fraction == pytest.approx(spec.tissue_fraction, abs=0.05)
    assert all(1.0 <= s <= 4.0 for s in truth.blur_sigma_um)
    tissue, blur = synthetic.read_truth_masks(tmp_path / "t.svs")
    assert tissue.shape == (1536 // 16, 2048 // 16)
    assert (blur & ~tissue).sum() == 0


def test_objective_power_can_be_left_out(tmp_path):
    spec = synthetic.SlideSpec(
        name="n.svs", width=1024, height=768, seed=1, write_objective_power=False, write_mpp=False
    )
    synthetic.write_slide(spec, tmp_path / "n.svs")
    slide = openslide.OpenSlide(str(tmp_path / "n.svs"))
    assert openslide.PROPERTY_NAME_OBJECTIVE_POWER not in slide.properties
    assert openslide.PROPERTY_NAME_MPP_X not in slide.properties


def test_levels_are_area_averages_of_level_0_made_strip_by_strip(tmp_path):
    import cv2
    import numpy as np

    spec = synthetic.SlideSpec(
        name="p.svs", width=2600, height=1900, blurred_fraction=0.3, seed=5, downsamples=(1, 4, 16, 32)
    )
    synthetic.write_slide(spec, tmp_path / "p.svs", workers=2)
    slide = openslide.OpenSlide(str(tmp_path / "p.svs"))
    assert slide.level_dimensions == ((2600, 1900), (650, 475), (162, 118), (81, 59))
    level0 = np.asarray(slide.read_region((0, 0), 0, (2600, 1900)))[..., :3]
    # Measured: 0.993 and 0.976; shifted by one pixel of the level, 0.972 and 0.877.
    for level, factor, least in ((1, 4, 0.985), (3, 32, 0.95)):
        width, height = slide.level_dimensions[level]
        expected = cv2.resize(
            level0[: height * factor, : width * factor], (width, height), interpolation=cv2.INTER_AREA
        ).astype(float)
        found = np.asarray(slide.read_region((0, 0), level, (width, height)))[..., :3]
        # JPEG both ways moves single pixels; a shifted or wrongly averaged level would decorrelate.
        assert np.corrcoef(found.ravel(), expected.ravel())[0, 1] > least


@pytest.mark.parametrize("downsamples", [(2, 4), (1, 4, 6), (1, 1)])
def test_downsamples_must_nest(downsamples):
    with pytest.raises(ValueError, match="downsamples"):
        synthetic.SlideSpec(name="d.svs", downsamples=downsamples)
