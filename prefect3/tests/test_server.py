"""The server path for real: `prefect server start`, a served deployment, a flow run per slide.

The runs are created by prefect3/run_deployments.py with run_deployment, executed
by the process prefect3/serve.py started, and read back from the server's REST
API; the UI, served by the same server, is opened in headless Chromium.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from prefect3.tests.conftest import API_URL, api, per_slide, run_script, tail
from slideqc.output import results

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def drive(
    deployment: dict, data_dir: Path, out: Path, *args: str, env: dict | None = None, base: str = API_URL
) -> dict:
    """One run of the driver on ``data_dir``, waited for, results written; and the deployment's flow runs."""
    proc = run_script(
        "prefect3/run_deployments.py",
        "--data-dir",
        str(data_dir),
        "--output-dir",
        str(out),
        "--timeout",
        "600",
        *args,
        env=env,
    )
    flow_runs = api(
        "POST",
        "/flow_runs/filter",
        {"flow_runs": {"deployment_id": {"any_": [deployment["id"]]}}, "limit": 50},
        base=base,
    )
    return {"proc": proc, "out": out, "flow_runs": flow_runs}


@pytest.fixture(scope="module")
def served_runs(served_deployment, data_dir, tmp_path_factory) -> dict:
    """A flow run per slide of ``data_dir`` (--batch-size 1)."""
    runs = drive(served_deployment["deployment"], data_dir, tmp_path_factory.mktemp("served"), "--batch-size", "1")
    return {**runs, "serve_log": served_deployment["log"]}


@pytest.fixture(scope="module")
def served_batches(served_deployment, data_dir, tmp_path_factory) -> dict:
    """The four files of ``data_dir`` in flow runs of three slides: two runs of the batch deployment."""
    runs = drive(served_deployment["batch"], data_dir, tmp_path_factory.mktemp("batches"), "--batch-size", "3")
    return {**runs, "serve_log": served_deployment["log"]}


def check_run_folder(runs: dict, reference: dict) -> list[dict]:
    """The driver's exit code (1: the broken file), its rows equal to pipeline.py's, the pictures, the report."""
    proc = runs["proc"]
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:] + tail(runs["serve_log"])
    [run_dir] = [p for p in runs["out"].iterdir() if p.is_dir()]
    status = json.loads((run_dir / "run.json").read_text())
    assert {k: status[k] for k in ("status", "slides", "rows")} == {"status": "complete", "slides": 4, "rows": 4}
    rows = results.read_results(run_dir / "results.tsv")
    assert per_slide(rows) == reference
    for row in rows:
        if row["status"] in results.JUDGED:
            for picture in ("thumbnail.png", "tissue.png", "blur.png", "overlay.png"):
                assert (run_dir / row["outputs"] / picture).is_file()
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert all(name in report for name in reference)
    return rows


def test_results_equal_pipeline(served_runs, reference):
    check_run_folder(served_runs, reference)


def test_batches_equal_pipeline(served_batches, reference, data_dir):
    check_run_folder(served_batches, reference)
    # The mapped flow runs end Completed, a broken slide inside them too: its row says why.
    runs = {run["name"]: run for run in served_batches["flow_runs"]}
    assert sorted(runs) == ["qc-batch-1-of-2", "qc-batch-2-of-2"]
    assert all(run["state"]["type"] == "COMPLETED" for run in runs.values()), runs
    slides = sorted(str(p.resolve()) for p in data_dir.glob("*.svs"))
    assert runs["qc-batch-1-of-2"]["parameters"]["file_names"] == slides[:3]
    assert runs["qc-batch-2-of-2"]["parameters"]["file_names"] == slides[3:]


def test_flow_run_states_from_the_api(served_runs, data_dir):
    runs = {run["name"]: run for run in served_runs["flow_runs"]}
    slides = sorted(p.name for p in data_dir.glob("*.svs"))
    assert sorted(runs) == [f"qc-{name}" for name in slides]
    for name in slides:
        run = runs[f"qc-{name}"]
        assert Path(run["parameters"]["file_name"]).name == name
        assert run["parameters"]["image_work_size"] == "1.25x" and run["parameters"]["blur_max"] == 0.05
        assert run["state"]["type"] == ("FAILED" if name == "broken.svs" else "COMPLETED"), run["state"]
    assert "not a slide" in runs["qc-broken.svs"]["state"]["message"]
    # Each run's tasks are on the server too: the seven QC steps of a completed run.
    run_id = runs["qc-synthetic_02_blur30.svs"]["id"]
    tasks = api("POST", "/task_runs/filter", {"flow_runs": {"id": {"any_": [run_id]}}})
    names = {re.sub(r"-[0-9a-f]+$", "", t["name"]) for t in tasks}
    assert names == {
        "load_image",
        "tissue_segmentation_simple",
        "find_artefacts",
        "identify_blurry_regions",
        "is_blurry",
        "warn_rescan",
        "save_results",
    }
    assert all(t["state"]["type"] == "COMPLETED" for t in tasks)


def chromium(url: str, user_data: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--user-data-dir={user_data}",
            "--window-size=1400,1000",
            "--virtual-time-budget=15000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_ui_shows_the_flow_runs(served_runs, prefect_server, tmp_path):
    # make test installs Chromium first (tools/system_deps.sh): missing, this fails rather than skips.
    assert Path(CHROMIUM).exists(), "Chromium is needed: apt-get install chromium (make test installs it as root)"
    url = f"{prefect_server}/runs"
    screenshot = tmp_path / "prefect-ui-runs.png"
    shot = chromium(url, tmp_path / "profile-shot", f"--screenshot={screenshot}")
    assert screenshot.is_file() and screenshot.stat().st_size > 20_000, shot.stderr[-2000:]

    # The UI fetches the runs after it starts; on a busy machine the first dump can come before
    # they arrive (seen once in a full run), so look again before judging.
    for attempt in range(3):
        dom = chromium(url, tmp_path / f"profile-dom-{attempt}", "--dump-dom")
        assert dom.returncode == 0, dom.stderr[-2000:]
        html = dom.stdout
        if all(run["name"] in html for run in served_runs["flow_runs"]):
            break
    for run in served_runs["flow_runs"]:
        assert run["name"] in html, run["name"]
    assert "Image QC" in html and "Completed" in html and "Failed" in html
