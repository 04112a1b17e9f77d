"""The intake's file logic (slideqc/intake.py) in process, on real files in tmp_path: fast, and seen by mutmut.

tests/test_intake.py drives extras/pipeline_intake.py (subprocesses, the Prefect flow); these call
intake's functions directly. Every expectation comes from outside intake: sha256 by hashlib, names
and messages written out by hand, sizes and times from os.stat. The rule under test: a source is
never changed or removed before its copy is verified in place, and never removed unless its copy
is there and still hashes right (a lost slide otherwise).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import logging
import os
import re
from datetime import datetime
from pathlib import Path
from time import strftime
from types import SimpleNamespace

import pytest

from slideqc import intake
from slideqc.intake import Candidate, Held, Outcome

SHA_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"  # sha256 of no bytes
MTIME = 1_600_000_000_123_456_789  # a scan time, in ns, set on the sources by hand


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha(path: Path) -> str:
    return sha(Path(path).read_bytes())


def make(path: Path, data: bytes, mtime_ns: int = MTIME) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def seen(path: Path) -> Candidate:
    """The Candidate of a file, from os.lstat (not from intake.look)."""
    stat = os.lstat(path)
    return Candidate(str(path), stat.st_size, stat.st_mtime_ns)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


DATA = bytes(range(256)) * 12  # 3072 bytes, every byte value


@pytest.fixture
def source(folders):
    """a.svs in the scanner folder, DATA, its mtime MTIME."""
    return make(folders[0] / "a.svs", DATA)


class Clock:
    """Stands in for the ``time`` module inside intake: a monotonic clock that moves ``step`` a call, recorded sleeps.

    ``elapsed``: the clock reads 50 s at its first call and 50 s + ``elapsed`` ever after (a task that took that long).
    """

    def __init__(self, step: float = 0.0, wall: float = 1000.0, elapsed: float | None = None):
        self.now, self.step, self.wall, self.sleeps, self.elapsed = 50.0, step, wall, [], elapsed
        self.calls = 0

    def monotonic(self) -> float:
        self.calls += 1
        if self.elapsed is not None:
            return 50.0 if self.calls == 1 else 50.0 + self.elapsed
        self.now += self.step
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def time(self) -> float:
        return self.wall

    strftime = staticmethod(strftime)


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(intake, "time", fake)
    return fake


class Recorder:
    """A function that records its calls and then calls ``then`` (or returns ``result``)."""

    def __init__(self, then=None, result=None):
        self.calls, self.then, self.result = [], then, result

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return self.then(*args, **kwargs) if self.then else self.result


class Wrapped:
    """A file object in front of the real one, which does the work; a subclass changes a method or two."""

    def __init__(self, handle):
        self.handle = handle

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.close()


class FailingWrites(Wrapped):
    """A file whose writes fail with ``error`` once ``room`` bytes are written (a full disk, an interrupt)."""

    def __init__(self, handle, room: int, error: BaseException):
        super().__init__(handle)
        self.room, self.error = room, error

    def write(self, data: bytes) -> int:
        if len(data) > self.room:
            self.handle.write(data[: self.room])
            self.room = 0
            raise self.error
        self.room -= len(data)
        return self.handle.write(data)


def wrap_opens(monkeypatch, wrap, mode: str | None = None) -> None:
    """The files intake opens (with ``mode``, or all) come wrapped by ``wrap``; every other open is the real one."""
    real_open = open

    def fake_open(path, how="r", *args, **kwargs):
        handle = real_open(path, how, *args, **kwargs)
        return wrap(handle) if mode is None or how == mode else handle

    monkeypatch.setattr(intake, "open", fake_open, raising=False)


def fail_writes(monkeypatch, mode: str, room: int, error: BaseException) -> None:
    """Files intake opens with ``mode`` fail on writing past ``room`` bytes."""
    wrap_opens(monkeypatch, lambda handle: FailingWrites(handle, room, error), mode)


def assert_source_intact(path: Path, data: bytes = DATA, mtime_ns: int = MTIME) -> None:
    assert path.is_file(), f"{path} was removed"
    assert file_sha(path) == sha(data) and os.stat(path).st_mtime_ns == mtime_ns


# --- finding slides ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, temporary",
    [
        (".a.svs", True),
        ("~a.svs", True),
        ("a.svs.partial", True),
        ("A.SVS.PARTIAL", True),
        ("a.svs.tmp", True),
        ("a.svs.TMP", True),
        ("a.svs.part", True),
        ("a.svs~", True),
        ("a.svs", False),
        ("a.partial.svs", False),
        ("a~.svs", False),
        ("a.tmp.svs", False),
        ("a.part.svs", False),
        ("a.svs.partia", False),
    ],
)
def test_is_temporary(name, temporary):
    assert intake.is_temporary(name) is temporary


@pytest.mark.parametrize("file_type", ["svs", ".svs", "SVS"])
def test_find_slides_lists_regular_slide_files_sorted_by_name(tmp_path, file_type):
    for name, size in [
        ("c.svs", 3),
        ("a.svs", 1),
        ("B.SVS", 2),
        ("d.svs.tmp", 1),
        (".e.svs", 1),
        ("~f.svs", 1),
        ("g.tif", 1),
        ("h.svs.partial", 1),
        ("svs", 1),
        ("i_svs", 1),
    ]:
        make(tmp_path / name, b"x" * size, MTIME + size)
    (tmp_path / "dir.svs").mkdir()
    (tmp_path / "link.svs").symlink_to(tmp_path / "a.svs")
    found = intake.find_slides(tmp_path, file_type)
    assert found == [
        Candidate(str(tmp_path / "B.SVS"), 2, MTIME + 2),
        Candidate(str(tmp_path / "a.svs"), 1, MTIME + 1),
        Candidate(str(tmp_path / "c.svs"), 3, MTIME + 3),
    ]
    assert [c.name for c in found] == ["B.SVS", "a.svs", "c.svs"]
    assert intake.find_slides(tmp_path, "tif") == [Candidate(str(tmp_path / "g.tif"), 1, MTIME + 1)]
    assert intake.find_slides(tmp_path) == found  # svs by default
    make(tmp_path / "j.xml", b"x")
    assert [c.name for c in intake.find_slides(tmp_path, "XML")] == ["j.xml"]


def test_find_slides_skips_a_slide_removed_between_the_listing_and_its_stat(tmp_path, monkeypatch):
    make(tmp_path / "b.svs", b"bb")
    make(tmp_path / "c.svs", b"ccc")
    real_scandir = os.scandir

    class Gone:
        name, path = "a.svs", str(tmp_path / "a.svs")

        def is_file(self, follow_symlinks=True):
            return True

        def stat(self, follow_symlinks=True):
            raise FileNotFoundError(2, "No such file or directory")

    class Listing:
        def __init__(self, folder):
            self.entries = [Gone(), *sorted(real_scandir(folder), key=lambda e: e.name)]

        def __enter__(self):
            return iter(self.entries)

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(os, "scandir", Listing)
    assert intake.find_slides(tmp_path) == [
        Candidate(str(tmp_path / "b.svs"), 2, MTIME),
        Candidate(str(tmp_path / "c.svs"), 3, MTIME),
    ]


def test_look(tmp_path):
    path = make(tmp_path / "a.svs", b"12345")
    assert intake.look(path) == Candidate(str(path), 5, MTIME)
    assert intake.look(str(path)) == Candidate(str(path), 5, MTIME)
    assert intake.look(tmp_path / "missing.svs") is None
    link = tmp_path / "link.svs"
    link.symlink_to(path)
    assert intake.look(link) == Candidate(str(link), len(str(path)), os.lstat(link).st_mtime_ns)  # the link itself
    link.unlink()
    link.symlink_to(tmp_path / "missing.svs")
    assert intake.look(link) is not None  # a dangling link is still there


def test_markers(tmp_path):
    assert intake.marker_path(tmp_path / "a.svs", ".done") == tmp_path / "a.svs.done"
    assert intake.marker_path("a.svs", "_ok") == Path("a.svs_ok")
    slide = seen(make(tmp_path / "a.svs", b"x", MTIME))
    assert not intake.marker_says_complete(slide, ".done")  # none yet
    for marker_time, complete in [(MTIME - 1, False), (MTIME, True), (MTIME + 1, True)]:
        make(tmp_path / "a.svs.done", b"", marker_time)
        assert intake.marker_says_complete(slide, ".done") is complete, marker_time


def test_settled(tmp_path):
    a, b, c = (Candidate(str(tmp_path / n), 10, MTIME) for n in ("a.svs", "b.svs", "c.svs"))
    one = Candidate(str(tmp_path / "one.svs"), 1, MTIME)
    empty = Candidate(str(tmp_path / "empty.svs"), 0, MTIME)
    c_later = Candidate(c.path, 20, MTIME + 5)
    later = {a.path: a, b.path: None, c.path: c_later, one.path: one, empty.path: empty}
    assert intake.settled([a, b, c, one, empty], later) == ([a, one], [c_later, empty])
    assert intake.settled([b, a], {a.path: a}) == ([a], [])  # b not seen again: gone


def test_remove_orphan_markers(tmp_path):
    make(tmp_path / "a.svs", b"x")
    for name in ["a.svs.done", "b.svs.done", "c.tif.done", "d.svs.ok", "e.svs.done.txt"]:
        make(tmp_path / name, b"")
    assert intake.remove_orphan_markers(tmp_path, ".done") == [tmp_path / "b.svs.done"]
    assert names(tmp_path) == ["a.svs", "a.svs.done", "c.tif.done", "d.svs.ok", "e.svs.done.txt"]
    assert intake.remove_orphan_markers(tmp_path, ".done", ".tif") == [tmp_path / "c.tif.done"]
    assert intake.remove_orphan_markers(str(tmp_path), ".ok", "svs") == [tmp_path / "d.svs.ok"]
    assert intake.remove_orphan_markers(tmp_path, ".done") == []
    make(tmp_path / "f.XML.done", b"")
    assert intake.remove_orphan_markers(tmp_path, ".done", "XML") == [tmp_path / "f.XML.done"]


# --- hashing and flushing ----------------------------------------------------------------


@pytest.mark.parametrize("chunk", [8 * 1024 * 1024, 4, 1])
def test_sha256_file_whole_and_limited(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(intake, "CHUNK", chunk)
    data = b"0123456789"
    path = make(tmp_path / "f", data)
    assert intake.sha256_file(path) == sha(data)
    assert intake.sha256_file(str(path), drop_cache=True) == sha(data)
    for limit in [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 100]:
        assert intake.sha256_file(path, limit=limit) == sha(data[:limit]), limit
    assert intake.sha256_file(make(tmp_path / "empty", b"")) == SHA_EMPTY


def test_sha256_file_reads_a_chunk_at_a_time(tmp_path, monkeypatch):
    """A slide of several GB is never read into memory at once."""
    monkeypatch.setattr(intake, "CHUNK", 4)
    path = make(tmp_path / "f", b"0123456789")
    sizes = []

    class Reads(Wrapped):
        def read(self, size=-1):
            sizes.append(size)
            return self.handle.read(size)

    wrap_opens(monkeypatch, Reads)
    assert intake.sha256_file(path) == sha(b"0123456789")
    assert sizes and all(0 < size <= 4 for size in sizes)
    sizes.clear()
    assert intake.sha256_file(path, limit=6) == sha(b"012345")
    assert sizes == [4, 2]


def test_sha256_file_drops_the_cache_only_when_asked(tmp_path, monkeypatch):
    path = make(tmp_path / "f", b"abc")
    dropped = Recorder()
    monkeypatch.setattr(intake, "_drop_cache", dropped)
    intake.sha256_file(path)
    intake.sha256_file(path, drop_cache=False)
    assert dropped.calls == []
    intake.sha256_file(path, drop_cache=True)
    [((fd,), kwargs)] = dropped.calls
    assert isinstance(fd, int) and kwargs == {}


def test_drop_cache_asks_the_kernel_to_forget_the_whole_file(tmp_path, monkeypatch):
    advice = Recorder()
    monkeypatch.setattr(os, "posix_fadvise", advice)
    intake._drop_cache(7)
    assert advice.calls == [((7, 0, 0, os.POSIX_FADV_DONTNEED), {})]  # offset 0, length 0: the whole file

    def refuses(*args):
        raise OSError(errno.ESPIPE, "Illegal seek")

    monkeypatch.setattr(os, "posix_fadvise", refuses)
    intake._drop_cache(7)  # only advice: an error is not the caller's problem
    monkeypatch.delattr(os, "posix_fadvise")
    intake._drop_cache(7)  # a system without it


def test_fsync_dir_flushes_that_folder_and_closes_it(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append((os.fstat(fd).st_ino, fd)))
    intake.fsync_dir(tmp_path)
    intake.fsync_dir(str(tmp_path))
    assert [ino for ino, _ in synced] == [os.stat(tmp_path).st_ino] * 2
    for _, fd in synced:
        with pytest.raises(OSError):
            os.fstat(fd)  # closed
    intake.fsync_dir(tmp_path / "missing")  # cannot be opened: nothing to do
    assert len(synced) == 2

    opened = []

    def fails(fd):
        opened.append(fd)
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(os, "fsync", fails)
    intake.fsync_dir(tmp_path)  # a folder that cannot be fsynced (some file systems): no error...
    with pytest.raises(OSError):
        os.fstat(opened[0])  # ...and closed all the same


# --- partial copies ----------------------------------------------------------------------


def test_partial_names(tmp_path):
    first, second = intake.partial_name("a.svs"), intake.partial_name("a.svs")
    assert re.fullmatch(r"\.a\.svs\.[0-9a-f]{8}\.partial", first) and first != second
    assert intake.is_partial(first) and intake.is_temporary(first)
    assert not intake.is_partial("a.svs.partial") and not intake.is_partial(".a.svs")
    assert not intake.is_partial(".a.partial.svs")


def test_remove_partials_removes_only_hidden_partial_files(tmp_path, monkeypatch):
    synced = Recorder()
    monkeypatch.setattr(intake, "fsync_dir", synced)
    for name in [".a.svs.0123abcd.partial", ".b.svs.partial", "c.svs", ".d.svs", "e.svs.partial"]:
        make(tmp_path / name, b"x")
    (tmp_path / ".f.svs.0123abcd.partial").mkdir()
    removed = intake.remove_partials(tmp_path)
    assert sorted(removed) == [tmp_path / ".a.svs.0123abcd.partial", tmp_path / ".b.svs.partial"]
    assert names(tmp_path) == [".d.svs", ".f.svs.0123abcd.partial", "c.svs", "e.svs.partial"]
    assert synced.calls == [((tmp_path,), {})]
    assert intake.remove_partials(str(tmp_path)) == []
    assert len(synced.calls) == 1  # nothing removed: nothing to flush


# --- copy_file ---------------------------------------------------------------------------


def test_copy_file_copies_flushes_and_keeps_the_scan_time(folders, source, monkeypatch, clock):
    monkeypatch.setattr(intake, "CHUNK", 1000)  # several chunks
    real_fsync, synced = os.fsync, []

    def fsync(fd):  # what is on disk when the copy is flushed: all of it
        synced.append(os.fstat(fd).st_size)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    dest = folders[1] / ".a.svs.partial"
    assert intake.copy_file(seen(source), dest) == (len(DATA), sha(DATA))
    assert dest.read_bytes() == DATA and os.stat(dest).st_mtime_ns == MTIME
    assert synced == [len(DATA)] and clock.sleeps == []
    assert_source_intact(source)


def test_copy_file_never_writes_over_a_file(folders, source):
    dest = make(folders[1] / ".a.svs.partial", b"someone else's", 5)
    with pytest.raises(FileExistsError):
        intake.copy_file(seen(source), dest)
    assert dest.read_bytes() == b"someone else's"
    assert_source_intact(source)


def test_copy_file_keeps_to_the_bandwidth_limit(tmp_path, monkeypatch, clock):
    monkeypatch.setattr(intake, "CHUNK", 1_000_000)
    data = b"\x01" * 3_000_000
    path = make(tmp_path / "a.svs", data)
    assert intake.copy_file(seen(path), tmp_path / "copy", bwlimit=1.5) == (3_000_000, sha(data))
    # 1.5 MB/s with an instant disk: each 1 MB chunk waits until 2/3 s per MB has passed, 2 s in all
    assert clock.sleeps == pytest.approx([2 / 3] * 3, rel=1e-9)
    clock.sleeps.clear()
    intake.copy_file(seen(path), tmp_path / "slow", bwlimit=0.5)  # under 1 MB/s too
    assert clock.sleeps == pytest.approx([2.0] * 3, rel=1e-9)
    clock.sleeps.clear()
    clock.step = 1.0  # exactly on time at 1 MB/s: no wait
    intake.copy_file(seen(path), tmp_path / "on time", bwlimit=1)
    assert clock.sleeps == []
    clock.sleeps.clear()
    clock.step = 10.0  # a slow link: already behind the limit, no waiting
    intake.copy_file(seen(path), tmp_path / "copy2", bwlimit=1.5)
    assert clock.sleeps == []


def test_copy_and_verify_keeps_to_the_bandwidth_limit(folders, source, clock):
    intake.copy_and_verify(seen(source), folders[1], bwlimit=0.001)  # 1 KB/s: 3 s for 3072 bytes
    assert clock.sleeps == pytest.approx([3.072], rel=1e-9)


def _grow(source: Path):
    def when_flushed(fd):
        with source.open("ab") as handle:
            handle.write(b"more")

    return when_flushed


def _touch(source: Path):
    def when_flushed(fd):
        os.utime(source, ns=(MTIME + 1, MTIME + 1))

    return when_flushed


def _remove(source: Path):
    def when_flushed(fd):
        source.unlink()

    return when_flushed


@pytest.mark.parametrize(
    "change, now", [(_grow, f"{len(DATA) + 4} bytes"), (_touch, f"{len(DATA)} bytes"), (_remove, "gone bytes")]
)
def test_copy_file_says_when_the_source_changed_during_the_copy(folders, source, monkeypatch, change, now):
    monkeypatch.setattr(os, "fsync", change(source))  # the scanner writes while the copy is flushed
    with pytest.raises(intake.SourceChanged) as raised:
        intake.copy_file(seen(source), folders[1] / ".a.svs.partial")
    assert str(raised.value) == f"a.svs: changed while it was copied ({len(DATA)} -> {now}): still being written?"


# --- place, conflict names ---------------------------------------------------------------


def test_place_links_then_removes_the_partial(tmp_path, monkeypatch):
    synced = Recorder()
    monkeypatch.setattr(intake, "fsync_dir", synced)
    partial, final = make(tmp_path / ".a.partial", b"new"), tmp_path / "a.svs"
    assert intake.place(partial, final) is True
    assert names(tmp_path) == ["a.svs"] and final.read_bytes() == b"new"
    assert synced.calls == [((tmp_path,), {})]


def test_place_never_replaces_a_file(tmp_path):
    partial, final = make(tmp_path / ".a.partial", b"new"), make(tmp_path / "a.svs", b"old")
    assert intake.place(partial, final) is False
    assert final.read_bytes() == b"old" and partial.read_bytes() == b"new"


@pytest.mark.parametrize("code", [errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK])
def test_place_without_hard_links_checks_then_renames(tmp_path, monkeypatch, code):
    def no_links(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "link", no_links)
    partial, final = make(tmp_path / ".a.partial", b"new"), tmp_path / "a.svs"
    assert intake.place(partial, final) is True
    assert names(tmp_path) == ["a.svs"] and final.read_bytes() == b"new"
    partial = make(tmp_path / ".b.partial", b"newer")
    assert intake.place(partial, final) is False
    assert final.read_bytes() == b"new" and partial.read_bytes() == b"newer"


def test_place_passes_other_errors_on(tmp_path, monkeypatch):
    def broken(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "link", broken)
    partial, final = make(tmp_path / ".a.partial", b"new"), tmp_path / "a.svs"
    with pytest.raises(OSError) as raised:
        intake.place(partial, final)
    assert raised.value.errno == errno.EIO
    assert names(tmp_path) == [".a.partial"]


def test_conflict_name():
    digest = "0123456789abcdef" * 4
    assert intake.conflict_name("a.svs", digest) == "a.0123456789ab.svs"
    assert intake.conflict_name("a.svs", digest, 0) == "a.0123456789ab.svs"
    assert intake.conflict_name("a.svs", digest, 1) == "a.0123456789ab-2.svs"
    assert intake.conflict_name("a.svs", digest, 2) == "a.0123456789ab-3.svs"
    assert intake.conflict_name("a.b.svs", digest) == "a.b.0123456789ab.svs"
    assert intake.conflict_name("noext", digest) == "noext.0123456789ab"
    assert intake.conflict_name("noext", digest, 1) == "noext.0123456789ab-2"


def test_hash_cache_reads_a_file_once_per_size_and_mtime(tmp_path, monkeypatch):
    reads = Recorder(then=intake.sha256_file)
    monkeypatch.setattr(intake, "sha256_file", reads)
    a, b = make(tmp_path / "a", b"aaa"), make(tmp_path / "b", b"bbb")  # same size, same mtime
    cache = intake.HashCache()
    assert cache.sha256(a) == sha(b"aaa") and cache.sha256(str(a)) == sha(b"aaa") and cache.sha256(a) == sha(b"aaa")
    assert cache.sha256(b) == sha(b"bbb")
    assert len(reads.calls) == 2
    make(a, b"aaaa")
    assert cache.sha256(a) == sha(b"aaaa")
    make(b, b"ccc", MTIME + 1)
    assert cache.sha256(b) == sha(b"ccc")
    assert len(reads.calls) == 4


# --- copy_and_verify: the failure paths keep the source, byte for byte ---------------------


def assert_nothing_placed(shared: Path, before: list[str] | None = None) -> None:
    assert names(shared) == (before or []), "a copy or a partial was left on the shared drive"


def test_a_copy_is_placed_under_its_name_only_once_verified(folders, source, monkeypatch):
    scanner, shared, _ = folders
    clock = Clock(elapsed=1.23456)
    monkeypatch.setattr(intake, "time", clock)
    reads = Recorder(then=intake.sha256_file)
    monkeypatch.setattr(intake, "sha256_file", reads)
    placing = []

    def before_placing(final):  # the copy is whole under its hidden name, the final name still free
        placing.append((final, names(shared)))

    outcome = intake.copy_and_verify(seen(source), shared, before_placing=before_placing)
    final = shared / "a.svs"
    assert outcome == Outcome(
        "a.svs", "copied", str(source), str(final), len(DATA), sha(DATA), False, "", outcome.seconds
    )
    assert outcome.seconds == 1.235  # to the millisecond
    assert clock.sleeps == []  # no bandwidth limit unless asked for
    assert outcome.arrived and not outcome.failed
    assert names(shared) == ["a.svs"] and file_sha(final) == sha(DATA) and os.stat(final).st_mtime_ns == MTIME
    [(placed, listing)] = placing
    assert placed == final and len(listing) == 1 and re.fullmatch(r"\.a\.svs\.[0-9a-f]{8}\.partial", listing[0])
    # read back from the disk, not from the page cache
    assert [(Path(args[0]).name, kwargs) for args, kwargs in reads.calls] == [(listing[0], {"drop_cache": True})]
    assert_source_intact(source)


def _corrupted(source, dest, bwlimit=0):  # the disk stored other bytes than those written
    data = Path(source.path).read_bytes()
    Path(dest).write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    return len(data), sha(data)


def _short_count(source, dest, bwlimit=0):  # the copy's length disagrees with what was read
    data = Path(source.path).read_bytes()
    Path(dest).write_bytes(data)
    return len(data) + 1, sha(data)


def test_a_copy_that_fails_verification_is_removed_and_the_source_kept(folders, source, monkeypatch):
    scanner, shared, out = folders
    monkeypatch.setattr(intake, "copy_file", _corrupted)
    bad = DATA[:100] + bytes([DATA[100] ^ 1]) + DATA[101:]
    with pytest.raises(intake.VerifyError) as raised:
        intake.copy_and_verify(seen(source), shared)
    assert isinstance(raised.value, OSError)  # retried by the flow like any I/O error
    assert str(raised.value) == (
        f"a.svs: the copy differs from the source (size {len(DATA)} vs {len(DATA)}, "
        f"sha256 {sha(bad)[:12]} vs {sha(DATA)[:12]})"
    )
    assert_nothing_placed(shared)
    assert_source_intact(source)
    assert intake.held_records(out) == {}  # nothing says it was copied: never released

    monkeypatch.setattr(intake, "copy_file", _short_count)
    with pytest.raises(intake.VerifyError) as raised:
        intake.copy_and_verify(seen(source), shared)
    assert str(raised.value) == (
        f"a.svs: the copy differs from the source (size {len(DATA)} vs {len(DATA) + 1}, "
        f"sha256 {sha(DATA)[:12]} vs {sha(DATA)[:12]})"
    )
    assert_nothing_placed(shared)
    assert_source_intact(source)


def _no_space(monkeypatch):
    fail_writes(monkeypatch, "xb", 1000, OSError(errno.ENOSPC, "No space left on device"))
    return errno.ENOSPC


def _no_permission(monkeypatch):
    real_open = open

    def fake_open(path, how="r", *args, **kwargs):
        if how == "xb":
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, how, *args, **kwargs)

    monkeypatch.setattr(intake, "open", fake_open, raising=False)
    return errno.EACCES


def _share_gone(monkeypatch):
    def copy_file(source, dest, bwlimit=0):
        Path(dest).write_bytes(b"the first bytes")
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(intake, "copy_file", copy_file)
    return errno.EIO


def _rename_fails(monkeypatch):
    def place(partial, final):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(intake, "place", place)
    return errno.EIO


@pytest.mark.parametrize(
    "fault", [_no_space, _no_permission, _share_gone, _rename_fails], ids=lambda f: f.__name__.strip("_")
)
def test_an_io_error_leaves_no_copy_and_the_source_intact(folders, source, monkeypatch, fault):
    scanner, shared, out = folders
    code = fault(monkeypatch)
    with pytest.raises(OSError) as raised:
        intake.copy_and_verify(seen(source), shared, before_placing=lambda final: intake.add_pending(out, final))
    assert raised.value.errno == code
    assert_nothing_placed(shared)
    assert_source_intact(source)
    assert intake.held_records(out) == {}


def test_a_journal_that_cannot_be_written_stops_the_slide_before_its_final_name(folders, source):
    scanner, shared, out = folders
    out.write_text("a file where the output folder should be: nothing can be journalled")
    with pytest.raises(OSError):
        intake.copy_and_verify(seen(source), shared, before_placing=lambda final: intake.add_pending(out, final))
    assert_nothing_placed(shared)
    assert_source_intact(source)


@pytest.mark.parametrize("where", ["writing", "placing"])
def test_an_interrupted_copy_leaves_no_copy_and_the_source_intact(folders, source, monkeypatch, where):
    scanner, shared, _ = folders
    placing = None
    if where == "writing":
        fail_writes(monkeypatch, "xb", 1000, KeyboardInterrupt())
    else:

        def placing(final):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        intake.copy_and_verify(seen(source), shared, before_placing=placing)
    assert_nothing_placed(shared)
    assert_source_intact(source)


def test_a_source_that_changes_during_its_copy_is_left_for_later(folders, source, monkeypatch):
    scanner, shared, _ = folders
    monkeypatch.setattr(os, "fsync", _grow(source))
    with pytest.raises(intake.SourceChanged):
        intake.copy_and_verify(seen(source), shared)
    assert_nothing_placed(shared)
    assert source.read_bytes() == DATA + b"more"  # what the scanner wrote, nothing else


@pytest.mark.parametrize("other", [b"x" * len(DATA), b"shorter"], ids=["same size", "other size"])
def test_a_name_taken_by_other_content_keeps_both(folders, source, other, monkeypatch):
    monkeypatch.setattr(intake, "time", Clock(elapsed=0.0126))
    scanner, shared, _ = folders
    taken = make(shared / "a.svs", other, 5)
    kept_as = f"a.{sha(DATA)[:12]}.svs"
    outcome = intake.copy_and_verify(seen(source), shared)
    assert outcome == Outcome(
        "a.svs",
        "renamed",
        str(source),
        str(shared / kept_as),
        len(DATA),
        sha(DATA),
        False,
        f"a.svs on the shared drive has other content: kept as {kept_as}",
        outcome.seconds,
    )
    assert outcome.arrived and outcome.seconds == 0.013
    assert names(shared) == sorted(["a.svs", kept_as])
    assert taken.read_bytes() == other and os.stat(taken).st_mtime_ns == 5
    assert file_sha(shared / kept_as) == sha(DATA)
    assert_source_intact(source)

    make(shared / kept_as, b"other again")  # that name taken too: the next one
    second = intake.copy_and_verify(seen(source), shared)
    assert second.action == "renamed" and second.dest == str(shared / f"a.{sha(DATA)[:12]}-2.svs")
    assert file_sha(shared / f"a.{sha(DATA)[:12]}-2.svs") == sha(DATA)
    assert (shared / kept_as).read_bytes() == b"other again"
    make(shared / f"a.{sha(DATA)[:12]}-2.svs", b"and another")
    third = intake.copy_and_verify(seen(source), shared)
    assert third.action == "renamed" and third.dest == str(shared / f"a.{sha(DATA)[:12]}-3.svs")


@pytest.mark.parametrize("given_cache", [False, True])
def test_the_same_content_already_there_is_not_copied_again(folders, source, given_cache, monkeypatch):
    scanner, shared, _ = folders
    monkeypatch.setattr(intake, "time", Clock(elapsed=2.0006))
    there = make(shared / "a.svs", DATA, 7)
    cache = intake.HashCache() if given_cache else None
    outcome = intake.copy_and_verify(seen(source), shared, hashes=cache)
    assert outcome == Outcome(
        "a.svs",
        "duplicate",
        str(source),
        str(there),
        len(DATA),
        sha(DATA),
        False,
        "already on the shared drive as a.svs (same sha256)",
        outcome.seconds,
    )
    assert not outcome.arrived and outcome.seconds == 2.001
    assert names(shared) == ["a.svs"] and os.stat(there).st_mtime_ns == 7
    if cache is not None:
        assert cache._known == {(str(there), len(DATA), 7): sha(DATA)}  # the caller's cache was used
    assert_source_intact(source)


def test_the_same_content_under_its_conflict_name_is_a_duplicate(folders, source):
    scanner, shared, _ = folders
    make(shared / "a.svs", b"other")
    kept_as = make(shared / f"a.{sha(DATA)[:12]}.svs", DATA, 7)
    outcome = intake.copy_and_verify(seen(source), shared)
    assert (outcome.action, outcome.dest) == ("duplicate", str(kept_as))
    assert outcome.detail == f"already on the shared drive as {kept_as.name} (same sha256)"
    assert names(shared) == sorted(["a.svs", kept_as.name])


def test_a_name_taken_while_placing_is_not_overwritten(folders, source, monkeypatch):
    scanner, shared, _ = folders
    real_place, tries = intake.place, []

    def racing(partial, final):  # another writer takes the name between the check and the link
        tries.append(final.name)
        if len(tries) == 1:
            make(final, b"the other writer's")
        return real_place(partial, final)

    monkeypatch.setattr(intake, "place", racing)
    outcome = intake.copy_and_verify(seen(source), shared)
    kept_as = f"a.{sha(DATA)[:12]}.svs"
    assert tries == ["a.svs", kept_as] and outcome.action == "renamed"
    assert (shared / "a.svs").read_bytes() == b"the other writer's" and file_sha(shared / kept_as) == sha(DATA)
    assert names(shared) == sorted(["a.svs", kept_as])


# --- copy_and_verify: a held source that grew replaces the intake's own shorter copy ------------


HALF = DATA[:1000]


def earlier_copy(shared: Path, source: Path, data: bytes = HALF, name: str = "a.svs", size=None, digest=None) -> Held:
    """The record of the intake's earlier copy of ``source``: ``data`` placed as ``shared/name``."""
    dest = make(shared / name, data, 9)
    return Held(
        str(source.resolve()),
        str(dest.resolve()),
        len(data) if size is None else size,
        MTIME - 10,
        digest or sha(data),
        1000.0,
        "ok",
    )


