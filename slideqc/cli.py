"""The command-line vocabulary every script shares, and the end of every run.

Exit codes (all scripts):
  0  every slide was checked
  1  some slides failed (each has an error row in results.tsv)
  2  invalid usage: a bad parameter, a missing or empty data folder,
     an existing --run-name without --overwrite
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from slideqc.qc import QCParams
from slideqc.results import RunExistsError, RunWriter, create_run_dir

EXIT_OK, EXIT_SLIDES_FAILED, EXIT_USAGE = 0, 1, 2

log = logging.getLogger("slideqc")


class UsageError(Exception):
    """Invalid usage: reported in one line, exit code 2."""


def build_parser(description: str, workers: bool = False) -> argparse.ArgumentParser:
    """The shared options; scripts add their own (executors and so on) to what this returns."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Exit codes: 0 all slides checked, 1 some slides failed, 2 invalid usage.")
    data = parser.add_argument_group("slides")
    data.add_argument("--data-dir", default="data", help="folder with the slides")
    data.add_argument("--file-type", default="svs", help="slide file extension to look for")
    data.add_argument("--files", nargs="+", metavar="SLIDE",
                      help="check these slides instead of every slide in --data-dir")
    qc = parser.add_argument_group("QC parameters")
    defaults = QCParams()
    qc.add_argument("--image-work-size", default=defaults.image_work_size,
                    help="work size for tissue segmentation: a magnification ('1.25x') or pixels ('1000')")
    qc.add_argument("--blur-work-size", default=defaults.blur_work_size,
                    help="work size for blur detection; blur is only visible at higher magnification")
    qc.add_argument("--blur-radius", type=float, default=defaults.blur_radius,
                    help="sigma of the Gaussian over the Laplacian, in pixels at the blur work size")
    qc.add_argument("--blur-threshold", type=float, default=defaults.blur_threshold,
                    help="in (0, 1]: smoothed |Laplacian| at or below this is blurry")
    qc.add_argument("--blur-max", type=float, default=defaults.blur_max,
                    help="fraction of the tissue (0.05 = 5%%) above which a slide needs a rescan")
    out = parser.add_argument_group("output")
    out.add_argument("--output-dir", default="output", help="each run makes a new folder in here")
    out.add_argument("--run-name", help="name of the run folder (default: run-<date>-<time>)")
    out.add_argument("--overwrite", action="store_true", help="reuse an existing --run-name folder")
    out.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    if workers:
        parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                            help="number of parallel workers")
    return parser


def params_from_args(args: argparse.Namespace) -> QCParams:
    try:
        return QCParams(image_work_size=args.image_work_size, blur_work_size=args.blur_work_size,
                        blur_radius=args.blur_radius, blur_threshold=args.blur_threshold,
                        blur_max=args.blur_max)
    except ValueError as error:
        name, _, message = str(error).partition(":")
        raise UsageError(f"--{name.replace('_', '-')}:{message}") from None


def slide_paths(args: argparse.Namespace) -> list[Path]:
    """The slides to check: --files, or every *.<file-type> in --data-dir, sorted."""
    if args.files:
        return [Path(f) for f in args.files]
    folder = Path(args.data_dir)
    if not folder.is_dir():
        raise UsageError(f"--data-dir: {folder} is not a folder (make slides with: python get_data.py --synthetic 3)")
    suffix = "." + args.file_type.lstrip(".").lower()
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == suffix and not p.name.startswith("."))
    if not paths:
        raise UsageError(f"--data-dir: no *{suffix} slides in {folder}")
    return paths


def setup_logging(level: str = "INFO") -> None:
    """Log the QC's messages to stderr; Prefect's own loggers keep their handlers."""
    logger = logging.getLogger("slideqc")
    logger.setLevel(getattr(logging, level))
    logger.propagate = False  # under Prefect the root logger may print too: say it once
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)


def start_run(args: argparse.Namespace) -> tuple[QCParams, list[Path], RunWriter]:
    """Validate the arguments, find the slides and create the run folder."""
    params = params_from_args(args)
    if getattr(args, "workers", 1) < 1:
        raise UsageError(f"--workers: must be >= 1, got {args.workers}")
    paths = slide_paths(args)
    try:
        run_dir = create_run_dir(args.output_dir, args.run_name, args.overwrite)
    except (RunExistsError, ValueError) as error:
        raise UsageError(str(error)) from None
    log.info("checking %d slide(s); outputs in %s", len(paths), run_dir)
    return params, paths, RunWriter(run_dir, params)


def finish_run(writer: RunWriter, started: float) -> int:
    """Write the report, print a summary table, return the exit code."""
    report = writer.finish()
    print(summary_table(writer), flush=True)
    print(f"\n{len(writer.rows)} slide(s), {len(writer.failed)} failed, "
          f"{len(writer.flagged)} flagged for rescan, in {time.perf_counter() - started:.1f} s")
    print(f"results: {writer.run_dir / 'results.tsv'}\nreport:  {report}")
    return EXIT_SLIDES_FAILED if writer.failed else EXIT_OK


def summary_table(writer: RunWriter) -> str:
    lines = [f"{'slide':40s} {'tissue':>7s} {'% blurry':>9s} {'truth':>7s}  result"]
    for row in sorted(writer.rows, key=lambda r: r.file_name):
        if not row.ok:
            lines.append(f"{row.file_name[:40]:40s} {'':>7s} {'':>9s} {'':>7s}  ERROR {row.error}")
            continue
        truth = "" if row.true_percent_blurry is None else f"{row.true_percent_blurry:.1f}"
        lines.append(f"{row.file_name[:40]:40s} {row.tissue_fraction:7.3f} {row.percent_blurry:9.1f} "
                     f"{truth:>7s}  {'RESCAN' if row.rescan else 'ok'}")
    return "\n".join(lines)


def run_main(main, argv: list[str] | None = None) -> int:
    """Run a script's ``main(argv)``, turning usage errors into one line and exit code 2."""
    try:
        return main(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
