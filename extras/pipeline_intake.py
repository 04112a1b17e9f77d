"""Scanner intake: move new slides from the scanner's folder to the shared drive, verify them, QC them, on a schedule.

    python extras/pipeline_intake.py --scanner-dir scanner --shared-dir shared --once
    python extras/pipeline_intake.py --scanner-dir scanner --shared-dir shared --interval 60
    python extras/pipeline_intake.py --scanner-dir scanner --shared-dir shared --interval 60 --max-cycles 3

The Prefect ideas of this lesson, each in its own lines below:

- a Flow, "Slide intake", whose pass is: clean up, find the slides, keep the
  complete ones, copy each (a task mapped over the slides, retried on OSError
  with a delay), QC what arrived, release the sources it is safe to remove;
- a flow run of another flow from a task: `qc_arrived` calls the mapped QC
  flow of solutions/pipeline_prefect_parallel.py with its own `flow.run()`, in
  this process (Prefect 1's `StartFlowRun` would ask a server; there is none);
- triggers: `qc_arrived`, `release` and `end_pass` run whatever happened to
  the copies (`all_finished`), so a failed copy is reported, not silent;
- a schedule: with --interval, `flow.run()` runs the flow every SECONDS in this
  process until the schedule has no more dates (`make_schedule`).

The file logic and the bookkeeping are in slideqc/intake.py (plain Python, no
Prefect): copying to a hidden `.partial`, verifying, placing, the records of the
sources kept after their copy, the journal.

What it guarantees, whatever the scanner does and whenever this process dies:
a slide is never removed from the scanner folder while it could be its only
complete copy. Its copy is verified (read back, size and sha256) before it gets
its final name; the source is then *held* in the scanner folder, not removed;
a held source that changes (a scanner that paused longer than --settle-seconds
and went on writing) is copied again, loudly, and the shorter copy replaced; a
held source is removed only when it has not changed for --retain-seconds since
its copy, its shared copy has a QC row without error, and both sides still hash
to the recorded sha256 just before the removal. Its limits: a scanner silent
longer than --retain-seconds in the middle of a slide whose partial file the QC
reads without error can still lose what it writes after the removal (set the
retention above the scanner's longest pause, or use --marker); the state lives
in --output-dir (one intake per scanner folder, always the same --output-dir);
a share that acknowledges writes it has not stored can lose a verified copy.
More in the README section "Extra: scanner intake on a schedule".
"""

import argparse
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path

import pendulum
import prefect
from prefect import Flow, Parameter, task, unmapped
from prefect.executors import LocalDaskExecutor, LocalExecutor
from prefect.schedules import Schedule
from prefect.schedules.clocks import IntervalClock
from prefect.triggers import all_finished
from prefect.utilities.logging import get_logger

from slideqc import cli, intake, prefect1
from slideqc.intake import Candidate, Control, Outcome
from slideqc.output import files, run
from slideqc.settings import QCSettings
from solutions import pipeline_prefect_parallel as qc_flow

# The "qc" parameter: what the QC flow needs, and where its run folder goes.
QC_DEFAULTS = dict(
    QCSettings().as_dict(), run_name=None, overwrite=False, executor="threads", workers=2, tile_threads=1
)
COPY_RETRIES, COPY_RETRY_DELAY = 3, 5.0


def logger():
    return prefect.context.get("logger") or get_logger("Slide intake")


# --- the tasks ---------------------------------------------------------------------------


@task
def start_pass(control: Control | None) -> int:
    control = control or Control()
    control.busy, control.cycles = True, control.cycles + 1
    logger().info("intake cycle %d: started", control.cycles)
    return control.cycles


@task
def clean_up(shared_dir, scanner_dir, file_type, marker, cycle) -> int:
    """Delete the partial copies an interrupted pass left (their sources are still in the scanner folder)."""
    removed = intake.remove_partials(shared_dir)
    for path in removed:
        logger().warning("removed %s: a copy interrupted in an earlier pass (its slide is copied again)", path.name)
    if marker:
        for path in intake.remove_orphan_markers(scanner_dir, marker, file_type):
            logger().info("removed %s: the marker of a slide already moved", path.name)
    return len(removed)


