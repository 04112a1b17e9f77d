"""Extra "parameter files": `prefect run -p ... --param-file params.json` runs the flow with the file's values,
and `python -m slideqc.prefect1 --check-params` says what is wrong with a bad file in one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from slideqc.output import results
from slideqc.settings import QCSettings
from tests.helpers import ROOT, only_run_dir

FLOW = str(ROOT / "solutions" / "pipeline_prefect.py")
PARAMS = ROOT / "params.json"


def prefect_run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    prefect = Path(sys.executable).with_name("prefect")
    return subprocess.run(
        [str(prefect), "run", "-p", FLOW, *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


def check_params(params: Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed project
    return subprocess.run(
        [sys.executable, "-m", "slideqc.prefect1", "--check-params", str(params), "-p", FLOW],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def project_folder(tmp_path, demo_dir) -> Path:
    """A folder like the project's root for the file's relative slide paths: data/ holds the demo slides."""
    (tmp_path / "data").symlink_to(demo_dir)
    return tmp_path


def test_the_repos_params_file_runs_the_flow_with_its_values(project_folder):
    values = json.loads(PARAMS.read_text(encoding="utf-8"))
    assert "file_name" in values and len(values) >= 2  # the slide and a setting or two

    checked = check_params(PARAMS, project_folder)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.count("\n") == 1 and "good for flow 'Image QC'" in checked.stdout

    proc = prefect_run("--param-file", str(PARAMS), cwd=project_folder)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    run_dir = only_run_dir(project_folder / "output")
    (row,) = results.read_results(run_dir / "results.tsv")
    assert row["file_name"] == Path(values["file_name"]).name
    # The settings the file gives are the run's: the report states every setting of the run.
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    settings = {name: value for name, value in values.items() if name in QCSettings.names()}
    assert settings
    assert [f"{name}={value}" for name, value in settings.items() if f"{name}={value}" not in report] == []


def test_a_param_on_the_command_line_wins_over_the_file(project_folder):
    proc = prefect_run("--param-file", str(PARAMS), "--param", "blur_max=0.01", cwd=project_folder)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (row,) = results.read_results(only_run_dir(project_folder / "output") / "results.tsv")
    assert float(row["blur_max"]) == 0.01 and row["rescan"] == "true"  # ~30 % blurry is over 1 %


BAD = [
    ("not-json", "{file_name: 1", "not JSON"),
    ("a-list", '["file_name", "blur_max"]', "a JSON object of parameter names and values is expected"),
    ("unknown", '{"blur_maxx": 0.5}', "flow 'Image QC' has no parameter 'blur_maxx' (did you mean 'blur_max'?)"),
    ("bad-value", '{"blur_max": 5}', "blur_max: must be in [0, 1], got 5"),
    ("bad-work-size", '{"image_work_size": "big"}', "image_work_size: 'big' is not a work size"),
    ("no-slide", '{"file_name": "data/not_there.svs"}', "no such slide: 'data/not_there.svs'"),
]


@pytest.mark.parametrize("name, text, says", BAD, ids=[b[0] for b in BAD])
def test_a_bad_file_gets_one_line_and_exit_2(name, text, says, project_folder):
    params = project_folder / f"{name}.json"
    params.write_text(text, encoding="utf-8")
    proc = check_params(params, project_folder)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith(f"error: {params}: "), proc.stderr
    assert says in proc.stderr


def test_a_missing_file_gets_one_line_and_exit_2(project_folder):
    proc = check_params(project_folder / "nope.json", project_folder)
    assert proc.returncode == 2 and proc.stderr == f"error: {project_folder / 'nope.json'}: no such file\n"


@pytest.mark.parametrize("name, text", [("a-list", "[1, 2]"), ("unknown", '{"blur_maxx": 0.5}')])
def test_prefects_own_cli_answers_these_with_a_traceback(name, text, project_folder):
    """Why the check is there: Prefect 1.4.1's `prefect run` fails on these, with a traceback, not a line."""
    params = project_folder / f"{name}.json"
    params.write_text(text, encoding="utf-8")
    proc = prefect_run("--param-file", str(params), cwd=project_folder)
    assert proc.returncode != 0
    assert 'File "' in proc.stdout + proc.stderr  # a traceback's frames
