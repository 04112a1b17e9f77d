"""The Prefect 3 flows, run against a real local server: the same results as pipeline.py."""

from __future__ import annotations

import os
import shutil
import sys

import pytest

from prefect3.tests.conftest import (
    BIN,
    CHILD_ENV,
    ROOT,
    _free_port,
    only_run_dir,
    per_slide,
    run_script,
    start,
    stop,
    tail,
)
from slideqc.output import results

SHARED_FLAGS = [
    "--data-dir",
    "--file-type",
    "--files",
    "--image-work-size",
    "--blur-work-size",
    "--blur-radius",
    "--blur-threshold",
    "--blur-max",
    "--output-dir",
    "--run-name",
    "--overwrite",
    "--log-level",
]
SCRIPTS = ["prefect3/qc_flow.py", "prefect3/qc_flow_parallel.py", "prefect3/run_deployments.py"]


def check_run(proc, out, reference) -> list[dict]:
    """The script's run folder holds the same rows as pipeline.py's, with pictures and a report."""
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]  # 1: the broken file's error row
    run_dir = only_run_dir(out)
    rows = results.read_results(run_dir / "results.tsv")
    assert per_slide(rows) == reference
    for row in rows:
        if row["status"] in results.JUDGED:
            assert (run_dir / row["outputs"] / "overlay.png").is_file()
    assert (run_dir / "report.html").is_file()
    return rows


@pytest.mark.parametrize("script", SCRIPTS)
def test_same_command_line_as_pipeline(script):
    proc = run_script(script, "--help")
    assert proc.returncode == 0, proc.stderr
    for flag in SHARED_FLAGS:
        assert flag in proc.stdout, flag
    assert "default: 1.25x" in proc.stdout and "Exit codes" in proc.stdout


