"""What the Prefect 3 scripts share, so each flow file stays a short lesson.

- the cache key of the load task (the slide file and the work sizes: slideqc.output.cache);
- a results.tsv row from a flow run's final state, or from a slide's futures;
- the Prefect-only command-line options and the task runners.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote_from_bytes, unquote_to_bytes

from BaseImage import display_name
from slideqc import cli
from slideqc.output import results
from slideqc.output.cache import slide_key

# Shared drives fail transiently: retry loading, but only on I/O errors; a file that
# is not a slide will not become one by trying again.
LOAD_RETRIES = dict(retries=2, retry_delay_seconds=2)


def path_parameter(path) -> str:
    """A slide's path as a flow parameter: as it is, or a ``file://`` URI when it is not valid UTF-8.

    Prefect 3 sends parameters to its API as JSON, which cannot hold a name that
    is not UTF-8 (``M\\xfcller.svs`` from a Windows share): such a path travels
    percent-encoded, and :func:`local_path` gives back the very same path.
    """
    text = str(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "file://" + quote_from_bytes(os.fsencode(os.path.abspath(text)))


def local_path(parameter: str) -> str:
    """The path a :func:`path_parameter` stands for."""
    if parameter.startswith("file://"):
        return os.fsdecode(unquote_to_bytes(parameter.removeprefix("file://")))
    return parameter


def retry_on_os_error(task, task_run, state) -> bool:
    """Prefect 3's retry_condition_fn: retry the failed load only when it failed on an I/O error."""
    return isinstance(state.result(raise_on_failure=False), OSError)


def slide_cache_key(context, parameters: dict) -> str | None:
    """Prefect 3's cache_key_fn for the load task: the slide file (path, size, mtime) and the work sizes.

    A slide copied again (new mtime) or other work sizes give a new key, so the
    load runs again; anything else finds the cached result. No file, no caching.
    """
    path = Path(local_path(parameters["file_name"]))
    if not path.is_file():
        return None
    return "load-" + slide_key(path, parameters, names=("image_work_size", "blur_work_size"))


def slide_run_name() -> str:
    """Flow run names that say which slide they check: ``qc-synthetic_01_blur00.svs``."""
    from prefect.runtime import flow_run

    return f"qc-{display_name(Path(local_path(str(flow_run.parameters.get('file_name', 'slide')))).name)}"


# --- rows from states ------------------------------------------------------------------


def error_row(file_name, state) -> results.SlideResult:
    """The row of a failed state: from its exception when Prefect kept it, else from its message."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception:  # the exception could not be read back (not persisted): use the message
        error = None
    if isinstance(error, BaseException):
        return results.error_row(file_name, error)
    return results.error_result(file_name, " ".join((state.message or state.name or "failed").split()))


def row_from_state(file_name, state) -> results.SlideResult:
    """A results.tsv row from the final state of a slide's flow run (returned, or read from the server)."""
    if state is not None and state.is_completed():
        value = state.result()
        return value if isinstance(value, results.SlideResult) else results.SlideResult(**value)
    if state is None or not state.is_final():
        name = "no state" if state is None else state.name
        return results.error_result(file_name, f"the flow run did not finish ({name})")
    return error_row(file_name, state)


def rows_from_batch_state(file_names: list, state) -> list[results.SlideResult]:
    """The rows of a mapped flow run (qc_slides) from its final state; if the run itself failed
    (a task runner that could not start, a crashed process), every slide of it gets that error."""
    if state is not None and state.is_completed():
        return [results.SlideResult(**row) for row in state.result()]
    return [row_from_state(name, state) for name in file_names]


def row_from_futures(file_name, steps: dict) -> results.SlideResult:
    """A slide's row from its mapped steps' futures, by step name: the saved row, or the first step's real error.

    In Prefect 3 a step whose upstream failed never runs (its state is not
    Completed either); the first Failed step holds the cause.
    """
    for future in steps.values():
        future.wait()
    saved = steps["save"]
    if saved.state.is_completed():
        return saved.result()
    for future in steps.values():
        if future.state.is_failed():
            return error_row(file_name, future.state)
    return results.error_result(
        file_name, f"a QC step did not run ({saved.state.name}) because an earlier one did not finish"
    )


