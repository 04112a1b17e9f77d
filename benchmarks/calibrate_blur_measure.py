"""Which focus measure holds on pale tissue and fine blur? Measure both on synthetic slides.

Three sets of small 40x slides (``--size`` px wide at level 0, 0.25 µm per pixel),
each with its true masks, measured by the QC's own steps (tissue at 1.25x, blur
at 10x tile by tile, blur radius 7 px) with each measure at its default
threshold (slideqc.algorithms.DEFAULT_THRESHOLDS):

- *stain*: the stain at 100, 50, 35, 25 and 15 % of its usual strength, sharp and
  with 30 % of the tissue blurred at 1 and at 2 µm;
- *sigma*: blur sigmas 0.5 to 4 µm at 5, 8, 15, 30 and 60 % of the tissue blurred;
- *sub-micron*: some of them again at the 20x blur work size;
- *time*: one larger slide, the whole QC per measure.

Per slide it also reports the truth inside the measurable tissue (the QC's tissue
mask eroded as algorithms.measurable_tissue erodes it), which separates the
error of the count from the error of the measure, and the blur step's time per
measure. Writes docs/blur_measure.md.

    python benchmarks/calibrate_blur_measure.py [--size 4096] [--dest DIR]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from slideqc import algorithms, qc, synthetic, tiled
from slideqc.output.files import atomic_write_bytes
from slideqc.settings import JUDGE_LIMITS

ROOT = Path(__file__).resolve().parents[1]

# The tables go between these marks; the findings written around them are kept.
START, END = "<!-- calibration:start -->", "<!-- calibration:end -->"

MEASURES = algorithms.MEASURES
STAINS = (1.0, 0.5, 0.35, 0.25, 0.15, 0.12, 0.1)
STAIN_SIGMAS_UM = (1.0, 2.0)
SIGMAS_UM = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
FRACTIONS = (0.05, 0.08, 0.15, 0.30, 0.60)
BLUR_RADIUS = 7.0
REPEATS = 3  # timing: the best of this many runs of the blur step per slide and measure
# The sub-micron trial: the normalized measure at 20x, the same 7 µm window (14 px), and the threshold
# that separates sharp tissue from a 0.5 µm blur there (sharp H&E's 1st percentile is ~0.021, a
# 0.5 µm blur's 99th ~0.020: measured on these slides).
SUBMICRON_WORK_SIZE, SUBMICRON_RADIUS, SUBMICRON_THRESHOLD = "20x", 14.0, 0.021
TIMING_SCALE = 4  # the timing slide is this many times --size wide: big enough that reading it dominates


@dataclass
class Row:
    spec: synthetic.SlideSpec
    truth: float  # true percent blurry of the tissue
    truth_inner: float  # true percent blurry of the measurable (eroded) tissue
    contrast: float  # algorithms.stain_contrast, 8-bit gray levels
    found: dict[str, float] = field(default_factory=dict)  # measure (or measure@work size) -> percent
    seconds: dict[str, float] = field(default_factory=dict)  # measure -> blur step, best of REPEATS


def specs(size: int) -> dict[str, list[synthetic.SlideSpec]]:
    common = dict(width=size, height=size * 3 // 4)

    def spec(name: str, **kw) -> synthetic.SlideSpec:
        return synthetic.SlideSpec(name=f"{name}.svs", **common, **kw)

    stain = []
    for k in STAINS:
        stain.append(spec(f"stain{k:g}_sharp", seed=11, stain=k))
        stain += [
            spec(f"stain{k:g}_sigma{s:g}", seed=11, stain=k, blurred_fraction=0.3, blur_sigma_um=(s, s))
            for s in STAIN_SIGMAS_UM
        ]
    sigma = [
        spec(f"sigma{s:g}_blur{round(100 * f):02d}", seed=20 + i, blurred_fraction=f, blur_sigma_um=(s, s))
        for s in SIGMAS_UM
        for i, f in enumerate(FRACTIONS)
    ]
    return {"stain": stain, "sigma": sigma}


def true_inner(s, path: Path, work_size: str) -> float:
    """The true percent blurry of the measurable tissue: the truth counted where the QC counts."""
    true_tissue, true_blur = synthetic.read_truth_masks(path)
    shape = s.work_shape(work_size)
    tissue = algorithms.resize_mask(s.masks["tissue"], shape)
    inner = algorithms.measurable_tissue(tissue, BLUR_RADIUS)
    blurred = algorithms.resize_mask(true_blur, shape)
    return 100 * algorithms.fraction_of(blurred, inner) if inner.any() else float("nan")


def measure(path: Path, submicron: bool = False, timed: bool = True) -> Row:
    truth = synthetic.read_truth(path)
    s = qc.segment_tissue(qc.load_slide(path))
    contrast = algorithms.stain_contrast(s.get_image(s.image_work_size), s.masks["tissue"])
    row = Row(
        synthetic.SlideSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in truth.spec.items()}),
        truth.percent_blurry,
        true_inner(s, path, "10x"),
        contrast,
    )
    runs = [(name, "10x", BLUR_RADIUS, None, name) for name in MEASURES]
    if submicron:
        runs.append(("normalized@20x", SUBMICRON_WORK_SIZE, SUBMICRON_RADIUS, SUBMICRON_THRESHOLD, "normalized"))
    for key, work_size, radius, threshold, name in runs:
        best = float("inf")
        for _ in range(REPEATS if timed else 1):
            started = time.perf_counter()
            found = tiled.measure_blur(s, work_size, s.masks["tissue"], radius, threshold, measure=name)
            best = min(best, time.perf_counter() - started)
        row.found[key] = 100 * found.fraction
        row.seconds[key] = best
    s.close()
    return row


def time_whole_qc(dest: Path, width: int) -> dict:
    """Seconds of the whole QC of one larger slide per measure (best of REPEATS, measures alternating)."""
    spec = synthetic.SlideSpec(
        name="timing.svs",
        width=width,
        height=width * 3 // 4,
        seed=31,
        blurred_fraction=0.3,
        blur_sigma_um=(1.5, 3.0),
        downsamples=(1, 4, 16, 32),
    )
    path = synthetic.write_set([spec], dest / "timing")[0]
    best = {"size": width}
    for _ in range(REPEATS):
        for name in MEASURES:
            started = time.perf_counter()
            s = qc.segment_tissue(qc.load_slide(path))
            blur_started = time.perf_counter()
            tiled.measure_blur(s, "10x", s.masks["tissue"], BLUR_RADIUS, None, measure=name)
            done = time.perf_counter()
            s.close()
            best[name] = min(best.get(name, float("inf")), done - started)
            best[name + " blur"] = min(best.get(name + " blur", float("inf")), done - blur_started)
    print("timing:", best, flush=True)
    return best


def fmt(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f}"


def stain_table(rows: list[Row]) -> list[str]:
    lines = [
        "| stain | contrast (gray levels) | too faint | blur sigma (µm) | true % | true % in measured tissue | "
        + " | ".join(MEASURES)
        + " |",
        "|---|---|---|---|---|---|" + "---|" * len(MEASURES),
    ]
    for r in rows:
        sigma = "sharp" if r.spec.blurred_fraction == 0 else f"{r.spec.blur_sigma_um[0]:g}"
        lines.append(
            f"| {100 * r.spec.stain:g} % | {r.contrast:.0f} | {'yes' if r.contrast < JUDGE_LIMITS.min_stain_contrast else 'no'}"
            f" | {sigma} | {r.truth:.1f} | {fmt(r.truth_inner)} | "
            + " | ".join(fmt(r.found[m]) for m in MEASURES)
            + " |"
        )
    return lines


def sigma_table(rows: list[Row]) -> list[str]:
    head = "| blur sigma (µm) | measure | " + " | ".join(f"{round(100 * f)} %" for f in FRACTIONS) + " | worst error |"
    lines = [head, "|---|---|" + "---|" * (len(FRACTIONS) + 1)]
    for sigma in SIGMAS_UM:
        cells = [r for r in rows if r.spec.blur_sigma_um[0] == sigma]
        for label, value in [("truth", lambda r: r.truth), ("truth in measured tissue", lambda r: r.truth_inner)] + [
            (m, lambda r, m=m: r.found[m]) for m in MEASURES
        ]:
            worst = max(abs(value(r) - r.truth) for r in cells) if label != "truth" else 0.0
            lines.append(
                f"| {sigma:g} | {label} | "
                + " | ".join(fmt(value(r)) for r in cells)
                + f" | {'' if label == 'truth' else f'{worst:.1f}'} |"
            )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="slide width in pixels at 40x")
    parser.add_argument("--dest", type=Path, help="keep the slides here (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "blur_measure.md")
    args = parser.parse_args()
    started = time.perf_counter()
    sets = specs(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        dest = args.dest or Path(tmp)
        rows: dict[str, list[Row]] = {}
        for set_name, set_specs in sets.items():
            paths = synthetic.write_set(set_specs, dest / set_name)
            rows[set_name] = []
            for path in paths:
                row = measure(path)
                rows[set_name].append(row)
                print(
                    f"{path.stem}: truth {row.truth:.1f} (measured tissue {row.truth_inner:.1f}), contrast "
                    f"{row.contrast:.0f},",
                    ", ".join(f"{m} {v:.1f}" for m, v in row.found.items()),
                    flush=True,
                )
        submicron = []
        for path in [
            dest / "stain" / f"{name}.svs" for name in ("stain1_sharp", "stain0.25_sharp", "stain0.25_sigma1")
        ] + [dest / "sigma" / f"sigma{s:g}_blur{f:02d}.svs" for s, f in ((0.5, 5), (0.5, 30), (1, 30), (2, 30))]:
            row = measure(path, submicron=True, timed=False)
            submicron.append(row)
            print(f"{path.stem} at 20x:", ", ".join(f"{m} {v:.1f}" for m, v in row.found.items()), flush=True)
        timing = time_whole_qc(dest, args.size * TIMING_SCALE)
    every = rows["stain"] + rows["sigma"]
    seconds = {m: statistics.median(r.seconds[m] for r in every) for m in MEASURES}
    ratio = statistics.median(r.seconds["normalized"] / r.seconds["laplacian"] for r in every)
    lines = [
        f"Made by `python benchmarks/calibrate_blur_measure.py` (--size {args.size}, "
        f"{time.perf_counter() - started:.0f} s on this machine): synthetic 40x slides ({args.size} x "
        f"{args.size * 3 // 4} px at level 0, 0.25 µm per pixel) with their true masks, measured by the QC's "
        f"own steps: tissue at 1.25x, blur at 10x tile by tile, blur radius {BLUR_RADIUS:g} px, each measure at its "
        f"default threshold ({', '.join(f'{m} {t:g}' for m, t in algorithms.DEFAULT_THRESHOLDS.items())}; "
        "`slideqc.algorithms.DEFAULT_THRESHOLDS`). Percent of the tissue found blurry against the truth. "
        "*True % in measured tissue* is the truth counted only where the QC counts (its tissue mask eroded by "
        "two blur radii, `algorithms.measurable_tissue`): the difference from the truth is the count's error, "
        "the rest is the measure's.",
        "",
        "## Stain strength",
        "",
        "The stains' optical density scaled (`SlideSpec(stain=...)`); sharp slides and 30 % of the tissue "
        "blurred. *Contrast* is `algorithms.stain_contrast` at 1.25x (glass minus tissue, median gray levels); "
        f"*too faint* is below `JudgeLimits.min_stain_contrast` ({JUDGE_LIMITS.min_stain_contrast:g} levels): the slide's status is *cannot judge*.",
        "",
        *stain_table(rows["stain"]),
        "",
        "## Blur sigma and blurred fraction",
        "",
        "The usual stain; each cell its own slide (its own layout), the worst error against the truth in "
        "the last column.",
        "",
        *sigma_table(rows["sigma"]),
        "",
        "## Sub-micron blur at 20x",
        "",
        f"Some of the same slides with the normalized measure at the {SUBMICRON_WORK_SIZE} blur work size "
        f"(blur radius {SUBMICRON_RADIUS:g} px: the same 7 µm window; threshold {SUBMICRON_THRESHOLD:g}, where sharp "
        "tissue and a 0.5 µm blur part there), beside both measures at 10x; the blur step's time, one run.",
        "",
        "| slide | true % | laplacian 10x | normalized 10x | normalized 20x | s 10x / 20x |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r.spec.name} | {r.truth:.1f} | {fmt(r.found['laplacian'])} | {fmt(r.found['normalized'])} | "
            f"{fmt(r.found['normalized@20x'])} | {r.seconds['normalized']:.3f} / {r.seconds['normalized@20x']:.3f} |"
            for r in submicron
        ],
        "",
        "## Time",
        "",
        f"The blur step (`tiled.measure_blur`, {tiled.threads_per_slide()} tile threads) per slide, median over the "
        f"{len(every)} slides, best of {REPEATS} runs each: "
        + ", ".join(f"{m} {seconds[m]:.3f} s" for m in MEASURES)
        + f"; normalized / laplacian, median of the per-slide ratios: {ratio:.2f}. These slides are small (their "
        "10x level is 1 MB): the compute alone. On a slide "
        f"{timing['size']} px wide at 40x (30 % blurred), the whole QC (open, tissue, blur; a fresh slide "
        f"object each run, best of {REPEATS}, the measures alternating): "
        + ", ".join(f"{m} {timing[m]:.2f} s (blur step {timing[m + ' blur']:.2f} s)" for m in MEASURES)
        + f"; normalized / laplacian **{timing['normalized'] / timing['laplacian']:.2f}** "
        f"(blur step {timing['normalized blur'] / timing['laplacian blur']:.2f}).",
    ]
    section = "\n".join(lines)
    text = (
        args.out.read_text(encoding="utf-8")
        if args.out.is_file()
        else ("# Which focus measure holds on pale tissue and fine blur\n")
    )
    if START not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{START}\n{END}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(args.out, f"{head}{START}\n{section}\n{END}{tail}".encode())
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
