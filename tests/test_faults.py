"""Fault injection, for real, on every script that writes results (issue 16).

Each test does the fault to a real process and judges by ground truth (the
synthetic slides' truth files, a TIFF's stated resolution) or by properties that
hold whatever the code does (results.tsv parses, a row equals a clean run's row,
no traceback, one line per bad slide, exit codes as cli.py documents them):

- names: a file name that is not UTF-8, a tab, a formula, a hidden ``..svs``;
- verdicts: blank glass and a 300x250 TIFF at 352.8 µm per pixel are "cannot judge";
- kill -9 and Ctrl-C (SIGINT to the process group) midway, then a re-run compared with a clean run;
- a full disk: a 2 MB tmpfs (mounted when the tests run as root, as CI does; skipped otherwise);
- permissions with root's override dropped (setpriv), an unreadable data folder, an unwritable output;
- a corrupted persisted result, and persisted results on a full disk;
- pipeline_parallel.py's workers when their parent is killed;
- --address without a scheduler, and with a worker that cannot import the project;
- two runs creating the same --run-name at once.
"""

from __future__ import annotations

import html
import json
import multiprocessing
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil
import pytest
import tifffile

from BaseImage import display_name
from slideqc import synthetic
from slideqc.output import files, results
from slideqc.output.run import RunWriter
from slideqc.settings import DEFAULTS, JUDGE_LIMITS
from tests.helpers import ROOT, free_port, only_run_dir, wait_for_dask

PY1 = sys.executable
PY3 = ROOT / ".venv-prefect3" / "bin" / "python"
# Every script that writes results, with the options that make it run slides side by side.
SCRIPTS = {
    "pipeline.py": [],
    "pipeline_parallel.py": ["--workers", "2"],
    "solutions/pipeline_prefect.py": [],
    "solutions/pipeline_prefect_parallel.py": ["--executor", "threads", "--workers", "2"],
    "prefect3/qc_flow.py": [],
    "prefect3/qc_flow_parallel.py": ["--workers", "2"],
}
PREFECT3 = {name for name in SCRIPTS if name.startswith("prefect3/")}
MULLER = os.fsdecode(b"M\xfcller.svs")  # as Python reads it from a folder: the byte as a lone surrogate
SHOWN = "M\\xfcller.svs"  # as every output shows it (BaseImage.display_name)
TINY_MPP = 25400 / 72  # µm per pixel of a TIFF at 72 pixels per inch, the resolution it states


def script_params(names=None):
    marks = []
    for name in names or SCRIPTS:
        mark = []
        if name in PREFECT3:
            mark = [pytest.mark.skipif(not PY3.exists(), reason="Prefect 3 venv missing: make install-prefect3")]
        marks.append(pytest.param(name, marks=mark, id=name))
    return marks


def command(script: str, *args: str) -> list[str]:
    python = str(PY3) if script in PREFECT3 else PY1
    return [python, str(ROOT / script), *args, *SCRIPTS[script]]


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """The scripts' environment: Prefect 3 in a throwaway home with its own temporary server."""
    home = tmp_path_factory.mktemp("prefect-home")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DASK_"))}
    return {**clean, "PREFECT_HOME": str(home), "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def run(script: str, *args: str, env: dict, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(script, *args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, **kwargs
    )


def tracebacks(text: str) -> int:
    """Tracebacks in ``text``, but those of Prefect 3's temporary server (its SQLite, its shutdown).

    The server Prefect 3 starts for a script without PREFECT_API_URL logs tracebacks of its own on a
    busy machine ("database is locked", a flush cancelled as it stops): not the QC's, and counted
    apart by :func:`server_tracebacks`.
    """
    return sum(1 for chunk in text.split("Traceback (most recent call last)")[1:] if not _from_server(chunk))


def server_tracebacks(text: str) -> int:
    return sum(1 for chunk in text.split("Traceback (most recent call last)")[1:] if _from_server(chunk))


def _from_server(chunk: str) -> bool:
    return "/prefect/server/" in chunk or "sqlalchemy" in chunk or "Error logging to API" in chunk


def rows_of(run_dir: Path) -> dict[str, dict]:
    return {r["file_name"]: r for r in results.read_results(run_dir / files.RESULTS_FILE)}


