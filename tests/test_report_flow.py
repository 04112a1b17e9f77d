"""Extra "a second flow reads the first one's results": the report flow writes the batch's rows from the
persisted QC flow's results, the same rows, and opens no slide."""

from __future__ import annotations

import shutil

import pytest

import BaseImage as base_image
from slideqc.output import results
from tests.helpers import load_solution, only_run_dir, run_script

QC = "extras/pipeline_prefect_persisted.py"
REPORT = "extras/report_from_persisted.py"
# What only the QC run has: its pictures, and the time it took to draw them.
NOT_IN_THE_REPORT = {"outputs", "seconds_save", "seconds_total"}


@pytest.fixture
def checked(demo_copy, tmp_path):
    """The demo slides checked by the persisted QC flow: (data folder, output folder, its rows by slide)."""
    out = tmp_path / "qc"
    proc = run_script(QC, "--data-dir", str(demo_copy), "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = results.read_results(only_run_dir(out) / "results.tsv")
    assert len(rows) == len(list(demo_copy.glob("*.svs")))
    return demo_copy, out, {r["file_name"]: r for r in rows}


@pytest.fixture
def no_slide_reads(monkeypatch) -> list:
    """Opening a slide or reading its pixels fails (and is recorded): the report must do neither."""
    calls = []

    def refuse(what):
        def refused(self, *args, **kwargs):
            calls.append((what, self.name))
            raise OSError(f"the report {what} the slide {self.name}")

        return refused

    monkeypatch.setattr(base_image.BaseImage, "_open", refuse("opened"))
    monkeypatch.setattr(base_image.BaseImage, "read_region", refuse("read"))
    return calls


def report(data, out, *options) -> tuple[int, dict]:
    report_out = out / "report"
    code = load_solution(REPORT).main(
        ["--data-dir", str(data), "--output-dir", str(report_out), "--cache-dir", str(out / ".qc-cache"), *options]
    )
    run_dir = only_run_dir(report_out)
    assert (run_dir / "report.html").is_file()
    return code, {r["file_name"]: r for r in results.read_results(run_dir / "results.tsv")}


def findings(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in NOT_IN_THE_REPORT}


def test_the_report_has_the_qc_rows_without_reading_a_slide(checked, no_slide_reads):
    data, out, qc_rows = checked
    code, rows = report(data, out)
    assert no_slide_reads == []
    assert code == 0
    assert {name: findings(r) for name, r in rows.items()} == {name: findings(r) for name, r in qc_rows.items()}
    assert {r["status"] for r in rows.values()} == {results.OK, results.RESCAN}  # the demo's 0, 30, 70 % blurry


def test_the_report_judges_the_same_results_with_another_blur_max(checked, no_slide_reads):
    data, out, qc_rows = checked
    _, rows = report(data, out, "--blur-max", "0.5")
    assert no_slide_reads == []
    for name, row in rows.items():
        assert row["percent_blurry"] == qc_rows[name]["percent_blurry"]
        assert row["rescan"] == ("true" if float(row["percent_blurry"]) > 50 else "false"), row
    assert sorted(r["status"] for r in rows.values()) == [results.OK, results.OK, results.RESCAN]


def test_a_slide_changed_since_its_qc_has_no_result(checked, no_slide_reads, demo_slides):
    """Its persisted results are those of the file as it was: the report says so instead of using them."""
    data, out, qc_rows = checked
    changed = data / demo_slides[0].name
    shutil.copyfile(demo_slides[2], changed)
    code, rows = report(data, out)
    assert no_slide_reads == []
    assert code == 1
    assert rows[changed.name]["status"] == results.ERROR
    assert "no persisted QC result for the slide as it is now" in rows[changed.name]["error"]
    for name in set(rows) - {changed.name}:
        assert findings(rows[name]) == findings(qc_rows[name])


def test_redo_is_refused(checked):
    data, out, _ = checked
    proc = run_script(REPORT, "--data-dir", str(data), "--output-dir", str(out / "report"), "--redo")
    assert proc.returncode == 2 and "--redo: a report measures nothing" in proc.stderr
    assert not (out / "report").exists()


def test_the_check_sees_a_flow_that_reads_the_slides(demo_copy, tmp_path, no_slide_reads):
    """The check itself: the QC flow, run under the same patch, is caught opening every slide."""
    code = load_solution(QC).main(["--data-dir", str(demo_copy), "--output-dir", str(tmp_path / "qc")])
    assert code == 1  # every slide's load failed
    assert {name for what, name in no_slide_reads} == {p.name for p in demo_copy.glob("*.svs")}