# --- command line ----------------------------------------------------------------------


def add_prefect_arguments(parser, parallel: bool = False, cache_dir: bool = True) -> None:
    """The Prefect-only options: the Prefect 1 scripts' names (--redo, --cache-dir; --executor, --address).

    ``cache_dir=False``: runs on a server cache where the serving process says, so only --redo.
    """
    if cache_dir:
        cli.add_persisted_arguments(parser)
    else:
        parser.add_argument(
            "--redo", action="store_true", help="load the slides again even when the load task has a cached result"
        )
    if parallel:
        cli.add_executor_arguments(parser)


# Seconds Prefect may take to start its temporary server. Its first start in a new PREFECT_HOME
# creates and migrates the database: 24 to 26 s measured on a 2-core machine, past Prefect's 20 s.
TEMPORARY_SERVER_START_SECONDS = 120


@contextmanager
def flow_runs(cache_dir: str | Path):
    """Where the script's flow runs happen: their tasks' cached results in ``cache_dir`` (--cache-dir).

    Prefect 3 writes results to its local storage path (``~/.prefect/storage`` by
    default); a task cannot be handed an unsaved storage block of its own, so the
    setting is changed for the runs started inside (their task runners pass it on).
    A temporary server that does not start ends the run in one line (exit code 3).
    """
    from prefect.settings import PREFECT_LOCAL_STORAGE_PATH, temporary_settings

    with temporary_settings(updates={PREFECT_LOCAL_STORAGE_PATH: Path(cache_dir).resolve()}):
        try:
            yield
        except RuntimeError as error:
            if "ephemeral Prefect API server" not in str(error):
                raise
            seconds = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "20")
            raise cli.NoService(
                f"Prefect's temporary server did not start within {seconds} s. Give it longer "
                "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=300), or start one yourself: "
                "prefect server start, then PREFECT_API_URL=http://127.0.0.1:4200/api"
            ) from None


def local_run_defaults() -> None:
    """Prefect 3 settings for runs on this machine, unless already set: no usage telemetry, and
    :data:`TEMPORARY_SERVER_START_SECONDS` for the temporary server to start.

    Prefect's server sends anonymous usage data by default; offline, every run then logs
    ``Failed to send telemetry``. Set before the first flow run starts the temporary server,
    which inherits them. ``PREFECT_SERVER_ANALYTICS_ENABLED=true`` in the environment wins.
    """
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", str(TEMPORARY_SERVER_START_SECONDS))


def make_task_runner(kind: str = "threads", workers: int | None = None, address: str | None = None):
    """The task runner for ``--executor`` (or ``--address``): Prefect 1's executors, Prefect 3's task runners."""
    if address or kind == "dask":
        import logging

        from prefect_dask import DaskTaskRunner

        # Dask logs every worker's start, stop and heartbeat at INFO: only its warnings are the QC's
        # business. Here, and in the worker processes the local cluster starts (they read it at import).
        logging.getLogger("distributed").setLevel(logging.WARNING)
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        if address:
            return DaskTaskRunner(address=address)
        # One thread per worker process: the QC is CPU-bound, and OpenCV brings its own threads.
        return DaskTaskRunner(
            cluster_kwargs=dict(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        )
    from prefect.task_runners import ThreadPoolTaskRunner

    if kind == "local":
        return ThreadPoolTaskRunner(max_workers=1)
    if kind == "threads":
        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "processes":
        # Prefect 3.8.8's ProcessPoolTaskRunner ran the lone slides of tests/ fine, but with one
        # unreadable slide in the batch every slide ended as an upstream error: not offered until
        # that is understood. A local Dask cluster runs the slides in processes.
        raise cli.UsageError(
            "--executor processes: not in the Prefect 3 edition; use --executor dask "
            "for worker processes (a local Dask cluster), or threads"
        )
    raise cli.UsageError(f"--executor: {kind!r} is not one of {', '.join(cli.EXECUTORS)}")