def test_a_slide_copied_while_the_scanner_paused_is_replaced_by_the_whole_slide(folders, source, monkeypatch):
    scanner, shared, _ = folders
    monkeypatch.setattr(intake, "time", Clock(elapsed=7.50049))
    previous = earlier_copy(shared, source)
    placing = Recorder()
    outcome = intake.copy_and_verify(seen(source), shared, previous=previous, before_placing=placing)
    final = shared / "a.svs"
    assert outcome == Outcome(
        "a.svs",
        "replaced",
        str(source),
        str(final.resolve()),
        len(DATA),
        sha(DATA),
        False,
        f"CHANGED after its copy: the earlier copy (1000 bytes, sha256 {sha(HALF)[:12]}) "
        "was its beginning; replaced by the whole slide",
        outcome.seconds,
    )
    assert outcome.arrived and outcome.seconds == 7.5
    assert names(shared) == ["a.svs"] and file_sha(final) == sha(DATA)
    assert placing.calls == [((final.resolve(),), {})]
    assert_source_intact(source)


def test_the_shared_folder_given_relative_is_the_same_folder(folders, source, monkeypatch):
    scanner, shared, _ = folders
    previous = earlier_copy(shared, source)
    monkeypatch.chdir(shared.parent)
    outcome = intake.copy_and_verify(seen(source), "shared", previous=previous)
    assert outcome.action == "replaced" and file_sha(shared / "a.svs") == sha(DATA)


