"""Dask inside a task: one large slide's blur tiles on a local Dask cluster of one worker, then of two.

The Dask-inside-a-task extra (extras/pipeline_prefect_dask_tiles.py) sends each tile of a slide's
blur step to a cluster's workers (slideqc.tiled.tiles_on). Here, on the largest slide of
``synthetic.big_specs()`` (made in ``--dest`` when missing, as benchmarks/big_slides.py makes it):
the blur step on this process's tile threads, then on a LocalCluster (127.0.0.1, processes, one
thread each) of 1 and of 2 workers, each run twice (the first run of a cluster also opens the slide
in every worker). Per tile, the bytes sent: the pickled arguments of its Dask task (path, work
size, window, settings, the tissue mask's key) and of its result (the tile's counts), and once per
worker the tissue mask. The percent blurry must be the threads' to the last bit. Writes
docs/benchmark.md's dask-in-task section.

    python benchmarks/dask_in_task.py [--dest data/benchmark-big] [--only NAME]
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import time
from pathlib import Path

import big_slides
from dask.distributed import Client, LocalCluster

from slideqc import algorithms, qc, synthetic, tiled
from slideqc.settings import DEFAULTS

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- dask-in-task:start -->", "<!-- dask-in-task:end -->"


class Counting:
    """A distributed.Client that keeps what map() sends and gather() brings back, to weigh them."""

    def __init__(self, client: Client) -> None:
        self.client, self.sent, self.results, self.scattered = client, [], [], []

    def scatter(self, data, **kwargs):
        self.scattered.append(data)
        return self.client.scatter(data, **kwargs)

    def map(self, func, *iterables, **kwargs):
        self.sent = [
            tuple(getattr(value, "key", value) for value in args) for args in zip(*iterables, strict=True)
        ]  # a future goes as its key
        return self.client.map(func, *iterables, **kwargs)

    def gather(self, futures):
        self.results = self.client.gather(futures)
        return self.results

    def __getattr__(self, name):
        return getattr(self.client, name)


def up_to_blur(path: Path):
    """The slide after the steps before blur, on this process (not timed)."""
    s: object = path
    for step in qc.STEPS[:-1]:
        s = step.run(s, DEFAULTS)
    return s


def timed_blur(path: Path, client=None):
    s = up_to_blur(path)
    started = time.perf_counter()
    if client is None:
        s = qc.detect_blur(s, DEFAULTS.blur_radius, DEFAULTS.blur_threshold, tile_threads=os.cpu_count())
    else:
        with tiled.tiles_on(client):
            s = qc.detect_blur(s, DEFAULTS.blur_radius, DEFAULTS.blur_threshold)
    return time.perf_counter() - started, s.found[qc.Blur]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=ROOT / "data" / "benchmark-big", help="where the big slides are")
    parser.add_argument("--only", default=synthetic.big_specs()[-1].name, help="the slide of synthetic.big_specs()")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmark.md")
    args = parser.parse_args()
    [(path, _)] = big_slides.make_slides(args.dest, [args.only])

    seconds, threaded = timed_blur(path)
    rows = [(f"{os.cpu_count()} tile threads, this process", [seconds], threaded)]
    print(f"{path.name}: threads {seconds:.1f} s, {100 * threaded.fraction:.3f} % blurry", flush=True)
    weighed = None
    for workers in (1, 2):
        with (
            LocalCluster(
                host="127.0.0.1", n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            Client(cluster) as client,
        ):
            counting = Counting(client)
            runs = [timed_blur(path, counting) for _ in range(2)]
        for _, found in runs:
            if found != threaded:
                raise SystemExit(f"dask_in_task: {workers} worker(s) found {found}, the threads {threaded}")
        rows.append((f"{workers} Dask worker(s), 1 thread each", [s for s, _ in runs], runs[-1][1]))
        weighed = counting
        print(f"{path.name}: {workers} worker(s) {', '.join(f'{s:.1f}' for s, _ in runs)} s", flush=True)

    sent = [len(pickle.dumps(args)) for args in weighed.sent]
    back = [len(pickle.dumps(result)) for result in weighed.results]
    mask = weighed.scattered[-1]
    lines = [
        f"Made by `python benchmarks/dask_in_task.py` on {os.cpu_count()} cores: the blur step of "
        f"{path.name} ({threaded.tiles_read} of {threaded.tiles_total} tiles read), the steps before it "
        "untimed. A LocalCluster of 1 or 2 worker processes (one thread each) on this machine, each run "
        "twice: the first run of a cluster also opens the slide in each worker. The percent blurry is "
        "the threads' to the last bit in every run (the script stops otherwise). Timings on a shared "
        "machine are noisy: compare ratios, not seconds.",
        "",
        "| blur measured on | blur s (1st, 2nd run) | % blurry |",
        "|---|---|---|",
        *(f"| {what} | {', '.join(f'{s:.1f}' for s in times)} | {100 * f.fraction:.6f} |" for what, times, f in rows),
        "",
        "Bytes per tile, as pickled (what Dask sends is this plus its own framing): a tile's task "
        f"arguments {statistics.median(sent):.0f} B (median; {min(sent)} to {max(sent)}), its result "
        f"(counts and the counted pixels per tissue-mask bin) {statistics.median(back) / 1024:.1f} KB "
        f"(median; {min(back)} to {max(back)} B); the tissue mask once per worker, "
        f"{len(pickle.dumps(mask)) / 1024:.0f} KB ({mask.shape[1]} x {mask.shape[0]}). No pixel of the "
        "slide is sent: a tile's RGB at the blur level with its context is "
        f"~{3 * (tiled.TILE_SIZE + 2 * algorithms.blur_context(DEFAULTS.blur_radius)) ** 2 / 2**20:.1f} MB, "
        "read by the worker from the slide file.",
    ]
    big_slides.write_section(args.out, "\n".join(lines), START, END, "Dask inside a task")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
