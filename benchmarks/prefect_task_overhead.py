"""Prefect 1's own cost per task run, stock and with the opt-in fix for it.

    python benchmarks/prefect_task_overhead.py [--runs 20]

Runs a flow of one Parameter and five trivial tasks ``--runs`` times in two
fresh processes: one with stock Prefect, one after calling
:func:`slideqc.prefect1.skip_identical_config_merge` (the opt-in of
extras/pipeline_prefect_fast_context.py). Prints milliseconds per flow run and
per task run for each, and their ratio.
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
if sys.argv[2] == "fixed":
    from slideqc import prefect1
    prefect1.skip_identical_config_merge()

@task
def same(x):
    return x

with Flow("overhead") as flow:
    value = Parameter("value", default=1)
    same(same(same(same(same(value)))))
logging.getLogger("prefect").setLevel("WARNING")
flow.run()  # the first run pays one-off costs
runs = int(sys.argv[1])
started = time.perf_counter()
for _ in range(runs):
    flow.run()
print(json.dumps((time.perf_counter() - started) / runs))
"""
TASKS_PER_RUN = 6  # the Parameter and five tasks


def measure(variant: str, runs: int) -> float:
    """Seconds per flow run in a fresh process."""
    env = dict(os.environ)
    done = subprocess.run([sys.executable, "-c", CHILD, str(runs), variant], env=env, cwd=ROOT,
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="flow runs timed in each process")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    seconds = {variant: measure(variant, args.runs) for variant in ("stock", "fixed")}
    for variant, value in seconds.items():
        print(f"{variant:13s} {1000 * value:7.1f} ms per flow run, {1000 * value / TASKS_PER_RUN:6.1f} ms per task run")
    print(f"ratio {seconds['stock'] / seconds['fixed']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