def _elsewhere(shared, source):
    return earlier_copy(shared.parent / "elsewhere", source)


def _kept_apart(shared, source):  # the earlier copy was itself stored under a conflict name
    return earlier_copy(shared, source, name=f"a.{sha(HALF)[:12]}.svs")


def _touched(shared, source):  # someone changed the shared copy since
    return earlier_copy(shared, source, data=b"y" * 1000, digest=sha(HALF))


def _grew(shared, source):  # the shared copy is no longer the size recorded
    return earlier_copy(shared, source, size=999)


def _not_its_beginning(shared, source):
    return earlier_copy(shared, source, data=b"z" * 1000)


def _gone(shared, source):
    record = earlier_copy(shared, source)
    os.remove(record.dest)
    return record


def _same_size(shared, source):  # only the mtime changed: the very same bytes
    return earlier_copy(shared, source, data=DATA)


@pytest.mark.parametrize(
    "case, action",
    [
        (_elsewhere, "renamed"),
        (_kept_apart, "renamed"),
        (_touched, "renamed"),
        (_grew, "renamed"),
        (_not_its_beginning, "renamed"),
        (_gone, "copied"),
        (_same_size, "duplicate"),
    ],
    ids=lambda c: getattr(c, "__name__", c),
)
def test_only_the_intakes_own_untouched_beginning_is_replaced(folders, source, case, action):
    scanner, shared, _ = folders
    make(shared / "a.svs", b"another slide by that name")  # what a copy must never replace
    previous = case(shared, source)
    before = {p.name: p.read_bytes() for p in shared.iterdir()}
    outcome = intake.copy_and_verify(seen(source), shared, previous=previous)
    assert outcome.action == action
    assert {p.name: p.read_bytes() for p in shared.iterdir() if p.name in before} == before  # nothing overwritten
    assert file_sha(Path(outcome.dest)) == sha(DATA)
    assert_source_intact(source)


