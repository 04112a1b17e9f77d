"""Exercises 2 and 5: the flows registered to a Prefect server, everything short of a real server.

A Prefect 1 server runs in Docker, which the test machines do not have. So:
the scripts talk to a small GraphQL server (tests/fake_prefect_server.py) that
answers the operations Prefect's Client sends and records them; the registered
flow is loaded back with Prefect's own schema; and what the agent would do, load
the flow from its storage in a process of its own (another folder, no
PYTHONPATH: the installed project is all it has) and run it with each flow
run's parameters, is done here, and must give pipeline.py's results.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.run_configs import UniversalRun
from prefect.serialization.flow import FlowSchema
from prefect.storage import Local

from slideqc.output import results
from tests import test_prefect_flows
from tests.fake_prefect_server import FakePrefectServer
from tests.helpers import free_port, only_run_dir, per_slide, run_script

SERIAL = "solutions/pipeline_prefect_server.py"
PARALLEL = "solutions/pipeline_prefect_parallel_server.py"
ROWS = "extras/pipeline_prefect_server_rows.py"
QC_PARAMETERS = dict(
    image_work_size="1.25x",
    artefact_work_size="1.25x",
    blur_work_size="10x",
    blur_radius=7.0,
    blur_threshold=0.05,
    blur_max=0.05,
    fold_max=0.1,
)
TILE_THREADS = max(1, (os.cpu_count() or 1))  # the serial scripts' default: every core for one slide
reference = test_prefect_flows.reference  # the fixture: pipeline.py's results on the demo slides
# What the agent's flow-run process does, short of reporting to the server: get the flow
# from the storage the server holds, and run it with the flow run's parameters.
AGENT = """
import json, sys
from prefect.serialization.storage import StorageSchema
spec = json.loads(sys.argv[1])
flow = StorageSchema().load(spec["storage"]).get_flow(spec["flow_name"])
executor = flow.executor
print(json.dumps(dict(slugs=sorted(flow.slugs.values()), executor=type(executor).__name__,
                      scheduler=getattr(executor, "scheduler", None),
                      workers=getattr(executor, "dask_config", {}).get("num_workers"))))
sys.stdout.flush()
state = flow.run(parameters=spec["parameters"])
assert state.is_successful() or spec["may_fail"], state
"""


def prefect_env(tmp_path: Path, endpoint: str, backend: str = "server") -> dict:
    """A throwaway Prefect home that talks to ``endpoint``: nothing touches the real ~/.prefect."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return {
        "HOME": str(home),
        "PREFECT__HOME_DIR": str(home / ".prefect"),
        "PREFECT__BACKEND_CONFIG_PATH": str(home / ".prefect" / "backend.toml"),
        "PREFECT__BACKEND": backend,
        "PREFECT__SERVER__ENDPOINT": endpoint,
    }


