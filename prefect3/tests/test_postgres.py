"""The server path on PostgreSQL, for real: initdb, pg_ctl, `prefect server start` on it, serve.py, a batch.

PostgreSQL comes from Debian's `postgresql` package (tools/system_deps.sh installs it for
`make test`); without it these tests error, they are never skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from prefect3.tests.conftest import (
    BIN,
    ROOT,
    SERVER_START_SECONDS,
    _free_port,
    api,
    run_script,
    server,
    server_env,
    start,
    stop,
    tail,
    wait_until,
)
from prefect3.tests.postgres import Postgres, bin_dir
from prefect3.tests.test_server import drive
from slideqc import synthetic
from slideqc.output import results


@pytest.fixture(scope="module")
def postgres_batch(postgres_served, postgres_env, data_dir, tmp_path_factory) -> dict:
    """The four files of ``data_dir`` in two batch runs on the PostgreSQL server."""
    runs = drive(
        postgres_served["batch"],
        data_dir,
        tmp_path_factory.mktemp("postgres-out"),
        "--batch-size",
        "2",
        env=postgres_env,
        base=postgres_env["PREFECT_API_URL"],
    )
    return {**postgres_served, **runs}


def test_batch_on_postgres_matches_the_truth(postgres_batch, data_dir):
    proc = postgres_batch["proc"]
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:] + tail(postgres_batch["log"])
    [run_dir] = [p for p in postgres_batch["out"].iterdir() if p.is_dir()]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"
    rows = {row["file_name"]: row for row in results.read_results(run_dir / "results.tsv")}
    assert rows["broken.svs"]["status"] == "error" and "not a slide" in rows["broken.svs"]["error"]
    slides = sorted(data_dir.glob("synthetic_*.svs"))
    assert sorted(rows) == ["broken.svs", *(p.name for p in slides)]
    for slide in slides:
        truth = synthetic.read_truth(slide)
        row = rows[slide.name]
        assert row["status"] in results.JUDGED, row
        assert float(row["percent_blurry"]) == pytest.approx(truth.percent_blurry, abs=5), slide.name
        assert row["rescan"] == ("true" if truth.percent_blurry > 5 else "false")


def test_runs_are_in_postgres(postgres_batch, postgres):
    runs = {run["name"]: run["state"]["type"] for run in postgres_batch["flow_runs"]}
    assert runs == {"qc-batch-1-of-2": "COMPLETED", "qc-batch-2-of-2": "COMPLETED"}
    # The server's rows are PostgreSQL's: read them back with psql.
    names = postgres.query("SELECT name FROM flow_run ORDER BY name").split()
    assert names == ["qc-batch-1-of-2", "qc-batch-2-of-2"]
    log = postgres_batch["server_log"].read_text(errors="replace")
    assert " ERROR " not in log and "Traceback" not in log, log[-3000:]


def test_database_down_is_one_line(tmp_path, data_dir):
    """A server whose PostgreSQL stopped: the driver says so in one line, exit code 3, nothing written."""
    database = Postgres(_free_port()).start()
    try:
        port = _free_port()
        env = server_env(port, database.url)
        with server(port, tmp_path / "server.log", env):
            database.stop()
            proc = run_script(
                "prefect3/run_deployments.py",
                "--data-dir",
                str(data_dir),
                "--output-dir",
                str(tmp_path / "out"),
                env=env,
            )
    finally:
        database.stop()
    assert proc.returncode == 3, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: the Prefect server at ") and "cannot reach its database" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_api_lists_the_batches(postgres_batch):
    base = postgres_batch["url"] + "/api"
    deployments = api("POST", "/deployments/filter", {}, base=base)
    assert {d["name"] for d in deployments} == {"qc-slide", "qc-batch"}


def readme_postgres_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"\n<!-- postgres-server[^\n]*\n```bash\n(.*?)```", text, re.S)
    assert match, "README has no postgres-server block"
    return [line.strip() for line in match.group(1).splitlines() if line.strip()]


def test_readme_postgres_commands_as_printed():
    """The README's commands, as printed but for a throwaway HOME and free ports: a server on PostgreSQL.

    As root, the PostgreSQL lines run as the `postgres` user (PostgreSQL refuses root) in a HOME it
    owns under /tmp, and the exported URL is handed to `prefect server start`, run as root (the
    postgres user cannot reach this venv's Python, under /root).
    """
    *setup, start_server = readme_postgres_commands()
    assert start_server.startswith("prefect server start") and setup[0].startswith("export PATH=")
    home = Path(tempfile.mkdtemp(prefix="slideqc-readme-postgres-"))
    db_port, port = _free_port(), _free_port()
    script = "\n".join(["set -e", *setup, 'printf "\\nURL=%s\\n" "$PREFECT_API_DATABASE_CONNECTION_URL"'])
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(home, "postgres", "postgres")
    env = {
        **server_env(port, ""),
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "PREFECT_HOME": str(home / "prefect-home"),
    }
    log = Path(tempfile.mkdtemp(prefix="slideqc-readme-postgres-log-")) / "server.log"
    proc = None
    try:
        setup_run = subprocess.run(
            [*as_user, "env", f"HOME={home}", "bash", "-c", script.replace("5432", str(db_port))],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert setup_run.returncode == 0, setup_run.stdout[-2000:] + setup_run.stderr[-2000:]
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = setup_run.stdout.rsplit("\nURL=", 1)[1].strip()
        assert env["PREFECT_API_DATABASE_CONNECTION_URL"].startswith("postgresql+asyncpg://prefect:choose-a-password@")
        proc = start(["bash", "-c", "exec " + start_server.replace("4200", str(port))], log, cwd=home, env=env)
        base = env["PREFECT_API_URL"]
        wait_until(
            lambda: api("GET", "/ready", timeout=5, base=base) == {"message": "OK"},
            SERVER_START_SECONDS,
            proc,
            log,
            "the README's PostgreSQL commands",
        )
        # The server's tables are in that PostgreSQL, reached with the README's password.
        password = (home / ".prefect-db-password").read_text().strip()
        psql = subprocess.run(
            [
                str(bin_dir() / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(db_port),
                "-U",
                "prefect",
                "-d",
                "prefect",
                "-At",
                "-c",
                "SELECT count(*) FROM deployment",
            ],
            env={**os.environ, "PGPASSWORD": password},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert psql.returncode == 0 and psql.stdout.strip() == "0", psql.stderr
        assert not (home / "prefect-home" / "prefect.db").exists()  # no SQLite beside it
        assert " ERROR " not in tail(log, 100_000), tail(log)
    finally:
        if proc is not None:
            stop(proc)
        subprocess.run(
            [*as_user, str(bin_dir() / "pg_ctl"), "--pgdata", str(home / "prefect-db"), "--mode", "fast", "stop"],
            capture_output=True,
            timeout=60,
        )
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(log.parent, ignore_errors=True)
