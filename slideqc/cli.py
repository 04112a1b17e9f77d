"""The command-line vocabulary every script shares, and the start and end of every run.

Exit codes (all scripts):
  0    every slide was checked and judged
  1    some slides failed (each has an error row in results.tsv)
  2    invalid usage: a bad parameter, a missing, unreadable or empty data folder,
       an existing --run-name without --overwrite
  3    no Prefect server (server scripts) or Dask scheduler (--address) answers
  4    the outputs cannot be written (a full disk, no permission): one line names the path;
       the rows written so far stay in results.tsv, run.json says "running"
  5    every slide was checked, but some cannot be judged (status "cannot judge": no tissue,
       or too coarse a pixel size for blur); none failed
  130  interrupted (Ctrl-C): the rows so far stay in results.tsv, run.json says "running"
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import re
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path

from BaseImage import display_name
from slideqc import qc
from slideqc.output.files import RESULTS_FILE, RUN_FILE, RunExistsError, create_run_dir
from slideqc.output.results import SlideResult
from slideqc.output.run import RunWriter
from slideqc.settings import BATCH_SIZE, QCSettings

EXIT_OK, EXIT_SLIDES_FAILED, EXIT_USAGE, EXIT_NO_SERVER, EXIT_CANNOT_WRITE, EXIT_UNJUDGED = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130
EPILOG = (
    "Exit codes: 0 all slides checked and judged, 1 some slides failed, 2 invalid usage, "
    "3 no Prefect server or Dask scheduler answers, 4 cannot write the outputs (full disk, permissions), "
    "5 some slides cannot be judged (no tissue, too coarse a pixel size) and none failed, "
    '130 interrupted. Runs stopped by 4 or 130 keep their rows in results.tsv; run.json says "running".'
)
EXECUTORS = ("local", "threads", "processes", "dask")

log = logging.getLogger("slideqc")


class UsageError(Exception):
    """Invalid usage: reported in one line, exit code 2."""


class NoService(Exception):
    """No Prefect server or Dask scheduler answers (or cannot run the QC): one message, exit code 3."""


def build_parser(description: str, parallel: bool = False, slides: bool = True) -> argparse.ArgumentParser:
    """The shared options; ``parallel`` adds --workers (and --executor/--address for the mapped flows).

    ``slides=False`` leaves out --data-dir and --files, for a script that finds its slides elsewhere.
    """
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter, epilog=EPILOG
    )
    data = parser.add_argument_group("slides")
    if slides:
        data.add_argument("--data-dir", default="data", help="folder with the slides")
    data.add_argument("--file-type", default="svs", help="slide file extension to look for")
    if slides:
        data.add_argument(
            "--files", nargs="+", metavar="SLIDE", help="check these slides instead of every slide in --data-dir"
        )
    qc = parser.add_argument_group("QC settings")
    for setting in fields(QCSettings):
        qc.add_argument(
            f"--{setting.name.replace('_', '-')}",
            type=type(setting.default),
            default=setting.default,
            help=setting.metadata["help"],
        )
    out = parser.add_argument_group("output")
    out.add_argument("--output-dir", default="output", help="each run makes a new folder in here")
    out.add_argument("--run-name", help="name of the run folder (default: run-<date>-<time>)")
    out.add_argument("--overwrite", action="store_true", help="reuse an existing --run-name folder")
    out.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    speed = parser.add_argument_group("speed")
    speed.add_argument(
        "--tile-threads", type=int, help="threads that measure one slide's tiles (default: CPUs // --workers)"
    )
    if parallel:
        speed.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="slides checked side by side")
    return parser


def add_executor_arguments(parser: argparse.ArgumentParser) -> None:
    """The mapped flows' choice of executor (exercise 4); the Prefect 3 edition takes the same options."""
    group = parser.add_argument_group("Prefect executor")
    group.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="threads",
        help="local: one task at a time (LocalExecutor); threads / processes: a pool of --workers "
        "(LocalDaskExecutor; Prefect 3: ThreadPoolTaskRunner / ProcessPoolTaskRunner); "
        "dask: a local Dask cluster of --workers processes (DaskExecutor; DaskTaskRunner)",
    )
    group.add_argument(
        "--address",
        help="run on an existing Dask scheduler, e.g. tcp://127.0.0.1:8786 "
        "(DaskExecutor(address=...); Prefect 3: DaskTaskRunner(address=...))",
    )


