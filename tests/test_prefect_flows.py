"""The Prefect 1.x solutions and the plain parallel script: same results as pipeline.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slideqc.output import results
from tests.helpers import ROOT, free_port, load_solution, only_run_dir, per_slide, run_script

SCRIPTS = [
    ("pipeline_parallel.py", ["--workers", "2"]),
    ("solutions/pipeline_prefect.py", []),
    ("solutions/pipeline_prefect_mapped.py", []),  # exercise 3: Prefect's default executor, one task at a time
    ("solutions/pipeline_prefect_parallel.py", ["--executor", "local"]),
    ("solutions/pipeline_prefect_parallel.py", ["--executor", "threads", "--workers", "2"]),
    ("solutions/pipeline_prefect_parallel.py", ["--executor", "processes", "--workers", "2"]),
    ("solutions/pipeline_prefect_parallel.py", ["--executor", "dask", "--workers", "2"]),
    # Three slides as flow runs of 2 and 1; the dask one reuses one local cluster for both.
    ("extras/pipeline_prefect_batches.py", ["--executor", "threads", "--workers", "2", "--batch-size", "2"]),
    ("extras/pipeline_prefect_batches.py", ["--executor", "dask", "--workers", "2", "--batch-size", "2"]),
]


@pytest.fixture(scope="module")
def reference(demo_dir, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("reference")
    proc = run_script("pipeline.py", "--data-dir", str(demo_dir), "--output-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    return per_slide(results.read_results(only_run_dir(out) / "results.tsv"))


@pytest.mark.parametrize("script, extra", SCRIPTS, ids=[f"{s}{' ' + ' '.join(e) if e else ''}" for s, e in SCRIPTS])
def test_same_results_as_pipeline(script, extra, demo_dir, tmp_path, reference):
    out = tmp_path / "out"
    proc = run_script(script, "--data-dir", str(demo_dir), "--output-dir", str(out), *extra)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "UserWarning" not in proc.stderr, proc.stderr[-3000:]  # e.g. Dask's "already contains a plugin"
    run_dir = only_run_dir(out)
    rows = results.read_results(run_dir / "results.tsv")
    assert per_slide(rows) == reference
    for row in rows:
        assert (run_dir / row["outputs"] / "overlay.png").is_file()
    assert (run_dir / "report.html").is_file()


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_mapped_flow_with_the_opt_in_fix_gives_the_same_rows(executor, demo_dir, tmp_path, reference):
    """benchmarks/with_fast_context.py (the benchmark's fixed rows): the same rows as pipeline.py, and the
    script's own exit code; for a script that is not there, one usage line and exit 2."""
    out = tmp_path / "out"
    proc = run_script(
        "benchmarks/with_fast_context.py",
        "solutions/pipeline_prefect_parallel.py",
        "--data-dir",
        str(demo_dir),
        "--output-dir",
        str(out),
        "--executor",
        executor,
        "--workers",
        "2",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert per_slide(results.read_results(only_run_dir(out) / "results.tsv")) == reference
    proc = run_script("benchmarks/with_fast_context.py", "solutions/pipeline_prefect_parallel.py", "--workers", "0")
    assert proc.returncode == 2 and "--workers" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_script("benchmarks/with_fast_context.py", "no_such_script.py")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "no_such_script.py is not a file; usage: python benchmarks/with_fast_context.py SCRIPT [ARGS...]"
    ]


FIX_PROBE = """
import json
import os

import prefect
from prefect import Flow, task
from prefect.executors import DaskExecutor


@task
def fix_here(i):
    return os.getpid(), getattr(type(prefect.context).__call__, "skips_identical_config", False)


with Flow("probe") as flow:
    seen = fix_here.map([1, 2, 3, 4])

if __name__ == "__main__":
    state = flow.run(executor=DaskExecutor(cluster_kwargs=dict(n_workers=2, threads_per_worker=1),
                                           watch_worker_status=False))
    print(json.dumps([os.getpid(), state.result[seen].result]))
"""


def test_opt_in_fix_reaches_a_local_dask_clusters_workers(tmp_path):
    """A Dask cluster's workers are spawned: the wrapper's worker preload turns the fix on in each of them.
    Stock, the same script's workers run Prefect as installed."""
    probe = tmp_path / "probe.py"
    probe.write_text(FIX_PROBE, encoding="utf-8")
    for wrapped, expected in ((True, True), (False, False)):
        command = ["benchmarks/with_fast_context.py", str(probe)] if wrapped else [str(probe)]
        proc = run_script(*command, timeout=180)
        assert proc.returncode == 0, proc.stderr[-3000:]
        client, seen = json.loads(proc.stdout.strip().splitlines()[-1])
        assert client not in {pid for pid, _ in seen}  # every task ran in one of the cluster's workers
        assert [fixed for _, fixed in seen] == [expected] * 4


def test_one_command_line_vocabulary():
    shared = [
        "--data-dir",
        "--file-type",
        "--files",
        "--image-work-size",
        "--blur-work-size",
        "--blur-radius",
        "--blur-threshold",
        "--blur-max",
        "--output-dir",
        "--run-name",
        "--overwrite",
        "--log-level",
        "--tile-threads",
    ]
    scripts = [
        "pipeline.py",
        "pipeline_parallel.py",
        "solutions/pipeline_prefect.py",
        "solutions/pipeline_prefect_parallel.py",
    ]
    for script in scripts:
        proc = run_script(script, "--help")
        assert proc.returncode == 0, proc.stderr
        for flag in shared:
            assert flag in proc.stdout, (script, flag)
        assert "default: 1.25x" in proc.stdout and "default: 10x" in proc.stdout
    for script in scripts[1:2] + scripts[3:]:
        assert "--workers" in run_script(script, "--help").stdout


def test_serial_flow_graph():
    flow = load_solution("pipeline_prefect").flow
    names = {t.name for t in flow.tasks}
    assert {
        "file_name",
        "image_work_size",
        "blur_work_size",
        "blur_radius",
        "blur_threshold",
        "blur_max",
        "artefact_work_size",
        "fold_max",
        "load_image",
        "tissue_segmentation_simple",
        "find_artefacts",
        "identify_blurry_regions",
        "is_blurry",
        "case(True)",
        "warn_rescan",
        "save_results",
    } <= names
    edges = {(e.upstream_task.name, e.downstream_task.name) for e in flow.edges}
    for edge in [
        ("load_image", "tissue_segmentation_simple"),
        ("tissue_segmentation_simple", "find_artefacts"),
        ("find_artefacts", "identify_blurry_regions"),
        ("identify_blurry_regions", "is_blurry"),
        ("is_blurry", "case(True)"),
        ("case(True)", "warn_rescan"),
        ("warn_rescan", "save_results"),
    ]:
        assert edge in edges, edge
    dot = flow.visualize(filename=None).source
    assert "load_image" in dot and "warn_rescan" in dot


def test_parallel_flow_graph_is_mapped():
    flow = load_solution("pipeline_prefect_parallel").flow
    mapped = {(e.upstream_task.name, e.downstream_task.name) for e in flow.edges if e.mapped}
    assert ("file_names", "load_image") in mapped
    assert ("load_image", "tissue_segmentation_simple") in mapped
    assert ("tissue_segmentation_simple", "find_artefacts") in mapped
    assert ("find_artefacts", "identify_blurry_regions") in mapped
    unmapped_params = {(e.upstream_task.name, e.downstream_task.name) for e in flow.edges if not e.mapped}
    assert ("blur_radius", "identify_blurry_regions") in unmapped_params
    assert ("tile_threads", "identify_blurry_regions") in unmapped_params
    assert "write_results" in {t.name for t in flow.tasks}


def _count_reads(monkeypatch) -> list:
    """Patch BaseImage so every OpenSlide open and pixel read is recorded."""
    import BaseImage as base_image

    calls = []
    real_open, real_read = base_image.BaseImage._open, base_image.BaseImage.read_region
    monkeypatch.setattr(
        base_image.BaseImage, "_open", lambda self: (calls.append(("open", self.name)), real_open(self))[1]
    )
    monkeypatch.setattr(
        base_image.BaseImage,
        "read_region",
        lambda self, *a, **k: (calls.append(("read", self.name)), real_read(self, *a, **k))[1],
    )
    return calls


PERSISTED = "extras/pipeline_prefect_persisted.py"


def test_rerun_with_persisted_results_measures_nothing(demo_slides, tmp_path, monkeypatch):
    module = load_solution(PERSISTED)
    cache = tmp_path / "cache"
    run_dirs = [tmp_path / "run1", tmp_path / "run2", tmp_path / "run3"]
    for d in run_dirs:
        d.mkdir()

    def run(run_dir):
        return [
            module.flow.run(
                parameters=dict(file_name=str(p), run_dir=str(run_dir), cache_dir=str(cache)),
                context={"checkpointing": True},
            )
            for p in demo_slides
        ]

    calls = _count_reads(monkeypatch)
    first = run(run_dirs[0])
    assert all(state.is_successful() for state in first)
    assert {name for kind, name in calls if kind == "read"} == {p.name for p in demo_slides}

    calls.clear()
    second = run(run_dirs[1])
    assert all(state.is_successful() for state in second)
    # Every QC step came from its target: the only read left is one per slide, the tissue image
    # the pictures are drawn on (the slide object carries no pixels between steps).
    assert sorted(calls) == sorted([("open", p.name) for p in demo_slides] + [("read", p.name) for p in demo_slides])
    assert len(list((run_dirs[1] / "slides").iterdir())) == len(demo_slides)  # pictures all the same

    # --redo: the same as forgetting the persisted results
    from slideqc import prefect1

    defaults = {p.name: p.default for p in module.flow.parameters()}
    assert prefect1.clear_cache(cache, demo_slides, defaults) == len(demo_slides)
    run(run_dirs[2])
    assert {name for kind, name in calls if kind == "read"} == {p.name for p in demo_slides}


def test_redo_flag_checks_again(demo_slides, tmp_path):
    args = ("--files", str(demo_slides[0]), "--output-dir", str(tmp_path))
    first = run_script(PERSISTED, *args)
    again = run_script(PERSISTED, *args)
    redo = run_script(PERSISTED, *args, "--redo")
    assert first.returncode == again.returncode == redo.returncode == 0
    assert "'Cached'" in again.stderr + again.stdout
    assert "'Cached'" not in redo.stderr + redo.stdout


def test_core_lessons_compute_every_time(demo_slides, tmp_path):
    """Exercises 3 and 4 compare executors: nothing of an earlier run may come back cached."""
    args = ("--files", str(demo_slides[0]), "--output-dir", str(tmp_path), "--executor", "local")
    for _ in range(2):
        proc = run_script("solutions/pipeline_prefect_parallel.py", *args)
        assert proc.returncode == 0 and "'Cached'" not in proc.stderr + proc.stdout
    assert not (tmp_path / ".qc-cache").exists()


def test_corrupt_file_among_good_slides(demo_copy, tmp_path):
    (demo_copy / "corrupt.svs").write_bytes(b"II*\x00" + os.urandom(5000))
    module = load_solution("pipeline_prefect_parallel")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    files = sorted(str(p) for p in demo_copy.glob("*.svs"))
    state = module.flow.run(parameters=dict(file_names=files, run_dir=str(run_dir)))
    assert state.is_failed()  # the flow says a slide failed...
    rows = {r.file_name: r for r in state.result[module.rows].result}
    assert rows["corrupt.svs"].status == "error" and "corrupt.svs" in rows["corrupt.svs"].error
    assert all(r.status in results.JUDGED for name, r in rows.items() if name != "corrupt.svs")
    table = {r["file_name"]: r for r in results.read_results(run_dir / "results.tsv")}
    assert table["corrupt.svs"]["status"] == "error"  # ...and its outputs say which one and why
    assert len(table) == len(files)

    out = tmp_path / "serial"
    proc = run_script("solutions/pipeline_prefect.py", "--data-dir", str(demo_copy), "--output-dir", str(out))
    assert proc.returncode == 1
    serial = {r["file_name"]: r for r in results.read_results(only_run_dir(out) / "results.tsv")}
    assert serial["corrupt.svs"]["error"] == table["corrupt.svs"]["error"]


def test_flow_run_report_states_the_run_settings(demo_slides, tmp_path):
    """A run started without the script (`prefect run`, an agent) still reports the settings it used."""
    module = load_solution("pipeline_prefect_parallel")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    state = module.flow.run(
        parameters=dict(file_names=[str(demo_slides[0])], run_dir=str(run_dir), blur_radius=5.0, blur_max=0.2)
    )
    assert state.is_successful()
    report = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "blur_radius=5.0" in report and "blur_max=0.2" in report and "blur_work_size=10x" in report


def test_load_retries_on_transient_io_errors(demo_slides, tmp_path, monkeypatch):
    module = load_solution("extras/pipeline_prefect_retries.py")
    monkeypatch.setattr(module.load_image, "retry_delay", __import__("datetime").timedelta(seconds=0.1))
    from slideqc import qc

    real = qc.load_slide
    failures = []

    def flaky(*args, **kwargs):
        if len(failures) < 2:
            failures.append(1)
            raise OSError("network share went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(qc, "load_slide", flaky)
    state = module.flow.run(parameters=dict(file_name=str(demo_slides[0]), run_dir=str(tmp_path)))
    assert state.is_successful() and len(failures) == 2


BATCHES = "extras/pipeline_prefect_batches.py"


def test_batches_are_flow_runs_of_at_most_the_batch_size_and_each_keeps_its_rows(
    demo_dir, tmp_path, monkeypatch, reference
):
    """Every slide once, in order, in flow runs of at most --batch-size; a run stopped after its first batch
    has that batch's rows in results.tsv (written as each batch ends, not once at the end)."""
    module = load_solution(BATCHES)
    real_run = module.flow.run
    batches = []

    def run(*args, **kwargs):
        batches.append(kwargs["parameters"]["file_names"])
        if len(batches) == 2:
            raise KeyboardInterrupt  # Ctrl-C while the second batch runs
        return real_run(*args, **kwargs)

    monkeypatch.setattr(module.flow, "run", run)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        module.main(["--data-dir", str(demo_dir), "--output-dir", str(out), "--batch-size", "2", "--executor", "local"])
    slides = sorted(str(p) for p in demo_dir.glob("*.svs"))
    assert batches == [slides[:2], slides[2:]]
    run_dir = only_run_dir(out)
    rows = results.read_results(run_dir / "results.tsv")
    assert [row["file_name"] for row in rows] == [Path(s).name for s in slides[:2]]
    assert per_slide(rows) == {name: reference[name] for name in per_slide(rows)}

    proc = run_script(BATCHES, "--data-dir", str(demo_dir), "--output-dir", str(out), "--batch-size", "0")
    assert proc.returncode == 2 and "--batch-size: must be >= 1, got 0" in proc.stderr


def test_batches_hold_one_flow_run_of_task_states_at_a_time(demo_dir, tmp_path, monkeypatch):
    """What bounds the memory: after each flow run the process holds that run's task states only (a
    LocalDaskExecutor reused across flow runs keeps every result in its callback's cache; states left to
    Python's occasional full collection pile up for a few runs)."""
    import gc

    from prefect.engine.state import State

    module = load_solution(BATCHES)
    real_run = module.flow.run
    live_states = []

    def run(*args, **kwargs):
        state = real_run(*args, **kwargs)
        gc.collect()
        live_states.append(sum(isinstance(o, State) for o in gc.get_objects()))
        return state

    monkeypatch.setattr(module.flow, "run", run)
    code = module.main(
        [
            "--data-dir",
            str(demo_dir),
            "--output-dir",
            str(tmp_path),
            "--batch-size",
            "1",
            "--executor",
            "threads",
            "--workers",
            "2",
        ]
    )
    assert code == 0 and len(live_states) == 3
    # One slide per run: one run's states after each (a sharp slide has one more, its case's Skipped), not
    # two (the previous run's kept until a full collection) nor one more per run (the executor's cache).
    assert max(live_states) <= min(live_states) + 2, live_states


def test_prefect_run_cli(demo_slides, tmp_path):
    prefect = Path(sys.executable).with_name("prefect")
    env = dict(os.environ)
    proc = subprocess.run(
        [
            str(prefect),
            "run",
            "-p",
            str(ROOT / "solutions" / "pipeline_prefect.py"),
            "--param",
            f"file_name={demo_slides[1]}",
            "--param",
            "blur_max=0.5",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = results.read_results(only_run_dir(tmp_path / "output") / "results.tsv")
    assert rows[0]["file_name"] == demo_slides[1].name
    assert rows[0]["rescan"] == "false" and rows[0]["blur_max"] == "0.5"  # ~30 % blurry is under 50 %


@pytest.fixture
def dask_cluster(tmp_path):
    """A real scheduler and two workers on 127.0.0.1, stopped afterwards."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).with_name("dask"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed project is enough
    procs = [
        subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=tmp_path,
        )
    ]
    try:
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [
                        dask,
                        "worker",
                        address,
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--local-directory",
                        str(tmp_path / "workers"),
                    ],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd=tmp_path,
                )
            )
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(address, timeout=5) as client:
                    client.wait_for_workers(2, timeout=60)
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def test_mapped_flow_on_a_real_dask_cluster(dask_cluster, demo_dir, tmp_path, reference):
    from distributed import Client

    out = tmp_path / "out"
    proc = run_script(
        "solutions/pipeline_prefect_parallel.py",
        "--data-dir",
        str(demo_dir),
        "--output-dir",
        str(out),
        "--address",
        dask_cluster,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert per_slide(results.read_results(only_run_dir(out) / "results.tsv")) == reference
    with Client(dask_cluster) as client:  # the work really went to the cluster's workers
        transitions = client.run(lambda dask_worker: dask_worker.state.transition_counter)
        assert len(transitions) == 2 and sum(transitions.values()) > 0


def test_importing_the_lessons_leaves_prefect_as_installed():
    """Stock Prefect: no module of the project patches Prefect when it is imported."""
    code = (
        "import prefect.utilities.context as c; before = c.Context.__call__\n"
        "import slideqc.prefect1, solutions.pipeline_prefect, solutions.pipeline_prefect_parallel\n"
        "print(c.Context.__call__ is before)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "True", proc.stderr


CONTEXT_SEMANTICS = """
import prefect
from prefect import Flow, Parameter, task
from slideqc import prefect1

prefect1.skip_identical_config_merge()
config = prefect.context.config
with prefect.context(config=config) as inner:
    assert inner.config is config  # the same config: nothing copied
with prefect.context(config=prefect.context.to_dict()["config"]) as inner:
    assert inner.config is config  # an equal copy (as another thread or process gives): nothing copied
with prefect.context(config={"flows": {"checkpointing": True}}, extra=1) as inner:
    # A different config is still merged into the current one, not put in its place.
    assert inner.config.flows.checkpointing is True
    assert inner.config.logging.level == config.logging.level
    assert inner.extra == 1
assert prefect.context.config is config and "extra" not in prefect.context


@task
def settings(blur_max):
    return blur_max, prefect.context.parameters["blur_max"], prefect.context.config.flows.checkpointing


with Flow("context") as flow:
    blur_max = Parameter("blur_max", default=0.05)
    seen = settings(blur_max)
state = flow.run(parameters={"blur_max": 0.2})
assert state.is_successful()
assert state.result[seen].result == (0.2, 0.2, prefect.context.config.flows.checkpointing)
print("ok")
"""


CONTEXT_FIX_REACHES_WORKERS = """
import json
import sys
import prefect
from prefect import Flow, Parameter, task, unmapped
from prefect.configuration import Config
from prefect.executors import LocalDaskExecutor
from slideqc import prefect1

copies = [0]  # every Config.copy in this process: a merge of the configuration copies it whole
stock_copy = Config.copy
def counting_copy(self):
    copies[0] += 1
    return stock_copy(self)
Config.copy = counting_copy
copies[0] = 0
prefect.context.config.copy()
one_config = copies[0]  # the copies one whole configuration takes

@task
def scaled(x, factor):
    return x * factor, getattr(type(prefect.context).__call__, "skips_identical_config", False)

with Flow("mapped") as flow:
    factor = Parameter("factor", default=2)
    items = Parameter("items", default=[])
    out = scaled.map(items, unmapped(factor))

def copies_for(n, scheduler):
    copies[0] = 0
    state = flow.run(parameters={"items": list(range(n))},
                     executor=LocalDaskExecutor(scheduler=scheduler, num_workers=2))
    assert [r for r, _ in state.result[out].result] == [2 * i for i in range(n)]
    return copies[0], {fixed for _, fixed in state.result[out].result}

if sys.argv[1] == "fixed":
    prefect1.skip_identical_config_merge()
few, _ = copies_for(4, "threads")
many, seen = copies_for(16, "threads")
_, seen_in_processes = copies_for(4, "processes")
print(json.dumps([one_config, few, many, sorted(seen), sorted(seen_in_processes)]))
"""


def test_opt_in_context_fix_reaches_worker_threads_and_processes():
    """Prefect's context is one per thread, and comes pickled to a process: its config there is an equal
    copy, not the same object. With the opt-in, 12 more mapped task runs on threads copy the configuration
    no more often (each worker thread still copies it once to start its context); stock, each run copies it
    several times. Forked worker processes run the opt-in too."""
    counts = {}
    for variant in ("stock", "fixed"):
        proc = subprocess.run(
            [sys.executable, "-c", CONTEXT_FIX_REACHES_WORKERS, variant],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        counts[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
    one_config, few, many, seen, seen_in_processes = counts["stock"]
    assert one_config >= 10  # the configuration is a tree of Config objects: a copy is many
    assert many - few >= 12 * 2 * one_config  # stock: at least two whole copies per added task run
    assert seen == seen_in_processes == [False]
    one_config, few, many, seen, seen_in_processes = counts["fixed"]
    assert abs(many - few) <= 2 * one_config  # at most the worker threads' own starts differ
    assert seen == seen_in_processes == [True]


def test_opt_in_context_fix_keeps_prefect_semantics():
    """prefect1.skip_identical_config_merge() (opt-in) makes Prefect skip copying its config into itself;
    everything else behaves as before. In its own process: it changes Prefect for the whole process."""
    proc = subprocess.run([sys.executable, "-c", CONTEXT_SEMANTICS], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1] == "ok", proc.stderr[-3000:]