def test_a_shorter_source_does_not_replace_the_longer_copy(folders, tmp_path):
    scanner, shared, _ = folders
    source = make(scanner / "a.svs", HALF[:500])
    previous = earlier_copy(shared, source)
    outcome = intake.copy_and_verify(seen(source), shared, previous=previous)
    assert outcome.action == "renamed" and (shared / "a.svs").read_bytes() == HALF


# --- already_there -----------------------------------------------------------------------


def test_already_there_without_reading_when_the_name_is_free(folders, source):
    scanner, shared, _ = folders
    cache = intake.HashCache()
    assert intake.already_there(seen(source), shared, cache) is None
    assert cache._known == {}  # not even the source was read


def test_already_there_under_the_name_or_a_conflict_name(folders, source):
    scanner, shared, _ = folders
    there = make(shared / "a.svs", DATA, 7)
    assert intake.already_there(seen(source), str(shared), intake.HashCache()) == Outcome(
        "a.svs",
        "duplicate",
        str(source),
        str(there),
        len(DATA),
        sha(DATA),
        detail="already on the shared drive as a.svs (same sha256): not copied again",
    )
    make(there, b"x" * len(DATA), 7)  # other content, the same size
    assert intake.already_there(seen(source), shared, intake.HashCache()) is None
    tag = sha(DATA)[:12]
    make(shared / f"a.{tag}.svs", b"other")
    assert intake.already_there(seen(source), shared, intake.HashCache()) is None
    make(shared / f"a.{tag}-2.svs", DATA)
    found = intake.already_there(seen(source), shared, intake.HashCache())
    assert (found.action, found.dest) == ("duplicate", str(shared / f"a.{tag}-2.svs"))
    assert found.detail == f"already on the shared drive as a.{tag}-2.svs (same sha256): not copied again"