def test_bad_parameter_is_a_usage_error(data_dir, tmp_path):
    proc = run_script(
        "prefect3/qc_flow.py", "--data-dir", str(data_dir), "--output-dir", str(tmp_path), "--blur-max", "2"
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --blur-max")


@pytest.mark.parametrize("script", ["prefect3/qc_flow.py", "prefect3/qc_flow_parallel.py"])
def test_a_temporary_server_that_does_not_start_ends_in_one_line(script, data_dir, tmp_path):
    """No PREFECT_API_URL, a new PREFECT_HOME and 1 s to start: the server (creating its database first) cannot."""
    env = {k: v for k, v in CHILD_ENV.items() if k != "PREFECT_API_URL"}
    env.update(PREFECT_HOME=str(tmp_path / "home"), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="1")
    proc = run_script(script, "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "out"), env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 3, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [  # then Prefect's own "Stopping temporary server" line, at exit
        "error: Prefect's temporary server did not start within 1 s. Give it longer "
        "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=300), or start one yourself: "
        "prefect server start, then PREFECT_API_URL=http://127.0.0.1:4200/api"
    ], proc.stderr[-3000:]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # no empty run folder left


@pytest.mark.parametrize("option", ["--batch-size", "--limit"])
def test_server_options_below_one_are_usage_errors(option, data_dir, tmp_path):
    proc = run_script(
        "prefect3/run_deployments.py", "--data-dir", str(data_dir), "--output-dir", str(tmp_path), option, "0"
    )
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {option}: must be >= 1, got 0", proc.stderr
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("option", ["--limit", "--workers", "--poll-seconds"])
def test_serve_options_below_one_are_refused(option):
    proc = run_script("prefect3/serve.py", option, "0")
    assert proc.returncode == 2 and f"{option}: must be >= 1, got 0" in proc.stderr, proc.stderr


def test_run_deployments_help_names_the_batch_options():
    proc = run_script("prefect3/run_deployments.py", "--help")
    assert "--batch-size" in proc.stdout and "--limit" in proc.stdout and "qc-batch" in proc.stdout


def test_a_failed_batch_run_gives_each_of_its_slides_an_error_row():
    """A batch run that failed as a whole (its process crashed): every slide of it gets that error."""
    from prefect.states import Completed, Crashed

    from prefect3 import common

    rows = common.rows_from_batch_state(["/data/a.svs", "/data/b.svs"], Crashed(message="process exited with -9"))
    assert [(r.file_name, r.status) for r in rows] == [("a.svs", "error"), ("b.svs", "error")]
    assert all("process exited with -9" in r.error for r in rows), rows
    done = common.rows_from_batch_state(["/data/a.svs"], Completed(data=[{"file_name": "a.svs", "status": "ok"}]))
    assert [(r.file_name, r.status) for r in done] == [("a.svs", "ok")]


def test_flow_parameters_are_typed():
    from prefect3.qc_flow import qc_slide
    from prefect3.qc_flow_parallel import qc_slides

    properties = qc_slide.parameters.properties
    assert list(properties) == [
        "file_name",
        "image_work_size",
        "blur_work_size",
        "blur_radius",
        "blur_threshold",
        "blur_max",
        "artefact_work_size",
        "fold_max",
        "run_dir",
        "redo",
        "tile_threads",
    ]
    assert properties["file_name"]["type"] == "string" and properties["blur_radius"]["type"] == "number"
    assert properties["fold_max"]["type"] == "number" and properties["artefact_work_size"]["default"] == "1.25x"
    assert properties["image_work_size"]["default"] == "1.25x" and properties["blur_max"]["default"] == 0.05
    assert qc_slide.parameters.required == ["file_name"]
    assert qc_slides.parameters.properties["file_names"]["type"] == "array"


def test_serial_flow_same_as_pipeline_and_load_is_cached(prefect_server, data_dir, reference, tmp_path):
    proc = run_script("prefect3/qc_flow.py", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "first"))
    check_run(proc, tmp_path / "first", reference)
    assert "Flow run 'qc-synthetic_02_blur30.svs'" in proc.stdout + proc.stderr
    # The default --cache-dir holds the runs' results, among them one cached load per slide.
    cached = [p.name for p in (tmp_path / "first" / ".qc-cache").iterdir() if p.name.startswith("load-")]
    assert len(cached) == 3

    # Same files, same work sizes, same --cache-dir: the load task's cache key (path, mtime, work sizes) hits.
    again = run_script(
        "prefect3/qc_flow.py",
        "--data-dir",
        str(data_dir),
        "--output-dir",
        str(tmp_path / "again"),
        "--cache-dir",
        str(tmp_path / "first" / ".qc-cache"),
    )
    check_run(again, tmp_path / "again", reference)
    assert (again.stdout + again.stderr).count("Finished in state Cached") == 3
    assert not (tmp_path / "again" / ".qc-cache").exists()

    redo = run_script(
        "prefect3/qc_flow.py", "--data-dir", str(data_dir), "--output-dir", str(tmp_path / "redo"), "--redo"
    )
    check_run(redo, tmp_path / "redo", reference)
    assert "Finished in state Cached" not in redo.stdout + redo.stderr


@pytest.mark.parametrize("runner", ["local", "threads", "dask"])
def test_mapped_flow_same_as_pipeline(runner, prefect_server, data_dir, reference, tmp_path):
    env = {k: v for k, v in CHILD_ENV.items() if k not in ("PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK")}
    proc = run_script(
        "prefect3/qc_flow_parallel.py",
        "--data-dir",
        str(data_dir),
        "--output-dir",
        str(tmp_path),
        "--executor",
        runner,
        "--workers",
        "2",
        env=env,
    )
    check_run(proc, tmp_path, reference)
    log = proc.stdout + proc.stderr
    assert "Flow run" in log and "Image QC (mapped)" in log
    assert (
        "failed to send telemetry" not in log.lower()
    )  # analytics off, whatever the environment says (common.local_run_defaults)
    assert "distributed.worker" not in log  # Dask's INFO lines stay out


def test_mapped_flow_on_an_existing_dask_scheduler(prefect_server, data_dir, reference, tmp_path):
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    scheduler = start(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        tmp_path / "scheduler.log",
    )
    worker = None
    try:
        worker = start(
            [
                str(BIN / "dask"),
                "worker",
                address,
                "--nthreads",
                "1",
                "--nworkers",
                "2",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
            ],
            tmp_path / "worker.log",
        )
        proc = run_script(
            "prefect3/qc_flow_parallel.py",
            "--data-dir",
            str(data_dir),
            "--output-dir",
            str(tmp_path / "out"),
            "--address",
            address,
        )
        assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:] + tail(tmp_path / "worker.log")
        check_run(proc, tmp_path / "out", reference)
    finally:
        if worker is not None:
            stop(worker)
        stop(scheduler)


