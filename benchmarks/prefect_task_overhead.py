"""Prefect 1's own cost per task run, stock and with the opt-in fix for it.

    python benchmarks/prefect_task_overhead.py [--runs 20]

Runs two flows of trivial tasks ``--runs`` times each, in fresh processes: one
with stock Prefect, one after calling
:func:`slideqc.prefect1.skip_identical_config_merge` (the opt-in of
extras/pipeline_prefect_fast_context.py and benchmarks/with_fast_context.py).

- *serial*: a Parameter and five tasks in a chain, on the LocalExecutor, as
  exercise 1 runs its flow;
- *mapped, 2 threads*: a Parameter and five mapped tasks in a chain over 8
  items, on a LocalDaskExecutor of 2 threads, as exercises 3 and 4 run theirs
  (each worker thread has its own Prefect context, so its config is a copy).

Prints milliseconds per flow run and per task run for each, and the ratio of
stock to fixed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, logging, sys, time
from prefect import Flow, Parameter, task
from prefect.executors import LocalDaskExecutor, LocalExecutor
if sys.argv[2] == "fixed":
    from slideqc import prefect1
    prefect1.skip_identical_config_merge()

@task
def same(x):
    return x

with Flow("serial") as serial:
    value = Parameter("value", default=1)
    same(same(same(same(same(value)))))
with Flow("mapped") as mapped:
    values = Parameter("values", default=list(range(8)))
    same.map(same.map(same.map(same.map(same.map(values)))))
logging.getLogger("prefect").setLevel("WARNING")
runs = int(sys.argv[1])
seconds = {}
executors = {"serial": LocalExecutor, "mapped": lambda: LocalDaskExecutor(scheduler="threads", num_workers=2)}
for name, flow in (("serial", serial), ("mapped", mapped)):
    flow.run(executor=executors[name]())  # the first run pays one-off costs
    started = time.perf_counter()
    for _ in range(runs):
        flow.run(executor=executors[name]())  # a new executor per run, as the lessons make one
    seconds[name] = (time.perf_counter() - started) / runs
print(json.dumps(seconds))
"""
# Task runs per flow run: the Parameter and five tasks; mapped, the Parameter, five parents, 5 x 8 children.
TASKS_PER_RUN = {"serial": 6, "mapped": 1 + 5 + 5 * 8}
LABELS = {"serial": "serial", "mapped": "mapped, 2 threads"}


def measure(variant: str, runs: int) -> dict[str, float]:
    """Seconds per flow run of each flow, in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(runs), variant],
        env=dict(os.environ),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="flow runs of each flow timed in each process")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    seconds = {variant: measure(variant, args.runs) for variant in ("stock", "fixed")}
    for flow in ("serial", "mapped"):
        for variant in ("stock", "fixed"):
            value = seconds[variant][flow]
            print(
                f"{LABELS[flow] + ',':18s} {variant}  {1000 * value:7.1f} ms per flow run, "
                f"{1000 * value / TASKS_PER_RUN[flow]:6.2f} ms per task run"
            )
        print(f"{LABELS[flow] + ',':18s} ratio  {seconds['stock'][flow] / seconds['fixed'][flow]:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