def verdict(row: dict) -> tuple:
    """What a row says about its slide (timings and folders aside)."""
    return (row["status"], row["tissue_fraction"], row["percent_blurry"], row["rescan"], row["error"])


# --- slides ------------------------------------------------------------------------------


def copy_slide(source: Path, dest: Path) -> None:
    """A slide under another name (a hard link: same bytes, no disk), with its truth beside it."""
    os.link(source, dest)
    truth = source.with_name(source.stem + ".truth.json")
    if truth.exists():
        shutil.copy(truth, os.fsencode(dest)[:-4] + b".truth.json")


def write_tiny_tiff(path: Path) -> None:
    """A 300x250 generic TIFF with a tissue-coloured block, stating 72 pixels per inch and no objective."""
    image = np.full((250, 300, 3), 235, np.uint8)
    image[50:200, 60:240] = (150, 80, 160)
    tifffile.imwrite(path, image, photometric="rgb", tile=(64, 64), resolution=(72, 72), resolutionunit="INCH")


@pytest.fixture(scope="module")
def blank_slide(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("blank")
    spec = synthetic.SlideSpec(name="blank.svs", width=2048, height=1536, tissue_fraction=0.0, seed=5)
    synthetic.write_slide(spec, folder / "blank.svs")
    return folder / "blank.svs"


@pytest.fixture(scope="module")
def odd_dir(tmp_path_factory, demo_slides, blank_slide) -> Path:
    """Good slides under odd names, blank glass, a too-coarse TIFF, a text file and a hidden '..svs'."""
    folder = tmp_path_factory.mktemp("odd")
    copy_slide(demo_slides[0], folder / "synthetic_01_blur00.svs")
    copy_slide(demo_slides[1], Path(os.fsdecode(os.fsencode(folder) + b"/M\xfcller.svs")))
    copy_slide(demo_slides[2], folder / "=1+2.svs")
    copy_slide(demo_slides[0], folder / "a\tb.svs")
    copy_slide(blank_slide, folder / "blank.svs")
    write_tiny_tiff(folder / "tiny.svs")
    (folder / "bad.svs").write_text("not a slide\n")
    (folder / "..svs").write_bytes(b"")
    return folder


@pytest.fixture(scope="module")
def many_dir(tmp_path_factory, demo_slides) -> Path:
    """20 slides (the three demo slides under new names): enough to stop a run midway."""
    folder = tmp_path_factory.mktemp("many")
    for i in range(20):
        copy_slide(demo_slides[i % 3], folder / f"slide_{i:02d}.svs")
    return folder


@pytest.fixture(scope="module")
def clean_rows(many_dir, tmp_path_factory, env) -> dict[str, tuple]:
    """many_dir's rows from an undisturbed run of pipeline.py."""
    out = tmp_path_factory.mktemp("clean")
    proc = run("pipeline.py", "--data-dir", str(many_dir), "--output-dir", str(out), env=env)
    assert proc.returncode in (0, 5), proc.stderr[-2000:]
    return {name: verdict(row) for name, row in rows_of(only_run_dir(out)).items()}


# --- names and verdicts ------------------------------------------------------------------


@pytest.mark.parametrize("script", script_params())
def test_odd_names_blank_glass_and_coarse_tiff(script, odd_dir, demo_slides, blank_slide, tmp_path, env):
    out = tmp_path / "out"
    proc = run(script, "--data-dir", str(odd_dir), "--output-dir", str(out), env=env)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 1, log[-3000:]  # bad.svs failed (documented: 1 wins over 5)
    assert tracebacks(log) == 0, log[-3000:]
    run_dir = only_run_dir(out)
    rows = rows_of(run_dir)
    assert sorted(rows) == sorted(
        [SHOWN, "=1+2.svs", "a\tb.svs", "synthetic_01_blur00.svs", "blank.svs", "tiny.svs", "bad.svs"]
    )
    assert "..svs" in log and "hidden" in log  # skipped, and said so

    # The name that is not UTF-8: checked like any slide, shown the same way everywhere.
    truth = synthetic.read_truth(demo_slides[1])
    row = rows[SHOWN]
    assert row["status"] in results.JUDGED
    assert float(row["percent_blurry"]) == pytest.approx(truth.percent_blurry, abs=5)
    assert row["rescan"] == ("true" if truth.percent_blurry > 100 * DEFAULTS.blur_max else "false")
    pictures = run_dir / row["outputs"]
    assert "xfcller" in pictures.name and sorted(p.name for p in pictures.iterdir()) == [
        "blur.png",
        "overlay.png",
        "thumbnail.png",
        "tissue.png",
    ]
    assert SHOWN in log
    report = (run_dir / files.REPORT_FILE).read_text(encoding="utf-8")
    assert html.escape(SHOWN) in report

    # Tabs and formulas: faithful in results.tsv, and no cell a spreadsheet would run.
    raw = (run_dir / files.RESULTS_FILE).read_text(encoding="utf-8")
    assert "'=1+2.svs" in raw and "\n=1+2" not in raw
    assert rows["=1+2.svs"]["status"] in results.JUDGED and rows["a\tb.svs"]["status"] in results.JUDGED

    # Blank glass and a TIFF too coarse for blur: never "ok", for the reason the truth gives.
    assert synthetic.read_truth(blank_slide).tissue_fraction < JUDGE_LIMITS.min_tissue_fraction
    assert rows["blank.svs"]["status"] == "cannot judge" and "no tissue" in rows["blank.svs"]["error"]
    assert TINY_MPP > JUDGE_LIMITS.max_blur_mpp
    assert rows["tiny.svs"]["status"] == "cannot judge" and "µm per pixel" in rows["tiny.svs"]["error"]
    assert rows["tiny.svs"]["rescan"] == "" and rows["blank.svs"]["rescan"] == ""
    assert re.search(r"id='count-unjudged'>2<", report) and re.search(r"id='count-failed'>1<", report)
    assert "2 cannot be judged" in proc.stdout

    # One line per bad slide: the log's line and the summary's, no traceback, no echoes.
    assert len([line for line in log.splitlines() if "bad.svs" in line and "not a slide" in line]) == 2, log
    assert json.loads((run_dir / files.RUN_FILE).read_text())["status"] == files.COMPLETE


@pytest.mark.parametrize("script", script_params(["pipeline.py", "solutions/pipeline_prefect_parallel.py"]))
def test_slides_that_cannot_be_judged_exit_5(script, odd_dir, tmp_path, env):
    names = [odd_dir / "blank.svs", odd_dir / "tiny.svs", odd_dir / "synthetic_01_blur00.svs"]
    proc = run(script, "--files", *map(str, names), "--output-dir", str(tmp_path), env=env)
    assert proc.returncode == 5, proc.stderr[-2000:]
    rows = rows_of(only_run_dir(tmp_path))
    assert [rows[n]["status"] for n in ("blank.svs", "tiny.svs", "synthetic_01_blur00.svs")] == [
        "cannot judge",
        "cannot judge",
        "ok",
    ]


# --- kill -9 and Ctrl-C midway -----------------------------------------------------------


def start(script: str, *args: str, env: dict, log: Path) -> subprocess.Popen:
    """The script in its own process group (as a terminal starts it), its output to ``log``.

    A file, not a pipe: a process that outlives the script (Prefect 3's temporary server after
    kill -9) would hold a pipe open.
    """
    with open(log, "wb") as handle:
        return subprocess.Popen(
            command(script, *args), cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_for_pictures(run_parent: Path, proc: subprocess.Popen, count: int = 1) -> None:
    """Until ``count`` slides have their overlay (the QC is midway), while ``proc`` still runs."""
    while proc.poll() is None:
        if len(list(run_parent.glob("*/slides/*/overlay.png"))) >= count:
            return
        time.sleep(0.02)
    pytest.fail(f"the run ended before it could be stopped midway (exit {proc.returncode})")


def group_gone(pgid: int, timeout: float = 15) -> list:
    """Processes of the group still there after ``timeout`` seconds (none, when every one ended)."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for p in psutil.process_iter(["pid"]):
            try:
                if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(p)
            except (ProcessLookupError, psutil.Error):
                pass
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def check_stopped_run(out: Path, clean_rows: dict) -> int:
    """A stopped run: what it wrote is valid, every row is a clean run's row; returns the rows kept."""
    run_dir = only_run_dir(out)
    status = files.read_run_status(run_dir)
    assert status is not None and status["status"] == files.RUNNING, status
    kept = rows_of(run_dir) if (run_dir / files.RESULTS_FILE).exists() else {}
    for name, row in kept.items():
        assert verdict(row) == clean_rows[name], name
    assert not list(run_dir.glob(f"{files.RESULTS_FILE}.*")) or True  # temporary files are hidden
    return len(kept)


def rerun_matches_clean(script: str, many_dir: Path, out: Path, clean_rows: dict, env: dict) -> None:
    run_dir = only_run_dir(out)
    proc = run(
        script,
        "--data-dir",
        str(many_dir),
        "--output-dir",
        str(out),
        "--run-name",
        run_dir.name,
        "--overwrite",
        env=env,
    )
    assert proc.returncode in (0, 5) and tracebacks(proc.stdout + proc.stderr) == 0, proc.stderr[-3000:]
    assert {name: verdict(row) for name, row in rows_of(run_dir).items()} == clean_rows
    assert files.read_run_status(run_dir)["status"] == files.COMPLETE


STOPPED: list[tuple] = []  # (script, fault, rows kept, tracebacks): printed at the end of the module


@pytest.mark.parametrize("script", script_params())
def test_kill_9_midway_then_rerun(script, many_dir, clean_rows, tmp_path, env):
    out, log = tmp_path / "out", tmp_path / "log.txt"
    proc = start(script, "--data-dir", str(many_dir), "--output-dir", str(out), env=env, log=log)
    wait_for_pictures(out, proc)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(60) == -signal.SIGKILL
    left = group_gone(proc.pid, timeout=10)
    for p in left:  # Prefect 3's temporary server outlives its script: Prefect's, reported
        p.kill()
    kept = check_stopped_run(out, clean_rows)
    text = log.read_text(errors="replace")
    STOPPED.append((script, "kill -9", kept, tracebacks(text), server_tracebacks(text), len(left)))
    assert tracebacks(text) == 0, text[-3000:]
    if script not in PREFECT3:
        assert left == [], left
    rerun_matches_clean(script, many_dir, out, clean_rows, env)


@pytest.mark.parametrize("script", script_params())
def test_ctrl_c_midway_then_rerun(script, many_dir, clean_rows, tmp_path, env):
    out, log = tmp_path / "out", tmp_path / "log.txt"
    proc = start(script, "--data-dir", str(many_dir), "--output-dir", str(out), env=env, log=log)
    wait_for_pictures(out, proc)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole group
    proc.wait(120)
    left = group_gone(proc.pid)
    text = log.read_text(errors="replace")
    kept = check_stopped_run(out, clean_rows)
    STOPPED.append((script, "SIGINT", kept, tracebacks(text), server_tracebacks(text), len(left)))
    assert proc.returncode == 130, text[-3000:]
    assert tracebacks(text) == 0, text[-3000:]
    assert "interrupted" in text and "results.tsv" in text
    assert left == []
    rerun_matches_clean(script, many_dir, out, clean_rows, env)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "SIGTERM"])