@pytest.mark.parametrize("last, found", [(99, True), (100, False)])
def test_already_there_looks_at_a_hundred_names(folders, source, last, found):
    scanner, shared, _ = folders
    tag = sha(DATA)[:12]
    make(shared / "a.svs", b"other")
    for n in range(1, last):  # a.<tag>.svs, a.<tag>-2.svs, ... with other content
        make(shared / (f"a.{tag}.svs" if n == 1 else f"a.{tag}-{n}.svs"), b"other")
    make(shared / f"a.{tag}-{last}.svs", DATA)
    outcome = intake.already_there(seen(source), shared, intake.HashCache())
    assert (outcome is not None) is found


# --- removing a source, slides waiting for QC --------------------------------------------


def test_remove_source_removes_the_slide_then_its_marker(folders, source, monkeypatch):
    scanner, shared, _ = folders
    synced = Recorder()
    monkeypatch.setattr(intake, "fsync_dir", synced)
    make(scanner / "a.svs.done", b"")
    make(scanner / "b.svs", b"b")
    make(scanner / "b.svs.done", b"")
    record = Held(str(source), str(shared / "a.svs"), len(DATA), MTIME, sha(DATA), 0.0, "ok")
    intake.remove_source(record, ".done")
    assert names(scanner) == ["b.svs", "b.svs.done"] and synced.calls == [((scanner,), {})]
    make(source, DATA)
    make(scanner / "a.svs.done", b"")
    intake.remove_source(record)  # no marker mode: a file named like a marker is not the intake's
    assert names(scanner) == ["a.svs.done", "b.svs", "b.svs.done"]
    intake.remove_source(Held(str(scanner / "b.svs"), "", 1, MTIME, sha(b"b"), 0.0), ".ok")  # no marker .ok
    assert names(scanner) == ["a.svs.done", "b.svs.done"]
    with pytest.raises(FileNotFoundError):  # gone already: said, not passed over
        intake.remove_source(record)


def test_pending_slides(folders, monkeypatch):
    scanner, shared, out = folders
    a, b = make(shared / "a.svs", b"a"), make(shared / "b.svs", b"b")
    assert intake.list_pending(out) == {} and not out.exists()
    monkeypatch.chdir(shared)
    intake.add_pending(out, "a.svs")  # a relative path is journalled whole
    intake.add_pending(str(out), b)
    key_a = hashlib.sha256(str(a).encode()).hexdigest()[:16]
    key_b = hashlib.sha256(str(b).encode()).hexdigest()[:16]
    folder = out / ".intake-pending"
    assert names(folder) == sorted([key_a, key_b])
    assert (folder / key_a).read_text(encoding="utf-8") == str(a)
    pending = intake.list_pending(out)
    assert pending == {str(a): folder / key_a, str(b): folder / key_b}
    assert list(pending.values()) == sorted(pending.values())
    make(folder / key_b, f"{b}\n".encode())  # a trailing newline (written by hand, say) is no part of the path
    assert intake.list_pending(str(out)) == pending
    intake.clear_pending(out, ["a.svs"])
    assert intake.list_pending(out) == {str(b): folder / key_b}
    b.unlink()  # a slide that never got its final name: its entry goes
    assert intake.list_pending(out) == {} and names(folder) == []
    intake.clear_pending(out, [a, b])  # nothing left to clear: no error


def test_a_file_someone_else_removed_meanwhile_is_no_error(folders, monkeypatch):
    """Clean-ups that lose the race for a file (a second pass, a person tidying up) go on."""
    scanner, shared, out = folders
    make(scanner / "a.svs.done", b"")
    partial = make(shared / ".a.svs.0123abcd.partial", b"half")
    intake.add_pending(out, make(shared / "gone.svs", b"g"))
    intake.add_pending(out, make(shared / "b.svs", b"b"))
    (shared / "gone.svs").unlink()
    real_unlink = Path.unlink

    def raced(self, missing_ok=False):
        if self.exists():
            os.remove(self)  # the other one got there first
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", raced)
    assert intake.remove_orphan_markers(scanner, ".done") == [scanner / "a.svs.done"]
    assert intake.remove_partials(shared) == [partial]
    assert list(intake.list_pending(out)) == [str(shared / "b.svs")]
    intake.clear_pending(out, [shared / "b.svs"])
    assert names(scanner) == [] and names(shared) == ["b.svs"] and names(out / ".intake-pending") == []


# --- outcomes, held records --------------------------------------------------------------


def test_outcome_row_and_flags():
    outcome = Outcome("a.svs", "copied", "/s/a.svs", "/d/a.svs", 3, "ab", True, "fine", 0.5)
    assert list(intake.outcome_row(outcome).items()) == [
        ("name", "a.svs"),
        ("action", "copied"),
        ("source", "/s/a.svs"),
        ("dest", "/d/a.svs"),
        ("size", 3),
        ("sha256", "ab"),
        ("source_removed", True),
        ("detail", "fine"),
        ("seconds", 0.5),
    ]
    arrived = {"copied", "renamed", "replaced"}
    for action in [
        "copied",
        "replaced",
        "renamed",
        "duplicate",
        "waiting",
        "changed",
        "stopped",
        "error",
        "held",
        "released",
    ]:
        assert Outcome("a", action).arrived is (action in arrived)
        assert Outcome("a", action).failed is (action == "error")
    assert Outcome("a", "held") == Outcome("a", "held", "", "", None, "", False, "", None)


def test_held_unchanged():
    record = Held("/s/a.svs", "/d/a.svs", 10, MTIME, "ab", 0.0)
    assert record.qc == ""
    assert record.unchanged(Candidate("/s/a.svs", 10, MTIME))
    assert not record.unchanged(None)
    assert not record.unchanged(Candidate("/s/a.svs", 11, MTIME))
    assert not record.unchanged(Candidate("/s/a.svs", 10, MTIME + 1))


def record_file(out: Path, source: Path) -> Path:
    return out / ".intake-held" / (hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:16] + ".json")


