"""Small helpers the tests share: running a script as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
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


def per_slide(rows: list[dict]) -> dict[str, tuple]:
    """file name -> (status, percent blurry, rescan) from results.tsv rows."""
    return {r["file_name"]: (r["status"], r["percent_blurry"], r["rescan"]) for r in rows}


def truth_status(truth, blur_max_percent: float = 5.0) -> str:
    """The status a judged slide should get from its truth: the README's rule at the default limit (5 %)."""
    return "rescan" if truth.percent_blurry > blur_max_percent else "ok"
