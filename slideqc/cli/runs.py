"""The life of a run: its folder, its rows as they come, its summary and exit code at the end."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

from slideqc.cli.errors import EXIT_OK, EXIT_SLIDES_FAILED, EXIT_UNJUDGED, UsageError
from slideqc.cli.options import check_usage
from slideqc.cli.progress import Progress
from slideqc.output.files import RESULTS_FILE, RUN_FILE, RunExistsError, create_run_dir
from slideqc.output.results import SlideResult
from slideqc.output.run import RunWriter

log = logging.getLogger("slideqc")


class Run:
    """One run of a script: its settings, its slides, its run folder and the rows written so far."""

    active: Run | None = None  # the run under way in this process: run_main says where its rows are

    def __init__(self, args: argparse.Namespace, flow_parameters: Collection[str] | None = None) -> None:
        self.started = time.perf_counter()
        self.settings, self.file_names, self.tile_threads = check_usage(args, flow_parameters)
        self.flow_parameters = None if flow_parameters is None else frozenset(flow_parameters)
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
        """The run's folder, where its results.tsv, report and pictures go."""
        return self.writer.run_dir

    @property
    def parameters(self) -> dict[str, Any]:
        """What a flow run of this run needs besides its slides, by Parameter name.

        The run folder, the tile threads and the settings, each only where the flow declares a
        Parameter of that name.
        """
        # The run folder as an absolute path: a server's agent starts its flow runs in another folder.
        values = {"run_dir": str(self.folder.resolve()), "tile_threads": self.tile_threads, **self.settings.as_dict()}
        if self.flow_parameters is None:
            return values
        return {name: value for name, value in values.items() if name in self.flow_parameters}

    def add(self, row: SlideResult) -> None:
        """Add one slide's row: to results.tsv and the progress; a full disk stops the run (exit 4)."""
        self.writer.add(row)
        self.progress.update([row])
        self._stop_on_full_disk([row])

    def add_all(self, rows: list[SlideResult]) -> None:
        """Add the rows of several slides at once, as :meth:`add` adds one."""
        self.writer.add_all(rows)
        self.progress.update(rows)
        self._stop_on_full_disk(rows)

    def _stop_on_full_disk(self, rows: list[SlideResult]) -> None:
        """Stop the run (exit 4) at a slide that failed because the disk is full: the next would too."""
        for row in rows:
            if row.no_room_path is not None:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), row.no_room_path or str(self.folder))

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
        f"\n{len(writer.rows)} slide(s): {len(writer.passed)} passed (ok), {len(writer.flagged)} RESCAN, {len(writer.recut)} RE-CUT, "
        f"{len(writer.unjudged)} cannot be judged, {len(writer.failed)} failed, in {time.perf_counter() - started:.1f} s"
    )
    print(f"results: {writer.run_dir / RESULTS_FILE}\nreport:  {report}")
    if writer.failed:
        return EXIT_SLIDES_FAILED
    return EXIT_UNJUDGED if writer.unjudged else EXIT_OK


def start_run(args: argparse.Namespace, flow_parameters: Collection[str] | None = None) -> Run:
    """Validate the arguments, find the slides and create the run folder.

    ``flow_parameters``: the names of the Parameters of the lesson's flow, for a lesson
    (see :func:`~slideqc.cli.options.check_usage` and :attr:`Run.parameters`).
    """
    return Run(args, flow_parameters)


def summary_table(rows: list[SlideResult]) -> str:
    """Return the table printed at a run's end: a line per slide, by name, with tissue %, % blurry and result."""
    lines = [f"{'slide':40s} {'tissue %':>8s} {'% blurry':>9s}  result"]
    for row in sorted(rows, key=lambda r: r.file_name):
        name = " ".join(row.file_name.split())[:40]  # one line per slide, whatever its name holds
        if row.failed:
            lines.append(f"{name:40s} {'':>8s} {'':>9s}  ERROR {row.error}")
            continue
        verdict = "RE-CUT (fold)" if row.needs_recut else "RESCAN" if row.needs_rescan else "ok"
        if row.unjudged:
            verdict = f"CANNOT JUDGE {row.reason}"
        lines.append(f"{name:40s} {100 * (row.tissue_fraction or 0):8.1f} {row.percent_blurry or 0:9.1f}  {verdict}")
    return "\n".join(lines)


def rows_so_far() -> str:
    """Where the run under way keeps its rows, for a run that stops early (one line)."""
    run = Run.active
    if run is None:
        return "no run folder was made yet"
    return (
        f"{len(run.writer.rows)} of {len(run.file_names)} slide(s) have their row in "
        f"{run.folder / RESULTS_FILE}; {run.folder / RUN_FILE} says the run did not finish"
    )
