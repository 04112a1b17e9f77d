"""Fixtures for the Prefect 3 edition: slides, pipeline.py's results, a real Prefect server.

Every Prefect setting the tests use is set here, before Prefect is imported: a
throwaway PREFECT_HOME (the user's ~/.prefect is never read or written), the
test server's API URL on 127.0.0.1 and a free port, analytics off. Subprocesses
(the scripts, `prefect server start`, the serving process) inherit them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from prefect3.tests.postgres import Postgres
from slideqc import synthetic
from slideqc.output import results

ROOT = Path(__file__).resolve().parents[2]

BIN = Path(sys.executable).parent
CACHE = Path(os.environ.get("SLIDEQC_TEST_CACHE", ROOT / ".pytest_cache" / "slides"))
SERVER_START_SECONDS = 180


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the environment, before anything imports Prefect -----------------------------------

PREFECT_HOME = Path(tempfile.mkdtemp(prefix="slideqc-prefect-home-"))
PORT = _free_port()
API_URL = f"http://127.0.0.1:{PORT}/api"
for _name in [n for n in os.environ if n.startswith("PREFECT_")]:
    del os.environ[_name]  # nothing of the user's Prefect configuration leaks in
os.environ.update(
    {
        "PREFECT_HOME": str(PREFECT_HOME),
        "PREFECT_API_URL": API_URL,
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(PORT),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_UI_ENABLED": "true",
        # This process runs tasks outside flows (tests of the load task) and outlives the server:
        # its logs stay local. The scripts and servers it starts send theirs to the server (CHILD_ENV).
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
    }
)
CHILD_ENV = {**os.environ, "PREFECT_LOGGING_TO_API_ENABLED": "true"}


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(PREFECT_HOME, ignore_errors=True)


# --- processes ----------------------------------------------------------------------------


def start(args: list[str], log: Path, cwd: Path | None = None, env: dict | None = None) -> subprocess.Popen:
    """A background process in its own session (so it and its children stop together), logging to ``log``."""
    handle = open(log, "wb")
    try:
        return subprocess.Popen(
            args,
            cwd=cwd or ROOT,
            env=env or CHILD_ENV,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    finally:
        handle.close()


def stop(proc: subprocess.Popen, grace: float = 20) -> None:
    """Stop a process started by :func:`start`, and its children: SIGTERM, then SIGKILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    try:  # children left in the group (flow run subprocesses, Dask workers)
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:] if log.exists() else ""