def test_hold_writes_a_record_of_what_was_copied(folders, source, clock, monkeypatch):
    scanner, shared, out = folders
    out = out / "not" / "made yet"
    clock.wall = 1234.5
    monkeypatch.chdir(scanner)
    outcome = Outcome("a.svs", "copied", "a.svs", "../shared/a.svs", len(DATA), sha(DATA))
    record = intake.hold(out, Candidate("a.svs", len(DATA), MTIME), outcome)
    expected = {
        "source": str(source),
        "dest": str(shared / "a.svs"),
        "size": len(DATA),
        "mtime_ns": MTIME,
        "sha256": sha(DATA),
        "copied_at": 1234.5,
        "qc": "",
    }
    assert json.loads(record_file(out, source).read_text(encoding="utf-8")) == expected
    assert record == Held(**expected)
    assert intake.hold(out, Candidate("a.svs", len(DATA), MTIME), outcome, qc="earlier").qc == "earlier"
    assert json.loads(record_file(out, source).read_text(encoding="utf-8"))["qc"] == "earlier"
    assert intake.held_record(out, source) == Held(**dict(expected, qc="earlier"))
    assert intake.held_record(out, "a.svs") == Held(**dict(expected, qc="earlier"))
    assert intake.held_records(out) == {str(source): Held(**dict(expected, qc="earlier"))}
    assert names(out / ".intake-held") == [record_file(out, source).name]  # no temporary file left
    intake.forget(out, "a.svs")
    assert intake.held_record(out, source) is None and intake.held_records(out) == {}
    intake.forget(out, "a.svs")  # forgotten already: no error


@pytest.mark.parametrize(
    "text",
    ["{cut short", '{"source": "/s/a.svs"}', '["not", "a", "record"]', None],
    ids=["truncated", "fields missing", "not an object", "a folder"],
)
def test_an_unreadable_record_is_ignored_and_said(folders, source, caplog, text):
    scanner, shared, out = folders
    entry = record_file(out, source)
    entry.parent.mkdir(parents=True)
    if text is None:
        entry.mkdir()
    else:
        entry.write_text(text, encoding="utf-8")
    make(entry.parent / "notes.txt", b"not a record")
    with caplog.at_level(logging.WARNING, logger="slideqc"):
        assert intake.held_record(out, source) is None
        assert intake.held_records(out) == {}
    [first, second] = caplog.records
    message = first.getMessage()
    assert message.startswith(f"{entry}: unreadable record of a held slide, ignored: ")
    reason = message.split("ignored: ", 1)[1]
    assert reason and reason != "None"  # why it could not be read
    if text == "{cut short":
        with pytest.raises(ValueError) as raised:
            json.loads(text)
        assert reason == str(raised.value)
    assert first.levelno == logging.WARNING and first.name == "slideqc" and second.getMessage() == first.getMessage()


def test_a_missing_record_is_none_without_a_word(folders, source, caplog):
    with caplog.at_level(logging.DEBUG):
        assert intake.held_record(folders[2], source) is None and intake.held_records(folders[2]) == {}
    assert caplog.records == []


def held_copy(
    folders,
    name: str = "a.svs",
    data: bytes = DATA,
    qc: str = "ok",
    copied_at: float = 1000.0,
    scanner: Path | None = None,
) -> tuple[Path, Path, Held]:
    """A source in the scanner folder, its verified copy on the shared drive and its record, as after a pass."""
    folder, shared, out = folders
    source = make((scanner or folder) / name, data)
    dest = make(shared / name, data, 9)
    record = Held(str(source.resolve()), str(dest.resolve()), len(data), MTIME, sha(data), copied_at, qc)
    entry = record_file(out, source)
    entry.parent.mkdir(parents=True, exist_ok=True)
    entry.write_text(json.dumps(record.__dict__), encoding="utf-8")
    return source, dest, record


def test_mark_checked_notes_each_copys_qc(folders):
    scanner, shared, out = folders
    _, a_dest, a = held_copy(folders, "a.svs", b"a", qc="")
    b_source, b_dest, b = held_copy(folders, "b.svs", b"b", qc="ok")
    entry_b = record_file(out, b_source)
    inode_b = os.stat(entry_b).st_ino
    intake.mark_checked(out, {str(a_dest): "error", str(b_dest): "ok", "/elsewhere/c.svs": "ok"})
    records = intake.held_records(out)
    assert records[a.source].qc == "error" and records[b.source].qc == "ok"
    assert os.stat(entry_b).st_ino == inode_b  # the same status is not written again
    intake.mark_checked(out, {str(a_dest): "ok"})
    assert intake.held_records(out)[a.source] == Held(**dict(a.__dict__, qc="ok"))
    assert intake.held_records(out)[b.source] == b


def test_to_copy_skips_unchanged_held_sources_and_names_the_changed(folders, monkeypatch):
    scanner, shared, out = folders
    new = seen(make(scanner / "new.svs", b"n"))
    same_source, _, same = held_copy(folders, "same.svs", b"s")
    grown_source, _, grown = held_copy(folders, "grown.svs", b"g")
    touched_source, _, touched = held_copy(folders, "touched.svs", b"t")
    make(grown_source, b"gg")
    make(touched_source, b"t", MTIME + 1)
    monkeypatch.chdir(scanner)  # the scanner folder given relative: still the records' sources
    found = [
        Candidate(name, seen(scanner / name).size, seen(scanner / name).mtime_ns)
        for name in ["grown.svs", "new.svs", "same.svs", "touched.svs"]
    ]
    new_ones, changed = intake.to_copy(found, intake.held_records(out))
    assert new_ones == [found[0], found[1], found[3]]
    assert changed == [(found[0], grown), (found[3], touched)]
    assert intake.to_copy([new], {}) == ([new], [])


# --- release_sources: a source is removed only when its copy is there, whole, and checked ----------


def release(out, at, retain=600.0, **kwargs) -> dict[str, Outcome]:
    return {o.name: o for o in intake.release_sources(out, retain, now=at, **kwargs)}


def test_a_verified_checked_copy_releases_its_source_after_the_retention(folders, monkeypatch):
    scanner, shared, out = folders
    source, dest, record = held_copy(folders)
    reads = Recorder(then=intake.sha256_file)
    monkeypatch.setattr(intake, "sha256_file", reads)
    assert release(out, 1000.0 + 600.0) == {
        "a.svs": Outcome(
            "a.svs",
            "released",
            str(source),
            str(dest),
            len(DATA),
            sha(DATA),
            True,
            "removed from the scanner folder: unchanged for 600 s since its copy, QC ok, sha256 checked again on both "
            "sides",
        )
    }
    assert names(scanner) == [] and file_sha(dest) == sha(DATA)  # the copy whole, the source gone
    assert intake.held_records(out) == {}
    # both hashed again just before: the shared copy from the disk
    assert [(args[0], kwargs) for args, kwargs in reads.calls] == [(str(dest), {"drop_cache": True}), (str(source), {})]


@pytest.mark.parametrize(
    "qc, detail",
    [
        ("", "kept until its shared copy is QC'd"),
        ("error", "kept: the QC could not read its shared copy; remove it by hand once looked at"),
    ],
)
def test_a_copy_not_checked_or_unreadable_keeps_its_source(folders, qc, detail):
    scanner, shared, out = folders
    source, dest, record = held_copy(folders, qc=qc)
    assert release(out, 5000.0) == {
        "a.svs": Outcome("a.svs", "held", str(source), str(dest), len(DATA), sha(DATA), False, detail)
    }
    assert_source_intact(source)
    assert intake.held_records(out) == {record.source: record}


def test_a_source_is_kept_for_its_retention(folders, clock):
    scanner, shared, out = folders
    source, dest, record = held_copy(folders)
    assert release(out, 1010.0)["a.svs"].detail == "kept for 590 s more (--retain-seconds)"
    assert release(out, 1599.4)["a.svs"].detail == "kept for 1 s more (--retain-seconds)"
    assert release(out, 1000.0, retain=0.5)["a.svs"].detail == "kept for 0 s more (--retain-seconds)"
    clock.wall = 1100.0
    outcome = intake.release_sources(out, 600.0)[0]  # now: the clock's
    assert (outcome.action, outcome.detail) == ("held", "kept for 500 s more (--retain-seconds)")
    assert_source_intact(source)
    clock.wall = 1600.0
    assert intake.release_sources(str(out), 600.0)[0].action == "released"


def test_a_copy_found_already_there_releases_its_source(folders):
    source, dest, record = held_copy(folders, qc="earlier")
    outcome = release(folders[2], 1700.4)["a.svs"]
    assert outcome.action == "released" and not source.exists()
    assert outcome.detail == (
        "removed from the scanner folder: unchanged for 700 s since its copy, QC earlier, "
        "sha256 checked again on both sides"
    )


def test_a_source_that_changed_after_its_copy_is_kept_to_be_copied_again(folders):
    scanner, shared, out = folders
    source, dest, record = held_copy(folders)
    make(source, DATA + b"more")
    assert release(out, 5000.0) == {
        "a.svs": Outcome(
            "a.svs",
            "held",
            str(source),
            str(dest),
            len(DATA),
            sha(DATA),
            False,
            "changed after its copy: copied again once complete",
        )
    }
    assert source.read_bytes() == DATA + b"more" and intake.held_records(out) == {record.source: record}


