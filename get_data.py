"""Get slides for the workshop into data/.

    python get_data.py --synthetic 3      # synthetic demo slides with ground truth, offline

Synthetic slides are Aperio-style SVS files with their true tissue and blur
masks beside them (see slideqc/synthetic.py).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from slideqc import synthetic


def make_synthetic(count: int, dest: Path, seed: int, kind: str, overwrite: bool) -> list[Path]:
    specs = synthetic.benchmark_specs(count, seed) if kind == "benchmark" else synthetic.demo_specs(count, seed)
    paths = []
    for spec in specs:
        started = time.perf_counter()
        path = synthetic.write_set([spec], dest, overwrite=overwrite)[0]
        truth = synthetic.read_truth(path)
        print(f"{path}: {spec.width}x{spec.height} px at {spec.magnification:g}x, "
              f"{truth.percent_blurry:.1f} % of the tissue blurred ({time.perf_counter() - started:.1f} s)")
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dest", type=Path, default=Path("data"), help="folder to put the slides in")
    parser.add_argument("--synthetic", type=int, metavar="N",
                        help="make N synthetic slides (0 %%, ~30 %%, ~70 %% of the tissue blurred, cycling)")
    parser.add_argument("--kind", choices=["demo", "benchmark"], default="demo",
                        help="synthetic set: demo (8k x 6k px) or benchmark (20k x 15k px)")
    parser.add_argument("--seed", type=int, default=2021, help="seed of the synthetic slides")
    parser.add_argument("--overwrite", action="store_true", help="remake synthetic slides that exist")
    args = parser.parse_args(argv)
    if args.synthetic is None:
        parser.error("nothing to do: pass --synthetic N")
    if args.synthetic < 1:
        parser.error(f"--synthetic: must be >= 1, got {args.synthetic}")
    make_synthetic(args.synthetic, args.dest, args.seed, args.kind, args.overwrite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