def api(method: str, path: str, body: dict | None = None, timeout: float = 30, base: str = API_URL):
    """Call the test server's REST API (or the one at ``base``); returns the decoded JSON (None for 404)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return None
        raise


def wait_until(check, timeout: float, proc: subprocess.Popen, log: Path, what: str):
    """Poll ``check()`` until it returns something truthy; fail early if ``proc`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, urllib.error.URLError):
            value = None
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"{what}: the process exited with {proc.returncode}:\n{tail(log)}")
        time.sleep(0.5)
    pytest.fail(f"{what}: not ready after {timeout:.0f} s:\n{tail(log)}")


def run_script(script: str, *args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """``python <script> <args>`` with the Prefect 3 venv's Python, against the test server (``env``: instead of CHILD_ENV)."""
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args],
        cwd=ROOT,
        env=CHILD_ENV if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def only_run_dir(output_dir: Path) -> Path:
    runs = [p for p in Path(output_dir).iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1, runs
    return runs[0]


def per_slide(rows: list[dict]) -> dict[str, tuple]:
    """file name -> what the QC decided: status, error, tissue, percent blurry, rescan."""
    return {
        r["file_name"]: (r["status"], r["error"], r["tissue_fraction"], r["percent_blurry"], r["rescan"]) for r in rows
    }


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    """The three demo slides (0 %, ~30 %, ~70 % blurred), cached with the main suite's."""
    folder = CACHE / "demo"
    synthetic.write_set(synthetic.demo_specs(3), folder)
    return folder


@pytest.fixture(scope="session")
def data_dir(demo_dir: Path, tmp_path_factory) -> Path:
    """The demo slides and one file that is not a slide: three ok rows and one error row."""
    folder = tmp_path_factory.mktemp("data")
    for slide in sorted(demo_dir.glob("*.svs")):
        shutil.copy2(slide, folder / slide.name)
        shutil.copy2(slide.with_suffix(".truth.json"), folder / f"{slide.stem}.truth.json")
    (folder / "broken.svs").write_text("this is not a slide\n")
    return folder


@pytest.fixture(scope="session")
def reference(data_dir: Path, tmp_path_factory) -> dict:
    """pipeline.py's results on ``data_dir``, run with this venv's Python (it needs only the QC stack)."""
    out = tmp_path_factory.mktemp("reference")
    proc = run_script("pipeline.py", "--data-dir", str(data_dir), "--output-dir", str(out))
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]  # 1: the broken file
    return per_slide(results.read_results(only_run_dir(out) / "results.tsv"))


@contextmanager
def server(port: int, log: Path, env: dict | None = None):
    """`prefect server start` on 127.0.0.1:``port``, stopped on leaving; gives its UI's URL."""
    proc = start([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)], log, env=env)
    base = f"http://127.0.0.1:{port}/api"
    try:
        wait_until(
            lambda: api("GET", "/health", timeout=5, base=base) is True,
            SERVER_START_SECONDS,
            proc,
            log,
            "prefect server start",
        )
        yield base.removesuffix("/api")
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory):
    """`prefect server start` on 127.0.0.1 (SQLite in the throwaway PREFECT_HOME); stopped at the end."""
    with server(PORT, tmp_path_factory.mktemp("server") / "server.log") as url:
        yield url


def read_deployment(flow_name: str, deployment_name: str, base: str = API_URL) -> dict | None:
    quoted = f"{urllib.parse.quote(flow_name)}/{urllib.parse.quote(deployment_name)}"
    return api("GET", f"/deployments/name/{quoted}", timeout=5, base=base)


@contextmanager
def serve(folder: Path, env: dict | None = None, base: str = API_URL):
    """prefect3/serve.py serving both deployments from ``folder``, stopped on leaving."""
    log = folder / "serve.log"
    proc = start([sys.executable, str(ROOT / "prefect3" / "serve.py"), "--limit", "2"], log, cwd=folder, env=env)
    try:
        deployments = {
            name: wait_until(lambda f=flow, n=name: read_deployment(f, n, base), 120, proc, log, "prefect3/serve.py")
            for flow, name in (("Image QC", "qc-slide"), ("Image QC (mapped)", "qc-batch"))
        }
        yield {"deployment": deployments["qc-slide"], "batch": deployments["qc-batch"], "log": log, "proc": proc}
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def served_deployment(prefect_server, tmp_path_factory) -> dict:
    """prefect3/serve.py serving "Image QC/qc-slide" and "Image QC (mapped)/qc-batch"; stopped before the server."""
    with serve(tmp_path_factory.mktemp("serve")) as served:
        yield served


# --- PostgreSQL ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def postgres():
    """A throwaway PostgreSQL on 127.0.0.1 (tests/postgres.py). Not installed, this errors: never a skip."""
    with Postgres(_free_port()) as database:
        yield database


def server_env(port: int, database_url: str) -> dict:
    """The environment of another Prefect server, on 127.0.0.1:``port`` and that database, and of its clients."""
    return {
        **CHILD_ENV,
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
    }


@pytest.fixture(scope="module")
def postgres_env(postgres) -> dict:
    """The environment of a second Prefect server, on ``postgres``, and of the scripts that use it."""
    return server_env(_free_port(), postgres.url)


@pytest.fixture(scope="module")
def postgres_served(postgres_env, tmp_path_factory) -> dict:
    """`prefect server start` on PostgreSQL and serve.py serving to it; both stopped at the module's end."""
    folder = tmp_path_factory.mktemp("postgres-server")
    base = postgres_env["PREFECT_API_URL"]
    port = int(postgres_env["PREFECT_SERVER_API_PORT"])
    with server(port, folder / "server.log", postgres_env) as url, serve(folder, postgres_env, base) as served:
        yield {**served, "url": url, "server_log": folder / "server.log"}
