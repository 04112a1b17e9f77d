"""Cost as the batch grows: seconds per slide and peak memory for 8, 32 and 128 slides.

    python benchmarks/batch_scale.py                        # 8, 32, 128 slides; about 10 minutes on 2 cores
    python benchmarks/batch_scale.py --sizes 8 256 --configs prefect-processes

A lab's batch is hundreds of slides: what each further slide costs, and whether
memory stays flat as the batch grows, matter more than a run of eight. The slides
are 6 synthetic 8192x6144 slides (40x) under N names (hard links), so every size
checks the same kinds of slide. Each configuration runs once per size in a fresh
subprocess, started as a user starts it (start-up counts: it is shared by the
batch). Memory is sampled every 50 ms over the process tree (and over the Dask
cluster's processes, for the cluster row): the largest single process, and all
of them together.

The cluster row is the README's: ``dask scheduler --host 127.0.0.1`` and two
``dask worker ... --nthreads 1``, started here on a free port, and the mapped
flow with ``--address``.

Also measured, in this process: the bytes a slide's object takes when a process
executor hands it from one task to the next (pickled after each step).

docs/benchmark.md keeps the result between ``<!-- batch-scale:start -->`` and
``<!-- batch-scale:end -->`` (run_benchmark.py leaves that part as it is).
"""

from __future__ import annotations

import argparse
import os
import pickle
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import run_benchmark as rb  # the sibling script: its subprocess runner and memory sampler

from BaseImage import BaseImage
from slideqc import qc, synthetic
from slideqc.output import files, results
from slideqc.settings import BATCH_SIZE, DEFAULTS

ROOT = rb.ROOT
SECTION = "batch-scale"
SLIDE_KINDS = 6


def configs(workers: int) -> dict[str, tuple[str, tuple[str, ...], str]]:
    w = ("--workers", str(workers))
    mapped = "solutions/pipeline_prefect_parallel.py"
    batches = "extras/pipeline_prefect_batches.py"  # --batch-size left at its default
    return {
        "plain-serial": ("pipeline.py", (), "Python, serial"),
        "plain-parallel": ("pipeline_parallel.py", w, f"Python, process pool of {workers}"),
        "prefect-serial": ("solutions/pipeline_prefect.py", (), "Prefect, a flow run per slide"),
        "prefect-threads": (
            mapped,
            ("--executor", "threads", *w),
            f"Prefect, mapped, LocalDaskExecutor, {workers} threads",
        ),
        "prefect-processes": (
            mapped,
            ("--executor", "processes", *w),
            f"Prefect, mapped, LocalDaskExecutor, {workers} processes",
        ),
        "prefect-cluster": (mapped, (), f"Prefect, mapped, Dask cluster of {workers} workers (README commands)"),
        "prefect-batches": (
            batches,
            ("--executor", "threads", *w),
            f"Prefect, mapped, flow runs of {BATCH_SIZE} slides, LocalDaskExecutor, {workers} threads",
        ),
        "prefect-batches-processes": (
            batches,
            ("--executor", "processes", *w),
            f"Prefect, mapped, flow runs of {BATCH_SIZE} slides, LocalDaskExecutor, {workers} processes",
        ),
    }


