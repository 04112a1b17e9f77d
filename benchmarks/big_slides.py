"""Real-size slides: QC time and peak memory, against the time to decode their tissue tiles.

Makes (or reuses) the slides of ``synthetic.big_specs()`` in ``--dest``, runs
pipeline.py on each in a child process and measures its wall time and peak
memory (the child's ru_maxrss), then times OpenSlide decoding only the blur
level regions the QC reads (the tissue tiles with their context), nothing
else. Writes the rows into docs/benchmark.md between the big-slides markers.

    python benchmarks/big_slides.py [--compare] [--dest data/benchmark-big] [--only NAME ...]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from slideqc import qc, synthetic, tiled
from slideqc.output import files
from slideqc.settings import QCSettings

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- big-slides:start -->", "<!-- big-slides:end -->"
TARGET_RSS = 1.5 * 2**30  # bytes, for the 80k x 60k slide
TARGET_RATIO = 1.5  # QC time / decode time


@dataclass
class Child:
    returncode: int
    seconds: float
    max_rss: int  # bytes
    stdout: str
    stderr: str


def run_measured(argv: list[str], env: dict | None = None, cwd: Path = ROOT) -> Child:
    """Run ``argv`` and measure that child alone: wall time and peak resident memory (ru_maxrss)."""
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=full_env, cwd=cwd, text=True)
        # wait4 gives this child's own resource usage (RUSAGE_CHILDREN would mix in earlier children).
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Child(proc.returncode, seconds, usage.ru_maxrss * 1024, out.read(), err.read())


def decode_seconds(path: Path, params: QCSettings, workers: int = 1) -> tuple[float, int, int]:
    """Seconds for OpenSlide to read the blur level regions the QC reads; (seconds, tiles read, tiles in all)."""
    s = qc.segment_tissue(qc.load_slide(path, params.image_work_size, params.blur_work_size))
    shape = s.work_shape(params.blur_work_size)
    wanted, all_tiles = tiled.plan(shape, s.masks["tissue"], params.blur_radius)
    regions = [s.level_region(params.blur_work_size, t.read) for t in wanted]
    slide = s.slide

    def read(region) -> None:
        level, location, size = region
        slide.read_region(location, level, size)

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(read, regions))
    return time.perf_counter() - started, len(wanted), len(all_tiles)


# One way of measuring the blur of a slide, in a child process: the whole blur work level at
# once (as before tiling), or tiled with a tile size and a number of threads.
BLUR_CHILD = """
import json, sys, time
from slideqc import algorithms, qc, tiled
from slideqc.settings import QCSettings

ROOT = Path(__file__).resolve().parents[1]
mode, tile_size, workers, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
params = QCSettings()
s = qc.segment_tissue(qc.load_slide(path, params.image_work_size, params.blur_work_size))
started = time.perf_counter()
if mode == "untiled":
    blurry = algorithms.blur_mask(s.get_image(params.blur_work_size), params.blur_radius, params.blur_threshold)
    fraction = algorithms.blurry_fraction(blurry, s.masks["tissue"], params.blur_radius)
else:
    fraction = tiled.measure_blur(s, params.blur_work_size, s.masks["tissue"], params.blur_radius,
                                  params.blur_threshold, tile_size=tile_size, workers=workers).fraction
