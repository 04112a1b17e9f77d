"""What the Prefect 1.x solutions share, so each solution file stays a short lesson.

- persisted results: a target per slide and QC step, so a re-run skips slides
  already checked (and never reads them again) unless told to redo them;
- executors chosen on the command line;
- turning a flow run's task states into results.tsv rows;
- a fix for Prefect 1's per-task overhead (:func:`skip_identical_config_merge`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import prefect.utilities.context
from prefect.engine import signals
from prefect.engine.results import LocalResult
from prefect.engine.state import State, TriggerFailed
from prefect.executors import DaskExecutor, LocalExecutor
from prefect.executors import LocalDaskExecutor as PrefectLocalDaskExecutor
from prefect.utilities.collections import merge_dicts

from BaseImage import BaseImage
from slideqc import qc, results, tiled

CACHE_DIRNAME = ".qc-cache"
EXECUTORS = ("local", "threads", "processes", "dask")
# Shared drives fail transiently: retry loading, but only on I/O errors; a file that
# is not a slide will not become one by trying again.
LOAD_RETRIES = dict(max_retries=2, retry_delay=timedelta(seconds=2), retry_on=OSError)
QC_PARAMETERS = ("image_work_size", "blur_work_size", "blur_radius", "blur_threshold")


def skip_identical_config_merge() -> None:
    """Make Prefect 1.4.1 skip merging its configuration into itself on every task run.

    ``prefect.context(...)`` merges the ``config`` it is given into the current
    one (a recursive copy of the whole configuration). The flow and task
    runners enter it twice per task run with the context's own ``config``, so
    the merge yields a copy equal to what is there: ~85 % of Prefect's overhead
    per task (profiled with pyinstrument; a flow of 6 trivial tasks ran in 100
    ms before, 6 ms after, docs/benchmark.md). This keeps the same object
    instead. The one difference: a task that mutated ``prefect.context.config``
    in place would now change it for the rest of the run, which no task here does.
    Idempotent; applied when this module is imported, so also in worker
    processes, which import it to run the solutions' tasks.
    """
    context_class = prefect.utilities.context.Context
    if getattr(context_class.__call__, "skips_identical_config", False):
        return

    @contextmanager
    def call(self, *args, **kwargs):
        previous_context = self.__dict__.copy()
        try:
            new_context = dict(*args, **kwargs)
            if "config" in new_context and new_context["config"] is not self.get("config"):
                new_context["config"] = merge_dicts(self.get("config", {}), new_context["config"])
            self.update(new_context)
            yield self
        finally:
            self.clear()
            self.update(previous_context)

    call.skips_identical_config = True
    call.__doc__ = context_class.__call__.__doc__
    context_class.__call__ = call


skip_identical_config_merge()


def default_cache_dir(output_dir: str | Path = "output") -> Path:
    return Path(output_dir) / CACHE_DIRNAME


def cache_result() -> LocalResult:
    """The Result the QC steps persist to; where exactly is set per run by their target."""
    return LocalResult(dir=str(default_cache_dir()), validate_dir=False)


def slide_key(file_name: str | Path, parameters: dict) -> str:
    """A folder name that changes when the slide file or a QC setting changes."""
    path = Path(file_name).resolve()
    stat = path.stat() if path.exists() else None
    identity = {
        "path": str(path),
        "size": stat.st_size if stat else None,
        "mtime_ns": stat.st_mtime_ns if stat else None,
        **{name: str(parameters.get(name)) for name in QC_PARAMETERS},
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return f"{results.safe_name(path.name)}-{digest}"


def slide_target(step: str):
    """A Prefect target for one QC step of one slide, under the run's ``cache_dir`` parameter.

    Prefect formats targets with the parameters and the task's inputs: the slide
    is the ``file_name`` input (load step) or the ``s`` input (later steps).
    """

    def target(**context) -> str:
        slide = context.get("s")
        file_name = slide.path if isinstance(slide, BaseImage) else context["file_name"]
        cache_dir = context.get("cache_dir") or default_cache_dir()
        return str(Path(cache_dir).resolve() / slide_key(file_name, context) / f"{step}.pickle")

    return target


def clear_cache(cache_dir: str | Path, file_names: list, parameters: dict) -> int:
    """Forget the persisted results of these slides (``--redo``); returns how many were removed."""
    removed = 0
    for file_name in file_names:
        folder = Path(cache_dir) / slide_key(file_name, parameters)
        if folder.is_dir():
            shutil.rmtree(folder)
            removed += 1
    return removed


class LocalDaskExecutor(PrefectLocalDaskExecutor):
    """Prefect's LocalDaskExecutor, whose slides share the cores with their tile threads.

    (Same name, so the logs and the server show the executor the workshop teaches.)

    While it runs, ``SLIDEQC_TILE_WORKERS`` is CPUs // workers (see
    :func:`slideqc.tiled.shared_cores`): its threads read it, and its worker
    processes, started during the run, inherit it.
    """

    def __init__(self, scheduler: str = "threads", num_workers: int | None = None) -> None:
        super().__init__(scheduler=scheduler, num_workers=num_workers)
        self.slides_at_once = num_workers or os.cpu_count() or 1

    @contextmanager
    def start(self) -> Iterator[None]:
        with tiled.shared_cores(self.slides_at_once), super().start():
            yield


def make_executor(kind: str = "local", workers: int | None = None, address: str | None = None):
    """The executor for ``--executor``: local, threads, processes or dask (``--address`` to join a cluster).

    Nested parallelism is bounded: each slide's tile threads get CPUs // workers
    (:mod:`slideqc.tiled`); a LocalExecutor runs one slide at a time, which keeps all of them.
    """
    if address:
        # The cluster's workers decide: SLIDEQC_TILE_WORKERS in their environment, else CPUs // their threads.
        return DaskExecutor(address=address)
    if kind == "local":
        return LocalExecutor()
    if kind in ("threads", "processes"):
        return LocalDaskExecutor(scheduler=kind, num_workers=workers)
    if kind == "dask":
        # One thread per worker process: the QC is CPU-bound, and OpenCV brings its own threads.
        # The workers' own environment sets their tile threads.
        workers = workers or os.cpu_count() or 1
        tile_env = {tiled.WORKERS_VARIABLE: str(tiled.workers_per_slide(workers))}
        return DaskExecutor(cluster_kwargs=dict(n_workers=workers, threads_per_worker=1, processes=True,
                                                dashboard_address=None, env=tile_env))
    raise ValueError(f"executor: {kind!r} is not one of {', '.join(EXECUTORS)}")


def add_prefect_arguments(parser, parallel: bool = False) -> None:
    """The Prefect-only options, the same in every solution."""
    group = parser.add_argument_group("Prefect")
    group.add_argument("--redo", action="store_true",
                       help="check slides again even when persisted results exist")
    group.add_argument("--cache-dir", help=f"where results persist between runs (default: <output-dir>/{CACHE_DIRNAME})")
    if parallel:
        group.add_argument("--executor", choices=EXECUTORS, default="threads",
                           help="local: LocalExecutor; threads/processes: LocalDaskExecutor; "
                                "dask: DaskExecutor on a local cluster")
        group.add_argument("--address", help="join an existing Dask scheduler, e.g. tcp://127.0.0.1:8786 "
                           "(implies DaskExecutor)")


def failure_of(file_name, states: list[State]) -> str | None:
    """The one-line error of the first step that failed for a slide, or None if none did."""
    for state in states:
        if state is None or not state.is_failed() or isinstance(state, TriggerFailed):
            continue
        error = state.result if isinstance(state.result, BaseException) else signals.FAIL(state.message)
        return qc.error_message(file_name, error)
    if any(isinstance(state, TriggerFailed) for state in states if state is not None):
        return f"{Path(file_name).name}: a QC step did not run because an earlier one failed"
    return None


def row_for(file_name, *step_results) -> results.SlideResult:
    """A slide's results row from what its mapped steps returned: the saved row, or the first real error.

    A failed step's result is its exception; the steps after it fail with
    TRIGGERFAIL, which says only that something before them failed.
    """
    saved = step_results[-1]
    if isinstance(saved, results.SlideResult):
        return saved
    errors = [r for r in step_results if isinstance(r, BaseException)]
    cause = next((e for e in errors if not isinstance(e, signals.TRIGGERFAIL)), None)
    if cause is None:
        message = f"{Path(file_name).name}: a QC step did not run because an earlier one failed"
    else:
        message = qc.error_message(file_name, cause)
    return results.error_result(file_name, message)
