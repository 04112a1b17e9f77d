"""What the Prefect 1.x lessons share beyond Prefect itself: plain Python around Prefect's objects.

- a slide's results row from its flow run's task states (exercise 1, 2) or from
  its mapped steps' results (exercises 3 to 5);
- the QC settings of the flow run under way, for its report;
- a quick check that a Prefect server answers (exercises 2 and 5), and that a Dask
  scheduler answers with workers that import the QC (``--address``, exercise 4);
- for the extra lessons: persisted results written atomically
  (:class:`AtomicLocalResult`, :func:`slide_target`), a results row per server
  flow run (:func:`save_row`), and an opt-in fix of Prefect 1.4.1's per-task
  overhead (:func:`skip_identical_config_merge`).

Nothing here changes Prefect when it is imported.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import shutil
import sys
from contextlib import contextmanager
from dataclasses import asdict, fields
from pathlib import Path

import prefect
from prefect.engine import signals
from prefect.engine.results import LocalResult
from prefect.engine.state import State

from slideqc import cli, qc
from slideqc.output import files, results
from slideqc.output.cache import default_cache_dir, slide_key
from slideqc.output.run import RunWriter
from slideqc.settings import QCSettings

ROWS_DIRNAME = ".rows"  # in the run folder: one row per slide, written by its own flow run
SERVER_COMMANDS = """\
Start a Prefect server (it needs Docker with docker compose), then run this again:
    prefect backend server        # once: talk to a local server, not Prefect Cloud
    prefect server start          # leave it running; the UI is at http://localhost:8080
    prefect agent local start     # in another terminal: it runs the flow runs"""


# --- rows from task states --------------------------------------------------------------


def _did_not_run(file_name) -> str:
    return f"{Path(file_name).name}: a QC step did not run because an earlier one failed"


def row_for(file_name, *step_results) -> results.SlideResult:
    """A slide's row from what its steps returned, in order: the last step's row, or the first real error.

    A failed step's result is its exception; the steps after it fail with
    TRIGGERFAIL, which says only that something before them failed.
    """
    saved = step_results[-1]
    if isinstance(saved, results.SlideResult):
        return saved
    errors = [r for r in step_results if isinstance(r, BaseException)]
    cause = next((e for e in errors if not isinstance(e, signals.TRIGGERFAIL)), None)
    message = _did_not_run(file_name) if cause is None else qc.error_message(file_name, cause)
    return results.error_result(file_name, message)


def slide_row(file_name, flow_state: State, steps: list) -> results.SlideResult:
    """A slide's row from its flow run: ``steps`` are the flow's step tasks, the row-making one last."""
    task_states = flow_state.result if isinstance(flow_state.result, dict) else {}
    step_results = []
    for step in steps:
        state = task_states.get(step)
        if state is None:
            step_results.append(signals.TRIGGERFAIL("did not run"))
        elif state.is_failed() and not isinstance(state.result, BaseException):
            step_results.append(signals.FAIL(state.message))
        else:
            step_results.append(state.result)
    return row_for(file_name, *step_results)


def gathered_rows(flow_state: State, gather, file_names) -> list[results.SlideResult]:
    """The rows the mapped flow's gathering task returned; error rows for all when it failed itself."""
    state = flow_state.result.get(gather) if isinstance(flow_state.result, dict) else None
    if state is not None and state.is_successful() and isinstance(state.result, list):
        return state.result
    why = state.message if state is not None else flow_state.message
    return [
        results.error_result(name, f"{Path(name).name}: the flow did not finish: {' '.join(str(why).split())}")
        for name in file_names
    ]


def run_settings() -> QCSettings:
    """The QC settings of the flow run under way: its Parameters (a run from the server passes them all)."""
    parameters = prefect.context.get("parameters", {})
    return QCSettings(**{f.name: parameters[f.name] for f in fields(QCSettings) if f.name in parameters})


# --- the server -------------------------------------------------------------------------


class NoServer(cli.NoService):
    """No Prefect server answers: reported in one message, exit code 3."""


def check_server(timeout: float = 3.0) -> str:
    """The configured Prefect server's API address, after asking it ``query { hello }``.

    Raises NoServer, with what to do, when the backend is not a server or
    nothing answers within ``timeout`` seconds. (Prefect's own client would
    retry for a minute or more before failing with a traceback.)
    """
    import requests

    if prefect.config.backend != "server":
        raise NoServer(f"Prefect's backend is {prefect.config.backend!r}, not 'server'.\n{SERVER_COMMANDS}")
    url = prefect.config.server.endpoint.rstrip("/")
    try:
        response = requests.post(url, json={"query": "query { hello }"}, timeout=timeout)
    except requests.Timeout:
        raise NoServer(f"no Prefect server answers at {url} (no answer in {timeout:g} s).\n{SERVER_COMMANDS}") from None
    except requests.ConnectionError:
        raise NoServer(f"no Prefect server answers at {url} (cannot connect).\n{SERVER_COMMANDS}") from None
    except requests.RequestException as error:
        raise NoServer(f"{url} is not an address a Prefect server can have ({error}).\n{SERVER_COMMANDS}") from None
    try:
        answer = response.json()
        if "hello" not in (answer.get("data") or {}):
            raise ValueError(answer)
    except (ValueError, AttributeError):
        raise NoServer(
            f"something answers at {url}, but not a Prefect server's API "
            f"(HTTP {response.status_code}).\n{SERVER_COMMANDS}"
        ) from None
    return url