def submit(
    script: str, fake: FakePrefectServer, tmp_path: Path, *args: str, endpoint: str | None = None
) -> subprocess.CompletedProcess:
    proc = run_script(
        script,
        "--output-dir",
        str(tmp_path / "out"),
        *args,
        env=prefect_env(tmp_path, endpoint or fake.url),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert fake.unknown == []
    return proc


def registered(fake: FakePrefectServer) -> tuple[str, dict]:
    """The one flow registered to the fake server: its id and whole serialized form."""
    assert len(fake.flows) == 1
    flow_id = next(iter(fake.flows))
    return flow_id, fake.registered_flow(flow_id)


def check_registered_flow(serialized: dict, name: str, parameters: set, edges: set, home: Path) -> None:
    """The flow as the server got it, loaded back with Prefect's own schema."""
    flow = FlowSchema().load(serialized)
    assert flow.name == name
    assert {p.name for p in flow.parameters()} == parameters
    names = {t.name for t in flow.tasks}
    got_edges = {(e.upstream_task.name, e.downstream_task.name) for e in flow.edges}
    assert edges <= got_edges, edges - got_edges
    assert names >= {a for a, _ in edges} | {b for _, b in edges}
    # Storage: Prefect's default, the flow pickled (executor included) into Prefect's home on this machine.
    assert isinstance(flow.storage, Local) and not flow.storage.stored_as_script
    [location] = flow.storage.flows.values()
    assert Path(location).is_file() and Path(location).is_relative_to(home / ".prefect" / "flows")
    # Labels: this machine's hostname, which `prefect agent local start` here has too.
    assert isinstance(flow.run_config, UniversalRun)
    assert flow.run_config.labels == {socket.gethostname()}


def run_as_agent(serialized: dict, parameters: dict, tmp_path: Path, may_fail: bool = False) -> subprocess.Popen:
    """Start what `prefect agent local start` starts for a flow run: a process in another folder, without
    the tests' PYTHONPATH, which loads the flow from its storage and runs it."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(prefect_env(tmp_path, "http://127.0.0.1:9"))  # the flow run itself needs no server here
    spec = dict(storage=serialized["storage"], flow_name=serialized["name"], parameters=parameters, may_fail=may_fail)
    elsewhere = tmp_path / "agent"
    elsewhere.mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-c", AGENT, json.dumps(spec)],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> dict:
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stdout[-2000:] + stderr[-3000:]
    return json.loads(stdout.splitlines()[0])


SERIAL_EDGES = {
    ("load_image", "tissue_segmentation_simple"),
    ("tissue_segmentation_simple", "find_artefacts"),
    ("find_artefacts", "identify_blurry_regions"),
    ("identify_blurry_regions", "is_blurry"),
    ("is_blurry", "case(True)"),
    ("case(True)", "warn_rescan"),
    ("warn_rescan", "save_results"),
}
SERIAL_PARAMETERS = {"file_name", "run_dir", "tile_threads", *QC_PARAMETERS}


def check_serial_submission(fake, proc, tmp_path, demo_slides) -> tuple[str, dict, Path]:
    """The calls: the project made (or found), the flow registered to it, a flow run per slide."""
    assert fake.operations()[0] == "hello"  # the quick check that a server answers
    assert [r["variables"]["input"]["name"] for r in fake.requests if r["operation"] == "create_project"] == [
        "Image QC"
    ]
    flow_id, serialized = registered(fake)
    assert fake.flows[flow_id]["project_id"] == fake.projects["Image QC"]
    run_dir = only_run_dir(tmp_path / "out")
    assert [run["flow_run_name"] for run in fake.flow_runs] == [f"{run_dir.name}/{p.name}" for p in demo_slides]
    assert [run["flow_id"] for run in fake.flow_runs] == [flow_id] * len(demo_slides)
    for run, slide in zip(fake.flow_runs, demo_slides, strict=True):
        assert run["parameters"] == dict(
            file_name=str(slide), run_dir=str(run_dir), tile_threads=TILE_THREADS, **QC_PARAMETERS
        )
    # What the user sees: the flow's URL, each run's id and URL.
    group = fake.flows[flow_id]["flow_group_id"]
    assert f"Flow URL: http://localhost:8080/default/flow/{group}" in proc.stdout
    for run in fake.flow_runs:
        assert f"flow run {run['id']}" in proc.stdout
        assert f"http://localhost:8080/default/flow-run/{run['id']}" in proc.stdout
    return flow_id, serialized, run_dir


def test_serial_flow_a_run_per_slide(demo_dir, demo_slides, tmp_path):
    with FakePrefectServer() as fake:
        proc = submit(SERIAL, fake, tmp_path, "--data-dir", str(demo_dir))
    _, serialized, run_dir = check_serial_submission(fake, proc, tmp_path, demo_slides)
    check_registered_flow(serialized, "Image QC", SERIAL_PARAMETERS, SERIAL_EDGES, tmp_path / "home")

    # The agent: it starts every flow run at once, each in its own process.
    agents = [run_as_agent(serialized, run["parameters"], tmp_path) for run in fake.flow_runs]
    for flow in [finish(agent) for agent in agents]:  # the flow has the tasks the server knows, slug for slug
        assert flow["slugs"] == sorted(t["slug"] for t in serialized["tasks"])
        assert flow["executor"] == "NoneType"  # none set: Prefect's default, one task at a time
    for slide in demo_slides:  # each run wrote its slide's pictures into the one run folder
        assert (run_dir / "slides" / slide.stem / "overlay.png").is_file()


def test_extra_a_row_per_server_run(demo_dir, demo_slides, tmp_path, reference):
    """extras/pipeline_prefect_server_rows.py: every run adds its slide's row to results.tsv, together."""
    with FakePrefectServer(projects=("Image QC",)) as fake:  # the project exists: create_project finds it
        proc = submit(ROWS, fake, tmp_path, "--data-dir", str(demo_dir))
    _, serialized, run_dir = check_serial_submission(fake, proc, tmp_path, demo_slides)
    check_registered_flow(
        serialized, "Image QC", SERIAL_PARAMETERS, SERIAL_EDGES | {("save_results", "save_row")}, tmp_path / "home"
    )
    agents = [run_as_agent(serialized, run["parameters"], tmp_path) for run in fake.flow_runs]
    for agent in agents:
        finish(agent)
    rows = results.read_results(run_dir / "results.tsv")
    assert per_slide(rows) == reference  # every run's row, though they finished together
    for row in rows:
        assert (run_dir / row["outputs"] / "overlay.png").is_file()
    assert (run_dir / "report.html").is_file()


def test_parallel_flow_one_run_with_its_executor(demo_dir, demo_slides, tmp_path, reference):
    with FakePrefectServer(projects=("Image QC",)) as fake:
        proc = submit(PARALLEL, fake, tmp_path, "--data-dir", str(demo_dir), "--executor", "threads", "--workers", "2")

    flow_id, serialized = registered(fake)
    assert fake.flows[flow_id]["project_id"] == fake.projects["Image QC"]
    run_dir = only_run_dir(tmp_path / "out")
    [run] = fake.flow_runs
    assert run["flow_run_name"] == f"{run_dir.name} (3 slides)"
    assert run["parameters"] == dict(
        file_names=[str(p) for p in demo_slides],
        run_dir=str(run_dir),
        tile_threads=max(1, TILE_THREADS // 2),
        **QC_PARAMETERS,
    )
    assert f"flow run {run['id']}: 3 slide(s) on LocalDaskExecutor" in proc.stdout

    check_registered_flow(
        serialized,
        "Image QC parallel",
        {"file_names", "run_dir", "tile_threads", *QC_PARAMETERS},
        {
            ("file_names", "load_image"),
            ("load_image", "tissue_segmentation_simple"),
            ("tissue_segmentation_simple", "find_artefacts"),
            ("find_artefacts", "identify_blurry_regions"),
            ("identify_blurry_regions", "is_blurry"),
            ("save_results", "write_results"),
        },
        tmp_path / "home",
    )
    mapped = {
        (e["upstream_task"]["slug"].rsplit("-", 1)[0], e["downstream_task"]["slug"].rsplit("-", 1)[0])
        for e in serialized["edges"]
        if e["mapped"]
    }
    assert ("file_names", "load_image") in mapped and ("load_image", "tissue_segmentation_simple") in mapped

    flow = finish(agent := run_as_agent(serialized, run["parameters"], tmp_path))
    assert agent.returncode == 0
    # The agent's run is parallel: the flow it loads carries the executor set before registering.
    assert (flow["executor"], flow["scheduler"], flow["workers"]) == ("LocalDaskExecutor", "threads", 2)
    assert flow["slugs"] == sorted(t["slug"] for t in serialized["tasks"])
    rows = results.read_results(run_dir / "results.tsv")
    assert per_slide(rows) == reference
    assert (run_dir / "report.html").is_file()


def test_a_failed_slide_gets_its_error_row(demo_copy, tmp_path):
    (demo_copy / "corrupt.svs").write_bytes(b"II*\x00" + os.urandom(5000))
    with FakePrefectServer() as fake:
        submit(
            ROWS,
            fake,
            tmp_path,
            "--data-dir",
            str(demo_copy),
            "--files",
            str(demo_copy / "corrupt.svs"),
            str(demo_copy / "synthetic_01_blur00.svs"),
        )
    _, serialized = registered(fake)
    for agent in [run_as_agent(serialized, run["parameters"], tmp_path, may_fail=True) for run in fake.flow_runs]:
        finish(agent)
    rows = {r["file_name"]: r for r in results.read_results(only_run_dir(tmp_path / "out") / "results.tsv")}
    assert rows["corrupt.svs"]["status"] == "error" and "corrupt.svs" in rows["corrupt.svs"]["error"]
    assert rows["synthetic_01_blur00.svs"]["status"] == "ok"  # sharp: passed


@pytest.mark.parametrize("script", [SERIAL, PARALLEL])
def test_no_server_a_clear_message_at_once(script, demo_dir, tmp_path):
    endpoint = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    proc = run_script(
        script,
        "--data-dir",
        str(demo_dir),
        "--output-dir",
        str(tmp_path / "out"),
        env=prefect_env(tmp_path, endpoint),
        timeout=30,
    )
    assert time.monotonic() - started < 10
    assert proc.returncode == 3
    assert f"no Prefect server answers at {endpoint}" in proc.stderr
    for command in ("prefect backend server", "prefect server start", "prefect agent local start"):
        assert command in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def test_something_else_answering_is_not_a_server(demo_dir, tmp_path):
    import http.server
    import threading

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{httpd.server_address[1]}"
        proc = run_script(
            SERIAL,
            "--data-dir",
            str(demo_dir),
            "--output-dir",
            str(tmp_path / "out"),
            env=prefect_env(tmp_path, endpoint),
            timeout=30,
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert proc.returncode == 3
    assert f"something answers at {endpoint}, but not a Prefect server's API" in proc.stderr
    assert "prefect server start" in proc.stderr and "Traceback" not in proc.stderr


def test_backend_not_server(demo_dir, tmp_path):
    proc = run_script(
        SERIAL,
        "--data-dir",
        str(demo_dir),
        "--output-dir",
        str(tmp_path / "out"),
        env=prefect_env(tmp_path, "http://127.0.0.1:9", backend="cloud"),
        timeout=30,
    )
    assert proc.returncode == 3
    assert "backend is 'cloud', not 'server'" in proc.stderr and "prefect backend server" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_invalid_usage_before_the_server(tmp_path):
    proc = run_script(
        PARALLEL, "--data-dir", str(tmp_path / "missing"), env=prefect_env(tmp_path, "http://127.0.0.1:9"), timeout=30
    )
    assert proc.returncode == 2 and "--data-dir" in proc.stderr


def test_same_command_line_as_the_other_scripts():
    for script in (SERIAL, PARALLEL, ROWS):
        proc = run_script(script, "--help")
        assert proc.returncode == 0, proc.stderr
        for flag in [
            "--data-dir",
            "--files",
            "--image-work-size",
            "--blur-work-size",
            "--blur-radius",
            "--blur-threshold",
            "--blur-max",
            "--output-dir",
            "--run-name",
            "--tile-threads",
        ]:
            assert flag in proc.stdout, (script, flag)
    assert "--executor" in run_script(PARALLEL, "--help").stdout


def server_check_command() -> str:
    """The README's server check, as printed (the block after its ``server-check`` mark)."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    block = text.split("<!-- server-check", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    (command,) = [line.strip() for line in block.splitlines() if line.strip()]
    return command


def test_readme_server_check_answers_in_seconds(tmp_path):
    """No server: exit 3 in seconds with the commands to start one; the fake server: exit 0 with its address."""
    command = server_check_command()
    assert command == "python -m slideqc.prefect1 --check-server"
    env = prefect_env(tmp_path, f"http://127.0.0.1:{free_port()}")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    started = time.monotonic()
    proc = subprocess.run(["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 5 + 3  # the check's 3 s at most, and Python's start-up
    assert proc.returncode == 3 and "no Prefect server answers" in proc.stderr and "Traceback" not in proc.stderr
    assert "prefect server start" in proc.stderr
    with FakePrefectServer() as server:
        env = prefect_env(tmp_path, server.url)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
        proc = subprocess.run(
            ["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"a Prefect server answers at {server.url}"


def server_commands() -> list[str]:
    """The README's Prefect 1 server commands, as printed (the blocks after its ``server-commands`` marks)."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    commands = []
    for part in text.split("<!-- server-commands")[1:]:
        block = part.split("```bash\n", 1)[1].split("```", 1)[0]
        commands += [line.strip() for line in block.splitlines() if line.strip()]
    return commands


def fake_docker(folder: Path) -> Path:
    """A docker and a docker-compose that answer as an installed, running Docker does (``docker info``)."""
    folder.mkdir()
    (folder / "docker").write_text('#!/bin/sh\n[ "$1" = info ] && echo 27.3.1\n')
    (folder / "docker-compose").write_text("#!/bin/sh\nexit 0\n")
    for program in folder.iterdir():
        program.chmod(0o755)
    return folder


def test_readme_server_commands_stop_in_seconds_in_one_line_without_docker_or_server(tmp_path):
    commands = server_commands()
    assert commands == [
        "python -m slideqc.prefect1 --check-docker",
        "prefect backend server",
        "python -m slideqc.prefect1 --check-docker && prefect server start",
        'python -m slideqc.prefect1 --check-server && prefect create project "Image QC"',
        "python -m slideqc.prefect1 --check-server && prefect agent local start",
    ]
    env = prefect_env(tmp_path, f"http://127.0.0.1:{free_port()}")
    env["PATH"] = str(Path(sys.executable).parent)  # the venv alone: no docker, no docker-compose
    for command in commands:
        started = time.monotonic()
        proc = subprocess.run(
            ["/bin/bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
        took = time.monotonic() - started
        if command == "prefect backend server":  # a local setting: it needs neither
            assert proc.returncode == 0, proc.stderr
            continue
        assert proc.returncode == 3, (command, proc.stdout, proc.stderr)
        assert took < 5 + 5, (command, took)  # the check's 3 or 5 s at most, and Python's start-up
        assert "Traceback" not in proc.stderr and proc.stdout == "", (command, proc.stderr)
        if "--check-docker" in command:
            assert proc.stderr.count("\n") == 1, proc.stderr  # one line
            assert "cannot run the Prefect 1 server: neither docker nor docker-compose is installed" in proc.stderr
            assert "Prefect 3 server" in proc.stderr
        else:
            assert "no Prefect server answers" in proc.stderr


def test_the_docker_check_passes_with_docker_and_fails_with_a_stopped_engine(tmp_path):
    folder = fake_docker(tmp_path / "bin")
    env = {**os.environ, "PATH": f"{folder}{os.pathsep}{Path(sys.executable).parent}"}
    check = ["/bin/bash", "-c", "python -m slideqc.prefect1 --check-docker"]
    proc = subprocess.run(check, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (
        proc.stdout.strip() == "this machine can run the Prefect 1 server: Docker engine 27.3.1, docker-compose found"
    )
    (folder / "docker").write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    proc = subprocess.run(check, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 3 and proc.stderr.count("\n") == 1, proc.stderr
    assert "the Docker engine is not running (docker info: Cannot connect to the Docker daemon)" in proc.stderr
