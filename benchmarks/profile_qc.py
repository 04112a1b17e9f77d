"""Where a slide's QC spends its time: seconds per step, against decoding the pixels it reads.

    python benchmarks/profile_qc.py                       # the 8 benchmark slides, 3 rounds
    python benchmarks/profile_qc.py --data-dir data/benchmark --rounds 5

Runs the QC as benchmarks/run_benchmark.py times it per slide (load, tissue, blur; one tile
thread) on every slide of ``--data-dir``, with the steps below wrapped in timers. Each step's
time is its own (exclusive): a step's time inside another wrapped step counts for the inner one.
Wall seconds summed over the slides and rounds; run_benchmark.py's QC / decode ratio is the
whole QC against *decode* alone.

- decode: OpenSlide's read_region (libopenslide decoding and its RGBA image);
- read copy: the rest of BaseImage.read_region (the RGBA image as an RGB array);
- focus measure: algorithms.blur_mask (gray, Laplacian, box filters, threshold);
- erosion: algorithms.measurable_tissue;
- tissue window: algorithms.resize_mask (the tissue mask at the blur resolution, per tile);
- counting: algorithms.BlurCounts.of and algorithms.bin_sums;
- tissue step: algorithms.tissue_mask and algorithms.stain_contrast;
- other: the rest of the QC (resizes, tile planning, Python).
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import openslide

from BaseImage import BaseImage
from slideqc import algorithms, qc
from slideqc.settings import QCSettings

ROOT = Path(__file__).resolve().parents[1]

STEPS = {  # step -> (owner, attribute) of the functions it times
    "decode": [(openslide.OpenSlide, "read_region")],
    "read copy": [(BaseImage, "read_region")],
    "focus measure": [(algorithms, "blur_mask")],
    "erosion": [(algorithms, "measurable_tissue")],
    "tissue window": [(algorithms, "resize_mask")],
    "counting": [(algorithms.BlurCounts, "of"), (algorithms, "bin_sums")],
    "tissue step": [(algorithms, "tissue_mask"), (algorithms, "stain_contrast")],
}


class Timers:
    """Exclusive seconds per step: time in a nested timed call is taken out of its caller's."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys([*STEPS, "other"], 0.0)
        self._stack: list[list] = []  # [step, seconds spent in nested timed calls]

    def wrap(self, step: str, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            self._stack.append([step, 0.0])
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent = time.perf_counter() - started
                _, nested = self._stack.pop()
                self.seconds[step] += spent - nested
                if self._stack:
                    self._stack[-1][1] += spent

        return timed

    def install(self) -> None:
        for step, places in STEPS.items():
            for owner, name in places:
                function = owner.__dict__[name]
                wrapped = self.wrap(step, function.__func__ if isinstance(function, classmethod) else function)
                setattr(owner, name, classmethod(wrapped) if isinstance(function, classmethod) else wrapped)


def qc_once(path: Path, params: QCSettings) -> None:
    qc.run_steps(path, params, tile_threads=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT / "data" / "benchmark",
        help="the slides (*.svs); benchmarks/run_benchmark.py makes data/benchmark",
    )
    parser.add_argument("--rounds", type=int, default=3, help="times each slide is checked (>= 1)")
    args = parser.parse_args(argv)
    paths = sorted(args.data_dir.glob("*.svs"))
    if not paths or args.rounds < 1:
        parser.error(f"no slides in {args.data_dir}" if not paths else "--rounds must be at least 1")
    params = QCSettings()
    for path in paths:  # once untimed: the files in the page cache, the imports done
        qc_once(path, params)
    timers = Timers()
    timers.install()
    started = time.perf_counter()
    for _ in range(args.rounds):
        for path in paths:
            qc_once(path, params)
    total = time.perf_counter() - started
    timers.seconds["other"] = total - sum(timers.seconds.values())
    print(
        f"{len(paths)} slides x {args.rounds} rounds: {total:.2f} s; QC / decode {total / timers.seconds['decode']:.2f}"
    )
    print("| step | s | % of the QC |\n|---|---:|---:|")
    for step, seconds in timers.seconds.items():
        print(f"| {step} | {seconds:.2f} | {100 * seconds / total:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
