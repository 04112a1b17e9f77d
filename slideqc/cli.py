"""The command-line vocabulary every script shares, and the start and end of every run.

Exit codes (all scripts):
  0  every slide was checked
  1  some slides failed (each has an error row in results.tsv)
  2  invalid usage: a bad parameter, a missing or empty data folder,
     an existing --run-name without --overwrite
  3  (server scripts) no Prefect server answers
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import fields
from pathlib import Path

from slideqc.output.files import RESULTS_FILE, RunExistsError, create_run_dir
from slideqc.output.results import SlideResult
from slideqc.output.run import RunWriter
from slideqc.settings import QCSettings

EXIT_OK, EXIT_SLIDES_FAILED, EXIT_USAGE, EXIT_NO_SERVER = 0, 1, 2, 3
EXECUTORS = ("local", "threads", "processes", "dask")

log = logging.getLogger("slideqc")


class UsageError(Exception):
    """Invalid usage: reported in one line, exit code 2."""


def build_parser(description: str, parallel: bool = False, slides: bool = True) -> argparse.ArgumentParser:
    """The shared options; ``parallel`` adds --workers (and --executor/--address for the mapped flows).

    ``slides=False`` leaves out --data-dir and --files, for a script that finds its slides elsewhere.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="Exit codes: 0 all slides checked, 1 some slides failed, 2 invalid usage.")
    data = parser.add_argument_group("slides")
    if slides:
        data.add_argument("--data-dir", default="data", help="folder with the slides")
    data.add_argument("--file-type", default="svs", help="slide file extension to look for")
    if slides:
        data.add_argument("--files", nargs="+", metavar="SLIDE",
                          help="check these slides instead of every slide in --data-dir")
    qc = parser.add_argument_group("QC settings")
    for setting in fields(QCSettings):
        qc.add_argument(f"--{setting.name.replace('_', '-')}", type=type(setting.default),
                        default=setting.default, help=setting.metadata["help"])
    out = parser.add_argument_group("output")
    out.add_argument("--output-dir", default="output", help="each run makes a new folder in here")
    out.add_argument("--run-name", help="name of the run folder (default: run-<date>-<time>)")
    out.add_argument("--overwrite", action="store_true", help="reuse an existing --run-name folder")
    out.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    speed = parser.add_argument_group("speed")
    speed.add_argument("--tile-threads", type=int,
                       help="threads that measure one slide's tiles (default: CPUs // --workers)")
    if parallel:
        speed.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                           help="slides checked side by side")
    return parser


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """The mapped flows' choice of executor (exercise 4)."""
    group = parser.add_argument_group("Prefect executor")
    group.add_argument("--executor", choices=EXECUTORS, default="threads",
                       help="local: LocalExecutor; threads/processes: LocalDaskExecutor; "
                            "dask: DaskExecutor on a local cluster of --workers processes")
    group.add_argument("--address", help="run on an existing Dask scheduler, e.g. tcp://127.0.0.1:8786 "
                       "(DaskExecutor(address=...))")


def add_persisted_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the flows whose steps persist their results (extras/pipeline_prefect_persisted.py)."""
    group = parser.add_argument_group("persisted results")
    group.add_argument("--redo", action="store_true", help="check slides again even when persisted results exist")
    group.add_argument("--cache-dir", help="where results persist between runs (default: <output-dir>/.qc-cache)")


def parse_args(doc: str, argv: list[str] | None = None, parallel: bool = False, executor: bool = False,
               persisted: bool = False) -> argparse.Namespace:
    """Parse a script's command line (its description: the first line of ``doc``) and set up logging."""
    parser = build_parser(doc.strip().splitlines()[0], parallel=parallel)
    if executor:
        add_executor_arguments(parser)
    if persisted:
        add_persisted_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    return args


def settings_from_args(args: argparse.Namespace) -> QCSettings:
    try:
        return QCSettings(**{setting.name: getattr(args, setting.name) for setting in fields(QCSettings)})
    except ValueError as error:
        name, _, message = str(error).partition(":")
        raise UsageError(f"--{name.replace('_', '-')}:{message}") from None


def tile_threads(args: argparse.Namespace) -> int:
    """--tile-threads, or each of the --workers slides' share of the cores (at least 1)."""
    if args.tile_threads is not None:
        if args.tile_threads < 1:
            raise UsageError(f"--tile-threads: must be >= 1, got {args.tile_threads}")
        return args.tile_threads
    if getattr(args, "address", None):
        return 1  # the cluster's workers run one slide per thread: no tile threads on top
    return max(1, (os.cpu_count() or 1) // max(1, getattr(args, "workers", 1)))


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


def check_usage(args: argparse.Namespace) -> tuple[QCSettings, list[Path], int]:
    """Everything about the command line that can be wrong, checked before anything is written."""
    settings = settings_from_args(args)
    if getattr(args, "workers", 1) < 1:
        raise UsageError(f"--workers: must be >= 1, got {args.workers}")
    threads = tile_threads(args)
    return settings, slide_paths(args), threads


class Run:
    """One run of a script: its settings, its slides, its run folder and the rows written so far."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.started = time.perf_counter()
        self.settings, self.file_names, self.tile_threads = check_usage(args)
        try:
            folder = create_run_dir(args.output_dir, args.run_name, args.overwrite)
        except (RunExistsError, ValueError) as error:
            raise UsageError(str(error)) from None
        self.writer = RunWriter(folder, self.settings)
        log.info("checking %d slide(s); outputs in %s", len(self.file_names), folder)

    @property
    def folder(self) -> Path:
        return self.writer.run_dir

    def add(self, row: SlideResult) -> None:
        self.writer.add(row)

    def add_all(self, rows: list[SlideResult]) -> None:
        self.writer.rows.extend(rows)

    def finish(self) -> int:
        """Write results.tsv and the report, print a summary table, return the exit code."""
        return finish_run(self.writer, self.started)


def finish_run(writer: RunWriter, started: float) -> int:
    """Write results.tsv and the report, print a summary table, return the exit code."""
    report = writer.finish()
    print(summary_table(writer.rows), flush=True)
    print(f"\n{len(writer.rows)} slide(s), {len(writer.failed)} failed, "
          f"{len(writer.flagged)} flagged for rescan, in {time.perf_counter() - started:.1f} s")
    print(f"results: {writer.run_dir / RESULTS_FILE}\nreport:  {report}")
    return EXIT_SLIDES_FAILED if writer.failed else EXIT_OK


def start_run(args: argparse.Namespace) -> Run:
    """Validate the arguments, find the slides and create the run folder."""
    return Run(args)


def summary_table(rows: list[SlideResult]) -> str:
    lines = [f"{'slide':40s} {'tissue %':>8s} {'% blurry':>9s}  result"]
    for row in sorted(rows, key=lambda r: r.file_name):
        if not row.ok:
            lines.append(f"{row.file_name[:40]:40s} {'':>8s} {'':>9s}  ERROR {row.error}")
            continue
        lines.append(f"{row.file_name[:40]:40s} {100 * row.tissue_fraction:8.1f} {row.percent_blurry:9.1f}  "
                     f"{'RESCAN' if row.rescan else 'ok'}")
    return "\n".join(lines)


def run_main(main, argv: list[str] | None = None) -> int:
    """Run a script's ``main(argv)``, turning usage errors into one line and exit code 2."""
    try:
        return main(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
