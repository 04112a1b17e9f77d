"""Scanner intake: move new slides from the scanner's folder to the shared drive, verify them, QC them, on a schedule.

    python solutions/pipeline_intake.py --scanner-dir scanner --shared-dir shared --once
    python solutions/pipeline_intake.py --scanner-dir scanner --shared-dir shared --interval 60
    python solutions/pipeline_intake.py --scanner-dir scanner --shared-dir shared --interval 60 --max-cycles 3

One pass of the flow "Slide intake": delete the leftovers of interrupted copies;
find the slides in the scanner folder; keep those that are complete (size and
mtime unchanged across two looks --settle-seconds apart, or a completion marker
`<slide><--marker>` written by the scanner); for each (mapped, retried with a
delay on I/O errors) copy it to the shared drive and verify it; remove its
source (unless --keep-source); then run the QC on the slides that arrived. The
QC is the mapped flow of solutions/pipeline_prefect_parallel.py, run from a
task: a flow of flows. Prefect 1 has two ways to run a flow from a flow.
`prefect.tasks.prefect.StartFlowRun` asks a Prefect server (or Cloud) to create
a run of a registered flow and waits for it; with no server, as here, there is
nothing to ask. Calling the other flow's `flow.run()` inside a task runs it in
this process with its own FlowRunner and executor, and its task states come
back to the calling task: that is the local way, used here.

--interval gives the flow an IntervalSchedule and `flow.run()` runs it on that
schedule in this process (Prefect 1's `Flow._run` loops: wait for the next
event, run, ask the schedule again) until the schedule has no more events. The
schedule here ends when --max-cycles passes have run or SIGINT/SIGTERM asked
for a stop: the pass under way finishes (no new copy starts), and the script
exits 0. A second signal stops at once, which is as safe as a crash (below).

Why nothing is lost and nothing arrives twice, whenever the process dies
(a crash, SIGKILL, a power cut):

1. A copy is written to `<shared>/.<name>.<random>.partial`: hidden, and never
   a slide's name, so nobody (and no QC) takes it for a slide. It is fsynced,
   read back from the disk and compared with the source (size and sha256), and
   the source must not have changed during the copy.
2. Only then is it given its final name, by a hard link that fails if the name
   exists (so nothing is ever overwritten, even by a racing writer), and the
   folder is fsynced, so the rename survives a power cut.
3. The source is removed only after 2. A death before 2 leaves the source in
   the scanner folder and at most a `.partial`, which the next pass deletes
   before copying the slide again. A death between 2 and 3 leaves the slide in
   both places: the next pass sees the same name with the same sha256 on the
   shared drive, does not copy it again and just removes the source.
4. A name already taken on the shared drive by other content is never replaced:
   the slide is stored as `<stem>.<sha12><ext>` and the log and intake.tsv say so.
5. Just before 2 the slide is written to a small journal
   (`<output-dir>/.intake-pending/`), crossed off once its QC row is written: a
   pass that dies after the rename QCs the slide on the next pass, even when its
   source is already gone.

So at any moment every slide is in the scanner folder, or complete and verified
on the shared drive, or both. Run one intake per scanner folder at a time.
Outputs: the usual run folder in --output-dir (results.tsv, report.html, PNGs)
for every pass that moved slides or failed to, plus intake.tsv: what happened
to each slide and why. A pass with nothing new logs what it skipped and why,
and leaves no run folder.
"""

import argparse
import csv
import io
import signal
import sys
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pendulum
import prefect
from prefect import Flow, Parameter, task, unmapped
from prefect.executors import LocalDaskExecutor, LocalExecutor
from prefect.schedules import IntervalSchedule, Schedule
from prefect.triggers import all_finished
from prefect.utilities.logging import get_logger

from slideqc import cli, intake, prefect1
from slideqc.intake import Candidate, Outcome
from slideqc.output import files, run
from slideqc.settings import QCSettings
from solutions import pipeline_prefect_parallel as qc_flow

INTAKE_FILE = "intake.tsv"
# The "qc" parameter: what the QC flow needs, and where its run folder goes.
QC_DEFAULTS = dict(QCSettings().as_dict(), run_name=None, overwrite=False, executor="threads", workers=2,
                   tile_threads=1)
COPY_RETRIES, COPY_RETRY_DELAY = 3, 5.0


@dataclass
class Control:
    """What the schedule, the signal handlers and the tasks share within one process."""

    max_cycles: int | None = None
    cycles: int = 0
    busy: bool = False  # a pass is running: a stop waits for its end
    stop_requested: bool = False
    failed: bool = False  # some slide failed (copy, removal or QC) in some pass

    def done(self) -> bool:
        return self.stop_requested or (self.max_cycles is not None and self.cycles >= self.max_cycles)


