"""Is my exercise right? Compares an attendee's file with the exercise's solution.

    make check-exercise N=1 FILE=my_exercise1.py
    python tools/check_exercise.py 1 my_exercise1.py

It checks what the exercise asks, on a file that has only that exercise's changes:
the flow's Parameters, its tasks and what each task takes from which (the edges),
against the solution's flow; then, for the exercises that run without a server
(1, 3, 4), it runs the file as the README does on the slides in --data-dir and
compares every slide's status and percent blurry with pipeline.py's on the same
slides. It prints "right" (exit 0), or each difference in one line (exit 1).
Exit 2: the file cannot be read or imported (the line says why).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

from slideqc.output import results

ROOT = Path(__file__).resolve().parents[1]

# Exercise -> (its solution, the options the README runs it with; None: it needs a server to run).
EXERCISES = {
    1: ("solutions/pipeline_prefect.py", []),
    2: ("solutions/pipeline_prefect_server.py", None),
    3: ("solutions/pipeline_prefect_mapped.py", []),
    4: ("solutions/pipeline_prefect_parallel.py", ["--executor", "threads", "--workers", "2"]),
    5: ("solutions/pipeline_prefect_parallel_server.py", None),
}
# What each exercise's file must call, when it is not run (the server exercises cannot be, here).
SERVER_CALLS = {
    1: ["flow.run("],
    2: ["flow.register(", ".create_flow_run("],
    3: ["flow.run("],
    4: ["executor=executor"],
    5: ["flow.register(", ".create_flow_run(", "flow.executor"],
}


def load_flow(path: Path):
    """The module-level ``flow`` of a lesson file."""
    spec = importlib.util.spec_from_file_location(f"checked_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    flow = getattr(module, "flow", None)
    if flow is None:
        raise LookupError(f"{path} has no module-level `flow` (a `with Flow(...) as flow:` block)")
    return flow


def shape(flow) -> dict[str, set]:
    """A flow's Parameters, tasks and edges, by name: what the picture of the flow shows."""
    parameters = {p.name for p in flow.parameters()}
    return {
        "Parameter": parameters,
        "task": {t.name for t in flow.tasks} - parameters,
        "edge": {
            (e.upstream_task.name, e.downstream_task.name, e.key or "", "mapped" if e.mapped else "")
            for e in flow.edges
        },
    }


def flow_differences(mine, solution) -> list[str]:
    found, wanted = shape(mine), shape(solution)
    lines = []
    for kind in ("Parameter", "task", "edge"):
        for item in sorted(wanted[kind] - found[kind], key=str):
            lines.append(f"missing {kind}: {describe(kind, item)}")
        for item in sorted(found[kind] - wanted[kind], key=str):
            lines.append(f"not in the solution, {kind}: {describe(kind, item)}")
    return lines


def describe(kind: str, item) -> str:
    if kind != "edge":
        return item
    upstream, downstream, key, mapped = item
    return f"{upstream} -> {downstream}" + (f" (as {key})" if key else "") + (" mapped" if mapped else "")


def run_rows(script: Path, options: list[str], data_dir: Path, output_dir: Path) -> dict[str, tuple]:
    """Run a script as the README does; its rows as slide -> (status, percent blurry)."""
    proc = subprocess.run(
        [
            sys.executable,
            str(script),
            "--data-dir",
            str(data_dir),
            "--output-dir",
            str(output_dir),
            *options,
            "--log-level",
            "WARNING",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    runs = [p for p in output_dir.iterdir() if p.is_dir() and not p.name.startswith(".")] if output_dir.exists() else []
    if len(runs) != 1 or not (runs[0] / "results.tsv").is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{script.name} did not write a results.tsv (exit {proc.returncode}): {last}")
    rows = results.read_results(runs[0] / "results.tsv")
    return {r["file_name"]: (r["status"], r["percent_blurry"]) for r in rows}


def result_differences(mine: dict, expected: dict) -> list[str]:
    lines = []
    for name in sorted(set(mine) | set(expected)):
        if name not in mine:
            lines.append(f"{name}: no row in your results.tsv")
        elif name not in expected:
            lines.append(f"{name}: a row pipeline.py does not have")
        elif mine[name] != expected[name]:
            lines.append(
                f"{name}: yours {mine[name][0]}, {mine[name][1]} % blurry; "
                f"pipeline.py's {expected[name][0]}, {expected[name][1]} % blurry"
            )
    return lines


def check(exercise: int, path: Path, data_dir: Path) -> list[str]:
    solution, options = EXERCISES[exercise]
    differences = flow_differences(load_flow(path), load_flow(ROOT / solution))
    if options is None:
        text = path.read_text(encoding="utf-8")
        differences += [f"missing call: {call}" for call in SERVER_CALLS[exercise] if call not in text]
        return differences
    if differences:  # the flow first: its run is worth comparing once the flow is the solution's
        return differences
    with tempfile.TemporaryDirectory() as tmp:
        mine = run_rows(path.resolve(), options, data_dir, Path(tmp) / "mine")
        expected = run_rows(ROOT / "pipeline.py", [], data_dir, Path(tmp) / "expected")
    return differences + result_differences(mine, expected)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("exercise", type=int, choices=sorted(EXERCISES), help="the exercise's number")
    parser.add_argument("file", type=Path, help="your file for that exercise")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "data", help="slides to run it on (default: data)")
    parser.add_argument("--flow-only", action="store_true", help="compare the flows only; do not run the file")
    args = parser.parse_args(argv)
    if args.flow_only:
        EXERCISES[args.exercise] = (EXERCISES[args.exercise][0], None)
    if EXERCISES[args.exercise][1] is not None and not any(args.data_dir.glob("*.svs")):
        print(
            f"error: {args.data_dir}: no slides to run it on; make some: python get_data.py --synthetic 3",
            file=sys.stderr,
        )
        return 2
    if not args.file.is_file():
        print(
            f"error: {args.file}: no such file; copy its start first (the README's exercise says how)", file=sys.stderr
        )
        return 2
    try:
        differences = check(args.exercise, args.file, args.data_dir)
    except (RuntimeError, LookupError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the attendee's own code failed to import: say where, in one line
        where = traceback.extract_tb(error.__traceback__)[-1]
        print(
            f"error: {args.file} does not import: {type(error).__name__}: {error} "
            f"({Path(where.filename).name}, line {where.lineno})",
            file=sys.stderr,
        )
        return 2
    if differences:
        print(f"exercise {args.exercise}: not yet; {len(differences)} difference(s) from the solution:")
        print("\n".join(f"  {line}" for line in differences))
        return 1
    ran = "" if EXERCISES[args.exercise][1] is None else ", and its results equal pipeline.py's"
    print(f"exercise {args.exercise}: right (its flow is the solution's{ran})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
