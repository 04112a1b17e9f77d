"""`make check-exercise N=... FILE=...` says "right" for the solution and names what differs for anything else."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.helpers import ROOT

SOLUTIONS = {
    1: "solutions/pipeline_prefect.py",
    2: "solutions/pipeline_prefect_server.py",
    3: "solutions/pipeline_prefect_mapped.py",
    4: "solutions/pipeline_prefect_parallel.py",
    5: "solutions/pipeline_prefect_parallel_server.py",
}


def check(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools/check_exercise.py"), *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.parametrize("exercise", sorted(SOLUTIONS))
def test_each_solution_is_right_for_its_exercise(exercise):
    proc = check(exercise, ROOT / SOLUTIONS[exercise], "--flow-only")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().startswith(f"exercise {exercise}: right")


@pytest.mark.parametrize("exercise", [2, 3, 4, 5])
def test_the_start_of_an_exercise_is_not_yet_right(exercise, tmp_path):
    """The exercise's starting file (its predecessor) is told what is missing, by name."""
    start = {2: 1, 3: 1, 4: 3, 5: 4}[exercise]
    proc = check(exercise, ROOT / SOLUTIONS[start], "--flow-only")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    expected = {  # each exercise's own change, by hand from the README's steps
        2: "missing call: flow.register(",
        3: "missing Parameter: file_names",
        4: "missing call: executor=executor",
        5: "missing call: flow.register(",
    }[exercise]
    assert f"  {expected}" in proc.stdout.splitlines(), proc.stdout


def test_exercise_3_alone_runs_and_matches_pipeline_py(demo_dir, tmp_path):
    """Exercise 3's check on a file with exercise 3's change only: it runs, and its rows equal pipeline.py's."""
    mine = tmp_path / "my_exercise3.py"
    shutil.copy(ROOT / SOLUTIONS[3], mine)
    proc = check(3, mine, "--data-dir", demo_dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "exercise 3: right (its flow is the solution's, and its results equal pipeline.py's)"


def test_a_wrong_result_is_named_slide_by_slide(demo_dir, tmp_path):
    mine = tmp_path / "my_exercise3.py"
    source = (ROOT / SOLUTIONS[3]).read_text(encoding="utf-8")
    wrong = source.replace("qc.detect_blur(s, blur_radius, blur_threshold,", "qc.detect_blur(s, blur_radius, 0.5,")
    assert wrong != source
    mine.write_text(wrong, encoding="utf-8")
    proc = check(3, mine, "--data-dir", demo_dir)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("exercise 3: not yet"), lines
    # A threshold ten times the default calls the sharp slide blurry: pipeline.py's says ok.
    assert any(
        line.strip().startswith("synthetic_01_blur00.svs: yours rescan") and "pipeline.py's ok" in line
        for line in lines
    )


def test_what_cannot_be_checked_says_why_in_one_line(tmp_path, demo_dir):
    proc = check(1, tmp_path / "missing.py", "--data-dir", demo_dir)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no such file" in proc.stderr
    broken = tmp_path / "broken.py"
    broken.write_text("import prefect\nflow = undefined_name\n", encoding="utf-8")
    proc = check(1, broken, "--flow-only")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "does not import: NameError: name 'undefined_name' is not defined (broken.py, line 2)" in proc.stderr
    proc = check(1, ROOT / "pipeline.py", "--flow-only")
    assert proc.returncode == 2 and "has no module-level `flow`" in proc.stderr


def test_make_check_exercise_runs_the_tool(tmp_path):
    proc = subprocess.run(
        ["make", "--no-print-directory", "check-exercise", "N=2", f"FILE={ROOT / SOLUTIONS[2]}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "exercise 2: right" in proc.stdout
    proc = subprocess.run(["make", "--no-print-directory", "check-exercise"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 2 and "usage: make check-exercise N=<1-5> FILE=<your file>" in proc.stderr
