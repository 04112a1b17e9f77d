"""Compare a run's results with the ground truth of synthetic slides (make demo ends with this).

    python tools/compare_truth.py output/run-20261122-101500 --data-dir data

The QC never reads ground truth; this tool, the tests and the benchmarks do.
Slides without a truth file (real slides) show an empty truth column.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from slideqc import synthetic
from slideqc.output import results
from slideqc.output.files import RESULTS_FILE


def table(rows: list[dict], data_dir: Path) -> str:
    lines = [f"{'slide':40s} {'tissue %':>8s} {'% blurry':>9s} {'truth':>7s}  result"]
    for row in rows:
        if row["status"] not in results.JUDGED:
            lines.append(f"{row['file_name'][:40]:40s} {'':>8s} {'':>9s} {'':>7s}  {row['status'].upper()}")
            continue
        truth = synthetic.read_truth(data_dir / row["file_name"])
        true_blur = "" if truth is None else f"{truth.percent_blurry:.1f}"
        verdict = "RESCAN" if row["rescan"] == "true" else "ok"
        lines.append(
            f"{row['file_name'][:40]:40s} {100 * float(row['tissue_fraction']):8.1f} "
            f"{float(row['percent_blurry']):9.1f} {true_blur:>7s}  {verdict}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run folder (or its results.tsv)")
    parser.add_argument("--data-dir", type=Path, default=Path("data"), help="where the slides and their truth are")
    args = parser.parse_args(argv)
    tsv = args.run_dir if args.run_dir.suffix == ".tsv" else args.run_dir / RESULTS_FILE
    if not tsv.is_file():
        print(f"error: {tsv}: no results.tsv there; run pipeline.py first", file=sys.stderr)
        return 2
    print(table(results.read_results(tsv), args.data_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
