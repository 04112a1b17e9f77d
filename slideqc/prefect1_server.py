"""What the two server solutions share (exercises 2 and 5): talking to a Prefect 1 server.

- a quick check that a server answers, and one clear message when none does;
- the project, created when missing;
- storage and a run config with which `prefect agent local start` on this
  machine picks the flow runs up and can import BaseImage and slideqc;
- for the serial flow, one results row per flow run, merged into results.tsv.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import prefect
from prefect import task
from prefect.run_configs import LocalRun
from prefect.storage import Local
from prefect.triggers import all_finished

from slideqc import cli, results
from slideqc.qc import QCParams

ROOT = Path(__file__).resolve().parents[1]
PROJECT = "Image QC"
EXIT_NO_SERVER = 3
ROWS_DIRNAME = ".rows"  # in the run folder: one row per slide, written by its flow run
SERVER_COMMANDS = """\
Start a Prefect server (it needs Docker with docker compose), then run this again:
    prefect backend server        # once: talk to a local server, not Prefect Cloud
    prefect server start          # leave it running; the UI is at http://localhost:8080
    prefect agent local start     # in another terminal: it runs the flow runs"""


class NoServer(Exception):
    """No Prefect server answers: reported in one message, exit code 3."""


def add_server_arguments(parser) -> None:
    group = parser.add_argument_group("Prefect server")
    group.add_argument("--project", default=PROJECT, help="the server project to register the flow to")
    group.add_argument("--server-url", help="the server's API (default: Prefect's config, "
                       "server.endpoint, normally http://localhost:4200)")
    group.add_argument("--labels", nargs="+", default=[], metavar="LABEL",
                       help="extra labels for the flow runs; start the agent with the same: -l LABEL")


@contextlib.contextmanager
def submission(args):
    """Check the arguments, then the server (see ``server``), then make the run folder.

    Yields the QC parameters, the slides, the run folder's writer and the folder
    the steps' results persist in: absolute, since the agent's flow runs start elsewhere.
    """
    from slideqc.prefect1 import clear_cache, default_cache_dir

    cli.params_from_args(args)  # invalid usage is reported before the server is asked
    cli.slide_paths(args)
    with server(args.server_url):
        params, file_names, writer = cli.start_run(args)
        cache = Path(args.cache_dir or default_cache_dir(args.output_dir)).resolve()
        if args.redo:
            clear_cache(cache, file_names, params.as_dict())
        yield params, file_names, writer, cache


@contextlib.contextmanager
def server(url: str | None = None, timeout: float = 3.0):
    """Use the Prefect server at ``url`` (or the configured one) after checking that it answers.

    Raises NoServer, with what to do, when the backend is not a server or
    nothing answers within ``timeout`` seconds. Prefect's own client would
    retry for a minute or more before failing with a traceback.
    """
    if prefect.config.backend != "server":
        raise NoServer(f"Prefect's backend is {prefect.config.backend!r}, not 'server'.\n{SERVER_COMMANDS}")
    url = (url or prefect.config.cloud.api).rstrip("/")
    overrides = {"cloud.api": url, "cloud.graphql": f"{url}/graphql", "server.endpoint": url}
    check_server(url, timeout)
    import requests

    with prefect.utilities.configuration.set_temporary_config(overrides):
        try:
            yield url
        except requests.RequestException as error:  # the server went away half-way
            raise NoServer(f"the Prefect server at {url} stopped answering ({type(error).__name__}).\n"
                           f"{SERVER_COMMANDS}") from None


def check_server(url: str, timeout: float = 3.0) -> None:
    """Ask the server's API ``query { hello }`` (as `prefect server start` does); NoServer if it does not answer."""
    import requests

    try:
        response = requests.post(url, json={"query": "query { hello }"}, timeout=timeout)
    except requests.Timeout:
        raise NoServer(f"no Prefect server answers at {url} (no answer in {timeout:g} s).\n"
                       f"{SERVER_COMMANDS}") from None
    except requests.ConnectionError:
        raise NoServer(f"no Prefect server answers at {url} (cannot connect).\n{SERVER_COMMANDS}") from None
    except requests.RequestException as error:
        raise NoServer(f"{url} is not an address a Prefect server can have ({error}).\n"
                       f"{SERVER_COMMANDS}") from None
    try:
        answer = response.json()
        if "hello" not in (answer.get("data") or {}):
            raise ValueError(answer)
    except (ValueError, AttributeError):
        raise NoServer(f"something answers at {url}, but not a Prefect server's API "
                       f"(HTTP {response.status_code}).\n{SERVER_COMMANDS}") from None


