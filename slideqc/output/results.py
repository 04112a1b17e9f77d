"""results.tsv: one row per slide (:class:`SlideResult`), the same columns from every script.

Layout of a run folder::

    output/run-20261122-101500/
        results.tsv            one row per slide (see COLUMNS)
        report.html            summary, sortable table, pictures; opens from disk
        slides/<slide>/        thumbnail.png tissue.png blur.png overlay.png
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Final, Literal, get_args

from BaseImage import BaseImage, display_name
from slideqc import qc
from slideqc.artefacts import KINDS as ARTEFACT_KINDS
from slideqc.artefacts import ArtefactKind
from slideqc.output.files import RESULTS_FILE, atomic_write_bytes
from slideqc.settings import rescan_needed

# The values of the status column: ok (passed), rescan (judged: too much of the tissue is blurry),
# cannot judge (the reason says why), error (the slide could not be checked).
# A new status: one more value of Status and its constant here.
Status = Literal["ok", "rescan", "recut", "cannot judge", "error"]
STATUSES: tuple[Status, ...] = get_args(Status)
OK: Final = "ok"
RESCAN: Final = "rescan"
RECUT: Final = "recut"
CANNOT_JUDGE: Final = "cannot judge"
ERROR: Final = "error"
JUDGED: tuple[Status, ...] = (
    OK,
    RESCAN,
    RECUT,
)  # the statuses of a judged slide (its rescan and recut columns say why)
NOT_A_COLUMN = {"column": False}  # a SlideResult field that code reads and results.tsv does not show


@dataclass
class SlideResult:
    """One row of results.tsv. Fractions are 0 to 1; percent_blurry is 0 to 100."""

    file_name: str
    # ok (passed) | rescan (blurry) | recut (folded) | cannot judge (no tissue, too faint, too coarse,
    # too little tissue free of artefacts) | error
    status: Status = OK
    error: str = ""  # what went wrong (error), or why the slide cannot be judged
    format: str = ""
    objective_power: float | None = None
    mpp: float | None = None
    width: int | None = None
    height: int | None = None
    image_work_size: str = ""
    tissue_pixels: str = ""  # cols x rows of the tissue work image
    tissue_mpp: float | None = None  # µm per pixel at the tissue work size
    blur_work_size: str = ""
    blur_pixels: str = ""
    blur_mpp: float | None = None
    artefact_work_size: str = ""
    artefact_pixels: str = ""
    artefact_mpp: float | None = None
    tissue_fraction: float | None = None  # of the slide, ink and the like on the glass left out
    # Each kind of artefact: percent of the tissue it covers, and percent of the slide it covers on bare glass.
    ink_percent: float | None = None
    ink_glass_percent: float | None = None
    bubble_percent: float | None = None
    bubble_glass_percent: float | None = None
    debris_percent: float | None = None
    debris_glass_percent: float | None = None
    edge_percent: float | None = None
    edge_glass_percent: float | None = None
    fold_percent: float | None = None
    usable_percent: float | None = None  # of the tissue, free of artefacts: what blur is judged on
    percent_blurry: float | None = None  # of the usable tissue
    rescan: bool | None = None
    blur_max: float | None = None
    recut: bool | None = None
    fold_max: float | None = None
    seconds_load: float | None = None
    seconds_tissue: float | None = None
    seconds_artefacts: float | None = None
    seconds_blur: float | None = None
    seconds_save: float | None = None  # writing the PNGs
    seconds_total: float | None = None
    outputs: str = ""  # folder of the slide's PNGs, relative to the run folder
    # For code, not columns: the error without the slide's name, and the path a full disk could not
    # take when that stopped the slide (None otherwise; the run stops on it: cli's Run, exit 4).
    reason: str = field(default="", metadata=NOT_A_COLUMN)
    no_room_path: str | None = field(default=None, metadata=NOT_A_COLUMN)

    @property
    def ok(self) -> bool:
        """Passed: checked, judged, and needs nothing."""
        return self.status == OK

    @property
    def judged(self) -> bool:
        """Checked and judged (passed, or needs a rescan): its rescan column is the verdict."""
        return self.status in JUDGED

    @property
    def needs_rescan(self) -> bool:
        """True when the slide was judged and needs a rescan (status rescan)."""
        return self.status == RESCAN

    @property
    def needs_recut(self) -> bool:
        """True when the slide was judged and a fold needs a re-cut (status recut)."""
        return self.status == RECUT

    @property
    def artefacts_found(self) -> bool:
        """Any artefact over the tissue or on the glass."""
        return any(getattr(self, name) for name in ARTEFACT_COLUMNS)

    @property
    def failed(self) -> bool:
        """True when the slide could not be checked (status error)."""
        return self.status == ERROR

    @property
    def unjudged(self) -> bool:
        """True when the slide was measured but cannot be judged (status cannot judge)."""
        return self.status == CANNOT_JUDGE


COLUMNS = [f.name for f in fields(SlideResult) if f.metadata.get("column", True)]
# The artefact share columns, per kind: of the tissue, and (coverslip kinds) of the slide on glass.
ARTEFACT_COLUMNS = [
    name for kind in ARTEFACT_KINDS for name in (f"{kind}_percent", f"{kind}_glass_percent") if name in COLUMNS
]


def result_from_slide(s: BaseImage, blur_max: float, outputs: str = "") -> SlideResult:
    """Return the results row for a slide that went through every step."""
    tissue_rows, tissue_cols = s.work_shape(s.image_work_size)
    blur_rows, blur_cols = s.work_shape(s.blur_work_size)
    timings = s.timings
    reason = qc.judge(s)
    blur = s.found[qc.Blur]
    found = s.found[qc.Artefacts]
    rescan = None if reason else rescan_needed(blur.fraction, blur_max)
    recut = None if reason else found.recut

    def over(kind: ArtefactKind) -> float | None:  # percent of the tissue
        return _round(100 * found.share(kind).of_tissue, 2)

    def glass(kind: ArtefactKind) -> float | None:  # percent of the slide, on bare glass
        return _round(100 * found.share(kind).on_glass, 2)

    return SlideResult(
        file_name=s.name,
        status=CANNOT_JUDGE if reason else RECUT if recut else RESCAN if rescan else OK,
        error=f"{s.name}: {reason}" if reason else "",
        reason=reason,
        format=s.vendor,
        objective_power=s.objective_power,
        mpp=s.mpp,
        width=s.dimensions[0],
        height=s.dimensions[1],
        image_work_size=s.image_work_size.text,
        tissue_pixels=f"{tissue_cols}x{tissue_rows}",
        tissue_mpp=_round(s.microns_per_pixel(s.image_work_size), 4),
        blur_work_size=s.blur_work_size.text,
        blur_pixels=f"{blur_cols}x{blur_rows}",
        blur_mpp=_round(s.microns_per_pixel(s.blur_work_size), 4),
        artefact_work_size=found.work_size,
        artefact_pixels=found.pixels,
        artefact_mpp=_round(found.mpp, 4),
        tissue_fraction=_round(s.found[qc.Tissue].fraction, 4),
        ink_percent=over("ink"),
        ink_glass_percent=glass("ink"),
        bubble_percent=over("bubble"),
        bubble_glass_percent=glass("bubble"),
        debris_percent=over("debris"),
        debris_glass_percent=glass("debris"),
        edge_percent=over("edge"),
        edge_glass_percent=glass("edge"),
        fold_percent=over("fold"),
        usable_percent=_round(100 * found.usable_share, 2),
        percent_blurry=_round(100 * blur.fraction, 2),
        rescan=rescan,
        blur_max=blur_max,
        recut=recut,
        fold_max=float(s.settings_used["fold_max"]),
        seconds_load=_round(timings.get("load"), 3),
        seconds_tissue=_round(timings.get("tissue"), 3),
        seconds_artefacts=_round(timings.get("artefacts"), 3),
        seconds_blur=_round(timings.get("blur"), 3),
        seconds_save=_round(timings.get("save"), 3),
        seconds_total=_round(sum(timings.values()), 3),
        outputs=outputs,
    )


def error_result(path: str | Path, reason: str, *, no_room_path: str | None = None) -> SlideResult:
    """Return the row of a slide that failed: ``reason`` says why, without the slide's name (the row adds it)."""
    name = display_name(Path(path).name)
    reason = display_name(reason)
    return SlideResult(
        file_name=name, status=ERROR, error=f"{name}: {reason}", reason=reason, no_room_path=no_room_path
    )


