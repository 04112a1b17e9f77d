"""pipeline.py end to end, as a user runs it, including bad input."""

import shutil

import pytest

from slideqc import synthetic
from slideqc.output import results
from tests.helpers import only_run_dir, run_script, truth_status


def test_pipeline_checks_every_slide(demo_dir, tmp_path):
    out = tmp_path / "out"
    proc = run_script("pipeline.py", "--data-dir", str(demo_dir), "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run_dir(out)
    rows = results.read_results(run_dir / "results.tsv")
    assert [r["file_name"] for r in rows] == sorted(p.name for p in demo_dir.glob("*.svs"))
    for row in rows:
        truth = synthetic.read_truth(demo_dir / row["file_name"])
        assert row["status"] == truth_status(truth)
        assert float(row["percent_blurry"]) == pytest.approx(truth.percent_blurry, abs=5)
        assert row["rescan"] == ("true" if truth.percent_blurry > 5 else "false")
        for picture in ("thumbnail", "tissue", "blur", "overlay"):
            assert (run_dir / row["outputs"] / f"{picture}.png").stat().st_size > 0
    assert (run_dir / "report.html").is_file()
    assert "RESCAN" in proc.stdout and "results:" in proc.stdout


def test_second_run_gets_its_own_folder(demo_dir, tmp_path):
    out = tmp_path / "out"
    args = ("--files", str(next(demo_dir.glob("*.svs"))), "--output-dir", str(out))
    assert run_script("pipeline.py", *args).returncode == 0
    assert run_script("pipeline.py", *args).returncode == 0
    assert len([p for p in out.iterdir() if p.is_dir()]) == 2


def test_named_run_is_not_overwritten_unless_asked(demo_dir, tmp_path):
    out = tmp_path / "out"
    args = ("--files", str(next(demo_dir.glob("*.svs"))), "--output-dir", str(out), "--run-name", "first")
    assert run_script("pipeline.py", *args).returncode == 0
    again = run_script("pipeline.py", *args)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert run_script("pipeline.py", *args, "--overwrite").returncode == 0


@pytest.mark.parametrize(
    "args, names",
    [
        (["--blur-radius", "-1"], "--blur-radius"),
        (["--blur-threshold", "0"], "--blur-threshold"),
        (["--blur-threshold", "1.5"], "--blur-threshold"),
        (["--image-work-size", "abc"], "--image-work-size"),
        (["--blur-work-size", "0x"], "--blur-work-size"),
        (["--blur-max", "2"], "--blur-max"),
    ],
)
def test_invalid_parameters_give_one_line_and_exit_2(demo_dir, tmp_path, args, names):
    proc = run_script("pipeline.py", "--data-dir", str(demo_dir), "--output-dir", str(tmp_path), *args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0], proc.stderr
    assert not any(tmp_path.iterdir())  # nothing written for invalid usage


def test_missing_and_empty_folders(tmp_path):
    missing = run_script("pipeline.py", "--data-dir", str(tmp_path / "nope"), "--output-dir", str(tmp_path / "o"))
    assert missing.returncode == 2 and "nope" in missing.stderr and len(missing.stderr.splitlines()) == 1
    (tmp_path / "empty").mkdir()
    empty = run_script("pipeline.py", "--data-dir", str(tmp_path / "empty"), "--output-dir", str(tmp_path / "o"))
    assert empty.returncode == 2 and "no *.svs slides" in empty.stderr


def test_bad_slides_do_not_stop_the_batch(demo_copy, tmp_path):
    good = sorted(p.name for p in demo_copy.glob("*.svs"))
    (demo_copy / "not a slide.svs").write_text("just some text, not a TIFF\n")
    (demo_copy / "empty.svs").write_bytes(b"")
    source = demo_copy / good[0]
    (demo_copy / "truncated.svs").write_bytes(source.read_bytes()[: source.stat().st_size // 3])
    out = tmp_path / "out"
    proc = run_script("pipeline.py", "--data-dir", str(demo_copy), "--output-dir", str(out))
    assert proc.returncode == 1, proc.stderr
    rows = {r["file_name"]: r for r in results.read_results(only_run_dir(out) / "results.tsv")}
    for name in good:
        assert rows[name]["status"] in results.JUDGED
    for name in ("not a slide.svs", "empty.svs", "truncated.svs"):
        assert rows[name]["status"] == "error"
        assert name in rows[name]["error"] and "\n" not in rows[name]["error"]
        assert name in proc.stderr  # logged too


def test_slide_without_objective_power(tmp_path):
    spec = synthetic.SlideSpec(
        name="no power.svs", width=2048, height=1536, seed=4, write_objective_power=False, write_mpp=False
    )
    synthetic.write_slide(spec, tmp_path / "data" / spec.name)
    out = tmp_path / "out"
    proc = run_script("pipeline.py", "--data-dir", str(tmp_path / "data"), "--output-dir", str(out))
    assert proc.returncode == 1
    row = results.read_results(only_run_dir(out) / "results.tsv")[0]
    assert "no power.svs" in row["error"] and "pixel work size" in row["error"]
    assert "so image_work_size '1.25x' cannot be used" in row["error"]  # the setting to change, named
    # With pixel work sizes the same slide goes through.
    proc = run_script(
        "pipeline.py",
        "--data-dir",
        str(tmp_path / "data"),
        "--output-dir",
        str(out),
        "--image-work-size",
        "256",
        "--blur-work-size",
        "2048",
        "--artefact-work-size",
        "512",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mpp_stands_in_for_missing_objective_power(tmp_path, demo_dir):
    spec = synthetic.SlideSpec(name="mpp only.svs", width=2048, height=1536, seed=4, write_objective_power=False)
    synthetic.write_slide(spec, tmp_path / "data" / spec.name)
    out = tmp_path / "out"
    proc = run_script("pipeline.py", "--data-dir", str(tmp_path / "data"), "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    row = results.read_results(only_run_dir(out) / "results.tsv")[0]
    assert float(row["tissue_mpp"]) == pytest.approx(8.0)  # 1.25x = 8 µm per pixel
    assert float(row["blur_mpp"]) == pytest.approx(1.0)


def test_non_ascii_names(tmp_path, demo_dir):
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(next(demo_dir.glob("*.svs")), data / "Schnitt ü 1 – ärger.svs")
    out = tmp_path / "out"
    proc = run_script("pipeline.py", "--data-dir", str(data), "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    row = results.read_results(only_run_dir(out) / "results.tsv")[0]
    assert row["file_name"] == "Schnitt ü 1 – ärger.svs"
    assert (only_run_dir(out) / row["outputs"] / "overlay.png").is_file()


def test_a_stray_truth_file_changes_nothing(demo_copy, tmp_path):
    """The QC never reads ground truth: a sidecar file of the truth's name cannot change or break a slide."""
    slide = sorted(demo_copy.glob("*.svs"))[1]
    before = run_script("pipeline.py", "--files", str(slide), "--output-dir", str(tmp_path / "before"))
    slide.with_suffix(".truth.json").write_text('{"slide": "not what the QC expects", "percent_blurry": 99}')
    after = run_script("pipeline.py", "--files", str(slide), "--output-dir", str(tmp_path / "after"))
    assert before.returncode == after.returncode == 0, after.stderr
    rows = [results.read_results(only_run_dir(tmp_path / d) / "results.tsv")[0] for d in ("before", "after")]
    assert rows[0]["status"] in results.JUDGED and rows[0]["percent_blurry"] == rows[1]["percent_blurry"]
