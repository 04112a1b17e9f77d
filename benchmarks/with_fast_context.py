"""Run one of the Prefect 1 scripts with Prefect's per-task configuration copy skipped (opt-in).

    python benchmarks/with_fast_context.py solutions/pipeline_prefect_parallel.py --data-dir data --executor threads

Calls :func:`slideqc.prefect1.skip_identical_config_merge`, makes the workers of
a Dask cluster the script starts do the same (benchmarks/fast_context_preload.py,
through Dask's ``distributed.worker.preload``; LocalDaskExecutor's worker
processes are forked, so they inherit it), then runs the script as
``python SCRIPT ARGS...`` would. The lessons themselves run stock Prefect
1.4.1; the benchmark uses this to measure, beside each stock row, how much of a
flow's cost is Prefect's own copying of its configuration (docs/benchmark.md).
"""

import runpy
import sys
from pathlib import Path

import dask

from slideqc import prefect1

PRELOAD = Path(__file__).resolve().with_name("fast_context_preload.py")


def main() -> None:
    if len(sys.argv) < 2 or not Path(sys.argv[1]).is_file():
        given = f"{sys.argv[1]} is not a file; " if len(sys.argv) >= 2 else ""
        print(f"{given}usage: python benchmarks/with_fast_context.py SCRIPT [ARGS...]", file=sys.stderr)
        sys.exit(2)  # the project's exit code for bad usage
    prefect1.skip_identical_config_merge()
    dask.config.set({"distributed.worker.preload": [str(PRELOAD)]})  # a local cluster's spawned workers
    script = sys.argv[1]
    sys.argv = sys.argv[1:]  # the script sees its own name and arguments, as if run directly
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
