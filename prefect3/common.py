"""What the Prefect 3 scripts share, so each flow file stays a short lesson.

- the cache key of the load task (the slide file and the work sizes: slideqc.output.cache);
- a results.tsv row from a flow run's final state, or from a slide's futures;
- the Prefect-only command-line options and the task runners.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote_from_bytes, unquote_to_bytes

from BaseImage import display_name
from slideqc import qc
from slideqc.output import results
from slideqc.output.cache import slide_key

TASK_RUNNERS = ("threads", "dask")
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


def _error_text(file_name, state) -> str:
    """The one-line error of a failed state: from its exception when Prefect kept it, else its message."""
    try:
        error = state.result(raise_on_failure=False)
    except Exception:  # the exception could not be read back (not persisted): use the message
        error = None
    if isinstance(error, BaseException):
        return qc.error_message(file_name, error)
    message = " ".join((state.message or state.name or "failed").split())
    return f"{Path(file_name).name}: {message}"


def row_from_state(file_name, state) -> results.SlideResult:
    """A results.tsv row from the final state of a slide's flow run (returned, or read from the server)."""
    if state is not None and state.is_completed():
        value = state.result()
        return value if isinstance(value, results.SlideResult) else results.SlideResult(**value)
    if state is None or not state.is_final():
        name = "no state" if state is None else state.name
        return results.error_result(file_name, f"{Path(file_name).name}: the flow run did not finish ({name})")
    return results.error_result(file_name, _error_text(file_name, state))


def row_from_futures(file_name, futures: list) -> results.SlideResult:
    """A slide's row from its mapped steps' futures: the saved row, or the first step's real error.

    In Prefect 3 a step whose upstream failed never runs (its state is not
    Completed either); the first Failed step holds the cause.
    """
    for future in futures:
        future.wait()
    saved = futures[-1]
    if saved.state.is_completed():
        return saved.result()
    for future in futures:
        if future.state.is_failed():
            return results.error_result(file_name, _error_text(file_name, future.state))
    return results.error_result(file_name, f"{Path(file_name).name}: a QC step did not run "
                                           f"({saved.state.name}) because an earlier one did not finish")


# --- command line ----------------------------------------------------------------------


def add_prefect_arguments(parser, parallel: bool = False) -> None:
    """The Prefect-only options, the same in every Prefect 3 script."""
    group = parser.add_argument_group("Prefect")
    group.add_argument("--redo", action="store_true",
                       help="load the slides again even when the load task has a cached result")
    if parallel:
        group.add_argument("--task-runner", choices=TASK_RUNNERS, default="threads",
                           help="threads: ThreadPoolTaskRunner; dask: DaskTaskRunner on a local cluster")
        group.add_argument("--address", help="join an existing Dask scheduler, e.g. tcp://127.0.0.1:8786 "
                           "(implies the Dask task runner)")


def make_task_runner(kind: str = "threads", workers: int | None = None, address: str | None = None):
    """The task runner for ``--task-runner`` (or ``--address``): 1.x's executors, 3.x's task runners."""
    if address or kind == "dask":
        from prefect_dask import DaskTaskRunner

        if address:
            return DaskTaskRunner(address=address)
        # One thread per worker process: the QC is CPU-bound, and OpenCV brings its own threads.
        return DaskTaskRunner(cluster_kwargs=dict(n_workers=workers, threads_per_worker=1, processes=True,
                                                  dashboard_address=None))
    if kind == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    raise ValueError(f"task runner: {kind!r} is not one of {', '.join(TASK_RUNNERS)}")
