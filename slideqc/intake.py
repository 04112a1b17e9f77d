"""Moving slides from a scanner's folder to the shared drive, safely: the file logic of the intake flow.

Everything here is plain Python on paths (no Prefect), so it can be tested on its
own; extras/pipeline_intake.py wraps it in tasks.

The guarantee: a slide is never removed from the scanner folder while it could be
its only complete copy. The rules that make it true:

- a slide is copied to a hidden temporary name in the shared folder,
  ``.<name>.<random>.partial``, never to its final name;
- the copy is flushed to disk, read back and compared (size and sha256) with
  what was read from the source, and the source must not have changed meanwhile;
- only then is it given its final name, without ever replacing a file already
  there (a hard link fails if the name exists), and the folder is flushed; the
  one exception: a shared copy the intake itself placed, whose bytes are the
  beginning of the source's bytes now (a slide the scanner had not finished,
  copied during a pause), is replaced by the whole slide;
- a slide whose name is taken on the shared drive is not copied again when the
  content is the same; with other content it is stored as ``<stem>.<sha12><ext>``;
- the source is not removed after its copy: it is *held* (a record in
  ``<output-dir>/.intake-held/``: size, mtime, sha256, where its copy went) and
  stays in the scanner folder. A held source whose size or mtime changes is
  copied again, loudly. ``release_sources`` removes a held source only when
  (1) it has not changed for ``retain_seconds`` since its verified copy,
  (2) its shared copy has a QC row that is not an error, and (3) just before the
  removal, the source and the shared copy both still hash to the recorded sha256.

Its limits: a scanner that pauses longer than ``retain_seconds`` *and* whose file
QC reads without error can still lose the bytes it writes after the removal (use a
completion marker, or a longer retention); a change of a source that keeps its
size and mtime is only seen at the final check before removal (then it is copied
again). Every event is appended to ``<output-dir>/intake-journal.tsv``.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import logging
import os
import secrets
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from slideqc.output import files
from slideqc.output.files import atomic_write_bytes

log = logging.getLogger("slideqc")

PARTIAL_SUFFIX = ".partial"
CHUNK = 8 * 1024 * 1024
SHORT_SHA = 12

# What happened to a slide in a pass (the ``action`` of an Outcome).
COPIED = "copied"  # new on the shared drive, verified
REPLACED = "replaced"  # changed after its copy: the intake's shorter copy replaced by the whole slide
RENAMED = "renamed"  # its name was taken by other content: stored under <stem>.<sha12><ext>
DUPLICATE = "duplicate"  # already on the shared drive with the same sha256: not copied again
WAITING = "waiting"  # still being written (or no completion marker yet): left for a later pass
CHANGED = "changed"  # the source changed while it was copied: left for a later pass
STOPPED = "stopped"  # a stop was asked for before its copy began: left for the next pass
ERROR = "error"  # the copy (after retries) or the source's removal failed: the source is kept
HELD = "held"  # verified on the shared drive; the source kept until its retention and QC allow its removal
RELEASED = "released"  # the source removed: unchanged for the retention period, QC'd, hashes checked again


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
        """The file's name, without its folder."""
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
        return self.action in (COPIED, RENAMED, REPLACED)

    @property
    def failed(self) -> bool:
        """True when the slide's copy failed (action ERROR)."""
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
    """Return the file at ``path`` as a Candidate (size, mtime), or None when it is gone; a link is not followed."""
    try:
        stat = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return None
    return Candidate(str(path), stat.st_size, stat.st_mtime_ns)


def marker_path(slide: str | Path, marker: str) -> Path:
    """Return the scanner's completion marker of a slide: ``<slide name><marker>``, e.g. ``a.svs.done``."""
    return Path(f"{slide}{marker}")


def marker_says_complete(candidate: Candidate, marker: str) -> bool:
    """Return True when the marker exists and is not older than the slide (a stale marker from an earlier slide of that name)."""
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


