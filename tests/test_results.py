"""The one results format: columns, run folders, names that cannot escape, atomic writes."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from slideqc.output import files, results, run
from slideqc.settings import QCSettings
from tests.helpers import ROOT, only_run_dir, run_script

# What issue 6 asks results.tsv to hold, and the README's "Outputs" section promises.
REQUIRED_COLUMNS = [
    "file_name",
    "status",
    "error",
    "format",
    "objective_power",
    "image_work_size",
    "tissue_pixels",
    "tissue_mpp",
    "blur_work_size",
    "blur_pixels",
    "blur_mpp",
    "tissue_fraction",
    "percent_blurry",
    "rescan",
    "seconds_load",
    "seconds_tissue",
    "seconds_blur",
    "seconds_save",
    "seconds_total",
    "outputs",
]


def rows_for_test() -> list[results.SlideResult]:
    return [
        results.SlideResult(file_name="b.svs", status="rescan", tissue_fraction=0.3, percent_blurry=12.5, rescan=True),
        results.error_result("/data/a.svs", "two\nlines\tand a tab"),
    ]


def test_results_tsv_columns_and_one_line_rows(tmp_path):
    path = results.write_results(tmp_path, rows_for_test())
    header = path.read_text(encoding="utf-8").splitlines()[0].split("\t")
    assert header == results.COLUMNS
    assert [c for c in REQUIRED_COLUMNS if c not in header] == []
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3  # header and one line per slide, whatever the error said
    rows = results.read_results(path)
    assert [r["file_name"] for r in rows] == ["a.svs", "b.svs"]  # sorted by file name
    assert rows[0]["error"] == "a.svs: two lines and a tab"
    assert rows[1]["rescan"] == "true" and rows[1]["percent_blurry"] == "12.5"
    assert rows[0]["rescan"] == "" and rows[0]["status"] == "error"


def test_readme_outputs_section_names_what_results_tsv_holds():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Outputs", 1)[1].split("\n## ", 1)[0]
    for words in (
        "results.tsv",
        "report.html",
        "thumbnail.png",
        "tissue.png",
        "blur.png",
        "overlay.png",
        "seconds per step",
        "`0`",
        "`1`",
        "`2`",
        "atomic",
    ):
        assert words in section, words


def test_results_file_has_an_ordinary_mode(tmp_path):
    path = results.write_results(tmp_path, rows_for_test())
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask  # not the temporary file's 0600


# --- run folders ----------------------------------------------------------------------------


def test_run_folders_are_new_unless_asked(tmp_path):
    first = files.create_run_dir(tmp_path)
    second = files.create_run_dir(tmp_path)
    assert first != second and first.is_dir() and second.is_dir()
    named = files.create_run_dir(tmp_path, "monday")
    (named / "results.tsv").write_text("earlier\n")
    with pytest.raises(files.RunExistsError):
        files.create_run_dir(tmp_path, "monday")
    assert (named / "results.tsv").read_text() == "earlier\n"
    (named / "slides" / "old slide").mkdir(parents=True)
    (named / "notes.txt").write_text("mine\n")
    assert files.create_run_dir(tmp_path, "monday", overwrite=True) == named
    assert sorted(p.name for p in named.iterdir()) == ["notes.txt"]  # the earlier outputs replaced, only they
    assert files.create_run_dir(tmp_path, "run.1").name == "run.1"


@pytest.mark.parametrize("name", ["../up", "a/b", "..", ".", ".hidden", "/abs", "a\\b", "x y"])
def test_run_names_must_be_plain(tmp_path, name):
    with pytest.raises(ValueError, match="--run-name"):
        files.create_run_dir(tmp_path / "out", name)
    assert not (tmp_path / "out").exists() and not (tmp_path / "up").exists()


# --- names derived from slide names ---------------------------------------------------------


@pytest.mark.parametrize(
    "file_name",
    [
        "../../evil.svs",
        "..",
        ".",
        "...svs",
        "/etc/passwd",
        "a/../../b.svs",
        "..\\..\\evil.svs",
        "",
        "con.svs",
        "x" * 400 + ".svs",
        "\u202etxt.svs",
        "semi;colon|pipe*.svs",
        ".hidden.svs",
    ],
)
def test_slide_folders_stay_inside_the_run(tmp_path, file_name):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    folder = files.slide_dir(run_dir, file_name)
    assert folder.parent == (run_dir / "slides").resolve()
    assert folder.name not in ("", ".", "..") and not folder.name.startswith(".")
    assert len(folder.name.encode()) < 255


def test_lossy_names_get_distinct_folders():
    names = ["a#1.svs", "a?1.svs", "a_1.svs", "a 1.svs", "a:1.svs"]
    folders = [files.slide_folder_name(n) for n in names]
    assert len(set(folders)) == len(names), folders
    assert files.slide_folder_name("synthetic_01_blur00.svs") == "synthetic_01_blur00"  # plain names stay plain


def test_dot_dot_slide_name_cannot_write_outside(tmp_path, demo_slides):
    """``--files ../../evil.svs`` and a slide literally named with backslashes both stay in the run."""
    (tmp_path / "work" / "sub").mkdir(parents=True)
    shutil.copyfile(demo_slides[0], tmp_path / "evil.svs")
    shutil.copyfile(demo_slides[0], tmp_path / "..\\..\\evil2.svs")  # legal on POSIX: backslashes are characters
    before = {p for p in tmp_path.rglob("*")}
    out = tmp_path / "work" / "out"
    proc = run_script(
        "pipeline.py",
        "--files",
        "../../evil.svs",
        str(tmp_path / "..\\..\\evil2.svs"),
        "--output-dir",
        str(out),
        cwd=tmp_path / "work" / "sub",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = only_run_dir(out)
    new = {p for p in tmp_path.rglob("*")} - before
    outside = [p for p in new if p != out and run_dir not in [p, *p.parents]]
    assert outside == []
    rows = results.read_results(run_dir / "results.tsv")
    assert sorted(r["file_name"] for r in rows) == sorted(["evil.svs", "..\\..\\evil2.svs"])
    for row in rows:
        assert (run_dir / row["outputs"]).resolve().parent == (run_dir / "slides").resolve()


# --- atomic writes --------------------------------------------------------------------------


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name != files.RESULTS_FILE)


@pytest.mark.parametrize("crash_in", ["write", "fsync", "replace"])
def test_a_crash_while_writing_leaves_the_previous_table(tmp_path, monkeypatch, crash_in):
    previous = results.write_results(tmp_path, rows_for_test()).read_bytes()
    bigger = rows_for_test() + [results.SlideResult(file_name=f"s{i}.svs", percent_blurry=i) for i in range(500)]

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    if crash_in == "write":  # half the bytes written, then the disk is full
        real_fdopen = os.fdopen

        class HalfWriter:
            def __init__(self, handle):
                self.handle = handle

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.handle.close()

            def write(self, data):
                self.handle.write(data[: len(data) // 2])
                crash()

            def __getattr__(self, name):
                return getattr(self.handle, name)

        monkeypatch.setattr(files.os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    else:
        monkeypatch.setattr(files.os, crash_in, crash)
    with pytest.raises(OSError, match="No space left"):
        results.write_results(tmp_path, bigger)
    assert (tmp_path / files.RESULTS_FILE).read_bytes() == previous
    assert leftovers(tmp_path) == []  # the temporary file is gone too


def test_a_killed_process_leaves_the_previous_table(tmp_path):
    """A hard kill between writing and renaming: the final name still holds the whole previous table."""
    previous = results.write_results(tmp_path, rows_for_test()).read_bytes()
    code = (
        "import os\n"
        "from slideqc.output import files, results\n"
        "files.os.replace = lambda *a: os._exit(9)\n"  # killed just before the rename
        "rows = [results.SlideResult(file_name=f's{i}.svs') for i in range(1000)]\n"
        f"results.write_results({str(tmp_path)!r}, rows)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 9, proc.stderr
    assert (tmp_path / files.RESULTS_FILE).read_bytes() == previous
    assert all(name.startswith(".") for name in leftovers(tmp_path))  # at most a hidden temporary file


def test_run_writer_keeps_the_table_current(tmp_path):
    writer = run.RunWriter(tmp_path, QCSettings())
    writer.add(results.error_result("x.svs", "empty file (0 bytes)"))
    assert len(results.read_results(tmp_path / files.RESULTS_FILE)) == 1  # a killed batch keeps its rows
    writer.add(
        results.SlideResult(file_name="y.svs", status="rescan", tissue_fraction=0.4, percent_blurry=50.0, rescan=True)
    )
    report = writer.finish()
    assert report.is_file() and len(results.read_results(tmp_path / files.RESULTS_FILE)) == 2
    assert [r.file_name for r in writer.failed] == ["x.svs"] and [r.file_name for r in writer.flagged] == ["y.svs"]


def test_run_json_counts_the_statuses_and_the_artefacts(tmp_path):
    writer = run.RunWriter(tmp_path, QCSettings())
    writer.add_all(
        [
            results.SlideResult(file_name="a.svs", ink_percent=3.5, ink_glass_percent=1.0),
            results.SlideResult(file_name="b.svs", status="rescan", ink_percent=0.0, ink_glass_percent=2.0),
            results.SlideResult(file_name="c.svs", status="recut", fold_percent=22.0, ink_percent=7.25),
            results.error_result("d.svs", "empty file (0 bytes)"),
        ]
    )
    writer.finish()
    status = files.read_run_status(tmp_path)
    assert status["statuses"] == {"ok": 1, "rescan": 1, "recut": 1, "cannot judge": 0, "error": 1}
    assert status["artefacts"]["ink"] == {"slides": 3, "largest_percent_of_tissue": 7.25}  # b's ink is on glass
    assert status["artefacts"]["fold"] == {"slides": 1, "largest_percent_of_tissue": 22.0}
    assert status["artefacts"]["bubble"] == {"slides": 0, "largest_percent_of_tissue": 0.0}
