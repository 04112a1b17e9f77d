"""Bad input, completely: every kind of bad file next to good slides, through every script.

The corpus (tests/bad_slides.py) holds a slide with a corrupt tile at each
level the QC reads, a slide in a compression OpenSlide cannot decode, a
truncated copy, a zero-byte file, a text file and a PNG named .svs, a slide
without objective power or pixel size, a slide 8 pixels wide, and good slides
under names with spaces and non-ASCII characters. Every script must give each
bad file one error row (one line, naming the file, saying what is wrong), give
every good slide its complete outputs, and exit with 1.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import openslide
import pytest

from BaseImage import BaseImage, SlideError
from slideqc import qc
from slideqc.output import results
from tests import bad_slides
from tests.helpers import ROOT, only_run_dir, run_script

# Every script that runs the QC over a folder. A script that does not exist fails its tests: it is
# part of the deliverable, not optional.
SCRIPTS = [
    "pipeline.py",
    "pipeline_parallel.py",
    "solutions/pipeline_prefect.py",
    "solutions/pipeline_prefect_parallel.py",
]
SCRIPT_ARGS = {
    "pipeline_parallel.py": ["--workers", "2"],
    "solutions/pipeline_prefect_parallel.py": ["--executor", "threads", "--workers", "2"],
}
# Columns a good slide must have filled in (tissue_mpp and blur_mpp too: the demo slides state their MPP).
FILLED_COLUMNS = (
    "format",
    "objective_power",
    "mpp",
    "width",
    "height",
    "image_work_size",
    "tissue_pixels",
    "tissue_mpp",
    "blur_work_size",
    "blur_pixels",
    "blur_mpp",
    "tissue_fraction",
    "percent_blurry",
    "rescan",
    "blur_max",
    "seconds_load",
    "seconds_tissue",
    "seconds_blur",
    "seconds_save",
    "seconds_total",
    "outputs",
)
PICTURES = ("thumbnail", "tissue", "blur", "overlay")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, demo_slides) -> tuple[Path, dict[str, bad_slides.Expected]]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, bad_slides.write_corpus(folder, demo_slides)


def run(script: str, *args: str):
    assert (ROOT / script).is_file(), f"{script} is missing: every script must handle bad input"
    return run_script(script, *args, *SCRIPT_ARGS.get(script, []))


# --- every bad file through every script ---------------------------------------------------


@pytest.mark.parametrize("script", SCRIPTS)
def test_bad_files_get_error_rows_and_good_slides_complete_outputs(script, corpus, demo_dir, tmp_path):
    data, expected = corpus
    out = tmp_path / "out"
    proc = run(script, "--data-dir", str(data), "--output-dir", str(out))
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log[-3000:]

    run_dir = only_run_dir(out)
    rows = {r["file_name"]: r for r in results.read_results(run_dir / "results.tsv")}
    assert sorted(rows) == sorted(expected), "one row per file, no more, no less"
    for name, want in expected.items():
        row = rows[name]
        if want.ok:
            assert row["status"] in results.JUDGED and row["error"] == "", (name, row["error"])
            continue
        message = row["error"]
        assert row["status"] == "error", name
        assert message.startswith(f"{name}: "), message  # names the file
        assert "\n" not in message and "\t" not in message and "Traceback" not in message
        for words in want.words:
            assert words in message, (name, message)
        assert str(data) not in message, f"the row names the file, not the folder: {message}"
        assert message in log, f"{name}: its error is not in the log"
        assert row["outputs"] == "" and row["percent_blurry"] == ""  # no half results

    # Every good slide: every column, all four pictures, and the same numbers as the original slide.
    originals = {p.name: p for p in demo_dir.glob("*.svs")}
    for name, want in expected.items():
        if not want.ok:
            continue
        row = rows[name]
        for column in FILLED_COLUMNS:
            assert row[column] != "", (name, column)
        folder = (run_dir / row["outputs"]).resolve()
        assert folder.parent == (run_dir / "slides").resolve()
        for picture in PICTURES:
            image = cv2.imread(str(folder / f"{picture}.png"), cv2.IMREAD_UNCHANGED)
            assert image is not None and image.size > 0, (name, picture)
    copies = [n for n in expected if expected[n].ok and n not in originals]
    assert len(copies) == len(bad_slides.ODD_NAMES)
    by_blur = {rows[n]["percent_blurry"] for n in originals}
    assert all(rows[n]["percent_blurry"] in by_blur for n in copies)
    assert len({rows[n]["outputs"] for n in expected if expected[n].ok}) == len(originals) + len(copies)

    # Nothing but the run's own files; no temporary files left behind.
    assert sorted(p.name for p in run_dir.iterdir()) == ["report.html", "results.tsv", "run.json", "slides"]
    assert not [p for p in run_dir.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert f"id='count-failed'>{sum(not w.ok for w in expected.values())}<" in report


@pytest.mark.parametrize("script", SCRIPTS)
def test_exit_code_0_when_every_slide_passes(script, demo_dir, tmp_path):
    proc = run(script, "--data-dir", str(demo_dir), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    rows = results.read_results(only_run_dir(tmp_path / "out") / "results.tsv")
    assert len(rows) == 3 and {r["status"] for r in rows} <= set(results.JUDGED)


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize(
    "args, mentions",
    [
        (["--blur-threshold", "0"], "--blur-threshold"),
        (["--image-work-size", "big"], "--image-work-size"),
        (["--blur-max", "-0.1"], "--blur-max"),
        (["--data-dir", "{tmp}/nope"], "nope"),
        (["--data-dir", "{tmp}/empty"], "no *.svs slides"),
        (["--run-name", "../escape"], "--run-name"),
    ],
)
def test_invalid_usage_is_one_line_and_exit_2(script, args, mentions, demo_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    if "--data-dir" not in args:
        args += ["--data-dir", str(demo_dir)]
    proc = run(script, *args, "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 2, (proc.stdout + proc.stderr)[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert mentions in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing written
    assert not (tmp_path / "escape").exists()


# --- the messages themselves, in process ---------------------------------------------------


def check(path: Path) -> str:
    """The QC of one slide as every script runs it; the error message, or "ok"."""
    try:
        s = qc.load_slide(path)
        s = qc.segment_tissue(s)
        qc.detect_blur(s)
        return "ok"
    except Exception as error:
        return qc.error_message(path, error)


def test_messages_say_what_is_wrong(tmp_path, demo_slides):
    expected = bad_slides.write_corpus(tmp_path, demo_slides[:1])
    messages = {name: check(tmp_path / name) for name in expected}
    for name, want in expected.items():
        message = messages[name]
        if want.ok:
            assert message == "ok", message
        else:
            assert message.startswith(f"{name}: ") and all(w in message for w in want.words), message
    assert messages["zero bytes.svs"] == "zero bytes.svs: empty file (0 bytes); copy it again from the scanner"
    assert messages["notes.svs"] == "notes.svs: not a slide OpenSlide can read: the file holds text, not an image"
    assert messages["webp.svs"] == (
        "webp.svs: compressed with WebP (TIFF compression 50001), which OpenSlide "
        "cannot decode; export the slide again with JPEG compression"
    )
    assert messages["tiny.svs"] == (
        "tiny.svs: too small: 8x6 px is 1x1 px at image_work_size 1.25x; at least 16 px per side are needed"
    )


@pytest.mark.parametrize("fraction", [0.002, 0.3, 0.9, 0.999])
def test_truncated_anywhere_says_truncated(tmp_path, demo_slides, fraction):
    path = bad_slides.write_truncated(demo_slides[0], tmp_path / "cut.svs", fraction)
    message = check(path)
    assert message.startswith("cut.svs: ") and ("truncated" in message or "damaged" in message), message


def test_missing_file_and_folder_named_like_a_slide(tmp_path):
    assert check(tmp_path / "gone.svs").startswith("gone.svs: no such file")
    (tmp_path / "folder.svs").mkdir()
    assert check(tmp_path / "folder.svs") == "folder.svs: is a folder, not a slide file"


def test_a_failed_read_does_not_poison_the_slide_or_others(tmp_path, demo_slides):
    """OpenSlide keeps its first error in the handle: every later call on it fails the same way.

    BaseImage drops the handle on a read error, so the next read reopens the file, and other
    slides, read in the same process after it, are untouched.
    """
    corrupt = bad_slides.write_corrupt_tile(demo_slides[0], tmp_path / "corrupt.svs", level=2)
    raw = openslide.OpenSlide(str(corrupt))
    with pytest.raises(openslide.OpenSlideError):
        raw.read_region((0, 0), 2, raw.level_dimensions[2])
    with pytest.raises(openslide.OpenSlideError):  # what would leak: the handle is dead for good
        raw.read_region((0, 0), 0, (16, 16))
    raw.close()

    s = BaseImage(corrupt)
    with pytest.raises(SlideError, match=r"corrupt\.svs: cannot read pixels at level 2 \(corrupt tile\?\)"):
        s.read_region((0, 0), 2, s.level_dimensions[2])
    assert s.read_region((0, 0), 0, (64, 64)).shape == (64, 64, 3)  # a fresh handle reads level 0
    assert s.slide.properties.get(openslide.PROPERTY_NAME_VENDOR) == "aperio"

    good = qc.detect_blur(qc.segment_tissue(qc.load_slide(demo_slides[1])))
    assert good.found[qc.Blur].fraction > 0.1


def test_odd_names_via_files_get_their_own_folders(tmp_path, demo_slides):
    """--files takes odd names as they are; each gets its own folder of pictures."""
    names = ["a#1.svs", "a?1.svs", "ümlaut slide.svs"]
    for name in names:
        shutil.copyfile(demo_slides[0], tmp_path / name)
    out = tmp_path / "out"
    proc = run_script("pipeline.py", "--files", *(str(tmp_path / n) for n in names), "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = results.read_results(only_run_dir(out) / "results.tsv")
    assert sorted(r["file_name"] for r in rows) == sorted(names)
    assert len({r["outputs"] for r in rows}) == 3  # "a#1" and "a?1" do not share a folder