def run_main(main, argv: list[str] | None = None) -> int:
    """cli.run_main (which reports a missing server in one message with exit code 3)."""
    return cli.run_main(main, argv)


# --- a Dask scheduler (exercise 4, --address) -------------------------------------------

SCHEDULER_COMMANDS = """Start a scheduler and a worker with the project's venv active (make installs the project into it):
    dask scheduler --host 127.0.0.1 --port 8786
    dask worker tcp://127.0.0.1:8786 --nthreads 1
or leave out --address to run on this machine."""


def check_scheduler(address: str, timeout: float = 5.0) -> str:
    """Check that a Dask scheduler answers at ``address``, has workers, and that they import the QC.

    Raises cli.NoService (one message, what to do; exit code 3) within about
    ``timeout`` seconds, where Prefect's DaskExecutor would wait half a minute and
    then fail with a traceback, or hand every slide a row that hides the cause.
    """
    import socket
    from urllib.parse import urlsplit

    url = address if "://" in address else f"tcp://{address}"
    parts = urlsplit(url)
    try:
        host, port = parts.hostname, parts.port or 8786
    except ValueError as error:
        raise cli.NoService(
            f"--address {address}: not a scheduler address ({error}), e.g. tcp://127.0.0.1:8786\n{SCHEDULER_COMMANDS}"
        ) from None
    if parts.scheme not in ("tcp", "tls") or not host:
        raise cli.NoService(
            f"--address {address}: not a scheduler address, e.g. tcp://127.0.0.1:8786\n{SCHEDULER_COMMANDS}"
        )
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        why = f"no answer in {timeout:g} s" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise cli.NoService(f"no Dask scheduler answers at {url} ({why}).\n{SCHEDULER_COMMANDS}") from None
    from distributed import Client

    try:
        with Client(url, timeout=timeout, set_as_default=False) as client:
            if not client.scheduler_info().get("workers"):
                try:
                    client.wait_for_workers(1, timeout=timeout)
                except TimeoutError:
                    raise cli.NoService(
                        f"the Dask scheduler at {url} has no workers (none joined in "
                        f"{timeout:g} s).\n{SCHEDULER_COMMANDS}"
                    ) from None
            problems = client.run(worker_import_problem)
    except cli.NoService:
        raise
    except Exception as error:  # noqa: BLE001 (any failure here is the cluster's, said in one line)
        text = " ".join(f"{type(error).__name__}: {error}".split())
        raise cli.NoService(f"the Dask scheduler at {url} cannot run the QC: {text}\n{SCHEDULER_COMMANDS}") from None
    bad = {worker: problem for worker, problem in problems.items() if problem}
    if bad:
        worker, problem = next(iter(bad.items()))
        raise cli.NoService(
            f"{len(bad)} of {len(problems)} Dask worker(s) at {url} cannot import the QC "
            f"(worker {worker}: {problem}).\n{SCHEDULER_COMMANDS}"
        )
    return url


def worker_import_problem() -> str:
    """Run on each Dask worker: "" when it imports the QC, else why not (one line)."""
    import importlib

    try:
        for module in ("BaseImage", "slideqc.qc", "slideqc.output.run"):
            importlib.import_module(module)
    except Exception as error:  # noqa: BLE001
        return f"{type(error).__name__}: {error}"
    return ""


# --- extra: persisted results -----------------------------------------------------------


class AtomicLocalResult(LocalResult):
    """Prefect's LocalResult, written atomically, and an unreadable file treated as missing.

    LocalResult writes in place: a full disk or a kill during the write leaves
    a truncated pickle, which every later run would fail to read. Here the
    bytes go to a temporary file that is renamed into place, and a target that
    cannot be read back (left by an older version, or damaged) counts as not
    there, so the step runs again and replaces it.
    """

    def write(self, value_, **kwargs):
        new = self.format(**kwargs)
        new.value = value_
        path = Path(self.dir) / new.location
        path.parent.mkdir(parents=True, exist_ok=True)
        files.atomic_write_bytes(path, new.serializer.serialize(new.value))
        new.location = str(path)
        return new

    def exists(self, location: str, **kwargs) -> bool:
        path = Path(self.dir) / location.format(**kwargs)
        if not path.is_file():
            return False
        try:
            self.serializer.deserialize(path.read_bytes())
        except (EOFError, pickle.UnpicklingError, OSError, ValueError, TypeError, AttributeError) as error:
            prefect.context.get("logger").warning(
                "%s: cannot read this persisted result (%s): computing it again", path, type(error).__name__
            )
            return False
        return True