@task
def find_candidates(scanner_dir, output_dir, file_type, cleaned) -> list[Candidate]:
    """The slides to copy: new ones, and held ones that changed after their copy (said loudly)."""
    found = intake.find_slides(scanner_dir, file_type)
    new, changed = intake.to_copy(found, intake.held_records(output_dir))
    for now, before in changed:
        logger().warning(
            "%s: CHANGED after its copy (%d -> %d bytes; copied as sha256 %s): copied again once complete",
            now.name,
            before.size,
            now.size,
            before.sha256[:12],
        )
    logger().info("%d *.%s slide(s) in %s, %d to copy", len(found), file_type.lstrip("."), scanner_dir, len(new))
    return new


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
        logger().info(
            "%s: waiting: still being written (%d bytes, changed within %.1f s)", c.name, c.size, settle_seconds
        )
    return complete


# Retried on I/O errors (the share went away, a full disk); intake_flow sets the retries from the command line.
@task(max_retries=COPY_RETRIES, retry_delay=timedelta(seconds=COPY_RETRY_DELAY), retry_on=OSError)
def copy_and_verify(candidate: Candidate, shared_dir, output_dir, bwlimit, control: Control | None) -> Outcome:
    """Copy one slide to the shared drive under a temporary name, verify it, give it its name, hold its source."""
    log, control = logger(), control or Control()
    if control.stop_requested:
        log.info("%s: stop asked for: not copied, left for the next pass", candidate.name)
        return Outcome(candidate.name, intake.STOPPED, candidate.path, detail="stop asked for before its copy began")
    previous = intake.held_record(output_dir, candidate.path)
    try:
        outcome = intake.already_there(candidate, shared_dir, control.hashes) or intake.copy_and_verify(
            candidate,
            shared_dir,
            bwlimit,
            control.hashes,
            previous=previous,
            before_placing=lambda final: intake.add_pending(output_dir, final),
        )
    except intake.SourceChanged as error:
        log.info("%s: waiting: %s", candidate.name, error)
        return Outcome(candidate.name, intake.CHANGED, candidate.path, detail=str(error))
    except OSError as error:
        log.warning(
            "%s: copy failed (attempt %d): %s; the source is kept",
            candidate.name,
            prefect.context.get("task_run_count", 1),
            error,
        )
        raise
    queued = str(Path(outcome.dest).resolve()) in intake.list_pending(output_dir)
    intake.hold(output_dir, candidate, outcome, qc=intake.QC_NOT_YET if queued else intake.QC_EARLIER)
    if outcome.action == intake.DUPLICATE:
        log.info("%s: skipped: %s", candidate.name, outcome.detail)
    elif outcome.action in (intake.RENAMED, intake.REPLACED):
        log.warning(
            "%s: %s: %s", candidate.name, "CONFLICT" if outcome.action == intake.RENAMED else "REPLACED", outcome.detail
        )
    else:
        log.info(
            "%s: copied to %s and verified (%.1f MB, sha256 %s, %.1f s)",
            candidate.name,
            outcome.dest,
            outcome.size / 1e6,
            outcome.sha256[:12],
            outcome.seconds,
        )
    return outcome