def sha256_file(path: str | Path, drop_cache: bool = False, limit: int | None = None) -> str:
    """Return the SHA-256 of the file at ``path``, in hex.

    Parameters
    ----------
    path : str or Path
        The file.
    drop_cache : bool
        Read the disk, not the kernel's cached pages (to verify what was written).
    limit : int, >= 0, optional
        Hash only the first ``limit`` bytes (default: the whole file).

    Returns
    -------
    str
        64 hex digits.
    """
    digest = hashlib.sha256()
    left = -1 if limit is None else limit
    with open(path, "rb") as handle:
        if drop_cache:
            _drop_cache(handle.fileno())
        while left and (chunk := handle.read(CHUNK if left < 0 else min(CHUNK, left))):
            digest.update(chunk)
            left -= len(chunk) if left > 0 else 0
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
    """Return a hidden, unique name for a copy of ``name`` in progress: ``.<name>.<8 hex digits>.partial``."""
    return f".{name}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}"


def is_partial(name: str) -> bool:
    """Return True when ``name`` is the name of a copy in progress (see :func:`partial_name`)."""
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
    """Copy ``source`` to ``dest`` (a new file), flushed to disk.

    Parameters
    ----------
    source : Candidate
        The slide as it was seen (its size and mtime are checked again after the copy).
    dest : Path
        A new file (it must not exist).
    bwlimit : float, >= 0
        At most this many MB per second, to spare a shared network link (0: no limit).

    Returns
    -------
    (int, str)
        The bytes copied and the SHA-256 (hex) of what was read. Raises SourceChanged
        if the source's size or mtime moved during the copy.
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
        raise SourceChanged(
            f"{source.name}: changed while it was copied ({source.size} -> "
            f"{now.size if now else 'gone'} bytes): still being written?"
        )
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
        """Return the SHA-256 of the file at ``path`` (hex), read once per path, size and mtime."""
        stat = os.stat(path)
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._known:
            self._known[key] = sha256_file(path)
        return self._known[key]


def copy_and_verify(
    source: Candidate,
    shared_dir: str | Path,
    bwlimit: float = 0,
    hashes: HashCache | None = None,
    before_placing=None,
    previous: Held | None = None,
) -> Outcome:
    """Copy one complete slide to the shared folder and verify it; never removes the source.

    Returns an Outcome: COPIED or RENAMED (placed and verified), DUPLICATE (the same
    content is already there under the name it would get), REPLACED (``previous``, the
    record of this source's earlier copy, says that copy is the beginning of this one:
    a slide copied while the scanner paused, now replaced by the whole slide). Nothing
    else is ever overwritten. Raises VerifyError or another OSError for the caller to
    retry, SourceChanged when the slide is still being written. A failed copy leaves
    no partial file behind. ``before_placing(final)`` is called just before the final
    name is given (the flow journals the slide for QC there).
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
            raise VerifyError(
                f"{source.name}: the copy differs from the source "
                f"(size {copy_size} vs {size}, sha256 {copy_sha[:12]} vs {sha[:12]})"
            )
        same_folder = previous is not None and Path(previous.dest).parent == shared.resolve()
        if previous is not None and same_folder and _extends(previous, partial, size):
            final = Path(previous.dest)
            if before_placing is not None:
                before_placing(final)
            os.replace(partial, final)
            fsync_dir(final.parent)
            return Outcome(
                source.name,
                REPLACED,
                source.path,
                str(final),
                size,
                sha,
                detail=f"CHANGED after its copy: the earlier copy ({previous.size} bytes, sha256 "
                f"{previous.sha256[:SHORT_SHA]}) was its beginning; replaced by the whole slide",
                seconds=round(time.monotonic() - started, 3),
            )
        name, attempt = source.name, 0
        while True:
            final = shared / name
            if final.exists():
                if final.stat().st_size == size and hashes.sha256(final) == sha:
                    return Outcome(
                        source.name,
                        DUPLICATE,
                        source.path,
                        str(final),
                        size,
                        sha,
                        detail=f"already on the shared drive as {name} (same sha256)",
                        seconds=round(time.monotonic() - started, 3),
                    )
                name = conflict_name(source.name, sha, attempt)
                attempt += 1
                continue
            if before_placing is not None:
                before_placing(final)
            if place(partial, final):
                break
        action = COPIED if name == source.name else RENAMED
        detail = "" if action == COPIED else f"{source.name} on the shared drive has other content: kept as {name}"
        return Outcome(
            source.name,
            action,
            source.path,
            str(final),
            size,
            sha,
            detail=detail,
            seconds=round(time.monotonic() - started, 3),
        )
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
            return Outcome(
                source.name,
                DUPLICATE,
                source.path,
                str(final),
                source.size,
                sha,
                detail=f"already on the shared drive as {name} (same sha256): not copied again",
            )
    return None