def add_persisted_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of the flows whose steps persist their results (extras/pipeline_prefect_persisted.py)."""
    group = parser.add_argument_group("persisted results")
    group.add_argument("--redo", action="store_true", help="check slides again even when persisted results exist")
    group.add_argument("--cache-dir", help="where results persist between runs (default: <output-dir>/.qc-cache)")


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    """The batch size of a script that checks its slides as several flow runs (extras/pipeline_prefect_batches.py)."""
    group = parser.add_argument_group("batches")
    group.add_argument(
        "--batch-size",
        type=int,
        default=BATCH_SIZE,
        help="slides per flow run: the slides are checked as flow runs of this many, one after "
        "the other, so a run holds one batch's task states, not every slide's",
    )


def chunks(items: list, size: int) -> list[list]:
    """``items`` in consecutive lists of ``size`` (the last may be shorter)."""
    return [items[i : i + size] for i in range(0, len(items), size)]


def parse_args(
    doc: str,
    argv: list[str] | None = None,
    parallel: bool = False,
    executor: bool = False,
    persisted: bool = False,
    batches: bool = False,
) -> argparse.Namespace:
    """Parse a script's command line (its description: the first line of ``doc``) and set up logging."""
    parser = build_parser(doc.strip().splitlines()[0], parallel=parallel)
    if executor:
        add_executor_arguments(parser)
    if persisted:
        add_persisted_arguments(parser)
    if batches:
        add_batch_arguments(parser)
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
    try:
        found = sorted(p for p in folder.iterdir() if p.suffix.lower() == suffix)
    except OSError as error:
        raise UsageError(
            f"--data-dir: cannot read {folder}: {error.strerror}; check its permissions "
            "(the user running this needs to read and list it)"
        ) from None
    # Hidden files (a name starting with '.': '..svs', macOS's '._slide.svs' copies) are not slides
    # to check: said in one line, so none is skipped without a word.
    hidden = [p for p in found if p.name.startswith(".")]
    if hidden:
        log.warning(
            "skipping %d hidden file(s) in %s (names starting with '.'; rename them to check them): %s",
            len(hidden),
            folder,
            ", ".join(display_name(p.name) for p in hidden),
        )
    paths = [p for p in found if not p.name.startswith(".")]
    if not paths:
        raise UsageError(f"--data-dir: no *{suffix} slides in {folder}")
    return paths


