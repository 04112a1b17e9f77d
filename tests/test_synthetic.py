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
    spec = synthetic.SlideSpec(name="n.svs", width=1024, height=768, seed=1,
                               write_objective_power=False, write_mpp=False)
    synthetic.write_slide(spec, tmp_path / "n.svs")
    slide = openslide.OpenSlide(str(tmp_path / "n.svs"))
    assert openslide.PROPERTY_NAME_OBJECTIVE_POWER not in slide.properties
    assert openslide.PROPERTY_NAME_MPP_X not in slide.properties
