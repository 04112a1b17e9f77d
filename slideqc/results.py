"""One results format for every script: a run folder with results.tsv, per-slide PNGs and report.html.

Layout of a run folder::

    output/run-20261122-101500/
        results.tsv            one row per slide (see COLUMNS)
        report.html            summary, sortable table, pictures; opens from disk
        slides/<slide>/        thumbnail.png tissue.png blur.png overlay.png

Every file is written atomically (a temporary name, then a rename), so a
crash leaves the previous version or none, never half a table.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import cv2
import numpy as np

from BaseImage import BaseImage
from slideqc.qc import QCParams

log = logging.getLogger("slideqc")

RESULTS_FILE = "results.tsv"
REPORT_FILE = "report.html"
OVERLAY_COLOUR = (255, 0, 255)  # blurry tissue, RGB


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any thread writes
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class RunExistsError(FileExistsError):
    """The run folder exists and overwriting was not asked for."""


@dataclass
class SlideResult:
    """One row of results.tsv. Fractions are 0 to 1; percent_blurry is 0 to 100."""

    file_name: str
    status: str = "ok"  # ok | error
    error: str = ""
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
    tissue_fraction: float | None = None
    percent_blurry: float | None = None
    rescan: bool | None = None
    blur_max: float | None = None
    true_tissue_fraction: float | None = None  # synthetic slides only
    true_percent_blurry: float | None = None
    seconds_load: float | None = None
    seconds_tissue: float | None = None
    seconds_blur: float | None = None
    seconds_save: float | None = None  # writing the PNGs
    seconds_total: float | None = None
    outputs: str = ""  # folder of the slide's PNGs, relative to the run folder

    @property
    def ok(self) -> bool:
        return self.status == "ok"


COLUMNS = [f.name for f in fields(SlideResult)]


def result_from_slide(s: BaseImage, blur_max: float, outputs: str = "") -> SlideResult:
    """The results row for a slide that went through every step."""
    from slideqc.synthetic import read_truth

    truth = read_truth(s.path)
    tissue_rows, tissue_cols = s.results["tissue_shape"]
    blur_rows, blur_cols = s.results["blur_shape"]
    timings = s.timings
    return SlideResult(
        file_name=s.name, format=s.vendor, objective_power=s.objective_power, mpp=s.mpp,
        width=s.dimensions[0], height=s.dimensions[1],
        image_work_size=s.results["image_work_size"], tissue_pixels=f"{tissue_cols}x{tissue_rows}",
        tissue_mpp=_round(s.microns_per_pixel(s.results["image_work_size"]), 4),
        blur_work_size=s.results["blur_work_size"], blur_pixels=f"{blur_cols}x{blur_rows}",
        blur_mpp=_round(s.microns_per_pixel(s.results["blur_work_size"]), 4),
        tissue_fraction=_round(s.results["tissue_fraction"], 4),
        percent_blurry=_round(100 * s.results["blurry_fraction"], 2),
        rescan=bool(s.results["blurry_fraction"] > blur_max), blur_max=blur_max,
        true_tissue_fraction=_round(truth.tissue_fraction, 4) if truth else None,
        true_percent_blurry=_round(truth.percent_blurry, 2) if truth else None,
        seconds_load=_round(timings.get("load"), 3), seconds_tissue=_round(timings.get("tissue"), 3),
        seconds_blur=_round(timings.get("blur"), 3), seconds_save=_round(timings.get("save"), 3),
        seconds_total=_round(sum(timings.values()), 3), outputs=outputs,
    )


def error_result(path: str | Path, message: str) -> SlideResult:
    return SlideResult(file_name=Path(path).name, status="error", error=message)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(float(value), digits)


# --- the run folder ---------------------------------------------------------------------


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name.strip(".") else name


def safe_name(name: str) -> str:
    """A file-system-safe folder name for a slide: no separators, no dots leading, never empty."""
    cleaned = re.sub(r"[^\w\-. ]", "_", _stem(name)).strip(" .")
    return cleaned[:120] or "slide"


def slide_folder_name(file_name: str) -> str:
    """The folder name of a slide's PNGs: its stem, made safe; unique per file name.

    When making the name safe changed it (``a#1.svs`` and ``a?1.svs`` would
    both become ``a_1``), a short hash of the file name keeps them apart.
    """
    name = Path(file_name).name
    safe = safe_name(name)
    if safe == _stem(name):
        return safe
    return f"{safe}-{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def _check_run_name(run_name: str) -> None:
    if not re.fullmatch(r"[\w\-.]+", run_name) or run_name.startswith("."):
        raise ValueError(f"--run-name: {run_name!r} must be a plain folder name "
                         "(letters, digits, '-', '_', '.'; not starting with '.')")


def create_run_dir(output_dir: str | Path, run_name: str | None = None, overwrite: bool = False) -> Path:
    """A new folder for this run's outputs; an earlier run's folder is never reused unless asked."""
    base = Path(output_dir)
    if run_name:
        _check_run_name(run_name)  # before anything is made: invalid usage writes nothing
    base.mkdir(parents=True, exist_ok=True)
    if run_name:
        run_dir = base / run_name
        if run_dir.exists() and not overwrite:
            raise RunExistsError(f"{run_dir}: an earlier run is there; pass --overwrite to replace it")
        run_dir.mkdir(exist_ok=True)
        # Replace the earlier run's outputs (only those: other files someone put there stay), so the
        # folder never mixes pictures of two runs.
        shutil.rmtree(run_dir / "slides", ignore_errors=True)
        for name in (RESULTS_FILE, REPORT_FILE):
            (run_dir / name).unlink(missing_ok=True)
        return run_dir
    stamp = time.strftime("run-%Y%m%d-%H%M%S")
    for attempt in range(1, 1000):
        run_dir = base / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise RunExistsError(f"{base}: cannot find a free run folder name")


def slide_dir(run_dir: Path, file_name: str) -> Path:
    """The folder for one slide's PNGs, guaranteed to lie inside ``run_dir``."""
    root = (Path(run_dir) / "slides").resolve()
    target = (root / slide_folder_name(file_name)).resolve()
    if target.parent != root:
        raise ValueError(f"{file_name}: output name escapes the run folder")
    return target


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the previous file or none, never part of it.

    The bytes go to a hidden temporary file in the same folder (unique per
    process and thread), are flushed to disk, and then replace ``path`` in
    one rename. On an error the temporary file is removed.
    """
    path = Path(path)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; give it an ordinary file's mode
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_png(path: Path, rgb_or_mask: np.ndarray) -> None:
    image = rgb_or_mask
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, encoded.tobytes())


def overlay(thumbnail: np.ndarray, tissue: np.ndarray, blur: np.ndarray) -> np.ndarray:
    """Blurry tissue coloured over the thumbnail; the tissue outline in green."""
    from slideqc.algorithms import resize_mask

    shape = thumbnail.shape[:2]
    tissue_t, blurry_t = resize_mask(tissue, shape), resize_mask(blur & tissue, shape)
    out = thumbnail.copy()
    out[blurry_t] = (0.45 * out[blurry_t] + 0.55 * np.array(OVERLAY_COLOUR)).astype(np.uint8)
    contours, _ = cv2.findContours(tissue_t.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, (0, 160, 0), 1)
    return out


def write_slide_images(s: BaseImage, run_dir: Path) -> str:
    """thumbnail, tissue, blur and overlay PNGs of one slide; returns their folder, relative.

    The time it takes is recorded as the slide's ``save`` step.
    """
    started = time.perf_counter()
    folder = slide_dir(run_dir, s.name)
    folder.mkdir(parents=True, exist_ok=True)
    thumb = s.thumbnail_image
    if thumb is None:
        thumb = s.get_image(s.results["image_work_size"])
    if max(thumb.shape[:2]) < 512:  # upscale small work images so the pictures are legible
        scale = 512 / max(thumb.shape[:2])
        thumb = cv2.resize(thumb, (round(thumb.shape[1] * scale), round(thumb.shape[0] * scale)),
                           interpolation=cv2.INTER_NEAREST)
    write_png(folder / "thumbnail.png", thumb)
    write_png(folder / "tissue.png", s.masks["tissue"])
    write_png(folder / "blur.png", s.masks["blur"] & s.masks["tissue"])
    write_png(folder / "overlay.png", overlay(thumb, s.masks["tissue"], s.masks["blur"]))
    s.timings["save"] = time.perf_counter() - started
    return folder.relative_to(Path(run_dir).resolve()).as_posix()


# --- results.tsv ------------------------------------------------------------------------


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return " ".join(str(value).split())  # one line per row, whatever the error said


def write_results(run_dir: Path, rows: list[SlideResult]) -> Path:
    """results.tsv with one row per slide, sorted by file name, written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in sorted(rows, key=lambda r: r.file_name):
        values = asdict(row)
        writer.writerow([_cell(values[c]) for c in COLUMNS])
    path = Path(run_dir) / RESULTS_FILE
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
    return path


def read_results(path: str | Path) -> list[dict[str, str]]:
    """results.tsv as a list of dicts (strings, as written)."""
    with open(path, encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


class RunWriter:
    """Collects the rows of a run and keeps results.tsv and report.html current."""

    def __init__(self, run_dir: Path, params: QCParams) -> None:
        self.run_dir = Path(run_dir)
        self.params = params
        self.rows: list[SlideResult] = []

    def add(self, row: SlideResult) -> SlideResult:
        self.rows.append(row)
        write_results(self.run_dir, self.rows)  # rewritten each time: a killed batch keeps its rows
        return row

    def finish(self) -> Path:
        from slideqc.report import write_report

        write_results(self.run_dir, self.rows)
        return write_report(self.run_dir, self.rows, self.params)

    @property
    def failed(self) -> list[SlideResult]:
        return [r for r in self.rows if not r.ok]

    @property
    def flagged(self) -> list[SlideResult]:
        return [r for r in self.rows if r.ok and r.rescan]