@task(trigger=all_finished)
def qc_arrived(candidates, complete, copied, output_dir, qc: dict) -> dict:
    """QC the slides that arrived (and any an earlier pass left unchecked) with the QC flow: a flow run from a task.

    ``qc``: the QC parameters (see QC_DEFAULTS), the run folder's name and the executor.
    Returns the pass's outcomes, the QC rows and the run folder (None on a quiet pass).
    """
    log = logger()
    started = time.perf_counter()
    outcomes = _outcomes(candidates, complete, copied)
    pending = intake.list_pending(output_dir)
    arrived = {str(Path(o.dest).resolve()) for o in outcomes if o.arrived}
    for path in pending:
        if path not in arrived:
            log.info("%s: arrived in an earlier pass that stopped before its QC: checking it now", Path(path).name)
    to_qc = sorted(pending)
    summary = dict(outcomes=outcomes, rows=[], run_dir=None, started=started)
    if not to_qc and not any(o.failed or o.arrived for o in outcomes):  # a quiet pass leaves no run folder
        return summary

    qc = {**QC_DEFAULTS, **(qc or {})}
    settings = QCSettings.from_values(qc)
    run_dir = files.create_run_dir(output_dir, qc["run_name"], qc["overwrite"])
    writer = run.RunWriter(run_dir, settings)
    if to_qc:
        log.info("QC of %d slide(s) by the flow %r; outputs in %s", len(to_qc), qc_flow.flow.name, run_dir)
        if qc["executor"] == "local":
            executor = LocalExecutor()
        else:
            executor = LocalDaskExecutor(scheduler=qc["executor"], num_workers=qc["workers"])
        # The QC flow's own Parameters only: a setting it does not declare keeps its default there.
        declared = {p.name for p in qc_flow.flow.parameters()}
        values = dict(file_names=to_qc, run_dir=str(run_dir), tile_threads=qc["tile_threads"], **settings.as_dict())
        state = qc_flow.flow.run(parameters={k: v for k, v in values.items() if k in declared}, executor=executor)
        writer.rows = prefect1.gathered_rows(state, qc_flow.rows, to_qc)
        for row in sorted(writer.rows, key=lambda r: r.file_name):
            if not row.judged:
                log.error("%s: QC failed: %s", row.file_name, row.error)
            else:
                log.info(
                    "%s: QC %s: tissue %.3f, %.1f %% blurry",
                    row.file_name,
                    "RECUT" if row.needs_recut else "RESCAN" if row.needs_rescan else "ok",
                    row.tissue_fraction,
                    row.percent_blurry,
                )
        by_name = {Path(path).name: path for path in to_qc}  # the rows name the slides in the shared folder
        intake.mark_checked(
            output_dir,
            {
                by_name[row.file_name]: intake.QC_OK if row.judged else intake.QC_ERROR
                for row in writer.rows
                if row.file_name in by_name
            },
        )
        intake.clear_pending(output_dir, to_qc)  # each has its row now, ok or error
    summary.update(rows=writer.rows, run_dir=str(run_dir), writer=writer)
    return summary


def _outcomes(candidates, complete, copied) -> list[Outcome]:
    """One Outcome per slide seen: the mapped copies' results, failures included."""
    outcomes = []
    complete = complete if isinstance(complete, list) else []
    copied = copied if isinstance(copied, list) else [copied] * len(complete)
    for candidate, copy in zip(complete, copied, strict=True):
        if isinstance(copy, Outcome):
            outcomes.append(copy)
        else:
            outcomes.append(
                Outcome(
                    candidate.name,
                    intake.ERROR,
                    candidate.path,
                    detail=f"copy failed after retries: {copy}; the source is kept",
                )
            )
    seen = {c.path for c in complete}
    for candidate in candidates if isinstance(candidates, list) else []:
        if candidate.path not in seen:
            outcomes.append(
                Outcome(
                    candidate.name,
                    intake.WAITING,
                    candidate.path,
                    size=candidate.size,
                    detail="still being written or no completion marker: left for a later pass",
                )
            )
    return sorted(outcomes, key=lambda o: o.name)


@task(trigger=all_finished)
def release(summary, scanner_dir, output_dir, retain_seconds, keep_source, marker) -> list[Outcome]:
    """Remove the held sources that are safe to remove (after the QC, so this pass's rows count)."""
    if keep_source:
        return []
    outcomes = intake.release_sources(output_dir, retain_seconds, marker, scanner_dir=scanner_dir)
    for outcome in outcomes:
        if outcome.action == intake.RELEASED:
            logger().info("%s: %s", outcome.name, outcome.detail)
        elif outcome.action == intake.ERROR:
            logger().error("%s: %s", outcome.name, outcome.detail)
    held = [o for o in outcomes if o.action == intake.HELD]
    if held:
        logger().info(
            "%d source(s) held in the scanner folder: %s",
            len(held),
            "; ".join(f"{o.name}: {o.detail}" for o in held[:5]) + ("; ..." if len(held) > 5 else ""),
        )
    return outcomes