def make_batch(kinds: list[Path], size: int, folder: Path) -> list[Path]:
    """``size`` slides: the ``kinds`` under new names, as hard links (no copying)."""
    folder.mkdir(parents=True)
    slides = []
    for i in range(size):
        source = kinds[i % len(kinds)]
        slide = folder / f"batch_{i:04d}_{source.name}"
        os.link(source, slide)
        slides.append(slide)
    return slides


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cluster:
    """The README's cluster on 127.0.0.1: a scheduler and ``workers`` single-thread workers, stopped on exit."""

    def __init__(self, workers: int, log_dir: Path) -> None:
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        dask = str(Path(sys.executable).with_name("dask"))
        logs = [open(log_dir / f"dask-{i}.log", "wb") for i in range(workers + 1)]
        self.procs = [
            subprocess.Popen(
                [dask, "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--dashboard-address", ":0"],
                stdout=logs[0],
                stderr=subprocess.STDOUT,
            )
        ]
        self._wait_for_scheduler()
        self.procs += [
            subprocess.Popen(
                [dask, "worker", self.address, "--nthreads", "1", "--dashboard-address", ":0"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            for log in logs[1:]
        ]
        self._wait_for_workers(workers)

    def _wait_for_scheduler(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"no Dask scheduler on {self.address} after {timeout:.0f} s")

    def _wait_for_workers(self, count: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=60) as client:
            client.wait_for_workers(count, timeout=120)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


def bytes_per_task(slide: Path) -> dict[str, int]:
    """Pickled bytes of what each step hands to the next (a process executor copies this)."""
    s: BaseImage | Path = slide
    sizes = {}
    for step in qc.STEPS:  # every step, as a mapped flow hands it to the next
        s = step.run(s, DEFAULTS, tile_threads=1)
        sizes[step.name] = len(pickle.dumps(s))
    sizes["row"] = len(pickle.dumps(results.result_from_slide(s, DEFAULTS.blur_max)))
    return sizes


def render(
    rows: list[tuple[str, int, rb.Measurement]],
    names: dict[str, str],
    sizes: list[int],
    moved: dict[str, int],
    workers: int,
) -> str:
    by = {(name, size): m for name, size, m in rows}
    lines = [
        f"`python benchmarks/batch_scale.py --sizes {' '.join(map(str, sizes))}` on {rb.machine_line()}: "
        f"{SLIDE_KINDS} synthetic 8192x6144 slides under N names, one run per size, start-up included "
        f"(so the per-slide cost falls as it is shared). Peak memory: the largest process / the whole "
        f"tree (with the cluster's processes for the cluster row), MB.",
        "",
        "| configuration | "
        + " | ".join(f"s per slide at {n}" for n in sizes)
        + " | "
        + " | ".join(f"peak at {n}" for n in sizes)
        + f" | s per further slide | memory {sizes[-1]} / {sizes[0]} |",
        "|---|" + "---:|" * (2 * len(sizes) + 2),
    ]
    for name, what in names.items():
        cells = [f"{by[name, n].seconds / n:.3f}" if (name, n) in by else "" for n in sizes]
        peaks = [
            f"{by[name, n].peak_process_mb:.0f} / {by[name, n].peak_tree_mb:.0f}" if (name, n) in by else ""
            for n in sizes
        ]
        first, last = by.get((name, sizes[0])), by.get((name, sizes[-1]))
        growth = f"{last.peak_tree_mb / first.peak_tree_mb:.2f}" if first and last else ""
        # Start-up taken out: what each slide beyond the first batch added.
        further = (
            f"{(last.seconds - first.seconds) / (sizes[-1] - sizes[0]):.3f}"
            if first and last and sizes[-1] > sizes[0]
            else ""
        )
        lines.append(f"| {what} | " + " | ".join(cells) + " | " + " | ".join(peaks) + f" | {further} | {growth} |")
    lines += [
        "",
        "Bytes a slide's object takes, pickled, as a process executor hands it from task to task "
        "(one 8192x6144 slide): "
        + ", ".join(f"after {k} {v / 1024:.1f} KB" for k, v in moved.items())
        + f". {workers} workers.",
    ]
    return "\n".join(lines) + "\n"


def write_section(out: Path, text: str, section: str = SECTION, heading: str = "## Cost as the batch grows") -> None:
    """Replace the part of ``out`` between the section's markers (or add it, under ``heading``)."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    current = out.read_text() if out.exists() else ""
    if start in current and end in current:
        head, rest = current.split(start, 1)
        new = f"{head}{start}\n{text}{end}{rest.split(end, 1)[1]}"
    else:
        new = f"{current.rstrip()}\n\n{heading}\n\n{start}\n{text}{end}\n"
    files.atomic_write_bytes(out, new.encode())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 32, 128], help="batch sizes, slides")
    parser.add_argument("--workers", type=int, default=2, help="workers of the parallel configurations")
    names = configs(2)
    parser.add_argument(
        "--configs",
        nargs="+",
        choices=list(names),
        default=list(names),
        metavar="NAME",
        help=f"configurations to run: {', '.join(names)}",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT / "benchmarks" / "data" / "batch",
        help="where the 6 slides are made or reused",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmark.md")
    args = parser.parse_args(argv)
    if min(args.sizes) < 1:
        parser.error("--sizes: every size must be >= 1")
    all_configs = configs(args.workers)
    chosen = {name: all_configs[name] for name in args.configs}
    kinds = synthetic.write_set(synthetic.demo_specs(SLIDE_KINDS), args.data_dir)
    moved = bytes_per_task(kinds[1])
    rows = []
    with tempfile.TemporaryDirectory(prefix="batch-scale-") as scratch_name:
        scratch = Path(scratch_name)
        for size in sorted(args.sizes):
            slides = make_batch(kinds, size, scratch / f"slides-{size}")
            for name, (script, extra, _) in chosen.items():
                if name == "prefect-cluster":
                    with Cluster(args.workers, scratch) as cluster:
                        config = rb.Config(name, script, ("--address", cluster.address), True, "")
                        measured = rb.run_config(config, slides, scratch, also=[p.pid for p in cluster.procs])
                else:
                    measured = rb.run_config(rb.Config(name, script, extra, True, ""), slides, scratch)
                rows.append((name, size, measured))
                print(
                    f"{name:18s} {size:4d} slides: {measured.seconds / size:.3f} s per slide, peak "
                    f"{measured.peak_process_mb:.0f} MB largest process, {measured.peak_tree_mb:.0f} MB tree",
                    flush=True,
                )
            shutil.rmtree(slides[0].parent)
    write_section(args.out, render(rows, {n: chosen[n][2] for n in chosen}, sorted(args.sizes), moved, args.workers))
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
