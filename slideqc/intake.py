"""Moving slides from a scanner's folder to the shared drive, safely: the file logic of the intake flow.

Everything here is plain Python on paths, so it can be tested without Prefect;
solutions/pipeline_intake.py wraps it in tasks. The rules (why they are safe is
explained in that module's docstring):

- a slide is copied to a hidden temporary name in the shared folder,
  ``.<name>.<random>.partial``, never to its final name;
- the copy is flushed to disk, read back and compared (size and sha256) with
  what was read from the source, and the source must not have changed meanwhile;
- only then is it given its final name, without ever replacing a file already
  there (a hard link fails if the name exists), and the folder is flushed;
- a slide whose name is taken on the shared drive is not copied again when the
  content is the same; with other content it is stored as ``<stem>.<sha12><ext>``;
- the source is removed only by ``remove_source``, which the flow calls after all that.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

log = logging.getLogger("slideqc")

PARTIAL_SUFFIX = ".partial"
CHUNK = 8 * 1024 * 1024
SHORT_SHA = 12

# What happened to a slide in a pass (the ``action`` of an Outcome).
COPIED = "copied"  # new on the shared drive, verified
RENAMED = "renamed"  # its name was taken by other content: stored under <stem>.<sha12><ext>
DUPLICATE = "duplicate"  # already on the shared drive with the same sha256: not copied again
WAITING = "waiting"  # still being written (or no completion marker yet): left for a later pass
CHANGED = "changed"  # the source changed while it was copied: left for a later pass
STOPPED = "stopped"  # a stop was asked for before its copy began: left for the next pass
ERROR = "error"  # the copy failed (after retries): the source is kept


class VerifyError(OSError):
    """The copy on the shared drive is not the same as the source (an I/O error by another name)."""


class SourceChanged(Exception):
    """The source's size or mtime changed while it was being copied: it is still being written."""


@dataclass(frozen=True)
class Candidate:
    """A slide file in the scanner folder, as seen at one look."""

    path: str
    size: int
    mtime_ns: int

    @property
    def name(self) -> str:
        return Path(self.path).name


@dataclass
class Outcome:
    """What the intake did with one slide; one row of intake.tsv."""

    name: str
    action: str
    source: str = ""
    dest: str = ""
    size: int | None = None
    sha256: str = ""
    source_removed: bool = False
    detail: str = ""
    seconds: float | None = None

    @property
    def arrived(self) -> bool:
        """True when the slide is now on the shared drive because of this pass (so it needs QC)."""
        return self.action in (COPIED, RENAMED)

    @property
    def failed(self) -> bool:
        return self.action == ERROR


OUTCOME_COLUMNS = [f.name for f in fields(Outcome)]


# --- finding slides ---------------------------------------------------------------------


def is_temporary(name: str) -> bool:
    """Hidden files, our own partial copies and the usual temporary names a writer uses."""
    lower = name.lower()
    return name.startswith(".") or name.startswith("~") or lower.endswith((PARTIAL_SUFFIX, ".tmp", ".part", "~"))


def find_slides(scanner_dir: str | Path, file_type: str = "svs") -> list[Candidate]:
    """Regular files ``*.<file_type>`` directly in the scanner folder, temporary ones aside, sorted."""
    suffix = "." + file_type.lstrip(".").lower()
    found = []
    with os.scandir(scanner_dir) as entries:
        for entry in entries:
            if is_temporary(entry.name) or not entry.name.lower().endswith(suffix):
                continue
            if not entry.is_file(follow_symlinks=False):  # a symlink's target is not ours to remove
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except FileNotFoundError:  # removed since the listing
                continue
            found.append(Candidate(entry.path, stat.st_size, stat.st_mtime_ns))
    return sorted(found, key=lambda c: c.name)


def look(path: str | Path) -> Candidate | None:
    try:
        stat = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return Candidate(str(path), stat.st_size, stat.st_mtime_ns)


def marker_path(slide: str | Path, marker: str) -> Path:
    """The scanner's completion marker of a slide: ``<slide name><marker>``, e.g. ``a.svs.done``."""
    return Path(f"{slide}{marker}")


def marker_says_complete(candidate: Candidate, marker: str) -> bool:
    """The marker exists and is not older than the slide (a stale marker from an earlier slide of that name)."""
    try:
        return marker_path(candidate.path, marker).stat().st_mtime_ns >= candidate.mtime_ns
    except FileNotFoundError:
        return False