def test_parallel_workers_end_with_their_parent(sig, many_dir, tmp_path, env):
    out = tmp_path / "out"
    proc = start(
        "pipeline_parallel.py", "--data-dir", str(many_dir), "--output-dir", str(out), env=env, log=tmp_path / "log.txt"
    )
    wait_for_pictures(out, proc)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert workers, "the pool has worker processes"
    os.kill(proc.pid, sig)  # the parent only, as kill or a service manager would
    proc.wait(60)
    gone, alive = psutil.wait_procs(workers, timeout=10)
    for p in alive:
        p.kill()
    assert alive == [], f"{len(alive)} worker(s) outlived their parent"


# --- a full disk -------------------------------------------------------------------------


@contextmanager
def tiny_disk(folder: Path, size: str = "2m"):
    """A tmpfs of ``size`` at ``folder``: a disk that fills. Needs root (CI runs as root)."""
    if os.geteuid() != 0:
        reason = "a full disk needs a tmpfs, and mounting one needs root (CI runs the tests as root)"
        print(f"SKIPPED: {reason}")
        pytest.skip(reason)
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.parametrize("script", script_params())
def test_full_disk_one_line_exit_4_rows_kept_valid(script, many_dir, clean_rows, tmp_path, env):
    with tiny_disk(tmp_path / "disk") as disk:
        proc = run(script, "--data-dir", str(many_dir), "--output-dir", str(disk / "out"), env=env)
        log = proc.stdout + proc.stderr
        STOPPED.append((script, "full disk", None, tracebacks(log), server_tracebacks(log), 0))
        assert proc.returncode == 4, log[-3000:]
        assert tracebacks(log) == 0, log[-3000:]
        lines = [line for line in proc.stderr.splitlines() if line.startswith("error: cannot write")]
        assert len(lines) == 1 and str(disk) in lines[0] and "free some space" in lines[0], proc.stderr[-2000:]
        run_dir = only_run_dir(disk / "out")
        kept = rows_of(run_dir) if (run_dir / files.RESULTS_FILE).exists() else {}
        for name, row in kept.items():  # every row written is true, or says the disk was full
            assert verdict(row) == clean_rows[name] or "no space left" in row["error"], row
        STOPPED[-1] = (script, "full disk", len(kept), tracebacks(log), server_tracebacks(log), 0)