def test_a_source_gone_by_itself_is_forgotten(folders):
    scanner, shared, out = folders
    held = [held_copy(folders, name, name.encode(), qc="") for name in ("a.svs", "b.svs")]
    # the one whose record is read first (the records are read in the order of their file names) goes
    (gone, _, _), (kept, _, record) = sorted(held, key=lambda h: record_file(out, h[0]).name)
    gone.unlink()
    assert list(release(out, 5000.0)) == [kept.name]  # the others are still looked at
    assert intake.held_records(out) == {record.source: record}


@pytest.mark.parametrize("damage", ["missing", "same size", "other size"])
def test_a_copy_missing_or_changed_never_releases_its_source(folders, damage):
    """Removing a source whose copy is not there, whole, would lose the slide."""
    scanner, shared, out = folders
    source, dest, record = held_copy(folders)
    if damage == "missing":
        dest.unlink()
    else:
        make(dest, b"x" * len(DATA) if damage == "same size" else DATA[:-1], 9)
    assert release(out, 5000.0) == {
        "a.svs": Outcome(
            "a.svs",
            "error",
            str(source),
            str(dest),
            len(DATA),
            sha(DATA),
            False,
            f"{dest} is missing or changed: the source is kept",
        )
    }
    assert_source_intact(source)
    assert intake.held_records(out) == {}  # forgotten: the next pass copies it again


def test_a_copy_replaced_by_a_folder_never_releases_its_source(folders):
    scanner, shared, out = folders
    source, dest, record = held_copy(folders)
    dest.unlink()
    dest.mkdir()
    assert release(out, 5000.0)["a.svs"].action == "error"
    assert_source_intact(source)


def test_a_source_whose_bytes_changed_without_a_trace_is_kept(folders):
    scanner, shared, out = folders
    source, dest, record = held_copy(folders)
    make(source, b"x" * len(DATA))  # the same size and mtime, other bytes
    outcome = release(out, 5000.0)["a.svs"]
    assert (outcome.action, outcome.source_removed) == ("held", False)
    assert outcome.detail == "its content changed after its copy (same size and mtime): copied again"
    assert source.read_bytes() == b"x" * len(DATA) and intake.held_records(out) == {}


def test_a_source_written_while_it_is_hashed_is_kept(folders, monkeypatch):
    scanner, shared, out = folders
    source, dest, record = held_copy(folders)
    real = intake.sha256_file

    def hashed_then_touched(path, drop_cache=False, limit=None):
        digest = real(path, drop_cache, limit)
        if Path(path) == source:
            os.utime(source, ns=(MTIME + 1, MTIME + 1))  # the scanner writes again just then
        return digest

    monkeypatch.setattr(intake, "sha256_file", hashed_then_touched)
    outcome = release(out, 5000.0)["a.svs"]
    assert outcome.action == "held" and source.read_bytes() == DATA and intake.held_records(out) == {}


def test_a_source_that_cannot_be_removed_is_an_error_and_stays_held(folders, monkeypatch):
    scanner, shared, out = folders
    source, dest, record = held_copy(folders)

    def refused(record, marker=None):
        raise PermissionError(errno.EACCES, "Permission denied", record.source)

    monkeypatch.setattr(intake, "remove_source", refused)
    outcome = release(out, 5000.0)["a.svs"]
    assert (outcome.action, outcome.source_removed) == ("error", False)
    assert outcome.detail == f"in place as {dest}, source not removed: [Errno 13] Permission denied: '{source}'"
    assert_source_intact(source)
    assert intake.held_records(out) == {record.source: record}  # still held: tried again next pass


def test_release_removes_the_marker_and_keeps_to_its_scanner_folder(folders, tmp_path, monkeypatch):
    scanner, shared, out = folders
    a_source, _, _ = held_copy(folders, "a.svs", b"a")
    c_source, _, _ = held_copy(folders, "c.svs", b"c", qc="")
    ours = min(record_file(out, a_source).name, record_file(out, c_source).name)
    # another scanner's record read first (records are read in the order of their file names): passed over
    other = next(
        folder for n in range(100_000) if record_file(out, (folder := tmp_path / f"scanner {n}") / "b.svs").name < ours
    )
    b_source, _, b = held_copy(folders, "b.svs", b"b", scanner=other)
    make(scanner / "a.svs.done", b"")
    monkeypatch.chdir(tmp_path)
    outcomes = intake.release_sources(out, 0, ".done", now=5000.0, scanner_dir="scanner")
    assert [(o.name, o.action) for o in outcomes] == [("a.svs", "released"), ("c.svs", "held")]  # by name
    assert names(scanner) == ["c.svs"] and names(other) == ["b.svs"]
    assert set(intake.held_records(out)) == {str(b_source), str(c_source)}
    outcomes = intake.release_sources(out, 0, now=5000.0)
    assert [(o.name, o.action) for o in outcomes] == [("b.svs", "released"), ("c.svs", "held")]


# --- the journal, the pass's table -------------------------------------------------------


def journal_lines(out: Path) -> list[list[str]]:
    return [line.split("\t") for line in (out / "intake-journal.tsv").read_text(encoding="utf-8").splitlines()]


HEADER = ["time", "cycle", "name", "action", "source", "dest", "size", "sha256", "source_removed", "detail", "seconds"]


def test_the_journal_appends_every_event_with_its_time_and_cycle(tmp_path, monkeypatch):
    out = tmp_path / "out" / "new"
    synced = Recorder(then=os.fsync)
    monkeypatch.setattr(os, "fsync", synced)
    copied = Outcome("a.svs", "copied", "/s/a.svs", "/d/a.svs", 3072, "ab" * 32, False, "two\nlines\tand  tabs", 0.25)
    waiting = Outcome("b.svs", "waiting")
    before = datetime.now().replace(microsecond=0)
    assert intake.append_journal(out, [copied, waiting], 3) == out / "intake-journal.tsv"
    after = datetime.now()
    lines = journal_lines(out)
    assert lines[0] == HEADER
    assert [line[1:] for line in lines[1:]] == [
        ["3", "a.svs", "copied", "/s/a.svs", "/d/a.svs", "3072", "ab" * 32, "False", "two lines and tabs", "0.25"],
        ["3", "b.svs", "waiting", "", "", "", "", "False", "", ""],
    ]
    for line in lines[1:]:
        assert before <= datetime.strptime(line[0], "%Y-%m-%dT%H:%M:%S") <= after
    assert len(synced.calls) == 1  # flushed to disk
    intake.append_journal(str(out), [Outcome("a.svs", "released", source_removed=True)], 4)
    lines = journal_lines(out)
    assert len(lines) == 4 and lines[0] == HEADER and lines[3][1:4] == ["4", "a.svs", "released"]
    assert lines[3][8] == "True"