@task(trigger=all_finished)
def end_pass(summary, released, output_dir, control: Control | None) -> None:
    """Write intake.tsv and the journal, log the pass's summary, note failures for the exit code."""
    control = control or Control()
    control.busy = False
    if not isinstance(summary, dict):
        control.failed = True
        logger().error("intake cycle %d: failed: %s", control.cycles, summary)
        return
    outcomes = intake.with_releases(summary["outcomes"], released if isinstance(released, list) else [])
    if outcomes:
        intake.append_journal(output_dir, outcomes, control.cycles)
    if summary["run_dir"]:
        intake.write_intake_table(summary["run_dir"], outcomes)
        cli.finish_run(summary["writer"], summary["started"])
    counts = {}
    for outcome in outcomes:
        counts[outcome.action] = counts.get(outcome.action, 0) + 1
    qc_failed = sum(1 for row in summary["rows"] if not row.judged)
    if counts.get(intake.ERROR) or qc_failed or not isinstance(released, list):
        control.failed = True
    counts[intake.HELD] = sum(1 for o in (released if isinstance(released, list) else []) if o.action == intake.HELD)
    said = ", ".join(f"{n} {action}" for action, n in sorted(counts.items()) if n) or "no slides"
    logger().info(
        "intake cycle %d: done: %s; %d checked (%d failed QC)%s",
        control.cycles,
        said,
        len(summary["rows"]),
        qc_failed,
        f"; run folder {summary['run_dir']}" if summary["run_dir"] else "",
    )


def intake_flow(
    copy_retries: int = COPY_RETRIES, retry_delay: float = COPY_RETRY_DELAY, schedule: Schedule | None = None
) -> Flow:
    """The flow "Slide intake"; the copies' retries and the schedule come from the command line."""
    with Flow("Slide intake", schedule=schedule) as flow:
        scanner_dir = Parameter("scanner_dir")
        shared_dir = Parameter("shared_dir")
        file_type = Parameter("file_type", default="svs")
        settle_seconds = Parameter("settle_seconds", default=5.0)
        marker = Parameter("marker", default=None)
        retain_seconds = Parameter("retain_seconds", default=600.0)
        keep_source = Parameter("keep_source", default=False)
        bwlimit = Parameter("bwlimit", default=0.0)
        output_dir = Parameter("output_dir", default="output")
        qc = Parameter("qc", default=QC_DEFAULTS)
        control = Parameter("control", default=None)  # a Control shared by the passes of one process (main)

        cycle = start_pass(control)
        cleaned = clean_up(shared_dir, scanner_dir, file_type, marker, cycle)
        candidates = find_candidates(scanner_dir, output_dir, file_type, cleaned)
        complete = wait_until_complete(candidates, settle_seconds, marker)
        copied = copy_and_verify.map(
            complete,
            unmapped(shared_dir),
            unmapped(output_dir),
            unmapped(bwlimit),
            unmapped(control),
            task_args=dict(max_retries=copy_retries, retry_delay=timedelta(seconds=retry_delay)),
        )
        summary = qc_arrived(candidates, complete, copied, output_dir, qc)
        released = release(summary, scanner_dir, output_dir, retain_seconds, keep_source, marker)
        end_pass(summary, released, output_dir, control)
    flow.set_reference_tasks([cleaned, candidates, complete, summary, released])  # a pass fails when these do
    return flow


flow = intake_flow()  # the flow with its default retries, for `prefect` tools and the tests


# --- running it: once, or on a schedule --------------------------------------------------


def make_schedule(interval: float, control: Control) -> Schedule:
    """Every ``interval`` seconds from now, until ``control`` says done (--max-cycles passes, or a signal).

    `flow.run(run_on_schedule=True)` loops: ask the schedule for its next date, wait,
    run, ask again; it returns when the schedule has no more dates. This is
    `IntervalSchedule(start_date, interval)` (one IntervalClock) plus a filter: once the
    control is done the filter refuses every date, so `schedule.next()` finds none
    (Prefect gives up after checking 10,000 dates, a few milliseconds) and the loop
    ends after the pass under way. An `end_date` cannot do it: a signal's time is not
    known in advance, and a pass longer than the interval skips dates.
    """
    start = pendulum.now("utc").add(microseconds=200_000)  # the first pass now, not an interval from now
    clock = IntervalClock(start_date=start, interval=timedelta(seconds=interval))
    return Schedule(clocks=[clock], filters=[lambda when: not control.done()])


class StopIntake(BaseException):
    """Raised by the signal handler between passes: leaves flow.run's wait at once."""