class OneLineSlideErrors(logging.Filter):
    """A handler filter: a slide's known error is logged as one line, not with its traceback.

    Prefect logs every failed task with ``exc_info``; for a bad slide (a
    SlideError, an OpenSlide or OS error: qc.SLIDE_ERRORS) the traceback says
    nothing a lab can use, so the record keeps its message, with the error's one
    line added when the message lacks it, and loses the traceback. Any other
    exception (a bug) keeps its traceback. Names that are not UTF-8 are shown
    with display_name. The task's state still holds the exception: only the log changes.
    """

    # Prefect 3 says again, for every later step and for the flow run, that a slide's step failed:
    # the first line said it (the states in the UI still show every step).
    ECHOES = (
        "Finished in state NotReady(",
        "Encountered exception during execution: ",
        "Finished in state Failed('Flow run encountered an exception: ",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        said = record.getMessage()
        if (
            self.ECHOES[0] in said
            or self.ECHOES[2] in said
            or (said.startswith(self.ECHOES[1]) and isinstance(error, qc.SLIDE_ERRORS))
        ):
            return False
        if isinstance(error, qc.SLIDE_ERRORS):
            message = record.getMessage()
            text = " ".join(str(error).split())
            if text not in message:
                head, _, _ = message.partition("Exception encountered during task execution!")
                message = f"{head.rstrip()} {type(error).__name__}: {text}".strip()
            record.msg, record.args = message, None
            record.exc_info, record.exc_text = None, None
        if record.args or not isinstance(record.msg, str) or _has_surrogates(record.msg):
            record.msg, record.args = display_name(record.getMessage()), None
        return True


def _has_surrogates(text: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in text)


def quiet_slide_tracebacks(logger_prefix: str = "prefect") -> None:
    """Put OneLineSlideErrors on every handler of the loggers named ``logger_prefix``... ("": the root's; idempotent)."""
    loggers = [
        logging.getLogger(name)
        for name in list(logging.root.manager.loggerDict)
        if logger_prefix and (name == logger_prefix or name.startswith(logger_prefix + "."))
    ]
    for logger in [logging.getLogger(logger_prefix), *loggers]:
        for handler in logger.handlers:
            if not any(isinstance(f, OneLineSlideErrors) for f in handler.filters):
                handler.addFilter(OneLineSlideErrors())


def setup_logging(level: str = "INFO") -> None:
    """Log the QC's messages to stderr; Prefect's loggers keep their handlers, with one line per bad slide."""
    logger = logging.getLogger("slideqc")
    logger.setLevel(getattr(logging, level))
    logger.propagate = False  # under Prefect the root logger may print too: say it once
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"))
        logger.addHandler(handler)
    # Prefect 3 makes its handlers at its first flow run: have them made now, to filter them.
    prefect_logging = sys.modules.get("prefect.logging.configuration")
    if hasattr(prefect_logging, "ensure_logging_setup"):
        prefect_logging.ensure_logging_setup()
    quiet_slide_tracebacks("slideqc")
    quiet_slide_tracebacks("prefect")
    quiet_slide_tracebacks("")  # the root logger: Prefect 3's console handler is there
    # Dask workers this process starts (a local cluster) log in their own processes: they load
    # this module first (dask_setup below) and say a bad slide in one line too.
    os.environ.setdefault("DASK_DISTRIBUTED__WORKER__PRELOAD", __name__)
    if "dask" in sys.modules:  # imported already: its configuration has read the environment
        import dask.config

        if not dask.config.get("distributed.worker.preload", None):
            dask.config.set({"distributed.worker.preload": [__name__]})


def dask_setup(worker=None) -> None:
    """Dask's preload hook (distributed.worker.preload): a worker's Prefect logs get OneLineSlideErrors."""
    import prefect  # noqa: F401  (Prefect makes its handlers on import: filter them once they exist)

    quiet_slide_tracebacks("prefect")


def check_usage(args: argparse.Namespace) -> tuple[QCSettings, list[Path], int]:
    """Everything about the command line that can be wrong, checked before anything is written."""
    settings = settings_from_args(args)
    for option in ("workers", "batch_size", "limit"):  # counts, where the script has them
        if getattr(args, option, 1) < 1:
            raise UsageError(f"--{option.replace('_', '-')}: must be >= 1, got {getattr(args, option)}")
    threads = tile_threads(args)
    return settings, slide_paths(args), threads


class Progress:
    """Slides done, failed, rescans and time left: a tqdm bar on a terminal, else a plain log line per update."""

    def __init__(self, total: int, stream=None) -> None:
        self.total, self.done, self.started = total, 0, time.perf_counter()
        self.counts = {"failed": 0, "rescan": 0, "cannot judge": 0}
        self.stream = stream or sys.stderr
        self.bar = None
        if self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="slide", desc="QC", file=self.stream, dynamic_ncols=True, leave=True)

    def update(self, rows: list[SlideResult]) -> None:
        for row in rows:
            key = "failed" if row.failed else "cannot judge" if row.unjudged else "rescan" if row.rescan else None
            if key:
                self.counts[key] += 1
        self.done += len(rows)
        if self.bar is not None:
            self.bar.set_postfix({k: v for k, v in self.counts.items()}, refresh=False)
            self.bar.update(len(rows))
            return
        elapsed = time.perf_counter() - self.started
        left = elapsed / self.done * (self.total - self.done) if self.done else 0.0
        log.info(
            "progress: %d of %d slide(s) done, %d failed, %d rescan, %d cannot be judged; about %.0f s left",
            self.done,
            self.total,
            self.counts["failed"],
            self.counts["rescan"],
            self.counts["cannot judge"],
            left,
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class Run:
    """One run of a script: its settings, its slides, its run folder and the rows written so far."""

    active: Run | None = None  # the run under way in this process: run_main says where its rows are

    def __init__(self, args: argparse.Namespace) -> None:
        self.started = time.perf_counter()
        self.settings, self.file_names, self.tile_threads = check_usage(args)
        try:
            folder = create_run_dir(args.output_dir, args.run_name, args.overwrite)
        except (RunExistsError, ValueError) as error:
            raise UsageError(str(error)) from None
        self.writer = RunWriter(folder, self.settings, slides=len(self.file_names))
        Run.active = self
        self.writer.start()
        log.info("checking %d slide(s); outputs in %s", len(self.file_names), folder)
        self.progress = Progress(len(self.file_names))

    @property
    def folder(self) -> Path:
        return self.writer.run_dir

    def add(self, row: SlideResult) -> None:
        self.writer.add(row)
        self.progress.update([row])
        self._stop_on_full_disk([row])

    def add_all(self, rows: list[SlideResult]) -> None:
        self.writer.add_all(rows)
        self.progress.update(rows)
        self._stop_on_full_disk(rows)

    def _stop_on_full_disk(self, rows: list[SlideResult]) -> None:
        """A slide that failed because the disk is full: the next would too; stop the run (exit 4)."""
        for row in rows:
            if row.failed and qc.NO_ROOM_TEXT in row.error:
                where = re.search(re.escape(qc.NO_ROOM_TEXT) + r" writing (.+?); ", row.error)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), where.group(1) if where else str(self.folder))

    def finish(self) -> int:
        """Write results.tsv and the report, print a summary table, return the exit code."""
        self.progress.close()
        code = finish_run(self.writer, self.started)
        Run.active = None
        return code