def test_a_journal_write_that_fails_says_so_and_keeps_the_earlier_lines(tmp_path, monkeypatch):
    out = tmp_path / "out"
    intake.append_journal(out, [Outcome("a.svs", "copied")], 1)
    earlier = (out / "intake-journal.tsv").read_bytes()
    fail_writes(monkeypatch, "a", 0, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(OSError) as raised:
        intake.append_journal(out, [Outcome("a.svs", "released", source_removed=True)], 2)
    assert raised.value.errno == errno.ENOSPC
    assert (out / "intake-journal.tsv").read_bytes() == earlier


def test_control_done():
    control = intake.Control()
    assert (control.max_cycles, control.cycles, control.busy, control.stop_requested, control.failed) == (
        None,
        0,
        False,
        False,
        False,
    )
    assert isinstance(control.hashes, intake.HashCache) and control.hashes is not intake.Control().hashes
    assert not control.done()
    control.cycles = 100
    assert not control.done()
    control.stop_requested = True
    assert control.done()
    for cycles, done in [(0, False), (1, False), (2, True), (3, True)]:
        assert intake.Control(max_cycles=2, cycles=cycles).done() is done


def test_with_releases_joins_a_release_to_its_copys_row(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    copied = Outcome("a.svs", "copied", "/s/a.svs", "shared/a.svs", 1, "aa")
    noted = Outcome("b.svs", "renamed", "/s/b.svs", str(tmp_path / "shared/b.x.svs"), 1, "bb", detail="kept as b.x")
    quiet = Outcome("d.svs", "waiting", "/s/d.svs")
    released = [
        Outcome("a.svs", "released", "/s/a.svs", str(tmp_path / "shared/a.svs"), source_removed=True, detail="gone"),
        Outcome("b.svs", "error", "/s/b.svs", "shared/b.x.svs", detail="not removed"),
        Outcome("c.svs", "released", "/s/c.svs", "/d/c.svs", source_removed=True, detail="earlier copy"),
        Outcome("d.svs", "held", "/s/d.svs", detail="kept"),
        Outcome("a.svs", "error", "/s/a.svs", "/elsewhere/a.svs", detail="another copy"),
    ]
    merged = intake.with_releases([quiet, noted, copied], released)
    assert [(o.name, o.action, o.source_removed, o.detail) for o in merged] == [
        ("a.svs", "copied", True, "gone"),
        ("a.svs", "error", False, "another copy"),
        ("b.svs", "error", False, "kept as b.x; not removed"),
        ("c.svs", "released", True, "earlier copy"),
        ("d.svs", "waiting", False, ""),
    ]
    assert merged[0] is copied  # the copy's row, updated
    waiting = Outcome("e.svs", "waiting")
    assert intake.with_releases([waiting], [Outcome("e.svs", "released", source_removed=True, detail="r")]) == [
        Outcome("e.svs", "waiting", source_removed=True, detail="r")
    ]


def test_the_intake_table(tmp_path):
    path = intake.write_intake_table(
        str(tmp_path),
        [
            Outcome("a.svs", "copied", "/s/a.svs", "/d/a.svs", 3, "ab", False, 'tab\there "quoted"', 0.5),
            Outcome("b.svs", "waiting"),
        ],
    )
    assert path == tmp_path / "intake.tsv"
    with path.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t"))
    assert rows == [
        HEADER[2:],
        ["a.svs", "copied", "/s/a.svs", "/d/a.svs", "3", "ab", "False", 'tab\there "quoted"', "0.5"],
        ["b.svs", "waiting", "", "", "", "", "False", "", ""],
    ]
    assert path.read_bytes().count(b"\n") == 3 and b"\r" not in path.read_bytes()
    assert names(tmp_path) == ["intake.tsv"]


# --- check_options: each bad option named, nothing touched ------------------------------


def options(folders, **changes) -> SimpleNamespace:
    scanner, shared, out = folders
    values = dict(
        scanner_dir=str(scanner),
        shared_dir=str(shared),
        output_dir=str(out),
        keep_source=False,
        interval=None,
        max_cycles=None,
        once=True,
        run_name=None,
        overwrite=False,
        settle_seconds=5.0,
        retain_seconds=600.0,
        bwlimit=0.0,
        copy_retries=3,
        retry_delay=5.0,
        marker=None,
        file_type="svs",
        workers=1,
    )
    return SimpleNamespace(**{**values, **changes})


def check(args) -> str | None:
    try:
        intake.check_options(args)
    except ValueError as error:
        return str(error)
    return None


def test_good_options_pass_and_touch_nothing(folders, tmp_path):
    scanner, shared, out = folders
    before = names(tmp_path)
    for changes in [
        {},
        dict(output_dir=str(tmp_path / "a" / "b" / "c")),
        dict(interval=0.5, once=False),
        dict(interval=60.0, once=False, max_cycles=1),
        dict(interval=60.0, once=False, max_cycles=1, run_name="pass1"),
        dict(run_name="run-1.a_b"),
        dict(settle_seconds=0, retain_seconds=0, bwlimit=0, copy_retries=0, retry_delay=0),
        dict(marker=".done"),
        dict(file_type=".svs"),
        dict(file_type="tif"),
        dict(file_type="X"),
        dict(workers=2),
        dict(keep_source=True),
    ]:
        assert check(options(folders, **changes)) is None, changes
    assert names(tmp_path) == before  # nothing made
    out.mkdir()
    (out / "pass1").mkdir()
    assert check(options(folders, run_name="pass1", overwrite=True)) is None
    assert check(options(folders, output_dir=str(out))) is None


def test_folders_that_are_not_there_or_the_same(folders, tmp_path):
    scanner, shared, out = folders
    missing, a_file = tmp_path / "unmounted", make(tmp_path / "a_file", b"x")
    assert check(options(folders, scanner_dir=str(missing))) == f"--scanner-dir: {missing} is not a folder"
    assert check(options(folders, scanner_dir=str(a_file))) == f"--scanner-dir: {a_file} is not a folder"
    assert check(options(folders, shared_dir=str(missing))) == f"--shared-dir: {missing} is not a folder"
    assert check(options(folders, shared_dir=str(a_file))) == f"--shared-dir: {a_file} is not a folder"
    (tmp_path / "link").symlink_to(scanner)
    assert check(options(folders, shared_dir=str(tmp_path / "link"))) == "--shared-dir: must not be the scanner folder"
    assert not missing.exists()


def deny(monkeypatch, folder: Path, denied: int):
    """os.access refuses ``denied`` (W_OK or X_OK) on ``folder`` (the tests run as root, who may write anywhere)."""
    real = os.access

    def access(path, mode, *args, **kwargs):
        if Path(path) == folder and mode & denied:
            return False
        return real(path, mode, *args, **kwargs)

    monkeypatch.setattr(os, "access", access)


@pytest.mark.parametrize("denied", [os.W_OK, os.X_OK], ids=["not writable", "not searchable"])
def test_folders_that_cannot_be_written(folders, tmp_path, monkeypatch, denied):
    scanner, shared, out = folders
    deny(monkeypatch, shared, denied)
    assert check(options(folders)) == f"--shared-dir: {shared} is not writable"
    monkeypatch.undo()
    deny(monkeypatch, scanner, denied)
    assert check(options(folders)) == (
        f"--scanner-dir: {scanner} is not writable (its slides are removed once safe; or pass --keep-source)"
    )
    assert check(options(folders, keep_source=True)) is None
    monkeypatch.undo()
    deny(monkeypatch, tmp_path, denied)
    assert check(options(folders, output_dir=str(out / "deeper"))) == (
        f"--output-dir: {out / 'deeper'} cannot be made ({tmp_path} is not a writable folder)"
    )


def test_an_output_folder_that_is_a_file(folders, tmp_path, monkeypatch):
    a_file = make(tmp_path / "a_file", b"x")
    assert check(options(folders, output_dir=str(a_file))) == f"--output-dir: {a_file} is not a folder"
    assert check(options(folders, output_dir=str(a_file / "out"))) == (
        f"--output-dir: {a_file / 'out'} cannot be made ({a_file} is not a writable folder)"
    )
    monkeypatch.chdir(tmp_path)
    assert check(options(folders, output_dir="a_file/out")) == (
        f"--output-dir: a_file/out cannot be made ({a_file} is not a writable folder)"
    )
    assert check(options(folders, output_dir="fresh/out")) is None


@pytest.mark.parametrize("value", [0.0, -1.0, float("inf"), float("nan")])
def test_interval(folders, value):
    assert check(options(folders, interval=value, once=False)) == f"--interval: must be a number > 0, got {value}"


def test_max_cycles_and_run_name(folders):
    scanner, shared, out = folders
    cycles = "--max-cycles: must be >= 1, and goes with --interval"
    assert check(options(folders, interval=1.0, once=False, max_cycles=0)) == cycles
    assert check(options(folders, max_cycles=1)) == cycles  # with --once
    once_only = "--run-name: each pass makes its own run folder; use it with --once"
    assert check(options(folders, interval=1.0, once=False, run_name="x")) == once_only
    assert check(options(folders, interval=1.0, once=False, max_cycles=2, run_name="x")) == once_only
    assert check(options(folders, run_name="../x")) == (
        "--run-name: '../x' must be a plain folder name (letters, digits, '-', '_', '.'; not starting with '.')"
    )
    (out / "x").mkdir(parents=True)
    assert check(options(folders, run_name="x")) == (
        f"--run-name: {out / 'x'}: an earlier run is there; pass --overwrite to replace it"
    )
    assert check(options(folders, run_name="")) is None  # no name: a new folder each time


@pytest.mark.parametrize("option", ["settle_seconds", "retain_seconds", "bwlimit", "copy_retries", "retry_delay"])
@pytest.mark.parametrize("value", [-1, -0.001, float("nan"), float("inf")])
def test_numbers_that_must_be_zero_or_more(folders, option, value):
    flag = "--" + option.replace("_", "-")
    assert check(options(folders, **{option: value})) == f"{flag}: must be a number >= 0, got {value}"


@pytest.mark.parametrize("marker", ["", "  ", "a/b", "/done"])
def test_marker(folders, marker):
    assert check(options(folders, marker=marker)) == f"--marker: {marker!r} must be a file name suffix such as .done"


@pytest.mark.parametrize("file_type", ["", ".", " ", ". .", "svs/x"])
def test_file_type(folders, file_type):
    assert (
        check(options(folders, file_type=file_type)) == f"--file-type: {file_type!r} must be an extension such as svs"
    )


@pytest.mark.parametrize("workers", [0, -1])
def test_workers(folders, workers):
    assert check(options(folders, workers=workers)) == f"--workers: must be >= 1, got {workers}"
