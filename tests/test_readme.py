"""The README cannot rot: every shell command it shows as runnable offline is run here.

Convention: each line of a ```bash block is a command, run from the project root
(a copy of it). A block right after an HTML comment starting with
``<!-- not run by the tests`` is skipped; the comment says why (it needs Docker,
the network, or it installs software, which `make test` has already done).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from slideqc import synthetic
from tests.helpers import ROOT, truth_status

SKIP_MARK = "<!-- not run by the tests"
CLUSTER_MARK = "<!-- dask-cluster"  # long-running servers: run by test_readme_dask_cluster_commands
SERVER_CHECK_MARK = "<!-- server-check"  # needs a server, or its absence: tests/test_prefect_server.py
POSTGRES_MARK = "<!-- postgres-server"  # PostgreSQL and a Prefect 3 server: prefect3/tests/test_postgres.py
SERVER_COMMANDS_MARK = "<!-- server-commands"  # Prefect 1's server commands and their checks: test_prefect_server.py
NOT_HERE = (SKIP_MARK, CLUSTER_MARK, SERVER_CHECK_MARK, POSTGRES_MARK, SERVER_COMMANDS_MARK)
# Commands run elsewhere: `make test` is this very suite.
ALREADY_RUNNING = {"make test"}
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```bash\n(?P<body>.*?)```", re.S)


def readme_blocks() -> list[tuple[bool, list[str]]]:
    """(runnable, commands) for every bash block of README.md, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = []
    for match in BLOCK.finditer(text):
        before = text[: match.start("body")].rstrip().rsplit("\n", 2)
        runnable = not any(line.strip().startswith(NOT_HERE) for line in before[-2:])
        commands = [line.split(" #")[0].strip() for line in match.group("body").splitlines()]
        blocks.append((runnable, [c for c in commands if c and not c.startswith("#")]))
    return blocks


def test_readme_has_runnable_and_skipped_blocks():
    blocks = readme_blocks()
    assert any(runnable for runnable, _ in blocks)
    assert all(commands for _, commands in blocks)


def _project_copy(dest: Path) -> Path:
    """The project's files (tracked and new, not ignored) copied into ``dest``."""
    listing = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listing:
        source = ROOT / name
        if source.is_file() and not name.startswith(("tests/", "prefect3/tests/")):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def test_readme_commands_run(tmp_path):
    project = _project_copy(tmp_path / "project")
    # `make demo` finds the venv `make test` made already up to date (its stamp is newer
    # than the requirements), so the README's first command runs without reinstalling.
    (project / ".venv").symlink_to(ROOT / ".venv")
    for requirements in [*project.glob("requirements*.txt"), project / "pyproject.toml"]:
        os.utime(requirements, (0, 0))
    # A fresh shell each time, as a new terminal is: the system's PATH, no venv, then what the
    # README says to do in every shell (source .venv/bin/activate), then the command as printed.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if "/.venv" not in p)
    ran = 0
    for runnable, commands in readme_blocks():
        if not runnable:
            continue
        for command in commands:
            if command in ALREADY_RUNNING:
                continue
            shell = command if command.startswith("make ") else f"source .venv/bin/activate && {command}"
            proc = subprocess.run(
                ["bash", "-c", shell], cwd=project, env=env, capture_output=True, text=True, timeout=900
            )
            # diff's exit code 1 means "the files differ": what the lesson diffs show.
            ok = (0, 1) if command.startswith("diff ") else (0,)
            assert proc.returncode in ok, (
                f"README command failed: {command}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            )
            if command.startswith("diff "):
                assert proc.stdout.startswith("---"), f"{command}: no differences shown"
            ran += 1
    assert ran >= 3
    # Every run the README's commands made is whole: its table, its report and its status
    # (`prefect run -p ...` too, which starts a flow run with no run folder of its own).
    runs = [p for p in (project / "output").iterdir() if p.is_dir() and p.name.startswith("run-")]
    assert runs
    for run_dir in runs:
        assert {"results.tsv", "report.html", "run.json"} <= {p.name for p in run_dir.iterdir()}, run_dir


def test_readme_links_exist():
    """Every file or folder the README links to is in the project, the lessons' scripts among them."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", text)}
    local = {t for t in targets if t and not re.match(r"[a-z]+://", t)}
    missing = sorted(t for t in local if not (ROOT / t).exists())
    assert not missing, f"README links to missing files: {missing}"
    lessons = {
        "pipeline.py",
        "pipeline_parallel.py",
        "solutions/pipeline_prefect.py",
        "solutions/pipeline_prefect_parallel.py",
        "solutions/pipeline_prefect_server.py",
        "solutions/pipeline_prefect_parallel_server.py",
        "extras/pipeline_intake.py",
        "PrefectHelloWorld.ipynb",
        "docs/pipeline_overview.png",
        "docs/flow_serial.png",
        "docs/flow_parallel.png",
        "prefect3/qc_flow.py",
        "prefect3/qc_flow_parallel.py",
    }
    assert lessons <= local, f"README does not link {sorted(lessons - local)}"


def cluster_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for match in BLOCK.finditer(text):
        if match.group("before").strip().startswith(CLUSTER_MARK):
            return [line.strip() for line in match.group("body").splitlines() if line.strip()]
    raise AssertionError("README has no dask-cluster block")


def test_readme_dask_cluster_commands(demo_dir, tmp_path):
    """Exercise 4's cluster, as printed: scheduler and worker from the project's venv, no PYTHONPATH.

    The one change: the README's port 8786 becomes a free one, so a cluster already running here
    cannot answer instead. The servers run from another folder, so only the installed project is found.
    """

    from tests.helpers import readme_dask_cluster, run_printed

    scheduler, worker, run = cluster_commands()
    assert scheduler.startswith("dask scheduler --host 127.0.0.1") and worker.startswith("dask worker tcp://127.0.0.1")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with readme_dask_cluster(scheduler, worker, elsewhere) as (port, _):
        out = tmp_path / "out"
        proc = run_printed(run, port, demo_dir, out)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        run_dir = next(out.iterdir())
        rows = (run_dir / "results.tsv").read_text(encoding="utf-8").splitlines()
        assert len(rows) == 1 + len(list(demo_dir.glob("*.svs")))
        statuses = {row.split("\t")[0]: row.split("\t")[1] for row in rows[1:]}
        assert statuses == {p.name: truth_status(synthetic.read_truth(p)) for p in demo_dir.glob("*.svs")}, rows