def stop_on_signals(control: Control):
    """First SIGINT/SIGTERM: stop after the pass under way (at once between passes). Second: stop now."""

    def on_signal(signum, frame):
        name = signal.Signals(signum).name
        control.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        log = get_logger("Slide intake")
        if not control.busy:
            log.info("%s: stopping (between passes)", name)
            raise StopIntake(name)
        log.info("%s: stopping after the pass under way (no new copy starts; send it again to stop now)", name)

    return {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}


def build_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser(__doc__.splitlines()[0], parallel=True, slides=False)  # slides come from --scanner-dir
    parser.epilog = "Exit codes: 0 all slides moved and checked, 1 some slides failed (copy or QC), 2 invalid usage."
    parser.add_argument(
        "--executor",
        choices=("local", "threads", "processes"),
        default="threads",
        help="how the QC flow runs: LocalExecutor, or LocalDaskExecutor on threads or processes",
    )
    group = parser.add_argument_group("intake")
    group.add_argument("--scanner-dir", required=True, help="the scanner's output folder: new slides appear here")
    group.add_argument("--shared-dir", required=True, help="the shared drive's folder the slides are moved to")
    when = group.add_mutually_exclusive_group(required=True)
    when.add_argument("--interval", type=float, metavar="SECONDS", help="run a pass every SECONDS until stopped")
    when.add_argument("--once", action="store_true", help="run a single pass")
    group.add_argument("--max-cycles", type=int, metavar="N", help="with --interval: stop after N passes")
    group.add_argument(
        "--settle-seconds",
        type=float,
        default=5.0,
        help="a slide is complete when its size and mtime do not change for this long",
    )
    group.add_argument(
        "--marker",
        metavar="SUFFIX",
        help="instead, a slide is complete when the scanner wrote <slide>SUFFIX (e.g. .done)",
    )
    group.add_argument(
        "--retain-seconds",
        type=float,
        default=600.0,
        help="a copied slide stays in the scanner folder until unchanged this long after its copy "
        "(and QC'd); longer than the scanner's longest pause",
    )
    group.add_argument("--keep-source", action="store_true", help="never remove slides from the scanner folder")
    group.add_argument(
        "--bwlimit",
        type=float,
        default=0.0,
        metavar="MB_PER_S",
        help="copy at most this many MB per second (0: no limit)",
    )
    group.add_argument("--copy-retries", type=int, default=COPY_RETRIES, help="retries of a failed copy")
    group.add_argument("--retry-delay", type=float, default=COPY_RETRY_DELAY, help="seconds between copy retries")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.setup_logging(args.log_level)
    settings = cli.settings_from_args(args)  # every option checked before any file is touched
    cli.refuse_undeclared(args, {p.name for p in qc_flow.flow.parameters()})
    tile_threads = cli.tile_threads(args)
    try:
        intake.check_options(args)
    except ValueError as error:
        raise cli.UsageError(str(error)) from None
    control = Control(max_cycles=1 if args.once else args.max_cycles)
    schedule = None if args.once else make_schedule(args.interval, control)
    intake_run = intake_flow(args.copy_retries, args.retry_delay, schedule)
    parameters = dict(
        scanner_dir=str(args.scanner_dir),
        shared_dir=str(args.shared_dir),
        file_type=args.file_type,
        settle_seconds=args.settle_seconds,
        marker=args.marker,
        retain_seconds=args.retain_seconds,
        keep_source=args.keep_source,
        bwlimit=args.bwlimit,
        output_dir=str(args.output_dir),
        control=control,
        qc=dict(
            settings.as_dict(),
            run_name=args.run_name,
            overwrite=args.overwrite,
            executor=args.executor,
            workers=args.workers,
            tile_threads=tile_threads,
        ),
    )
    previous = stop_on_signals(control)
    try:
        intake_run.run(parameters=parameters, run_on_schedule=not args.once, executor=LocalExecutor())
    except StopIntake:
        pass
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    how = "stopped on request" if control.stop_requested else "done"
    print(
        f"intake {how} after {control.cycles} cycle(s)" + ("; some slides failed" if control.failed else ""), flush=True
    )
    return cli.EXIT_SLIDES_FAILED if control.failed else cli.EXIT_OK


if __name__ == "__main__":
    sys.exit(cli.run_main(main))