def slide_target(step: str):
    """A Prefect target for one QC step of one slide, under the run's ``cache_dir`` parameter.

    Prefect formats targets with the parameters and the task's inputs: the slide
    is the ``file_name`` input (load step) or the ``s`` input (later steps).
    """

    def target(**context) -> str:
        slide = context.get("s")
        file_name = slide.path if hasattr(slide, "path") else context["file_name"]
        cache_dir = context.get("cache_dir") or default_cache_dir()
        return str(Path(cache_dir).resolve() / slide_key(file_name, context) / f"{step}.pickle")

    return target


def clear_cache(cache_dir: str | Path, file_names: list, settings: dict) -> int:
    """Forget the persisted results of these slides (``--redo``); returns how many were removed."""
    removed = 0
    for file_name in file_names:
        folder = Path(cache_dir) / slide_key(file_name, settings)
        if folder.is_dir():
            shutil.rmtree(folder)
            removed += 1
    return removed


# --- extra: a results row per server flow run -------------------------------------------


def save_row(row: results.SlideResult, run_dir, settings: QCSettings) -> results.SlideResult:
    """Write this slide's row, then rebuild results.tsv and report.html from every row so far.

    Flow runs of one submission run at the same time in separate processes:
    each row is its own file, and the rebuild holds a lock on the run folder,
    so the last one to finish writes every row.
    """
    rows_dir = Path(run_dir) / ROWS_DIRNAME
    rows_dir.mkdir(exist_ok=True)
    name = files.slide_folder_name(row.file_name)
    files.atomic_write_bytes(rows_dir / f"{name}.json", json.dumps(asdict(row)).encode("utf-8"))
    with _locked(rows_dir / "lock"):
        writer = RunWriter(Path(run_dir), settings)
        writer.rows = [
            results.SlideResult(**json.loads(p.read_text(encoding="utf-8"))) for p in sorted(rows_dir.glob("*.json"))
        ]
        writer.finish()
    return row


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` between processes; the system frees it if its holder dies."""
    import fcntl

    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- extra: Prefect's own cost per task -------------------------------------------------


def skip_identical_config_merge() -> None:
    """Opt in: make Prefect 1.4.1 skip merging its configuration into itself on every task run.

    ``prefect.context(...)`` merges the ``config`` it is given into the current
    one (a recursive copy of the whole configuration, ~6 ms here). The flow and
    task runners enter it two or three times per task run with a ``config``
    equal to the one already there: the context's own object in a serial flow
    run, a copy of it in an executor's worker thread (Prefect's context is one
    per thread) or in a worker process (it came pickled). The merge then yields
    yet another equal copy: ~95 % of Prefect's overhead per task (profiled with
    pyinstrument and py-spy; benchmarks/prefect_task_overhead.py: 9.5 ms ->
    0.2 ms per task run, docs/benchmark.md). This keeps the current object
    when the given one is it or equal to it (a dict comparison, microseconds);
    a different config is merged as before. The one difference: a task that
    mutated ``prefect.context.config`` in place would now change it for the
    rest of the run. It replaces ``Context.__call__`` for the whole process,
    which is why it is never done on import: extras/pipeline_prefect_fast_context.py
    and benchmarks/with_fast_context.py call it, knowingly. Worker processes
    forked after the call (LocalDaskExecutor's processes on Linux) inherit it;
    spawned ones (a Dask cluster's workers) run stock Prefect. Idempotent.
    """
    from prefect.utilities.collections import merge_dicts
    from prefect.utilities.context import Context

    if getattr(Context.__call__, "skips_identical_config", False):
        return

    @contextmanager
    def call(self, *args, **kwargs):
        previous_context = self.__dict__.copy()
        try:
            new_context = dict(*args, **kwargs)
            current = self.get("config", {})
            if "config" in new_context:
                # The same or an equal copy (from another thread or process): a merge would copy it again.
                if new_context["config"] is current or new_context["config"] == current:
                    new_context["config"] = current
                else:
                    new_context["config"] = merge_dicts(current, new_context["config"])
            self.update(new_context)
            yield self
        finally:
            self.clear()
            self.update(previous_context)

    call.skips_identical_config = True
    call.__doc__ = Context.__call__.__doc__
    Context.__call__ = call


def main(argv: list[str] | None = None) -> int:
    """``python -m slideqc.prefect1 --check-server``: does the Prefect server answer? In seconds, not minutes.

    Run it before ``prefect create project`` and ``prefect agent local start``, which
    otherwise wait about a minute and end in a traceback when no server answers.
    Exit 0 with the server's address, else exit 3 with what to do.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m slideqc.prefect1", description=main.__doc__.splitlines()[0])
    parser.add_argument(
        "--check-server",
        action="store_true",
        required=True,
        help="ask the configured Prefect server to answer (3 s at most)",
    )
    parser.parse_args(argv)
    try:
        url = check_server()
    except NoServer as error:
        print(f"error: {error}", file=sys.stderr)
        return cli.EXIT_NO_SERVER
    print(f"a Prefect server answers at {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