def settled(first: list[Candidate], later: dict[str, Candidate | None]) -> tuple[list[Candidate], list[Candidate]]:
    """(complete, still being written): complete when size and mtime did not change between two looks."""
    complete, writing = [], []
    for candidate in first:
        again = later.get(candidate.path)
        if again is None:  # gone meanwhile: nothing to do
            continue
        if again == candidate and candidate.size > 0:
            complete.append(candidate)
        else:
            writing.append(again)
    return complete, writing


def remove_orphan_markers(scanner_dir: str | Path, marker: str, file_type: str = "svs") -> list[Path]:
    """Markers whose slide is gone (a pass stopped between removing the slide and its marker)."""
    removed = []
    for path in Path(scanner_dir).glob(f"*.{file_type.lstrip('.')}{marker}"):
        slide = Path(str(path)[: -len(marker)])
        if not slide.exists():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


# --- copying ----------------------------------------------------------------------------


def sha256_file(path: str | Path, drop_cache: bool = False) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if drop_cache:
            _drop_cache(handle.fileno())
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _drop_cache(fd: int) -> None:
    """Ask the kernel to forget the file's cached pages, so reading it back reads the disk."""
    if hasattr(os, "posix_fadvise"):
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        except OSError:
            pass


def fsync_dir(folder: str | Path) -> None:
    """Make a rename or an unlink in ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def partial_name(name: str) -> str:
    return f".{name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"


def is_partial(name: str) -> bool:
    return name.startswith(".") and name.endswith(PARTIAL_SUFFIX)


def remove_partials(shared_dir: str | Path) -> list[Path]:
    """Leftovers of a copy that was interrupted: never under a final name, so safe to delete."""
    removed = []
    for path in Path(shared_dir).iterdir():
        if is_partial(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        fsync_dir(shared_dir)
    return removed


def copy_file(source: Candidate, dest: Path, bwlimit: float = 0) -> tuple[int, str]:
    """Copy ``source`` to ``dest`` (a new file), flushed to disk; returns (bytes, sha256 of what was read).

    ``bwlimit``: at most this many MB per second (0: no limit), to spare a shared network link.
    Raises SourceChanged if the source's size or mtime moved during the copy.
    """
    digest = hashlib.sha256()
    copied = 0
    started = time.monotonic()
    with open(source.path, "rb") as src, open(dest, "xb") as out:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            copied += len(chunk)
            if bwlimit > 0:
                ahead = copied / (bwlimit * 1e6) - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        out.flush()
        os.fsync(out.fileno())
    now = look(source.path)
    if now != source or copied != source.size:
        raise SourceChanged(f"{source.name}: changed while it was copied ({source.size} -> "
                            f"{now.size if now else 'gone'} bytes): still being written?")
    os.utime(dest, ns=(source.mtime_ns, source.mtime_ns))  # the scan time travels with the slide
    return copied, digest.hexdigest()


def place(partial: Path, final: Path) -> bool:
    """Give the verified copy its final name, never replacing a file there; False if the name is taken.

    A hard link fails when the name exists, which makes the check and the rename one
    step. Where hard links are not supported (some network shares), fall back to a
    check and os.replace, which has a small window if another writer uses the folder.
    """
    try:
        os.link(partial, final)
    except FileExistsError:
        return False
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if final.exists():
            return False
        os.replace(partial, final)
    else:
        partial.unlink()
    fsync_dir(final.parent)
    return True


def conflict_name(name: str, sha256: str, attempt: int = 0) -> str:
    """``a.svs`` with other content is stored as ``a.<sha12>.svs`` (then ``a.<sha12>-2.svs``...)."""
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    tag = sha256[:SHORT_SHA] + (f"-{attempt + 1}" if attempt else "")
    return f"{stem}.{tag}{dot}{ext}"


class HashCache:
    """sha256 of files by (path, size, mtime_ns): a scheduled intake does not re-read what it has read."""

    def __init__(self) -> None:
        self._known: dict[tuple, str] = {}

    def sha256(self, path: str | Path) -> str:
        stat = os.stat(path)
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._known:
            self._known[key] = sha256_file(path)
        return self._known[key]


def copy_and_verify(source: Candidate, shared_dir: str | Path, bwlimit: float = 0,
                    hashes: HashCache | None = None, before_placing=None) -> Outcome:
    """Copy one complete slide to the shared folder and verify it; never overwrites, never removes the source.

    Returns an Outcome: COPIED or RENAMED (placed and verified), DUPLICATE (the same
    content is already there under the name it would get). Raises VerifyError or
    another OSError for the caller to retry, SourceChanged when the slide is still
    being written. A failed copy leaves no partial file behind. ``before_placing(final)``
    is called just before the final name is given (the flow journals the slide for QC there).
    """
    hashes = hashes or HashCache()
    started = time.monotonic()
    shared = Path(shared_dir)
    partial = shared / partial_name(source.name)
    try:
        size, sha = copy_file(source, partial, bwlimit)
        copy_size = partial.stat().st_size
        copy_sha = sha256_file(partial, drop_cache=True)  # read back from the disk, not from memory
        if copy_size != size or copy_sha != sha:
            raise VerifyError(f"{source.name}: the copy differs from the source "
                              f"(size {copy_size} vs {size}, sha256 {copy_sha[:12]} vs {sha[:12]})")
        name, attempt = source.name, 0
        while True:
            final = shared / name
            if final.exists():
                if final.stat().st_size == size and hashes.sha256(final) == sha:
                    return Outcome(source.name, DUPLICATE, source.path, str(final), size, sha,
                                   detail=f"already on the shared drive as {name} (same sha256)",
                                   seconds=round(time.monotonic() - started, 3))
                name = conflict_name(source.name, sha, attempt)
                attempt += 1
                continue
            if before_placing is not None:
                before_placing(final)
            if place(partial, final):
                break
        action = COPIED if name == source.name else RENAMED
        detail = "" if action == COPIED else f"{source.name} on the shared drive has other content: kept as {name}"
        return Outcome(source.name, action, source.path, str(final), size, sha, detail=detail,
                       seconds=round(time.monotonic() - started, 3))
    finally:
        if partial.exists():
            partial.unlink()


def already_there(source: Candidate, shared_dir: str | Path, hashes: HashCache) -> Outcome | None:
    """DUPLICATE without copying when the shared drive has this name (or its conflict name) with the same content.

    Reads the source and the shared file once each; the copy is only made when
    this finds nothing, so a slide re-offered by the scanner costs no write.
    """
    shared = Path(shared_dir)
    same_name = shared / source.name
    if not same_name.exists():
        return None
    sha = hashes.sha256(source.path)
    for attempt in range(0, 100):
        name = source.name if attempt == 0 else conflict_name(source.name, sha, attempt - 1)
        final = shared / name
        if not final.exists():
            return None
        if final.stat().st_size == source.size and hashes.sha256(final) == sha:
            return Outcome(source.name, DUPLICATE, source.path, str(final), source.size, sha,
                           detail=f"already on the shared drive as {name} (same sha256): not copied again")
    return None


def remove_source(outcome: Outcome, marker: str | None = None) -> Outcome:
    """Remove a slide from the scanner folder once it is verified on the shared drive (then its marker)."""
    if outcome.action not in (COPIED, RENAMED, DUPLICATE):
        raise ValueError(f"{outcome.name}: not on the shared drive ({outcome.action}); the source stays")
    if not Path(outcome.dest).is_file():
        raise FileNotFoundError(f"{outcome.dest}: the verified copy is missing; the source stays")
    source = Path(outcome.source)
    source.unlink(missing_ok=True)
    if marker:
        marker_path(source, marker).unlink(missing_ok=True)
    fsync_dir(source.parent)
    outcome.source_removed = True
    return outcome


# --- slides waiting for QC --------------------------------------------------------------
# A slide is written here just before its final rename and crossed off once its QC row is
# written, so a pass killed between the two QCs it next time, even though its source is gone.

PENDING_DIRNAME = ".intake-pending"


def pending_dir(output_dir: str | Path) -> Path:
    return Path(output_dir) / PENDING_DIRNAME


def add_pending(output_dir: str | Path, shared_path: str | Path) -> None:
    folder = pending_dir(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(Path(shared_path).resolve()).encode()).hexdigest()[:16]
    (folder / key).write_text(str(Path(shared_path).resolve()), encoding="utf-8")


def list_pending(output_dir: str | Path) -> dict[str, Path]:
    """shared path -> its journal entry; entries whose slide never got its final name are dropped."""
    folder = pending_dir(output_dir)
    pending = {}
    if folder.is_dir():
        for entry in sorted(folder.iterdir()):
            target = entry.read_text(encoding="utf-8").strip()
            if Path(target).is_file():
                pending[target] = entry
            else:
                entry.unlink(missing_ok=True)
    return pending


def clear_pending(output_dir: str | Path, shared_paths) -> None:
    by_target = list_pending(output_dir)
    for path in shared_paths:
        entry = by_target.get(str(Path(path).resolve()))
        if entry is not None:
            entry.unlink(missing_ok=True)


def outcome_row(outcome: Outcome) -> dict:
    values = asdict(outcome)
    return {c: values[c] for c in OUTCOME_COLUMNS}