def error_row(path: str | Path, error: BaseException) -> SlideResult:
    """Return the row of a slide whose QC raised ``error`` (:func:`slideqc.qc.error_reason` says it)."""
    return error_result(path, qc.error_reason(path, error), no_room_path=qc.no_room_path(error))


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


# --- results.tsv ------------------------------------------------------------------------


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection). Such a
# text cell is written with a ' in front, the spreadsheets' own mark for "text"; so is a text
# cell that starts with ' itself, so reading takes exactly one ' off any cell that has one.
FORMULA_STARTS = ("=", "+", "-", "@", "'", "\t", "\r")


def _cell(value, one_line: bool = False) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    text = display_name(str(value))  # a name that is not UTF-8: its bytes shown as \xNN
    if one_line:
        text = " ".join(text.split())
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _uncell(text: str) -> str:
    return text[1:] if text.startswith("'") else text


def write_results(run_dir: Path, rows: list[SlideResult]) -> Path:
    """results.tsv with one row per slide, sorted by file name, written atomically.

    Tab-separated; the error is one line; a cell holding a tab, a newline or a
    double quote (a file name can) is quoted as CSV does (``"..."``, a quote doubled), and a text cell that a spreadsheet
    would run as a formula starts with a ' (see FORMULA_STARTS): :func:`read_results`
    gives back the values as they were.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in sorted(rows, key=lambda r: r.file_name):
        values = asdict(row)
        writer.writerow([_cell(values[c], one_line=c == "error") for c in COLUMNS])
    path = Path(run_dir) / RESULTS_FILE
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
    return path


def read_results(path: str | Path) -> list[dict[str, str]]:
    """results.tsv as a list of dicts (strings, as they were before writing: the ' of a formula-like cell removed)."""
    with open(path, encoding="utf-8", newline="") as handle:
        return [{key: _uncell(value) for key, value in row.items()} for row in csv.DictReader(handle, delimiter="\t")]