def test_run_deployments_needs_a_server_and_the_deployment(prefect_server, data_dir, tmp_path):
    import subprocess

    from prefect3.tests.conftest import CHILD_ENV

    script = [
        sys.executable,
        str(ROOT / "prefect3" / "run_deployments.py"),
        "--data-dir",
        str(data_dir),
        "--output-dir",
        str(tmp_path / "out"),
    ]
    nothing = subprocess.run(
        script,
        env={**CHILD_ENV, "PREFECT_API_URL": f"http://127.0.0.1:{_free_port()}/api"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert nothing.returncode == 3 and "no Prefect server answers at" in nothing.stderr, nothing.stderr
    missing = run_script("prefect3/run_deployments.py", *script[2:], "--deployment", "Image QC/no-such-deployment")
    assert missing.returncode == 3 and "no deployment 'Image QC/no-such-deployment'" in missing.stderr
    assert not (tmp_path / "out").exists()  # nothing written


# --- retries and caching on the load task, in this process ---------------------------------------


@pytest.fixture
def load_image(prefect_server):
    from prefect3.qc_flow import load_image

    return load_image.with_options(retry_delay_seconds=0)


def test_load_retries_on_io_errors_only(load_image, demo_dir, data_dir, monkeypatch):
    from BaseImage import SlideError
    from slideqc import qc

    real, calls, failures = qc.load_slide, [], [OSError("the shared drive went away")]

    def flaky(*args):
        calls.append(args[0])
        if failures:
            raise failures.pop()
        return real(*args)

    monkeypatch.setattr(qc, "load_slide", flaky)
    slide = load_image.with_options(refresh_cache=True)(str(demo_dir / "synthetic_01_blur00.svs"), "1.25x", "10x")
    assert slide.name == "synthetic_01_blur00.svs" and len(calls) == 2

    calls.clear()  # no failure left to inject: the broken file fails on its own
    with pytest.raises(SlideError, match="broken.svs"):  # not a slide: trying again will not help
        load_image(str(data_dir / "broken.svs"), "1.25x", "10x")
    assert len(calls) == 1


def test_load_cache_key_is_path_mtime_and_work_sizes(load_image, demo_dir, tmp_path):
    slide = tmp_path / "copy.svs"
    shutil.copy2(demo_dir / "synthetic_01_blur00.svs", slide)

    def state(*work_sizes):
        return load_image(str(slide), *work_sizes, return_state=True)

    assert state("1.25x", "10x").name == "Completed"
    assert state("1.25x", "10x").name == "Cached"
    assert state("1.25x", "5x").name == "Completed"  # another work size: another key
    stat = slide.stat()
    os.utime(slide, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the slide copied again
    assert state("1.25x", "10x").name == "Completed"
    cached = state("1.25x", "10x")
    assert cached.name == "Cached" and cached.result().name == "copy.svs"


def test_scripts_import_the_project_from_anywhere(tmp_path):
    """The installed project is found from any folder without PYTHONPATH (a served run imports the flow by path)."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "prefect3" / "qc_flow.py"), "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_offline_without_telemetry_errors(data_dir, tmp_path):
    """No server configured: the script's own temporary server, with no analytics setting given, sends nothing."""
    env = {
        k: v
        for k, v in CHILD_ENV.items()
        if k not in ("PREFECT_API_URL", "PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK")
    }
    env["PREFECT_HOME"] = str(tmp_path / "home")
    proc = run_script(
        "prefect3/qc_flow.py",
        "--files",
        str(data_dir / "synthetic_01_blur00.svs"),
        "--output-dir",
        str(tmp_path / "out"),
        env=env,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert "Starting temporary server" in log or "temporary server" in log.lower()
    assert "failed to send telemetry" not in log.lower(), log[-3000:]


def test_processes_executor_is_refused_in_one_line(data_dir, tmp_path):
    proc = run_script(
        "prefect3/qc_flow_parallel.py",
        "--data-dir",
        str(data_dir),
        "--output-dir",
        str(tmp_path),
        "--executor",
        "processes",
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "error: --executor processes: not in the Prefect 3 edition; use --executor dask "
        "for worker processes (a local Dask cluster), or threads"
    )
    assert not any(tmp_path.iterdir())  # nothing written