CONTROL = Control()
HASHES = intake.HashCache()  # a scheduled intake hashes an unchanged file once


class StopIntake(BaseException):
    """Raised by the signal handler between passes: leaves flow.run's wait at once."""


def logger():
    return prefect.context.get("logger") or get_logger("Slide intake")


# --- the tasks ---------------------------------------------------------------------------


@task
def clean_up(shared_dir, scanner_dir, file_type, marker) -> int:
    """Delete the partial copies an interrupted pass left (their sources are still in the scanner folder)."""
    removed = intake.remove_partials(shared_dir)
    for path in removed:
        logger().warning("removed %s: a copy interrupted in an earlier pass (its slide is copied again)", path.name)
    if marker:
        for path in intake.remove_orphan_markers(scanner_dir, marker, file_type):
            logger().info("removed %s: the marker of a slide already moved", path.name)
    return len(removed)


@task
def find_candidates(scanner_dir, file_type, cleaned) -> list[Candidate]:
    found = intake.find_slides(scanner_dir, file_type)
    logger().info("%d *.%s slide(s) in %s", len(found), file_type.lstrip("."), scanner_dir)
    return found


@task
def wait_until_complete(candidates: list[Candidate], settle_seconds, marker) -> list[Candidate]:
    """The slides the scanner has finished writing: a fresh completion marker, or no change for settle_seconds."""
    if not candidates:
        return []
    if marker:
        complete = [c for c in candidates if intake.marker_says_complete(c, marker)]
        for c in candidates:
            if c not in complete:
                logger().info("%s: waiting: no completion marker %s yet", c.name, intake.marker_path(c.name, marker))
        return complete
    time.sleep(settle_seconds)
    complete, writing = intake.settled(candidates, {c.path: intake.look(c.path) for c in candidates})
    for c in writing:
        logger().info("%s: waiting: still being written (%d bytes, changed within %.1f s)", c.name, c.size,
                      settle_seconds)
    return complete


@task(max_retries=COPY_RETRIES, retry_delay=timedelta(seconds=COPY_RETRY_DELAY), retry_on=OSError)
def copy_and_verify(candidate: Candidate, shared_dir, output_dir, bwlimit) -> Outcome:
    """Copy one slide to the shared drive under a temporary name, verify it, rename it into place."""
    log = logger()
    if CONTROL.stop_requested:
        log.info("%s: stop asked for: not copied, left for the next pass", candidate.name)
        return Outcome(candidate.name, intake.STOPPED, candidate.path, detail="stop asked for before its copy began")
    try:
        outcome = intake.already_there(candidate, shared_dir, HASHES) or intake.copy_and_verify(
            candidate, shared_dir, bwlimit, HASHES, before_placing=lambda final: intake.add_pending(output_dir, final))
    except intake.SourceChanged as error:
        log.info("%s: waiting: %s", candidate.name, error)
        return Outcome(candidate.name, intake.CHANGED, candidate.path, detail=str(error))
    except OSError as error:
        log.warning("%s: copy failed (attempt %d of %d): %s", candidate.name,
                    prefect.context.get("task_run_count", 1), copy_and_verify_retries() + 1, error)
        raise
    if outcome.action == intake.DUPLICATE:
        log.info("%s: skipped: %s", candidate.name, outcome.detail)
    elif outcome.action == intake.RENAMED:
        log.warning("%s: CONFLICT: %s", candidate.name, outcome.detail)
    else:
        log.info("%s: copied to %s and verified (%.1f MB, sha256 %s, %.1f s)", candidate.name, outcome.dest,
                 outcome.size / 1e6, outcome.sha256[:12], outcome.seconds)
    return outcome


def copy_and_verify_retries() -> int:
    copy_task = next((t for t in flow.tasks if t.name == "copy_and_verify"), copy_and_verify)
    return copy_task.max_retries


@task
def remove_source(outcome: Outcome, keep_source, marker) -> Outcome:
    """Remove the slide from the scanner folder: only reached when its copy is verified and in place."""
    if outcome.action not in (intake.COPIED, intake.RENAMED, intake.DUPLICATE):
        return outcome
    if keep_source:
        logger().info("%s: kept in the scanner folder (--keep-source)", outcome.name)
        return outcome
    intake.remove_source(outcome, marker)
    logger().info("%s: removed from the scanner folder", outcome.name)
    return outcome


