"""Files of a run: atomic writes, the run folder, safe folder names for slides.

Every file is written atomically (a temporary name, fsync, then a rename), so
a crash leaves the previous version or none, never part of a file.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

RESULTS_FILE = "results.tsv"
REPORT_FILE = "report.html"
RUN_FILE = "run.json"  # {"status": "running" | "complete", "slides": N, "rows": n}: is the run finished?
RUNNING, COMPLETE = "running", "complete"
SLIDES_DIRNAME = "slides"


def _read_umask() -> int:
    mask = os.umask(0)  # the only way to read it; done once, at import, before any thread writes
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class RunExistsError(FileExistsError):
    """The run folder exists and overwriting was not asked for."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the previous file or none, never part of it.

    The bytes go to a hidden temporary file in the same folder (unique per
    process and thread), are flushed to disk, and then replace ``path`` in
    one rename. On an error the temporary file is removed.
    """
    path = Path(path)
    try:
        handle, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise _naming(error, path) from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes it private; give it an ordinary file's mode
        os.replace(tmp, path)
    except OSError as error:  # a full disk says only "No space left on device": say which file
        raise _naming(error, path) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` naming ``path`` (the file being written), of the same type (PermissionError stays one)."""
    if error.filename is not None and error.errno is None:
        return error
    return type(error)(error.errno, error.strerror, str(path))


def write_run_status(run_dir: Path, status: str, slides: int | None, rows: int, summary: dict | None = None) -> None:
    """run.json: whether the run finished (``complete``) or is under way or was stopped (``running``).

    ``summary``, when given, is added as it is (the rows' statuses and artefacts, see
    :func:`slideqc.output.run.run_summary`).
    """
    data = {"status": status, "slides": slides, "rows": rows, **(summary or {})}
    atomic_write_bytes(Path(run_dir) / RUN_FILE, (json.dumps(data) + "\n").encode("utf-8"))


def read_run_status(run_dir: Path) -> dict | None:
    """run.json as written, or None when there is none or it cannot be read (an older run)."""
    try:
        data = json.loads((Path(run_dir) / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _stem(name: str) -> str:
    return name.rsplit(".", 1)[0] if "." in name.strip(".") else name


def safe_name(name: str) -> str:
    """Return a file-system-safe folder name for a slide: no separators, no dots leading, never empty."""
    cleaned = re.sub(r"[^\w\-. ]", "_", _stem(name)).strip(" .")
    return cleaned[:120] or "slide"


def slide_folder_name(file_name: str) -> str:
    """Return the folder name of a slide's PNGs: its stem, made safe; unique per file name.

    When making the name safe changed it (``a#1.svs`` and ``a?1.svs`` would
    both become ``a_1``), a short hash of the file name keeps them apart.
    """
    name = Path(file_name).name
    safe = safe_name(name)
    if safe == _stem(name):
        return safe
    return f"{safe}-{hashlib.sha256(name.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"


def check_run_name(run_name: str) -> None:
    """Refuse a --run-name that is not a plain folder name (ValueError names the option)."""
    if not re.fullmatch(r"[\w\-.]+", run_name) or run_name.startswith("."):
        raise ValueError(
            f"--run-name: {run_name!r} must be a plain folder name "
            "(letters, digits, '-', '_', '.'; not starting with '.')"
        )


def create_run_dir(output_dir: str | Path, run_name: str | None = None, overwrite: bool = False) -> Path:
    """Create a new folder for this run's outputs; an earlier run's folder is never reused unless asked."""
    base = Path(output_dir)
    if run_name:
        check_run_name(run_name)  # before anything is made: invalid usage writes nothing
    base.mkdir(parents=True, exist_ok=True)
    if run_name:
        run_dir = base / run_name
        try:
            run_dir.mkdir()  # atomic: of two runs started at the same instant, one gets the folder
            return run_dir
        except FileExistsError:
            if not overwrite:
                status = read_run_status(run_dir)
                state = (
                    f" ({status.get('status')}: {status.get('rows')} of {status.get('slides')} slides)"
                    if status
                    else ""
                )
                raise RunExistsError(
                    f"{run_dir}: an earlier run is there{state}; pass --overwrite to replace it"
                ) from None
        if not run_dir.is_dir():
            raise RunExistsError(f"{run_dir}: exists and is not a folder; choose another --run-name")
        # Replace the earlier run's outputs (only those: other files someone put there stay), so the
        # folder never mixes pictures of two runs.
        shutil.rmtree(run_dir / SLIDES_DIRNAME, ignore_errors=True)
        for name in (RESULTS_FILE, REPORT_FILE, RUN_FILE):
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
    """Return the folder for one slide's PNGs, guaranteed to lie inside ``run_dir``."""
    root = (Path(run_dir) / SLIDES_DIRNAME).resolve()
    target = (root / slide_folder_name(file_name)).resolve()
    if target.parent != root:
        raise ValueError(f"{file_name}: output name escapes the run folder")
    return target