def ensure_project(client: prefect.Client, name: str) -> str:
    """The id of the project ``name``, created when missing (as `prefect create project` would)."""
    query = {"query": {prefect.utilities.graphql.with_args("project", {"where": {"name": {"_eq": name}}}): {"id"}}}
    found = client.graphql(query).data.project
    if found:
        return found[0].id
    print(f"creating the project {name!r}")
    return client.create_project(project_name=name)


def set_agent_storage(flow: prefect.Flow, script: str | Path, labels: list[str] = (), env: dict | None = None):
    """Storage and run config for `prefect agent local start` on this machine.

    The flow stays in its script: the agent's flow-run process runs ``script``
    again to get it (so the executor set there at import is the one used). Local
    storage labels the flow with this machine's hostname, which every local
    agent here has too; ``labels`` are extra ones the agent must be started with.
    The flow run starts in the project folder with it on its PYTHONPATH, so it
    imports BaseImage and slideqc whatever folder the agent was started in.
    """
    flow.storage = Local(path=str(Path(script).resolve()), stored_as_script=True)
    run_env = {"PYTHONPATH": str(ROOT), **(env or {})}
    flow.run_config = LocalRun(working_dir=str(ROOT), env=run_env, labels=list(labels))
    return flow


def agent_command(labels: list[str] = ()) -> str:
    return " ".join(["prefect agent local start", *(f"-l {label}" for label in labels)])


def print_submitted(run_dir: Path, labels: list[str], merged: bool) -> None:
    print(f"\nThe agent runs {'them' if merged else 'it'}: {agent_command(labels)}  (if none is running yet)")
    print(f"results: {run_dir / results.RESULTS_FILE}\nreport:  {run_dir / results.REPORT_FILE}")
    if merged:
        print("(each flow run adds its slide to both when it finishes)")


def run_main(main, argv: list[str] | None = None) -> int:
    """cli.run_main, and a missing server reported in one message with exit code 3."""
    try:
        return cli.run_main(main, argv)
    except NoServer as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NO_SERVER


# --- results.tsv when every slide is its own flow run --------------------------------


# Runs whatever happened to the slide: a failed slide gets its error row.
@task(trigger=all_finished)
def save_row(file_name, loaded, tissue, blurry, saved, run_dir, params: dict) -> results.SlideResult:
    """Write this slide's row, then rebuild results.tsv and report.html from every row so far.

    Flow runs of one submission run at the same time in separate processes:
    each row is its own file, and the rebuild holds a lock on the run folder,
    so the last one to finish writes every row.
    """
    from slideqc.prefect1 import row_for

    row = row_for(file_name, loaded, tissue, blurry, saved)
    if not run_dir:
        return row
    rows_dir = Path(run_dir) / ROWS_DIRNAME
    rows_dir.mkdir(exist_ok=True)
    name = results.slide_folder_name(row.file_name)
    results.atomic_write_bytes(rows_dir / f"{name}.json", json.dumps(asdict(row)).encode("utf-8"))
    with _locked(rows_dir / "lock"):
        merge_rows(run_dir, QCParams(**params))
    return row


def merge_rows(run_dir: str | Path, params: QCParams) -> list[results.SlideResult]:
    """results.tsv and report.html from the rows the flow runs wrote so far."""
    rows = [results.SlideResult(**json.loads(p.read_text(encoding="utf-8")))
            for p in sorted((Path(run_dir) / ROWS_DIRNAME).glob("*.json"))]
    writer = results.RunWriter(Path(run_dir), params)
    writer.rows = rows
    writer.finish()
    return rows


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` between processes; the system frees it if its holder dies."""
    with open(path, "a+b") as handle:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)  # retries for 10 s, then raises
            unlock = lambda: msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)  # noqa: E731
        else:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
            unlock = lambda: fcntl.flock(handle, fcntl.LOCK_UN)  # noqa: E731
        try:
            yield
        finally:
            unlock()


def with_row_per_run(flow: prefect.Flow) -> prefect.Flow:
    """A copy of the serial flow whose last task saves the slide's row (see save_row)."""
    flow = flow.copy()
    # Fresh slug counters (a copy shares them): the new tasks get the same slugs in every process.
    flow._slug_counters = collections.defaultdict(functools.partial(itertools.count, 1))
    step = {t.name: t for t in flow.tasks}
    params = {name: step[name] for name in QCParams().as_dict()}
    steps = [step[name] for name in ("load_image", "tissue_segmentation_simple", "identify_blurry_regions",
                                     "save_results")]
    with flow:
        save_row(step["file_name"], *steps, step["run_dir"], params)
    return flow