# Runs whatever happened to the copies: a failed copy is reported, the others are still checked.
@task(trigger=all_finished)
def qc_arrived(candidates, complete, copied, removed, output_dir, qc: dict) -> dict:
    """QC the slides that arrived (and any an earlier pass left unchecked); write the run folder and intake.tsv.

    ``qc``: the QC parameters (see QC_DEFAULTS), the run folder's name and the executor.
    """
    log = logger()
    started = time.perf_counter()
    outcomes = _outcomes(candidates, complete, copied, removed)
    pending = intake.list_pending(output_dir)
    arrived = {str(Path(o.dest).resolve()) for o in outcomes if o.arrived}
    for path in pending:
        if path not in arrived:
            log.info("%s: arrived in an earlier pass that stopped before its QC: checking it now", Path(path).name)
    to_qc = sorted(pending)
    summary = dict(outcomes=outcomes, rows=[], run_dir=None)
    if not to_qc and not any(o.failed or o.arrived for o in outcomes):  # a quiet pass leaves no run folder
        log.info("nothing arrived")
        return summary

    qc = {**QC_DEFAULTS, **(qc or {})}
    settings = QCSettings(**{name: qc[name] for name in QCSettings().as_dict()})
    run_dir = files.create_run_dir(output_dir, qc["run_name"], qc["overwrite"])
    writer = run.RunWriter(run_dir, settings)
    if to_qc:
        log.info("QC of %d slide(s) by the flow %r; outputs in %s", len(to_qc), qc_flow.flow.name, run_dir)
        if qc["executor"] == "local":
            executor = LocalExecutor()
        else:
            executor = LocalDaskExecutor(scheduler=qc["executor"], num_workers=qc["workers"])
        state = qc_flow.flow.run(parameters=dict(file_names=to_qc, run_dir=str(run_dir), tile_threads=qc["tile_threads"],
                                                 **settings.as_dict()), executor=executor)
        writer.rows = prefect1.gathered_rows(state, qc_flow.rows, to_qc)
        for row in sorted(writer.rows, key=lambda r: r.file_name):
            if not row.ok:
                log.error("%s: QC failed: %s", row.file_name, row.error)
            else:
                log.info("%s: QC %s: tissue %.3f, %.1f %% blurry", row.file_name, "RESCAN" if row.rescan else "ok",
                         row.tissue_fraction, row.percent_blurry)
        intake.clear_pending(output_dir, to_qc)  # each has its row now, ok or error
    write_intake_table(run_dir, outcomes)
    cli.finish_run(writer, started)
    summary.update(rows=writer.rows, run_dir=str(run_dir))
    return summary


def _outcomes(candidates, complete, copied, removed) -> list[Outcome]:
    """One Outcome per slide seen: the mapped copies' and removals' results, failures included."""
    outcomes = []
    complete = complete if isinstance(complete, list) else []
    copied = copied if isinstance(copied, list) else [copied] * len(complete)
    removed = removed if isinstance(removed, list) else [removed] * len(complete)
    for candidate, copy, removal in zip(complete, copied, removed, strict=True):
        if isinstance(removal, Outcome):
            outcomes.append(removal)
        elif isinstance(copy, Outcome):  # on the shared drive (and checked), but the source could not be removed
            copy.detail = "; ".join(filter(None, [copy.detail, f"in place as {copy.dest}, source not removed: {removal}"]))
            copy.action = intake.ERROR
            outcomes.append(copy)
        else:
            outcomes.append(Outcome(candidate.name, intake.ERROR, candidate.path,
                                    detail=f"copy failed after retries: {copy}; the source is kept"))
    seen = {c.path for c in complete}
    for candidate in candidates if isinstance(candidates, list) else []:
        if candidate.path not in seen:
            outcomes.append(Outcome(candidate.name, intake.WAITING, candidate.path, size=candidate.size,
                                    detail="still being written or no completion marker: left for a later pass"))
    return sorted(outcomes, key=lambda o: o.name)


