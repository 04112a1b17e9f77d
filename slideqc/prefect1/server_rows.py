"""For the extra "a results row per server flow run": each flow run adds its slide's row to the run's files."""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from pathlib import Path

from BaseImage import display_name
from slideqc.output import files, results
from slideqc.output.run import RunWriter
from slideqc.settings import QCSettings

ROWS_DIRNAME = ".rows"  # in the run folder: one row per slide, written by its own flow run


def save_row(row: results.SlideResult, run_dir, settings: QCSettings) -> results.SlideResult:
    """Write this slide's row, then rebuild results.tsv and report.html from every row so far.

    Flow runs of one submission run at the same time in separate processes:
    each row is its own file, and the rebuild holds a lock on the run folder,
    so the last one to finish writes every row.
    """
    rows_dir = Path(run_dir) / ROWS_DIRNAME
    rows_dir.mkdir(exist_ok=True)
    name = files.slide_folder_name(row.file_name)
    files.atomic_write_bytes(rows_dir / f"{name}.json", json.dumps(asdict(row)).encode("utf-8"))
    with _locked(rows_dir / "lock"):
        writer = RunWriter(Path(run_dir), settings)
        writer.rows = [
            results.SlideResult(**json.loads(p.read_text(encoding="utf-8"))) for p in sorted(rows_dir.glob("*.json"))
        ]
        writer.finish()
    return row


def saved_rows(run_dir, file_names) -> list[results.SlideResult]:
    """Return the rows that flow runs saved in ``run_dir`` (:func:`save_row`), one per slide of ``file_names``.

    In the order of ``file_names``; a slide none saved gets an error row (its flow run did not finish).
    """
    rows_dir = Path(run_dir) / ROWS_DIRNAME
    saved = {p.stem: p for p in rows_dir.glob("*.json")} if rows_dir.is_dir() else {}
    rows = []
    for path in file_names:
        row_file = saved.get(files.slide_folder_name(display_name(Path(path).name)))
        if row_file is None:
            rows.append(results.error_result(path, "no flow run saved its row (did its flow run finish?)"))
        else:
            rows.append(results.SlideResult(**json.loads(row_file.read_text(encoding="utf-8"))))
    return rows


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on ``path`` between processes; the system frees it if its holder dies."""
    import fcntl

    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