def finish_run(writer: RunWriter, started: float) -> int:
    """Write results.tsv, the report and run.json (complete), print a summary table, return the exit code."""
    report = writer.finish(complete=True)
    print(summary_table(writer.rows), flush=True)
    print(
        f"\n{len(writer.rows)} slide(s), {len(writer.failed)} failed, {len(writer.unjudged)} cannot be judged, "
        f"{len(writer.flagged)} flagged for rescan, in {time.perf_counter() - started:.1f} s"
    )
    print(f"results: {writer.run_dir / RESULTS_FILE}\nreport:  {report}")
    if writer.failed:
        return EXIT_SLIDES_FAILED
    return EXIT_UNJUDGED if writer.unjudged else EXIT_OK


def start_run(args: argparse.Namespace) -> Run:
    """Validate the arguments, find the slides and create the run folder."""
    return Run(args)


def summary_table(rows: list[SlideResult]) -> str:
    lines = [f"{'slide':40s} {'tissue %':>8s} {'% blurry':>9s}  result"]
    for row in sorted(rows, key=lambda r: r.file_name):
        name = " ".join(row.file_name.split())[:40]  # one line per slide, whatever its name holds
        if row.failed:
            lines.append(f"{name:40s} {'':>8s} {'':>9s}  ERROR {row.error}")
            continue
        verdict = (
            f"CANNOT JUDGE {row.error.removeprefix(row.file_name + ': ')}"
            if row.unjudged
            else ("RESCAN" if row.rescan else "ok")
        )
        lines.append(f"{name:40s} {100 * (row.tissue_fraction or 0):8.1f} {row.percent_blurry or 0:9.1f}  {verdict}")
    return "\n".join(lines)


def _rows_so_far() -> str:
    run = Run.active
    if run is None:
        return "no run folder was made yet"
    return (
        f"{len(run.writer.rows)} of {len(run.file_names)} slide(s) have their row in "
        f"{run.folder / RESULTS_FILE}; {run.folder / RUN_FILE} says the run did not finish"
    )


def cannot_write_message(error: OSError) -> str:
    """One line for an OSError that ended a run: the path, what happened, what to do."""
    path = display_name(str(error.filename)) if error.filename else "a file"
    if error.errno in qc.NO_ROOM:
        advice = "free some space there, or pass another --output-dir, and run again"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "check its permissions (the user running this needs to write there), or pass another --output-dir"
    else:
        advice = "check the disk and the path, then run again"
    return f"error: cannot write {path}: {error.strerror or error}; {advice}. {_rows_so_far()}"