print(json.dumps(dict(seconds=time.perf_counter() - started, fraction=fraction)))
"""


def compare_blur(path: Path) -> list[str]:
    """Table rows: the blur step untiled, tiled serially and on threads, at a few tile sizes."""
    threads = max(2, tiled.threads_per_slide())
    ways = [
        ("untiled", 0, 1),
        ("tiled", tiled.TILE_SIZE, 1),
        ("tiled", tiled.TILE_SIZE, threads),
        ("tiled", 1024, threads),
        ("tiled", 2048, threads),
    ]
    rows = []
    for mode, tile_size, workers in ways:
        child = run_measured([sys.executable, "-c", BLUR_CHILD, mode, str(tile_size), str(workers), str(path)])
        how = "whole 10x level at once" if mode == "untiled" else f"tiles of {tile_size}, {workers} thread(s)"
        if child.returncode != 0 and mode == "untiled":  # refused by MAX_READ_PIXELS: level 0 of a 20x slide
            reason = child.stderr.strip().splitlines()[-1].split(": ", 1)[-1]  # drop the exception type
            rows.append(f"| {path.name} | {how} | refused: {reason} | | |")
            print(rows[-1], flush=True)
            continue
        if child.returncode != 0:
            raise SystemExit(f"big_slides: blur of {path.name} ({mode}) failed:\n{child.stderr}")
        found = json.loads(child.stdout)
        rows.append(
            f"| {path.name} | {how} | {found['seconds']:.1f} | {child.max_rss / 2**30:.2f} GB "
            f"| {100 * found['fraction']:.3f} |"
        )
        print(rows[-1], flush=True)
    return rows


def make_slides(dest: Path, names: list[str] | None) -> list[tuple[Path, Child | None]]:
    """The big slides, generated in a child (measured) when missing."""
    made = []
    for index, spec in enumerate(synthetic.big_specs()):
        if names and spec.name not in names:
            continue
        path = dest / spec.name
        child = None
        if synthetic.read_truth(path) is None or not path.is_file():
            code = (
                f"from pathlib import Path; from slideqc import synthetic; "
                f"synthetic.write_slide(synthetic.big_specs()[{index}], Path({str(path)!r}))"
            )
            child = run_measured([sys.executable, "-c", code])
            if child.returncode != 0:
                raise SystemExit(f"big_slides: generating {spec.name} failed:\n{child.stderr}")
            print(f"{spec.name}: generated in {child.seconds:.0f} s, peak {child.max_rss / 2**20:.0f} MB", flush=True)
        made.append((path, child))
    return made


def qc_row(path: Path, generated: Child | None, params: QCSettings) -> dict:
    with tempfile.TemporaryDirectory() as out:
        child = run_measured(
            [sys.executable, str(ROOT / "pipeline.py"), "--files", str(path), "--output-dir", out, "--run-name", "big"]
        )
        if child.returncode != 0:
            raise SystemExit(f"big_slides: QC of {path.name} failed:\n{child.stderr}")
        with open(Path(out) / "big" / "results.tsv", encoding="utf-8") as handle:
            [row] = list(csv.DictReader(handle, delimiter="\t"))
    decode, read, total = decode_seconds(path, params)
    decode_threads, _, _ = decode_seconds(path, params, workers=tiled.threads_per_slide())
    qc_seconds = sum(float(row[f"seconds_{step}"]) for step in ("load", "tissue", "blur"))
    return dict(
        row=row,
        child=child,
        generated=generated,
        decode=decode,
        decode_threads=decode_threads,
        tiles=f"{read} / {total}",
        qc_seconds=qc_seconds,
    )


def markdown(rows: list[dict], command: str, comparison: list[str]) -> str:
    lines = [
        f"Made by `{command}` on {os.cpu_count()} cores ({tiled.threads_per_slide()} tile threads). "
        "Each slide is checked by pipeline.py in a child process: *QC* is its load, tissue and blur steps, "
        "*peak memory* the child's ru_maxrss (pictures included). *Decode* is OpenSlide reading only the "
        "regions the blur step reads (the tissue tiles at the blur level, with their context), serially "
        "and on the same number of threads. Targets: peak memory <= 1.5 GB for the 80k x 60k slide, "
        "QC <= 1.5x decode. Timings on a shared machine are noisy: compare ratios, not seconds.",
        "",
        "| slide | level 0 | tissue | blur tiles read | QC s (blur s) | decode s serial / threads "
        "| QC / decode serial / threads | peak memory | % blurry (truth) | generation s, peak |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        row, child, gen = r["row"], r["child"], r["generated"]
        generation = f"{gen.seconds:.0f} s, {gen.max_rss / 2**20:.0f} MB" if gen else "reused"
        lines.append(
            f"| {row['file_name']} | {row['width']} x {row['height']} at {float(row['objective_power']):g}x "
            f"| {100 * float(row['tissue_fraction']):.0f} % | {r['tiles']} "
            f"| {r['qc_seconds']:.1f} ({float(row['seconds_blur']):.1f}) "
            f"| {r['decode']:.1f} / {r['decode_threads']:.1f} "
            f"| {r['qc_seconds'] / r['decode']:.2f} / {r['qc_seconds'] / r['decode_threads']:.2f} "
            f"| {child.max_rss / 2**30:.2f} GB | {float(row['percent_blurry']):.1f} "
            f"({float(row['true_percent_blurry']):.1f}) | {generation} |"
        )
    if comparison:
        lines += [
            "",
            "The blur step alone, each way in its own child process (`--compare`): seconds, the child's "
            "peak memory (tissue step included) and the percent blurry, which must not change.",
            "",
            "| slide | blur measured on | blur s | peak memory | % blurry |",
            "|---|---|---|---|---|",
            *comparison,
        ]
    return "\n".join(lines)


def write_section(doc: Path, section: str, start: str = START, end: str = END, title: str = "Real-size slides") -> None:
    """Put ``section`` between the markers in ``doc``, keeping the rest; make the doc, or a section
    ``## <title>`` at its end, if missing."""
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Benchmark\n"
    if start not in text or end not in text:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n{start}\n{end}\n"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    files.atomic_write_bytes(doc, f"{head}{start}\n{section}\n{end}{tail}".encode())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dest",
        type=Path,
        default=ROOT / "data" / "benchmark-big",
        help="where the big slides are made and kept (data/ is not tracked)",
    )
    parser.add_argument("--only", nargs="+", metavar="NAME", help="only these slides of synthetic.big_specs()")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmark.md")
    parser.add_argument(
        "--compare",
        action="store_true",
        help="also time the blur step untiled (the whole 10x level: ~4 GB for 80k x 60k), "
        "serial and at other tile sizes",
    )
    args = parser.parse_args()
    params = QCSettings()
    rows, comparison = [], []
    for path, generated in make_slides(args.dest, args.only):
        if args.compare:
            comparison += compare_blur(path)
        rows.append(r := qc_row(path, generated, params))
        print(
            f"{path.name}: QC {r['qc_seconds']:.1f} s, peak {r['child'].max_rss / 2**30:.2f} GB, decode "
            f"{r['decode']:.1f} s serial, {r['decode_threads']:.1f} s threads, tiles {r['tiles']}, "
            f"{r['row']['percent_blurry']} % blurry (truth {r['row']['true_percent_blurry']})",
            flush=True,
        )
    command = (
        "python benchmarks/big_slides.py"
        + (" --compare" if args.compare else "")
        + (f" --only {' '.join(args.only)}" if args.only else "")
    )
    write_section(args.out, markdown(rows, command, comparison))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
