"""A run being written: its rows, results.tsv kept current, report.html at the end."""

from __future__ import annotations

import logging
from pathlib import Path

from BaseImage import BaseImage
from slideqc import qc
from slideqc.artefacts import KINDS as ARTEFACT_KINDS
from slideqc.output.files import COMPLETE, RUNNING, create_run_dir, read_run_status, write_run_status
from slideqc.output.pictures import write_slide_images
from slideqc.output.report import write_report
from slideqc.output.results import (
    CANNOT_JUDGE,
    ERROR,
    OK,
    RECUT,
    RESCAN,
    SlideResult,
    error_row,
    result_from_slide,
    write_results,
)
from slideqc.settings import QCSettings

log = logging.getLogger("slideqc")


class RunWriter:
    """Collects the rows of a run and keeps results.tsv, run.json and report.html current.

    run.json says ``running`` from :meth:`start` until :meth:`finish` has written
    every file: a run that was killed or stopped keeps its rows in results.tsv
    and reads as unfinished (``slides`` is how many it was to check).
    """

    def __init__(self, run_dir: Path, settings: QCSettings, slides: int | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.settings = settings
        self.slides = slides
        self.rows: list[SlideResult] = []

    def start(self) -> None:
        """Write run.json saying the run is under way, with no row yet."""
        write_run_status(self.run_dir, RUNNING, self.slides, 0)

    def add(self, row: SlideResult) -> SlideResult:
        """Add one slide's row (results.tsv is rewritten with it) and return it."""
        self.add_all([row])
        return row

    def add_all(self, rows: list[SlideResult]) -> None:
        """Add the rows of several slides, then rewrite results.tsv once: a killed batch keeps its rows."""
        self.rows.extend(rows)
        write_results(self.run_dir, self.rows)  # rewritten each time: a killed batch keeps its rows

    def finish(self, complete: bool | None = None) -> Path:
        """Write results.tsv, the report and run.json; ``complete`` None: complete once every slide has its row.

        The number of slides is this writer's, or else the one run.json recorded
        at the start (a flow run on a server writes rows into a run it did not start).
        """
        slides = self.slides
        if slides is None:
            slides = (read_run_status(self.run_dir) or {}).get("slides")
        if complete is None:
            complete = not isinstance(slides, int) or len(self.rows) >= slides
        write_results(self.run_dir, self.rows)
        report = write_report(self.run_dir, self.rows, self.settings, complete=complete, slides=slides)
        write_run_status(
            self.run_dir, COMPLETE if complete else RUNNING, slides, len(self.rows), run_summary(self.rows)
        )
        return report

    @property
    def passed(self) -> list[SlideResult]:
        """The rows of the slides that passed (status ok)."""
        return [r for r in self.rows if r.ok]

    @property
    def failed(self) -> list[SlideResult]:
        """The rows of the slides that could not be checked (status error)."""
        return [r for r in self.rows if r.failed]

    @property
    def unjudged(self) -> list[SlideResult]:
        """The rows of the slides that cannot be judged (status cannot judge)."""
        return [r for r in self.rows if r.unjudged]

    @property
    def flagged(self) -> list[SlideResult]:
        """The rows of the slides that need a rescan (status rescan)."""
        return [r for r in self.rows if r.needs_rescan]

    @property
    def recut(self) -> list[SlideResult]:
        """The rows of slides that need a re-cut (a fold)."""
        return [r for r in self.rows if r.needs_recut]


def run_summary(rows: list[SlideResult]) -> dict:
    """Return what run.json says of the rows, beside its status.

    Slides per status, and per kind of artefact the slides that carry it (over the tissue or on
    the glass) and the largest share of a slide's tissue it covers, in percent.
    """
    statuses = {status: sum(r.status == status for r in rows) for status in (OK, RESCAN, RECUT, CANNOT_JUDGE, ERROR)}
    artefacts = {}
    for kind in ARTEFACT_KINDS:
        over = [getattr(r, f"{kind}_percent") or 0.0 for r in rows]
        glass = [getattr(r, f"{kind}_glass_percent", None) or 0.0 for r in rows]
        artefacts[kind] = {
            "slides": sum(1 for o, g in zip(over, glass, strict=True) if o or g),
            "largest_percent_of_tissue": max(over, default=0.0),
        }
    return {"statuses": statuses, "artefacts": artefacts}


def settings_of(s: BaseImage, blur_max: float) -> QCSettings:
    """Return the settings a checked slide was measured with, as its steps recorded them (``s.ran_with``)."""
    return QCSettings.from_values({**s.settings_used, "blur_max": blur_max})


def save_slide(
    s: BaseImage, blur_max: float, run_dir: str | Path | None = None, output_dir: str | Path = "output"
) -> SlideResult:
    """Write a checked slide's pictures into ``run_dir`` and return its results row.

    Without a run folder (a flow run started on its own, by `prefect run` or
    from a server's UI) the slide gets a new run folder under ``output_dir``
    with its own results.tsv and report.html.
    """
    if run_dir:
        return result_from_slide(s, blur_max, write_slide_images(s, Path(run_dir)))
    writer = RunWriter(create_run_dir(output_dir), settings_of(s, blur_max))
    writer.add(result_from_slide(s, blur_max, write_slide_images(s, writer.run_dir)))
    writer.finish()
    return writer.rows[0]


def check_slide(
    path: str | Path, settings: QCSettings, run_dir: str | Path | None, tile_threads: int | None = None
) -> SlideResult:
    """Run the whole QC of one slide, for a runner that is not a lesson: every step, its pictures, its row.

    The steps are :data:`slideqc.qc.STEPS` (:func:`slideqc.qc.run_steps`). Any error becomes the
    slide's error row, logged in one line: one bad slide never stops a batch.
    """
    try:
        s = qc.run_steps(path, settings, tile_threads)
        row = save_slide(s, settings.blur_max, run_dir)
    except Exception as error:  # noqa: BLE001 (one bad slide never stops the batch: it gets its error row)
        row = error_row(path, error)
        log.error("%s", row.error)
        return row
    log.info("%s", qc.describe(s, settings.blur_max))
    return row
