"""Small helpers the tests share: running a script as a user would."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_script(
    script: str, *args: str, timeout: float = 600, cwd: Path | None = None, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``python <script> <args>`` from the project root; capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def only_run_dir(output_dir: Path) -> Path:
    """The one run folder in ``output_dir`` (hidden folders such as the Prefect cache aside)."""
    runs = [p for p in Path(output_dir).iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1, runs
    return runs[0]


def load_solution(name: str):
    """A lesson as a module: ``pipeline_prefect`` (solutions/) or a path such as ``extras/x.py``."""
    import importlib.util

    path = ROOT / (name if name.endswith(".py") else f"solutions/{name}.py")
    spec = importlib.util.spec_from_file_location(f"lesson_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_dask(address: str, what: str, timeout: float = 60, workers: int = 1) -> None:
    """Wait until the Dask scheduler at ``address`` answers and ``workers`` have joined it.

    Fails the test, naming ``what`` did not come up, after ``timeout`` seconds of a scheduler
    not answering (a busy machine can take a while to start one).
    """
    import time

    from distributed import Client

    deadline = time.monotonic() + timeout
    while True:
        try:
            with Client(address, timeout=5) as client:
                client.wait_for_workers(workers, timeout=60)
            return
        except OSError:
            assert time.monotonic() < deadline, f"{what} did not come up"
            time.sleep(0.5)


def venv_env() -> dict[str, str]:
    """The environment of a user with the project's venv active: its bin first on PATH, no PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return env


@contextlib.contextmanager
def readme_dask_cluster(scheduler: str, worker: str, folder: Path) -> Iterator[tuple[str, str]]:
    """The README's `dask scheduler` and `dask worker` commands, run from ``folder`` on a free port for 8786.

    Yields (port, address) once the worker has joined; both are stopped at the end.
    """
    port = str(free_port())
    servers = []
    try:
        for command in (scheduler, worker):
            servers.append(
                subprocess.Popen(
                    ["bash", "-c", "exec " + command.replace("8786", port)],
                    cwd=folder,
                    env=venv_env(),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        address = f"tcp://127.0.0.1:{port}"
        wait_for_dask(address, "the README's scheduler and worker", timeout=60)
        yield port, address
    finally:
        for server in reversed(servers):
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()


def run_printed(command: str, port: str, data_dir: Path, output_dir: Path) -> subprocess.CompletedProcess:
    """A README command as printed, from the project root with the venv active: on ``port`` for 8786,
    on ``data_dir`` for data, its run folder in ``output_dir``."""
    command = command.replace("8786", port).replace("--data-dir data", f"--data-dir {data_dir}")
    return subprocess.run(
        ["bash", "-c", f"{command} --output-dir {output_dir}"],
        cwd=ROOT,
        env=venv_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def per_slide(rows: list[dict]) -> dict[str, tuple]:
    """file name -> (status, percent blurry, rescan) from results.tsv rows."""
    return {r["file_name"]: (r["status"], r["percent_blurry"], r["rescan"]) for r in rows}


def truth_status(truth, blur_max_percent: float = 5.0) -> str:
    """The status a judged slide should get from its truth: the README's rule at the default limit (5 %)."""
    return "rescan" if truth.percent_blurry > blur_max_percent else "ok"