def run_main(main, argv: list[str] | None = None) -> int:
    """Run a script's ``main(argv)``; what stops a whole run ends in one line on stderr and its exit code.

    Usage errors exit 2; an output that cannot be written (OSError: a full disk,
    no permission) exits 4; Ctrl-C exits 130 at once (:func:`_exit_now`). No traceback: what was written
    stays valid (every file is written atomically) and run.json says the run did not finish.
    """
    _notice_interrupts()
    try:
        return main(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        _remove_if_empty(Run.active)
        return EXIT_USAGE
    except NoService as error:
        print(f"error: {error}", file=sys.stderr)
        _remove_if_empty(Run.active)
        return EXIT_NO_SERVER
    except KeyboardInterrupt:
        print(f"\ninterrupted: {_rows_so_far()}; run again to check every slide", file=sys.stderr)
        _exit_now(EXIT_INTERRUPTED)
    except OSError as error:
        print(cannot_write_message(error), file=sys.stderr)
        return EXIT_CANNOT_WRITE
    except Exception as error:
        if not (_interrupted or _while_interrupted(error)):
            raise
        # An orchestrator that, on Ctrl-C, failed to report it (Prefect 3: its temporary server got the
        # Ctrl-C too): still an interrupt.
        print(f"\ninterrupted: {_rows_so_far()}; run again to check every slide", file=sys.stderr)
        _exit_now(EXIT_INTERRUPTED)
    finally:
        Run.active = None


_interrupted = False  # set by the first Ctrl-C in this process


INTERRUPT_GRACE_SECONDS = 10  # after Ctrl-C, the run ends within this many seconds


def _exit_if_still_running(seconds: float) -> None:
    """Ctrl-C's guarantee: a run still going ``seconds`` after it ends there, in one line.

    The KeyboardInterrupt normally ends the run well before. Prefect 3, though, first reports
    the crashed flow run to its temporary server, which the same Ctrl-C stopped, and retries
    for minutes.
    """
    time.sleep(seconds)
    print(f"\ninterrupted: {_rows_so_far()}; run again to check every slide", file=sys.stderr)
    _exit_now(EXIT_INTERRUPTED)


def _exit_now(code: int) -> None:
    """End the process at once after Ctrl-C, its streams flushed, without Python's exit handlers.

    Everything the run wrote is already whole (written and renamed in place). A normal exit
    could hang: Prefect 1 cancels its worker threads by raising KeyboardInterrupt inside
    them, and one stopped while holding a logging handler's lock leaves logging.shutdown()
    waiting forever; Prefect 3 waits at exit for its log queues to reach the temporary
    server that the same Ctrl-C stopped.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _notice_interrupts() -> None:
    """Note Ctrl-C before raising KeyboardInterrupt: an orchestrator may turn it into another error."""
    import signal

    def interrupted(signum, frame):
        global _interrupted
        if not _interrupted:  # the first Ctrl-C: whatever an orchestrator does next, the run ends soon
            threading.Thread(target=_exit_if_still_running, args=(INTERRUPT_GRACE_SECONDS,), daemon=True).start()
        _interrupted = True
        # On Ctrl-C Prefect 1's LocalDaskExecutor cancels its threads by raising KeyboardInterrupt in
        # each of them; an idle thread pool worker then logs it as "Exception in worker" with a
        # traceback. The interrupt is reported once, in one line (run_main): that echo is dropped.
        logging.getLogger("concurrent.futures").disabled = True
        signal.default_int_handler(signum, frame)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, interrupted)


def _while_interrupted(error: BaseException) -> bool:
    """Whether ``error`` was raised while a KeyboardInterrupt was being handled (in its context chain)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _remove_if_empty(run: Run | None) -> None:
    """A run stopped before its first row leaves no folder behind (only its run.json was written)."""
    if run is None or run.writer.rows:
        return
    with contextlib.suppress(OSError):
        (run.folder / RUN_FILE).unlink()
        run.folder.rmdir()


def end_with_parent(parent_pid: int) -> None:
    """A worker process's initializer: end this process when ``parent_pid`` ends, even by kill -9.

    On Linux the kernel sends SIGTERM when the parent dies (PR_SET_PDEATHSIG);
    elsewhere a daemon thread checks every second that the parent is still there.
    """
    import ctypes
    import signal

    # Ctrl-C reaches every process of the terminal's group: the parent alone handles it (it stops
    # handing out slides, lets the ones under way finish and says so in one line), so no worker
    # dies with a traceback in the middle of a write.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.prctl(1, signal.SIGTERM, 0, 0, 0) == 0:  # 1 = PR_SET_PDEATHSIG
                if os.getppid() != parent_pid:  # the parent died before prctl: nobody will signal
                    os._exit(1)
                return
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1)
        os._exit(1)

    threading.Thread(target=watch, name="end-with-parent", daemon=True).start()