def _extends(previous: Held, partial: Path, size: int) -> bool:
    """Return True when the intake's earlier copy is untouched and is the beginning of the new, longer copy."""
    dest = Path(previous.dest)
    if dest.name != Path(previous.source).name:  # a copy kept apart as <stem>.<sha12>: its name is its content's
        return False
    try:
        return (
            size > previous.size
            and dest.stat().st_size == previous.size
            and sha256_file(dest) == previous.sha256
            and sha256_file(partial, limit=previous.size) == previous.sha256
        )
    except FileNotFoundError:
        return False


def remove_source(record: Held, marker: str | None = None) -> None:
    """Remove a held slide from the scanner folder, then its marker. Only ``release_sources`` calls it."""
    source = Path(record.source)
    source.unlink()
    if marker:
        marker_path(source, marker).unlink(missing_ok=True)
    fsync_dir(source.parent)


# --- slides waiting for QC --------------------------------------------------------------
# A slide is written here just before its final rename and crossed off once its QC row is
# written, so a pass killed between the two QCs it next time, even though its source is gone.

PENDING_DIRNAME = ".intake-pending"


def pending_dir(output_dir: str | Path) -> Path:
    """Return the folder of the slides waiting for QC, under ``output_dir``."""
    return Path(output_dir) / PENDING_DIRNAME


