"""The Dask-inside-a-task extra: the blur task sends one slide's tiles to a Dask cluster's workers.

Checked: the tiles measured on a cluster give the threaded blur's result to the last bit (against
qc.run_steps on a demo slide), the workers are sent a path and tile windows, never pixels; the
lesson's resource manager starts a local cluster when no address is given and closes it, also when
the blur task fails, leaving no worker process; and the README's scheduler, worker and lesson
commands run as printed (on a free port), leaving that cluster running.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import psutil
import pytest
from dask.distributed import Client, LocalCluster

from slideqc import qc, synthetic, tiled
from slideqc.output import results
from slideqc.settings import DEFAULTS
from tests.helpers import ROOT, load_solution, only_run_dir, readme_dask_cluster, run_printed, truth_status

LESSON = "extras/pipeline_prefect_dask_tiles.py"


@pytest.fixture(autouse=True)
def environment_kept():
    """A LocalCluster's nannies set variables in this process's environment (MALLOC_TRIM_THRESHOLD_,
    OMP_NUM_THREADS, ...) for the workers they spawn; the tests after these must not inherit them."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture(scope="module")
def blurred(demo_slides) -> Path:
    return next(p for p in demo_slides if "blur30" in p.name)


class SpyClient:
    """A distributed.Client that records what map() and scatter() send to the workers."""

    def __init__(self, client: Client) -> None:
        self.client, self.mapped, self.scattered = client, [], []

    def map(self, func, *iterables, **kwargs):
        self.mapped.append((func, [list(values) for values in iterables]))
        return self.client.map(func, *iterables, **kwargs)

    def scatter(self, data, **kwargs):
        self.scattered.append(data)
        return self.client.scatter(data, **kwargs)

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_tiles_on_a_cluster_give_the_threaded_result_to_the_last_bit(blurred):
    threaded = qc.run_steps(blurred)
    with LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            spy = SpyClient(client)
            with tiled.tiles_on(spy):
                on_dask = qc.run_steps(blurred)
    assert on_dask.found[qc.Blur] == threaded.found[qc.Blur]  # fraction, tiles read, tiles in all
    assert on_dask.found[qc.Blur].fraction == threaded.found[qc.Blur].fraction
    assert np.array_equal(on_dask.masks["blur"], threaded.masks["blur"])
    # One map of one task a tile; each tile's arguments: the path, the work size, the mask's future,
    # its window, the settings. The mask went once, by scatter; no pixel of the slide went at all.
    [(func, arguments)] = spy.mapped
    assert func is tiled.measure_tile_at
    assert len(arguments[0]) == threaded.found[qc.Blur].tiles_read
    assert set(arguments[0]) == {str(blurred)}
    assert all(isinstance(t, tiled.Tile) for t in arguments[3])
    assert not any(isinstance(value, np.ndarray) for values in arguments for value in values)
    assert len(spy.scattered) == 1 and spy.scattered[0].dtype == bool


def worker_processes(cluster: LocalCluster) -> set[int]:
    """The process ids of a LocalCluster's workers (each started by its nanny, in this process)."""
    return {nanny.pid for nanny in cluster.workers.values()}


def run_in_process(lesson, slides, out):
    """The lesson's flow run here (as main runs it, on the LocalExecutor), watching the clusters it starts."""
    from prefect.executors import LocalExecutor

    started = []

    class WatchedCluster(LocalCluster):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            started.append((self, worker_processes(self)))

    lesson.LocalCluster = WatchedCluster
    parameters = dict(file_names=[str(p) for p in slides], run_dir=str(out), address=None, workers=2)
    state = lesson.flow.run(parameters=parameters, executor=LocalExecutor())
    return state, started


def test_the_flow_starts_a_local_cluster_and_closes_it(demo_slides, blurred, tmp_path):
    lesson = load_solution(LESSON)
    state, started = run_in_process(lesson, demo_slides, tmp_path)
    assert state.is_successful()
    [(cluster, processes)] = started
    assert cluster.status.name == "closed"
    assert processes and not any(psutil.pid_exists(pid) for pid in processes), processes
    # The flow's blur result for the blurred slide: the threaded blur's, to the last bit.
    blur_states = state.result[lesson.flow.get_tasks(name="identify_blurry_regions")[0]].map_states
    on_dask = next(s.result for s in blur_states if s.result.name == blurred.name)
    assert on_dask.found[qc.Blur] == qc.run_steps(blurred).found[qc.Blur]


def test_a_failing_blur_task_still_closes_the_cluster(demo_slides, tmp_path, monkeypatch):
    lesson = load_solution(LESSON)

    def broken(*args, **kwargs):
        raise RuntimeError("the blur step broke")

    monkeypatch.setattr(qc, "detect_blur", broken)
    state, started = run_in_process(lesson, demo_slides[:1], tmp_path)
    assert state.is_failed()
    blur = state.result[lesson.flow.get_tasks(name="identify_blurry_regions")[0]]
    assert all(s.is_failed() for s in blur.map_states)
    [cleanup] = [t for t in lesson.flow.tasks if type(t).__name__ == "ResourceCleanupTask"]
    assert state.result[cleanup].is_successful()
    [(cluster, processes)] = started
    assert cluster.status.name == "closed"
    assert processes and not any(psutil.pid_exists(pid) for pid in processes), processes


def readme_cluster_commands() -> list[str]:
    """The lesson's README block of scheduler, worker and lesson commands."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("### Extra: Dask inside a task")[1]
    block = re.search(r"<!-- dask-cluster[^\n]*\n```bash\n(.*?)```", section, re.S)
    assert block, "the lesson's README section has no dask-cluster block"
    return [line.strip() for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_commands_as_printed_on_an_existing_cluster(demo_dir, tmp_path):
    scheduler, worker, lesson = readme_cluster_commands()
    assert scheduler.startswith("dask scheduler --host 127.0.0.1") and worker.startswith("dask worker tcp://127.0.0.1")
    assert lesson.startswith(f"python {LESSON} ") and "--address tcp://127.0.0.1:8786" in lesson
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with readme_dask_cluster(scheduler, worker, elsewhere) as (port, address):
        out = tmp_path / "out"
        proc = run_printed(lesson, port, demo_dir, out)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
        rows = {r["file_name"]: r for r in results.read_results(only_run_dir(out) / "results.tsv")}
        slides = sorted(demo_dir.glob("*.svs"))
        assert {name: r["status"] for name, r in rows.items()} == {
            p.name: truth_status(synthetic.read_truth(p)) for p in slides
        }
        for slide in slides:  # the threaded blur's percent, as results.tsv writes it
            expected = results.result_from_slide(qc.run_steps(slide), DEFAULTS.blur_max).percent_blurry
            assert rows[slide.name]["percent_blurry"] == str(expected), slide.name
        # The cluster was there before the run and is still there: the flow closed only its client.
        with Client(address, timeout=10) as client:
            assert len(client.scheduler_info()["workers"]) == 1
