"""A setting added to QCSettings (with a default, nothing else changed) breaks no lesson, in either edition.

Each lesson runs in a fresh process in which QCSettings has one more field, as a maintainer would
add it in slideqc/settings.py. A lesson passes its flow only the Parameters the flow declares, so
every lesson still runs; the new setting given on the command line to a lesson whose flow does not
declare it is refused in one line that names the setting and the lesson (exit 2, nothing written).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from prefect.serialization.flow import FlowSchema

from slideqc.cli import EXIT_OK, EXIT_USAGE
from tests.fake_prefect_server import FakePrefectServer
from tests.helpers import ROOT, only_run_dir
from tests.test_faults import PY3
from tests.test_prefect_server import prefect_env

# What a maintainer's edit of slideqc/settings.py amounts to, done before the lesson imports anything.
ADD_A_SETTING = """
import dataclasses, runpy, sys
from slideqc import settings
added = settings._setting(1.0, "a setting added after the lessons were written", low=0, high=10)
QCSettings = dataclasses.make_dataclass(
    "QCSettings", [("added_setting", float, added)], bases=(settings.QCSettings,), frozen=True
)
QCSettings.__module__ = "slideqc.settings"  # where pickle finds it, as it would the edited class
settings.QCSettings, settings.DEFAULTS = QCSettings, QCSettings()
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
LOCAL = {  # lesson -> the options that make it quick on one slide
    "pipeline.py": [],
    "pipeline_parallel.py": ["--workers", "1"],
    "solutions/pipeline_prefect.py": [],
    "solutions/pipeline_prefect_mapped.py": [],
    "solutions/pipeline_prefect_parallel.py": ["--executor", "local"],
    "extras/pipeline_prefect_retries.py": [],
    "extras/pipeline_prefect_persisted.py": [],
    "extras/pipeline_prefect_fast_context.py": [],
    "extras/pipeline_prefect_batches.py": ["--executor", "local"],
    "extras/pipeline_prefect_log_stdout.py": [],
    "extras/pipeline_prefect_cached.py": ["--executor", "local"],  # two passes, 10 s apart
    "prefect3/qc_flow.py": [],
    "prefect3/qc_flow_parallel.py": ["--executor", "local"],
}
SERVER = [
    "solutions/pipeline_prefect_server.py",
    "solutions/pipeline_prefect_parallel_server.py",
    "extras/pipeline_prefect_server_rows.py",
]
NO_FLOW = {"pipeline.py", "pipeline_parallel.py"}  # plain Python: every setting reaches the steps


def run_with_added_setting(lesson: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    python = str(PY3) if lesson.startswith("prefect3/") else sys.executable
    return subprocess.run(
        [python, "-c", ADD_A_SETTING, str(ROOT / lesson), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture
def one_slide(demo_slides):
    return ["--files", str(demo_slides[0]), "--log-level", "WARNING"]


@pytest.mark.parametrize("lesson", sorted(LOCAL))
def test_a_new_setting_breaks_no_lesson(lesson, one_slide, tmp_path):
    out = tmp_path / "out"
    proc = run_with_added_setting(lesson, *one_slide, "--output-dir", str(out), *LOCAL[lesson])
    assert proc.returncode == EXIT_OK, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert (only_run_dir(out) / "results.tsv").is_file()


@pytest.mark.parametrize("lesson", sorted(set(LOCAL) - NO_FLOW))
def test_a_new_setting_its_flow_lacks_is_refused_in_one_line(lesson, one_slide, tmp_path):
    out = tmp_path / "out"
    proc = run_with_added_setting(lesson, *one_slide, "--output-dir", str(out), "--added-setting", "2")
    assert proc.returncode == EXIT_USAGE, proc.stdout[-2000:] + proc.stderr[-3000:]
    [line] = proc.stderr.strip().splitlines()
    name = lesson.rsplit("/", 1)[-1]
    assert (
        line.startswith("error: --added-setting: ") and f"the flow of {name} has no Parameter 'added_setting'" in line
    )
    assert not out.exists() or not any(out.iterdir())  # nothing written


@pytest.mark.parametrize("lesson", sorted(NO_FLOW))
def test_a_new_setting_reaches_the_plain_scripts(lesson, one_slide, tmp_path):
    proc = run_with_added_setting(lesson, *one_slide, "--output-dir", str(tmp_path / "out"), "--added-setting", "2")
    assert proc.returncode == EXIT_OK, proc.stderr[-3000:]
    assert "added_setting=2.0" in (only_run_dir(tmp_path / "out") / "report.html").read_text(encoding="utf-8")


@pytest.mark.parametrize("lesson", SERVER)
def test_a_new_setting_breaks_no_server_lesson(lesson, one_slide, tmp_path):
    """Registered and asked for runs (a stand-in server): each run's parameters are Parameters of its flow."""
    with FakePrefectServer() as fake:
        env = {**os.environ, **prefect_env(tmp_path, fake.url)}
        proc = run_with_added_setting(lesson, *one_slide, "--output-dir", str(tmp_path / "out"), env=env)
        assert proc.returncode == EXIT_OK, proc.stdout[-2000:] + proc.stderr[-3000:]
        [flow_id] = fake.flows
        declared = {p.name for p in FlowSchema().load(fake.registered_flow(flow_id)).parameters()}
        assert fake.flow_runs and all(set(run["parameters"]) <= declared for run in fake.flow_runs), declared