def add_pending(output_dir: str | Path, shared_path: str | Path) -> None:
    """Note ``shared_path`` as waiting for QC (one file named by a hash of its resolved path)."""
    folder = pending_dir(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256(str(Path(shared_path).resolve()).encode()).hexdigest()[:16]
    (folder / key).write_text(str(Path(shared_path).resolve()), encoding="utf-8")


def list_pending(output_dir: str | Path) -> dict[str, Path]:
    """Return the journal entry of each slide waiting for QC, by shared path.

    Entries whose slide never got its final name are dropped.
    """
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
    """Cross ``shared_paths`` off the slides waiting for QC (their rows are written)."""
    by_target = list_pending(output_dir)
    for path in shared_paths:
        entry = by_target.get(str(Path(path).resolve()))
        if entry is not None:
            entry.unlink(missing_ok=True)


def outcome_row(outcome: Outcome) -> dict:
    """Return ``outcome`` as a row of intake.tsv: its columns, in order."""
    values = asdict(outcome)
    return {c: values[c] for c in OUTCOME_COLUMNS}


# --- sources held after their copy ------------------------------------------------------
# A copied source stays in the scanner folder, with a record of what was copied, until
# release_sources finds it safe to remove. A record is written after the copy is in place: a
# pass that dies before that finds the source again next time, sees the same sha256 on the
# shared drive (DUPLICATE) and holds it then.

HELD_DIRNAME = ".intake-held"
QC_NOT_YET, QC_OK, QC_ERROR, QC_EARLIER = "", "ok", "error", "earlier"


@dataclass
class Held:
    """A source kept in the scanner folder after its verified copy: what was copied, where, when, its QC."""

    source: str
    dest: str
    size: int
    mtime_ns: int
    sha256: str
    copied_at: float  # time.time() when the copy was verified in place
    qc: str = QC_NOT_YET  # ok or error (its QC row), earlier (found already on the shared drive, not queued for QC)

    def unchanged(self, now: Candidate | None) -> bool:
        """Return True when the source, as ``now`` finds it, has the size and mtime it had when copied."""
        return now is not None and (now.size, now.mtime_ns) == (self.size, self.mtime_ns)


def _key(path: str | Path) -> str:
    return hashlib.sha256(str(Path(path).resolve()).encode()).hexdigest()[:16]


def held_dir(output_dir: str | Path) -> Path:
    """Return the folder of the records of sources held after their copy, under ``output_dir``."""
    return Path(output_dir) / HELD_DIRNAME


def hold(output_dir: str | Path, source: Candidate, outcome: Outcome, qc: str = QC_NOT_YET) -> Held:
    """Record that ``source`` (as it was copied) is verified on the shared drive as ``outcome.dest``."""
    record = Held(
        str(Path(source.path).resolve()),
        str(Path(outcome.dest).resolve()),
        source.size,
        source.mtime_ns,
        outcome.sha256,
        time.time(),
        qc,
    )
    folder = held_dir(output_dir)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(folder / f"{_key(source.path)}.json", json.dumps(asdict(record)).encode("utf-8"))
    return record


def _read_record(entry: Path) -> Held | None:
    """Return the record in ``entry``; None if there is none, or it cannot be read (its source then counts as new)."""
    try:
        return Held(**json.loads(entry.read_text(encoding="utf-8")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as error:
        log.warning("%s: unreadable record of a held slide, ignored: %s", entry, error)
        return None


def held_records(output_dir: str | Path) -> dict[str, Held]:
    """Return the record of every source held, by source path."""
    folder = held_dir(output_dir)
    entries = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return {record.source: record for record in map(_read_record, entries) if record is not None}


def held_record(output_dir: str | Path, source: str | Path) -> Held | None:
    """Return the record of ``source``; None when it is not held or its record cannot be read."""
    return _read_record(held_dir(output_dir) / f"{_key(source)}.json")


def forget(output_dir: str | Path, source: str | Path) -> None:
    """Remove the record of ``source`` (nothing happens when there is none)."""
    (held_dir(output_dir) / f"{_key(source)}.json").unlink(missing_ok=True)


def mark_checked(output_dir: str | Path, qc_by_dest: dict[str, str]) -> None:
    """Note the QC result (ok or error) of the shared copies just checked in their sources' records."""
    for record in held_records(output_dir).values():
        status = qc_by_dest.get(record.dest)
        if status is not None and status != record.qc:
            record.qc = status
            atomic_write_bytes(
                held_dir(output_dir) / f"{_key(record.source)}.json", json.dumps(asdict(record)).encode("utf-8")
            )


def to_copy(found: list[Candidate], records: dict[str, Held]) -> tuple[list[Candidate], list[tuple[Candidate, Held]]]:
    """Return (the slides to copy, those among them that changed after their copy) from what the scanner folder holds.

    A held source that has not changed is not copied again; one whose size or mtime moved is.
    """
    new, changed = [], []
    for candidate in found:
        record = records.get(str(Path(candidate.path).resolve()))
        if record is None:
            new.append(candidate)
        elif not record.unchanged(candidate):
            new.append(candidate)
            changed.append((candidate, record))
    return new, changed


def release_sources(
    output_dir: str | Path,
    retain_seconds: float,
    marker: str | None = None,
    now: float | None = None,
    scanner_dir: str | Path | None = None,
) -> list[Outcome]:
    """Remove the held sources it is safe to remove.

    Safe means: unchanged since its copy for ``retain_seconds``, its shared copy QC'd
    without error (or found already there), and both still hashing to the recorded sha256
    when read again just now. A source that went away is forgotten; one that changed is
    left for the next pass to copy again.

    Parameters
    ----------
    output_dir : str or Path
        The intake's output folder, where the held sources' records are.
    retain_seconds : float, >= 0
        How long a source stays on the scanner after its verified copy, in seconds.
    marker : str, optional
        The scanner's completion marker suffix, removed with its slide.
    now : float, optional
        The time, in seconds since the epoch (default: ``time.time()``).
    scanner_dir : str or Path, optional
        Only the sources in that folder.

    Returns
    -------
    list of Outcome
        One for each held source: RELEASED, HELD or ERROR.
    """
    now = time.time() if now is None else now
    outcomes = []
    for record in held_records(output_dir).values():
        if scanner_dir is not None and Path(record.source).parent != Path(scanner_dir).resolve():
            continue
        name, current = Path(record.source).name, look(record.source)
        outcome = Outcome(name, HELD, record.source, record.dest, record.size, record.sha256)
        if current is None:
            forget(output_dir, record.source)
            continue
        if not record.unchanged(current):
            outcome.detail = "changed after its copy: copied again once complete"
        elif now - record.copied_at < retain_seconds:
            outcome.detail = f"kept for {retain_seconds - (now - record.copied_at):.0f} s more (--retain-seconds)"
        elif record.qc == QC_NOT_YET:
            outcome.detail = "kept until its shared copy is QC'd"
        elif record.qc == QC_ERROR:
            outcome.detail = "kept: the QC could not read its shared copy; remove it by hand once looked at"
        elif not Path(record.dest).is_file() or sha256_file(record.dest, drop_cache=True) != record.sha256:
            outcome.action, outcome.detail = ERROR, f"{record.dest} is missing or changed: the source is kept"
            forget(output_dir, record.source)  # the next pass copies it again
        elif sha256_file(record.source) != record.sha256 or not record.unchanged(look(record.source)):
            outcome.detail = "its content changed after its copy (same size and mtime): copied again"
            forget(output_dir, record.source)
        else:
            try:
                remove_source(record, marker)
            except OSError as error:
                outcome.action, outcome.detail = ERROR, f"in place as {record.dest}, source not removed: {error}"
            else:
                forget(output_dir, record.source)
                outcome.action, outcome.source_removed = RELEASED, True
                outcome.detail = (
                    f"removed from the scanner folder: unchanged for {now - record.copied_at:.0f} s "
                    f"since its copy, QC {record.qc}, sha256 checked again on both sides"
                )
        outcomes.append(outcome)
    return sorted(outcomes, key=lambda o: o.name)


# --- the journal of every event, and what a scheduled intake keeps between passes ---------

JOURNAL_FILE = "intake-journal.tsv"


def append_journal(output_dir: str | Path, outcomes: list[Outcome], cycle: int) -> Path:
    """Append the outcomes to ``<output-dir>/intake-journal.tsv`` (time, cycle, then intake.tsv's columns), flushed."""
    path = Path(output_dir) / JOURNAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [] if path.exists() else ["\t".join(["time", "cycle", *OUTCOME_COLUMNS])]
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    for outcome in outcomes:
        values = ["" if v is None else " ".join(str(v).split()) for v in outcome_row(outcome).values()]
        lines.append("\t".join([stamp, str(cycle), *values]))
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
        handle.flush()
        os.fsync(handle.fileno())
    return path


@dataclass
class Control:
    """What the passes of one intake process share: the cycle count, a stop request, failures, known hashes."""

    max_cycles: int | None = None
    cycles: int = 0
    busy: bool = False  # a pass is running: a stop waits for its end
    stop_requested: bool = False
    failed: bool = False  # some slide failed (copy, removal or QC) in some pass
    hashes: HashCache = field(default_factory=HashCache)  # an unchanged file is hashed once

    def done(self) -> bool:
        """Return True when the intake should stop: a stop was asked for, or ``max_cycles`` passes ran."""
        return self.stop_requested or (self.max_cycles is not None and self.cycles >= self.max_cycles)


INTAKE_FILE = "intake.tsv"


def with_releases(outcomes: list[Outcome], released: list[Outcome]) -> list[Outcome]:
    """One row per slide: a release (or a failed one) joins the row of the copy made in the same pass."""

    def key(o: Outcome) -> tuple[str, str]:
        return o.name, str(Path(o.dest).resolve()) if o.dest else ""

    rows = {key(o): o for o in outcomes}
    merged = list(outcomes)
    for outcome in released:
        if outcome.action == HELD:
            continue
        row = rows.get(key(outcome))
        if row is None:
            merged.append(outcome)
            continue
        row.source_removed = outcome.source_removed
        row.detail = "; ".join(filter(None, [row.detail, outcome.detail]))
        if outcome.action == ERROR:
            row.action = ERROR
    return sorted(merged, key=lambda o: o.name)


def write_intake_table(run_dir: str | Path, outcomes: list[Outcome]) -> Path:
    """``<run folder>/intake.tsv``: one row per slide the pass dealt with."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(OUTCOME_COLUMNS)
    for outcome in outcomes:
        writer.writerow(["" if v is None else str(v) for v in outcome_row(outcome).values()])
    path = Path(run_dir) / INTAKE_FILE
    atomic_write_bytes(path, buffer.getvalue().encode("utf-8"))
    return path


# --- the command line's intake options, checked before any file is touched -------------


def check_options(args) -> None:
    """Raise ValueError("--option: why") for the first bad intake option of ``args`` (an argparse Namespace).

    Only reads: nothing is created, moved or removed, so a bad command line changes no file.
    """
    scanner, shared, output = Path(args.scanner_dir), Path(args.shared_dir), Path(args.output_dir)
    for option, folder in (("--scanner-dir", scanner), ("--shared-dir", shared)):
        if not folder.is_dir():  # an unmounted share must not become a local folder
            raise ValueError(f"{option}: {folder} is not a folder")
    if scanner.resolve() == shared.resolve():
        raise ValueError("--shared-dir: must not be the scanner folder")
    if not os.access(shared, os.W_OK | os.X_OK):
        raise ValueError(f"--shared-dir: {shared} is not writable")
    if not args.keep_source and not os.access(scanner, os.W_OK | os.X_OK):
        raise ValueError(
            f"--scanner-dir: {scanner} is not writable (its slides are removed once safe; or pass --keep-source)"
        )
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output-dir: {output} is not a folder")
    existing = next(folder for folder in (output.absolute(), *output.absolute().parents) if folder.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--output-dir: {output} cannot be made ({existing} is not a writable folder)")
    if args.interval is not None and not 0 < args.interval < float("inf"):
        raise ValueError(f"--interval: must be a number > 0, got {args.interval}")
    if args.max_cycles is not None and (args.max_cycles < 1 or args.once):
        raise ValueError("--max-cycles: must be >= 1, and goes with --interval")
    if args.run_name:
        if not (args.once or args.max_cycles == 1):
            raise ValueError("--run-name: each pass makes its own run folder; use it with --once")
        files.check_run_name(args.run_name)  # the same rule the run folder is made with (raises ValueError)
        if (output / args.run_name).exists() and not args.overwrite:
            raise ValueError(
                f"--run-name: {output / args.run_name}: an earlier run is there; pass --overwrite to replace it"
            )
    for option, value in (
        ("--settle-seconds", args.settle_seconds),
        ("--retain-seconds", args.retain_seconds),
        ("--bwlimit", args.bwlimit),
        ("--copy-retries", args.copy_retries),
        ("--retry-delay", args.retry_delay),
    ):
        if not value >= 0 or value == float("inf"):  # NaN fails the first test
            raise ValueError(f"{option}: must be a number >= 0, got {value}")
    if args.marker is not None and (not args.marker.strip() or "/" in args.marker or os.sep in args.marker):
        raise ValueError(f"--marker: {args.marker!r} must be a file name suffix such as .done")
    if not args.file_type.strip(". ") or "/" in args.file_type:
        raise ValueError(f"--file-type: {args.file_type!r} must be an extension such as svs")
    if args.workers < 1:
        raise ValueError(f"--workers: must be >= 1, got {args.workers}")