def write_intake_table(run_dir: Path, outcomes: list[Outcome]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(intake.OUTCOME_COLUMNS)
    for outcome in outcomes:
        writer.writerow(["" if v is None else str(v) for v in intake.outcome_row(outcome).values()])
    path = Path(run_dir) / INTAKE_FILE
    files.atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
    return path


with Flow("Slide intake") as flow:
    scanner_dir = Parameter("scanner_dir")
    shared_dir = Parameter("shared_dir")
    file_type = Parameter("file_type", default="svs")
    settle_seconds = Parameter("settle_seconds", default=5.0)
    marker = Parameter("marker", default=None)
    keep_source = Parameter("keep_source", default=False)
    bwlimit = Parameter("bwlimit", default=0.0)
    output_dir = Parameter("output_dir", default="output")
    qc = Parameter("qc", default=QC_DEFAULTS)

    cleaned = clean_up(shared_dir, scanner_dir, file_type, marker)
    candidates = find_candidates(scanner_dir, file_type, cleaned)
    complete = wait_until_complete(candidates, settle_seconds, marker)
    copied = copy_and_verify.map(complete, unmapped(shared_dir), unmapped(output_dir), unmapped(bwlimit))
    removed = remove_source.map(copied, unmapped(keep_source), unmapped(marker))
    summary = qc_arrived(candidates, complete, copied, removed, output_dir, qc)


# --- running it: once, or on a schedule --------------------------------------------------


class IntakeSchedule(Schedule):
    """Prefect's IntervalSchedule, starting now, that runs out after max_cycles passes or when a stop is asked for.

    `flow.run()` asks the schedule for the next event after every pass and ends
    when there is none: that is how a scheduled Prefect 1 flow stops cleanly.
    """

    def __init__(self, interval: float, control: Control) -> None:
        start = pendulum.now("utc").add(microseconds=200_000)  # the first pass now, not an interval from now
        super().__init__(clocks=IntervalSchedule(start_date=start, interval=timedelta(seconds=interval)).clocks)
        self.control = control

    def next(self, n, after=None, return_events=False):
        if self.control.done():
            return []
        return super().next(n, after=after, return_events=return_events)


def track_cycle(flow, old_state, new_state):
    """Flow state handler: count the passes, log each one's summary, note failures."""
    log = get_logger("Slide intake")
    if new_state.is_running() and not old_state.is_running():
        CONTROL.busy = True
        CONTROL.cycles += 1
        log.info("intake cycle %d: started", CONTROL.cycles)
    elif new_state.is_finished():
        CONTROL.busy = False
        summary_state = (new_state.result or {}).get(summary) if isinstance(new_state.result, dict) else None
        info = summary_state.result if summary_state is not None and summary_state.is_successful() else None
        if not isinstance(info, dict):
            CONTROL.failed = True
            log.error("intake cycle %d: failed: %s", CONTROL.cycles, new_state.message)
            return new_state
        if new_state.is_failed():
            CONTROL.failed = True
            log.error("intake cycle %d: a step failed: %s", CONTROL.cycles, new_state.message)
        counts = {}
        for outcome in info["outcomes"]:
            counts[outcome.action] = counts.get(outcome.action, 0) + 1
        qc_failed = sum(1 for row in info["rows"] if not row.ok)
        if counts.get(intake.ERROR) or qc_failed:
            CONTROL.failed = True
        said = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "no slides"
        log.info("intake cycle %d: done: %s; %d checked (%d failed QC)%s", CONTROL.cycles, said, len(info["rows"]),
                 qc_failed, f"; run folder {info['run_dir']}" if info["run_dir"] else "")
    return new_state


# A pass fails when finding or copying failed, not only when the QC did.
flow.set_reference_tasks([cleaned, candidates, complete, summary])
flow.state_handlers.append(track_cycle)


def on_signal(signum, frame):
    """First SIGINT/SIGTERM: stop after the pass under way (at once between passes). Second: stop now."""
    name = signal.Signals(signum).name
    CONTROL.stop_requested = True
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    log = get_logger("Slide intake")
    if not CONTROL.busy:
        log.info("%s: stopping (between passes)", name)
        raise StopIntake(name)
    log.info("%s: stopping after the pass under way (no new copy starts; send it again to stop now)", name)


def build_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser(__doc__.splitlines()[0], parallel=True)
    for action in parser._actions:  # the shared slide options: here the slides come from --scanner-dir
        if action.dest in ("data_dir", "files"):
            action.help = argparse.SUPPRESS
    parser.set_defaults(data_dir=None)
    parser.epilog = "Exit codes: 0 all slides moved and checked, 1 some slides failed (copy or QC), 2 invalid usage."
    parser.add_argument("--executor", choices=("local", "threads", "processes"), default="threads",
                        help="how the QC flow runs: LocalExecutor, or LocalDaskExecutor on threads or processes")
    group = parser.add_argument_group("intake")
    group.add_argument("--scanner-dir", required=True, help="the scanner's output folder: new slides appear here")
    group.add_argument("--shared-dir", required=True, help="the shared drive's folder the slides are moved to")
    when = group.add_mutually_exclusive_group(required=True)
    when.add_argument("--interval", type=float, metavar="SECONDS", help="run a pass every SECONDS until stopped")
    when.add_argument("--once", action="store_true", help="run a single pass")
    group.add_argument("--max-cycles", type=int, metavar="N", help="with --interval: stop after N passes")
    group.add_argument("--settle-seconds", type=float, default=5.0,
                       help="a slide is complete when its size and mtime do not change for this long")
    group.add_argument("--marker", metavar="SUFFIX",
                       help="instead, a slide is complete when the scanner wrote <slide>SUFFIX (e.g. .done)")
    group.add_argument("--keep-source", action="store_true", help="keep the slides in the scanner folder")
    group.add_argument("--bwlimit", type=float, default=0.0, metavar="MB_PER_S",
                       help="copy at most this many MB per second (0: no limit)")
    group.add_argument("--copy-retries", type=int, default=COPY_RETRIES, help="retries of a failed copy")
    group.add_argument("--retry-delay", type=float, default=COPY_RETRY_DELAY, help="seconds between copy retries")
    return parser


def check_arguments(args) -> None:
    if args.files or args.data_dir is not None:
        raise cli.UsageError("--data-dir/--files: the intake takes its slides from --scanner-dir")
    scanner, shared = Path(args.scanner_dir), Path(args.shared_dir)
    for option, folder in (("--scanner-dir", scanner), ("--shared-dir", shared)):
        if not folder.is_dir():  # an unmounted share must not become a local folder
            raise cli.UsageError(f"{option}: {folder} is not a folder")
    if scanner.resolve() == shared.resolve():
        raise cli.UsageError("--shared-dir: must not be the scanner folder")
    if args.interval is not None and args.interval <= 0:
        raise cli.UsageError(f"--interval: must be > 0, got {args.interval}")
    if args.max_cycles is not None and (args.max_cycles < 1 or args.once):
        raise cli.UsageError("--max-cycles: must be >= 1, and goes with --interval")
    if args.run_name and not (args.once or args.max_cycles == 1):
        raise cli.UsageError("--run-name: each pass makes its own run folder; use it with --once")
    for option, value in (("--settle-seconds", args.settle_seconds), ("--bwlimit", args.bwlimit),
                          ("--copy-retries", args.copy_retries), ("--retry-delay", args.retry_delay)):
        if value < 0:
            raise cli.UsageError(f"{option}: must be >= 0, got {value}")
    if args.workers < 1:
        raise cli.UsageError(f"--workers: must be >= 1, got {args.workers}")
    if args.run_name and (Path(args.output_dir) / args.run_name).exists() and not args.overwrite:
        raise cli.UsageError(f"{Path(args.output_dir) / args.run_name}: an earlier run is there; "
                             "pass --overwrite to replace it")


def main(argv=None) -> int:
    global CONTROL
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.log_level)
    settings = cli.settings_from_args(args)
    check_arguments(args)
    tile_threads = cli.tile_threads(args)
    for t in flow.tasks:  # retries come from the command line
        if t.name == "copy_and_verify":
            t.max_retries, t.retry_delay = args.copy_retries, timedelta(seconds=args.retry_delay)
    CONTROL = Control(max_cycles=1 if args.once else args.max_cycles)
    parameters = dict(scanner_dir=str(args.scanner_dir), shared_dir=str(args.shared_dir), file_type=args.file_type,
                      settle_seconds=args.settle_seconds, marker=args.marker, keep_source=args.keep_source,
                      bwlimit=args.bwlimit, output_dir=str(args.output_dir),
                      qc=dict(settings.as_dict(), run_name=args.run_name, overwrite=args.overwrite,
                              executor=args.executor, workers=args.workers, tile_threads=tile_threads))
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.once:
            flow.schedule = None
            flow.run(parameters=parameters, run_on_schedule=False, executor=LocalExecutor())
        else:
            flow.schedule = IntakeSchedule(args.interval, CONTROL)
            flow.run(parameters=parameters, run_on_schedule=True, executor=LocalExecutor())
    except StopIntake:
        pass
    finally:
        flow.schedule = None
        for s, handler in previous.items():
            signal.signal(s, handler)
    how = "stopped on request" if CONTROL.stop_requested else "done"
    print(f"intake {how} after {CONTROL.cycles} cycle(s)" + ("; some slides failed" if CONTROL.failed else ""),
          flush=True)
    return cli.EXIT_SLIDES_FAILED if CONTROL.failed else cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