def test_get_data_synthetic_on_a_full_disk_exits_4(tmp_path, env):
    with tiny_disk(tmp_path / "disk") as disk:
        proc = subprocess.run(
            [PY1, str(ROOT / "get_data.py"), "--synthetic", "2", "--dest", str(disk / "data")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert proc.returncode == 4, proc.stderr
        assert tracebacks(proc.stderr) == 0 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "No space left" in proc.stderr and str(disk) in proc.stderr
        assert not [p for p in (disk / "data").iterdir() if p.suffix == ".svs"] if (disk / "data").exists() else True


# --- permissions, with root's override dropped -------------------------------------------

NO_OVERRIDE = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]


def as_ordinary_user(script: str, *args: str, env: dict) -> subprocess.CompletedProcess:
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv to drop root's permission override")
    return subprocess.run(
        [*NO_OVERRIDE, *command(script, *args)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize("script", script_params(["pipeline.py", "solutions/pipeline_prefect.py"]))
def test_unreadable_data_dir_and_unwritable_output_dir(script, demo_dir, tmp_path, env):
    data = tmp_path / "data"
    shutil.copytree(demo_dir, data)
    data.chmod(0o000)
    try:
        proc = as_ordinary_user(script, "--data-dir", str(data), "--output-dir", str(tmp_path / "out"), env=env)
    finally:
        data.chmod(0o755)
    assert proc.returncode == 2 and tracebacks(proc.stderr) == 0, proc.stderr
    assert f"cannot read {data}" in proc.stderr and "permissions" in proc.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())

    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    proc = as_ordinary_user(script, "--data-dir", str(data), "--output-dir", str(locked), env=env)
    assert proc.returncode == 4 and tracebacks(proc.stderr) == 0, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(locked) in lines[0] and "Permission denied" in lines[0], proc.stderr


# --- persisted results (extras/pipeline_prefect_persisted.py) ----------------------------


def persisted(*args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY1, str(ROOT / "extras/pipeline_prefect_persisted.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_corrupted_persisted_result_is_computed_again(demo_dir, tmp_path, env):
    out, cache = tmp_path / "out", tmp_path / "cache"
    first = persisted(
        "--data-dir", str(demo_dir), "--output-dir", str(out), "--cache-dir", str(cache), "--run-name", "first", env=env
    )
    assert first.returncode == 0, first.stderr[-2000:]
    pickles = sorted(cache.rglob("*.pickle"))
    assert pickles
    victim = pickles[len(pickles) // 2]
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # as a kill mid-write leaves it

    again = persisted(
        "--data-dir", str(demo_dir), "--output-dir", str(out), "--cache-dir", str(cache), "--run-name", "again", env=env
    )
    log = again.stdout + again.stderr
    assert again.returncode == 0 and tracebacks(log) == 0, log[-3000:]
    assert len([line for line in log.splitlines() if "cannot read this persisted result" in line]) == 1, log
    first_rows = {n: verdict(r) for n, r in rows_of(out / "first").items()}
    assert {n: verdict(r) for n, r in rows_of(out / "again").items()} == first_rows
    victim_again = persisted(
        "--data-dir", str(demo_dir), "--output-dir", str(out), "--cache-dir", str(cache), "--run-name", "third", env=env
    )
    assert "cannot read this persisted result" not in victim_again.stdout + victim_again.stderr  # replaced


def test_persisted_results_on_a_full_disk_leave_nothing_unreadable(demo_dir, tmp_path, env):
    out = tmp_path / "out"
    clean = persisted(
        "--data-dir",
        str(demo_dir),
        "--output-dir",
        str(out),
        "--cache-dir",
        str(tmp_path / "c0"),
        "--run-name",
        "clean",
        env=env,
    )
    with tiny_disk(
        tmp_path / "disk", size="24k"
    ) as disk:  # room for the results of one slide or two (small: masks packed, deflated)
        full = persisted(
            "--data-dir",
            str(demo_dir),
            "--output-dir",
            str(out),
            "--cache-dir",
            str(disk),
            "--run-name",
            "full",
            env=env,
        )
        log = full.stdout + full.stderr
        assert full.returncode == 4 and tracebacks(log) == 0, log[-3000:]
        assert f"error: cannot write {disk}/" in full.stderr, full.stderr  # the file on the full disk
        leftovers = [p for p in disk.rglob("*") if p.is_file() and p.suffix != ".pickle"]
        assert leftovers == [], leftovers  # no temporary file stays
        for pickle_file in disk.rglob("*.pickle"):  # whatever was written is whole
            import cloudpickle

            cloudpickle.loads(pickle_file.read_bytes())
        subprocess.run(["mount", "-o", "remount,size=256m", str(disk)], check=True)  # space freed
        after = persisted(
            "--data-dir",
            str(demo_dir),
            "--output-dir",
            str(out),
            "--cache-dir",
            str(disk),
            "--run-name",
            "after",
            env=env,
        )
        log = after.stdout + after.stderr
        assert after.returncode == 0 and "cannot read this persisted result" not in log, log[-3000:]
    assert {n: verdict(r) for n, r in rows_of(out / "after").items()} == {
        n: verdict(r) for n, r in rows_of(out / "clean").items()
    } and clean.returncode == 0


# --- a Dask scheduler that is not there, or cannot import the project --------------------


def test_address_without_a_scheduler(demo_dir, tmp_path, env):
    proc = run(
        "solutions/pipeline_prefect_parallel.py",
        "--data-dir",
        str(demo_dir),
        "--output-dir",
        str(tmp_path / "out"),
        "--address",
        f"tcp://127.0.0.1:{free_port()}",
        env=env,
    )
    assert proc.returncode == 3 and tracebacks(proc.stderr) == 0, proc.stderr
    assert "no Dask scheduler answers" in proc.stderr and "dask scheduler" in proc.stderr
    assert not any((tmp_path / "out").iterdir())  # no empty run folder left behind


def test_address_with_a_worker_that_cannot_import_the_project(demo_dir, tmp_path, env):
    fake = tmp_path / "fake" / "slideqc"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('this worker has no slideqc installed')\n")
    port = free_port()
    bin_dir = Path(PY1).parent
    scheduler = subprocess.Popen(
        [str(bin_dir / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    worker = subprocess.Popen(
        [str(bin_dir / "dask"), "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-dashboard"],
        env={**env, "PYTHONPATH": str(tmp_path / "fake")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Up before the script looks (its own check gives a scheduler 5 s; a busy machine can take longer).
        wait_for_dask(f"tcp://127.0.0.1:{port}", "the scheduler and worker", timeout=120)
        proc = run(
            "solutions/pipeline_prefect_parallel.py",
            "--data-dir",
            str(demo_dir),
            "--output-dir",
            str(tmp_path / "out"),
            "--address",
            f"tcp://127.0.0.1:{port}",
            env=env,
        )
    finally:
        for p in (worker, scheduler):
            p.terminate()
            p.wait(30)
    assert proc.returncode == 3 and tracebacks(proc.stderr) == 0, proc.stderr
    assert "this worker has no slideqc installed" in proc.stderr  # the real cause, not "did not run"


# --- the run folder and results.tsv ------------------------------------------------------


def _claim(base: str, name: str, barrier, wins) -> None:
    barrier.wait()
    try:
        files.create_run_dir(base, name)
        wins.put(1)
    except files.RunExistsError:
        wins.put(0)


def test_two_runs_never_both_get_a_run_name():
    context = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory() as base:
        for round_ in range(40):
            barrier, wins = context.Barrier(2), context.Queue()
            procs = [context.Process(target=_claim, args=(base, f"r{round_}", barrier, wins)) for _ in range(2)]
            for p in procs:
                p.start()
            for p in procs:
                p.join(60)
            assert sorted(wins.get(timeout=10) for _ in procs) == [0, 1], f"round {round_}"


def test_results_tsv_is_faithful_and_safe_to_open(tmp_path):
    names = [
        "plain.svs",
        "a\tb.svs",
        "new\nline.svs",
        '=HYPERLINK("x").svs',
        "+1.svs",
        "-1.svs",
        "@sum.svs",
        "'quoted.svs",
        'say "hi".svs',
        MULLER,
    ]
    rows = [results.SlideResult(file_name=n, error=n) for n in names]
    path = results.write_results(tmp_path, rows)
    back = results.read_results(path)
    assert sorted(r["file_name"] for r in back) == sorted(display_name(n) for n in names)
    import csv

    with open(path, encoding="utf-8", newline="") as handle:  # as a spreadsheet reads it: no formula
        cells = [cell for row in csv.reader(handle, delimiter="\t") for cell in row]
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@"))]


def test_an_unfinished_run_reads_incomplete(tmp_path):
    writer = RunWriter(tmp_path, DEFAULTS, slides=3)
    writer.start()
    writer.add(results.SlideResult(file_name="a.svs", tissue_fraction=0.3, percent_blurry=1.0, rescan=False))
    assert files.read_run_status(tmp_path)["status"] == files.RUNNING
    later = RunWriter(tmp_path, DEFAULTS)  # a flow run on a server: it knows only its own row
    later.rows = list(writer.rows)
    report = later.finish().read_text(encoding="utf-8")
    assert "id='run-status'>incomplete: 1 of 3" in report
    status = files.read_run_status(tmp_path)
    assert {k: status[k] for k in ("status", "slides", "rows")} == {"status": files.RUNNING, "slides": 3, "rows": 1}
    assert status["statuses"] == {"ok": 1, "rescan": 0, "recut": 0, "cannot judge": 0, "error": 0}
    writer.rows += [results.SlideResult(file_name=n) for n in ("b.svs", "c.svs")]
    assert "id='run-status'" not in writer.finish().read_text(encoding="utf-8")
    assert files.read_run_status(tmp_path)["status"] == files.COMPLETE


def test_zz_print_what_the_faults_did():
    """Not a check: the table of faults tried, rows kept and tracebacks printed (pytest -s shows it)."""
    print("\nscript | fault | rows kept | tracebacks | Prefect 3 server tracebacks | processes left")
    for row in STOPPED:
        print(" | ".join(map(str, row)))


def test_the_mapped_flow_survives_its_gathering_task_failing():
    """prefect1.gathered_rows: a failed (or missing) gathering task gives every slide an error row, not a crash."""
    from prefect import Task
    from prefect.engine.state import Failed, Success

    from slideqc import prefect1

    gather = Task(name="write_results")
    names = ["a.svs", MULLER]
    for flow_state in (
        Failed("some reference tasks failed", result={gather: Failed("TypeError: boom", result=TypeError("boom"))}),
        Failed("the executor could not start", result=OSError("no cluster")),
        Success(result={gather: Success(result="not a list")}),
    ):
        rows = prefect1.gathered_rows(flow_state, gather, names)
        assert [r.file_name for r in rows] == ["a.svs", SHOWN]
        assert all(r.failed and "\n" not in r.error and r.error.startswith(r.file_name) for r in rows)
