"""What the mapped flow's parent process holds per slide when the run ends, by who allocated it.

    python benchmarks/mapped_memory.py                 # 8 and 128 slides, LocalDaskExecutor threads
    python benchmarks/mapped_memory.py --sizes 8 256

The batch table (batch_scale.py) shows the mapped flows' peak memory growing
with the batch while the plain scripts' stays flat. This runs the lesson's
mapped flow (solutions/pipeline_prefect_parallel.py) in this process under
tracemalloc and sorts the Python memory still held after ``flow.run`` returns
(the flow's state keeps every task run's state) by the file that allocated
it: the slide objects (BaseImage.py, slideqc), Prefect, logging, the rest.
The difference between two batch sizes, divided by the extra slides, is what
each further slide keeps. Also counted: the loggers Python's logging module
keeps, since Prefect 1 names one per mapped task run. Memory that C libraries
allocate (OpenCV, OpenSlide) and the allocator's fragmentation are not seen by
tracemalloc: the peak RSS of the batch table grows about twice as much.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
import tempfile
import tracemalloc
from pathlib import Path

import batch_scale  # the sibling script: its slides under N names
from prefect.executors import LocalDaskExecutor

from slideqc import synthetic
from solutions import pipeline_prefect_parallel as lesson

GROUPS = (("slide objects", ("BaseImage.py", "/slideqc/")), ("Prefect", ("/prefect/",)), ("logging", ("/logging/",)))


def group_of(file_name: str) -> str:
    return next((name for name, parts in GROUPS if any(part in file_name for part in parts)), "other")


def held_after_run(slides: list[Path], run_dir: Path, workers: int) -> tuple[dict[str, int], int]:
    """Bytes held per group once the flow run has ended (its state still referenced), and the loggers."""
    tracemalloc.start()
    state = lesson.flow.run(
        parameters=dict(file_names=[str(s) for s in slides], run_dir=str(run_dir)),
        executor=LocalDaskExecutor(scheduler="threads", num_workers=workers),
    )
    gc.collect()
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held: dict[str, int] = dict.fromkeys([name for name, _ in GROUPS] + ["other"], 0)
    for stat in snapshot.statistics("filename"):
        held[group_of(stat.traceback[0].filename)] += stat.size
    del state
    return held, len(logging.Logger.manager.loggerDict)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument(
        "--sizes", type=int, nargs=2, default=[8, 128], metavar=("SMALL", "LARGE"), help="the two batch sizes, slides"
    )
    parser.add_argument("--workers", type=int, default=2, help="threads of the LocalDaskExecutor")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=batch_scale.ROOT / "benchmarks" / "data" / "batch",
        help="where the 6 slides are made or reused",
    )
    args = parser.parse_args(argv)
    small, large = sorted(args.sizes)
    if small < 1 or large == small:
        parser.error("--sizes: two different sizes >= 1")
    logging.getLogger("prefect").setLevel(logging.WARNING)
    kinds = synthetic.write_set(synthetic.demo_specs(batch_scale.SLIDE_KINDS), args.data_dir)
    measured = {}
    with tempfile.TemporaryDirectory(prefix="mapped-memory-") as scratch_name:
        scratch = Path(scratch_name)
        # A first run of the same kind keeps imports and first-use caches out of the count.
        held_after_run(kinds[:2], scratch / "warm-up", args.workers)
        for size in (small, large):
            slides = batch_scale.make_batch(kinds, size, scratch / f"slides-{size}")
            measured[size] = held_after_run(slides, scratch / f"run-{size}", args.workers)
    (held_small, loggers_small), (held_large, loggers_large) = measured[small], measured[large]
    extra = large - small
    print(
        f"Held after flow.run, mapped flow, LocalDaskExecutor({args.workers} threads); "
        f"KB per further slide = (held at {large} - held at {small}) / {extra}"
    )
    print(f"| held by | at {small} slides, KB | at {large} slides, KB | KB per further slide |")
    print("|---|---:|---:|---:|")
    for name in held_small:
        print(
            f"| {name} | {held_small[name] / 1024:.0f} | {held_large[name] / 1024:.0f} | "
            f"{(held_large[name] - held_small[name]) / 1024 / extra:.1f} |"
        )
    total_small, total_large = sum(held_small.values()), sum(held_large.values())
    print(
        f"| all | {total_small / 1024:.0f} | {total_large / 1024:.0f} | "
        f"{(total_large - total_small) / 1024 / extra:.1f} |"
    )
    print(
        f"loggers kept by logging: {loggers_small} after {small} slides, {loggers_large} after {large} "
        f"({(loggers_large - loggers_small) / extra:.1f} per further slide)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
