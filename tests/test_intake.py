"""Scanner intake (extras/pipeline_intake.py): slides move to the shared drive whole, once, and get QC'd.

A scanner folder and a shared folder in a temp dir; the flow runs in this
process when a test needs to reach into it (a file still being written, a copy
that fails), and as a real subprocess when it has to be killed or stopped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from slideqc import intake
from slideqc.output import results
from tests.helpers import ROOT, load_solution, per_slide, run_script

INTAKE = "extras/pipeline_intake.py"
SCRIPT = ROOT / INTAKE


def sha256(path: Path) -> str:
    return intake.sha256_file(path)


def runs(output_dir: Path) -> list[Path]:
    return sorted(p for p in output_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def intake_rows(run_dir: Path) -> dict[str, dict]:
    return {r["name"]: r for r in results.read_results(run_dir / "intake.tsv")}


def partials(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.endswith(".partial")]


@pytest.fixture(scope="module")
def module():
    return load_solution("extras/pipeline_intake.py")


def once(module, scanner, shared, out, *extra) -> int:
    return module.main(
        [
            "--scanner-dir",
            str(scanner),
            "--shared-dir",
            str(shared),
            "--output-dir",
            str(out),
            "--once",
            "--settle-seconds",
            "0.5",
            "--retain-seconds",
            "0",
            "--executor",
            "local",
            *extra,
        ]
    )


def popen(scanner, shared, out, *extra, log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    return subprocess.Popen(
        [
            sys.executable,
            str(SCRIPT),
            "--scanner-dir",
            str(scanner),
            "--shared-dir",
            str(shared),
            "--output-dir",
            str(out),
            "--executor",
            "local",
            *extra,
        ],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )


def wait_for(condition, timeout: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.02)
    text = log.read_text()[-3000:] if log else ""
    raise AssertionError(f"timed out waiting for {what}\n{text}")


def test_moves_complete_slides_verifies_and_checks_them_and_waits_for_one_being_written(module, folders, demo_slides):
    scanner, shared, out = folders
    complete, late = demo_slides[:2], demo_slides[2]
    for slide in complete:
        shutil.copy2(slide, scanner / slide.name)
    data = late.read_bytes()
    growing = scanner / late.name
    growing.write_bytes(data[: len(data) // 2])
    stop = threading.Event()

    def keep_writing():  # the scanner is still writing this one: a few KB every 20 ms, never the last byte
        written = len(data) // 2
        with growing.open("ab") as handle:
            while not stop.is_set() and written < len(data) - 1:
                chunk = data[written : min(written + 4096, len(data) - 1)]
                handle.write(chunk)
                handle.flush()
                written += len(chunk)
                time.sleep(0.02)

    writer = threading.Thread(target=keep_writing)
    writer.start()
    try:
        assert once(module, scanner, shared, out) == 0
    finally:
        stop.set()
        writer.join()

    # the complete ones moved and are byte for byte the originals; the one being written was not touched
    assert sorted(p.name for p in shared.iterdir()) == sorted(s.name for s in complete)
    for slide in complete:
        assert sha256(shared / slide.name) == sha256(slide)
    assert [p.name for p in scanner.iterdir()] == [late.name]
    [run1] = runs(out)
    moved = intake_rows(run1)
    assert {n: r["action"] for n, r in moved.items()} == {
        complete[0].name: "copied",
        complete[1].name: "copied",
        late.name: "waiting",
    }
    assert all(moved[s.name]["sha256"] == sha256(s) for s in complete)
    rows = per_slide(results.read_results(run1 / "results.tsv"))
    assert set(rows) == {s.name for s in complete} and all(r[0] in results.JUDGED for r in rows.values())
    assert (run1 / "report.html").is_file()

    # the scanner finishes writing; the next pass moves the late one
    growing.write_bytes(data)
    assert once(module, scanner, shared, out) == 0
    assert list(scanner.iterdir()) == []
    assert sha256(shared / late.name) == sha256(late)
    run2 = [r for r in runs(out) if r != run1][0]
    assert set(per_slide(results.read_results(run2 / "results.tsv"))) == {late.name}
    assert not partials(shared) and intake.list_pending(out) == {}


def test_marker_mode_waits_for_the_scanners_marker(module, folders, demo_slides):
    scanner, shared, out = folders
    for slide in demo_slides[:2]:
        shutil.copy2(slide, scanner / slide.name)
    (scanner / f"{demo_slides[0].name}.done").write_text("")
    assert once(module, scanner, shared, out, "--marker", ".done") == 0
    assert [p.name for p in shared.iterdir()] == [demo_slides[0].name]
    assert sorted(p.name for p in scanner.iterdir()) == [demo_slides[1].name]  # the marker went with its slide
    (scanner / f"{demo_slides[1].name}.done").write_text("")
    assert once(module, scanner, shared, out, "--marker", ".done") == 0
    assert sorted(p.name for p in shared.iterdir()) == sorted(s.name for s in demo_slides[:2])
    assert list(scanner.iterdir()) == []


def test_same_name_other_content_is_kept_apart_and_same_content_is_not_copied_again(module, folders, demo_slides):
    scanner, shared, out = folders
    first, other = demo_slides[0], demo_slides[1]
    shutil.copy2(other, shared / first.name)  # the shared drive has a different slide under this name
    before = sha256(shared / first.name)
    shutil.copy2(first, scanner / first.name)
    assert once(module, scanner, shared, out) == 0
    kept_as = intake.conflict_name(first.name, sha256(first))
    assert sha256(shared / first.name) == before  # never overwritten
    assert sha256(shared / kept_as) == sha256(first)
    [run1] = runs(out)
    row = intake_rows(run1)[first.name]
    assert row["action"] == "renamed" and kept_as in row["detail"] and row["dest"].endswith(kept_as)
    assert set(per_slide(results.read_results(run1 / "results.tsv"))) == {kept_as}

    # the scanner offers the very same slide again: not copied, source removed (or kept, if asked)
    shutil.copy2(first, scanner / first.name)
    listing = {p.name: p.stat().st_mtime_ns for p in shared.iterdir()}
    assert once(module, scanner, shared, out, "--keep-source") == 0
    assert (scanner / first.name).exists()
    assert once(module, scanner, shared, out) == 0
    assert not (scanner / first.name).exists()
    assert {p.name: p.stat().st_mtime_ns for p in shared.iterdir()} == listing
    assert runs(out) == [run1]  # nothing arrived, nothing to check: no new run folder


def test_duplicates_and_conflicts_are_logged(folders, demo_slides):
    scanner, shared, out = folders
    first, other = demo_slides[0], demo_slides[1]
    shutil.copy2(other, shared / first.name)
    shutil.copy2(first, shared / "same.svs")
    shutil.copy2(first, scanner / first.name)
    shutil.copy2(first, scanner / "same.svs")
    proc = run_script(
        INTAKE,
        "--scanner-dir",
        str(scanner),
        "--shared-dir",
        str(shared),
        "--output-dir",
        str(out),
        "--once",
        "--settle-seconds",
        "0.2",
        "--retain-seconds",
        "0",
        "--executor",
        "local",
        timeout=300,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    kept_as = intake.conflict_name(first.name, sha256(first))
    assert f"{first.name}: CONFLICT: {first.name} on the shared drive has other content: kept as {kept_as}" in text
    assert "same.svs: skipped: already on the shared drive as same.svs (same sha256): not copied again" in text
    assert "same.svs: removed from the scanner folder: unchanged for" in text
    assert f"{kept_as}: QC ok" in text


def test_copy_errors_are_retried_and_a_copy_that_keeps_failing_keeps_its_source(
    module, folders, demo_slides, monkeypatch
):
    scanner, shared, out = folders
    slide = demo_slides[0]
    shutil.copy2(slide, scanner / slide.name)
    real_copy, calls = intake.copy_file, []

    def flaky(source, dest, bwlimit=0):
        calls.append(time.monotonic())
        if len(calls) == 1:
            Path(dest).write_bytes(b"half")  # a partial the failed attempt leaves
            raise OSError(5, "Input/output error (shared drive went away)")
        return real_copy(source, dest, bwlimit)

    monkeypatch.setattr(intake, "copy_file", flaky)
    assert once(module, scanner, shared, out, "--retry-delay", "0.5") == 0
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.5  # retried, after the delay
    assert sha256(shared / slide.name) == sha256(slide) and not partials(shared)

    shutil.copy2(demo_slides[1], scanner / demo_slides[1].name)

    def broken(source, dest, bwlimit=0):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(intake, "copy_file", broken)
    assert once(module, scanner, shared, out, "--retry-delay", "0", "--copy-retries", "1") == 1
    assert (scanner / demo_slides[1].name).exists() and not (shared / demo_slides[1].name).exists()
    row = intake_rows(runs(out)[-1])[demo_slides[1].name]
    assert row["action"] == "error" and "No space left" in row["detail"]


def test_a_copy_that_does_not_verify_is_not_placed(folders, demo_slides, monkeypatch):
    scanner, shared, _ = folders
    shutil.copy2(demo_slides[0], scanner / demo_slides[0].name)
    [candidate] = intake.find_slides(scanner)
    monkeypatch.setattr(intake, "sha256_file", lambda path, drop_cache=False: "0" * 64)
    with pytest.raises(intake.VerifyError):
        intake.copy_and_verify(candidate, shared)
    assert list(shared.iterdir()) == []


def test_place_never_overwrites(tmp_path):
    (tmp_path / ".a.partial").write_bytes(b"new")
    (tmp_path / "a.svs").write_bytes(b"old")
    assert not intake.place(tmp_path / ".a.partial", tmp_path / "a.svs")
    assert (tmp_path / "a.svs").read_bytes() == b"old"


def test_find_slides_skips_temporary_and_hidden_files(tmp_path):
    for name in ["a.svs", "B.SVS", ".c.svs", ".a.svs.1234.partial", "d.svs.tmp", "~e.svs", "f.tif", "g.svs.part"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "dir.svs").mkdir()
    (tmp_path / "link.svs").symlink_to(tmp_path / "a.svs")
    assert [c.name for c in intake.find_slides(tmp_path)] == ["B.SVS", "a.svs"]


def test_a_slide_renamed_into_place_before_a_crash_is_finished_and_checked(module, folders, demo_slides):
    """The pass died after the rename: the slide is in both places and in the journal, not yet QC'd."""
    scanner, shared, out = folders
    slide = demo_slides[0]
    shutil.copy2(slide, scanner / slide.name)
    shutil.copy2(slide, shared / slide.name)
    intake.add_pending(out, shared / slide.name)
    assert once(module, scanner, shared, out) == 0
    assert not (scanner / slide.name).exists() and sha256(shared / slide.name) == sha256(slide)
    [run] = runs(out)
    assert intake_rows(run)[slide.name]["action"] == "duplicate"
    assert set(per_slide(results.read_results(run / "results.tsv"))) == {slide.name}
    assert intake.list_pending(out) == {}


def write_random(path: Path, megabytes: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        for _ in range(megabytes // 16):
            block = os.urandom(16 * 1024 * 1024)
            digest.update(block)
            handle.write(block)
    return digest.hexdigest()


def test_killed_mid_copy_loses_nothing_and_the_next_pass_finishes(folders, demo_slides, tmp_path):
    scanner, shared, out = folders
    big = scanner / "a_big_scan.svs"  # random bytes: a copy like any other, a QC error later (that is fine)
    big_sha = write_random(big, 320)
    small = demo_slides[0]
    shutil.copy2(small, scanner / small.name)
    log = tmp_path / "intake.log"
    proc = popen(scanner, shared, out, "--once", "--settle-seconds", "0.2", "--bwlimit", "80", log=log)
    try:
        partial = wait_for(lambda: next(iter(partials(shared)), None), 60, "the partial copy", proc, log)
        size = partial.stat().st_size
        wait_for(lambda: partial.exists() and partial.stat().st_size > size, 30, "the partial to grow", proc, log)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # nothing lost: every slide is in the scanner folder, or whole under its final name on the shared drive
    assert sha256(big) == big_sha
    assert not (shared / big.name).exists() or sha256(shared / big.name) == big_sha
    assert (scanner / small.name).exists() or sha256(shared / small.name) == sha256(small)
    assert all(p.name.startswith(".") for p in shared.iterdir() if p.name not in (big.name, small.name))
    assert not (shared / big.name).exists()  # killed while copying: the big slide has no final name yet
    assert partials(shared)  # its half copy is hidden under a temporary name

    # the next pass deletes the half copy and finishes the job
    proc = run_script(
        INTAKE,
        "--scanner-dir",
        str(scanner),
        "--shared-dir",
        str(shared),
        "--output-dir",
        str(out),
        "--once",
        "--settle-seconds",
        "0.2",
        "--retain-seconds",
        "0",
        "--executor",
        "local",
        timeout=300,
    )
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text[-3000:]  # the random "slide" fails QC; the demo slide is fine
    assert "a copy interrupted in an earlier pass" in text
    assert not partials(shared)
    assert sorted(p.name for p in shared.iterdir()) == sorted([big.name, small.name])
    assert sha256(shared / big.name) == big_sha and sha256(shared / small.name) == sha256(small)
    assert [p.name for p in scanner.iterdir()] == [big.name]  # the QC could not read it: its source is kept
    rows = per_slide(results.read_results(runs(out)[-1] / "results.tsv"))
    assert rows[small.name][0] in results.JUDGED and rows[big.name][0] == "error"


def test_scheduled_runs_two_cycles_and_stops(folders, demo_slides, tmp_path):
    scanner, shared, out = folders
    shutil.copy2(demo_slides[0], scanner / demo_slides[0].name)
    log = tmp_path / "intake.log"
    proc = popen(scanner, shared, out, "--interval", "1", "--max-cycles", "2", "--settle-seconds", "0.2", log=log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "intake cycle 1: done: 1 copied, 1 held" in text and "intake cycle 2: done: 1 held;" in text
    assert "intake cycle 3" not in text and "intake done after 2 cycle(s)" in text
    assert "Waiting for next scheduled run" in text  # Prefect's own schedule loop ran it
    assert sha256(shared / demo_slides[0].name) == sha256(demo_slides[0])


def test_sigterm_finishes_the_copy_under_way_and_exits_cleanly(folders, demo_slides, tmp_path):
    scanner, shared, out = folders
    for slide in demo_slides:
        shutil.copy2(slide, scanner / slide.name)
    log = tmp_path / "intake.log"
    # about 2.5 s per slide at 2 MB/s: the signal comes while the first one is copying
    proc = popen(
        scanner,
        shared,
        out,
        "--interval",
        "1",
        "--settle-seconds",
        "0.2",
        "--bwlimit",
        "2",
        "--retain-seconds",
        "0",
        log=log,
    )
    try:
        wait_for(lambda: partials(shared), 60, "a copy to start", proc, log)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "SIGTERM: stopping after the pass under way" in text and "intake stopped on request after 1 cycle" in text
    assert not partials(shared)
    assert [p.name for p in shared.iterdir()] == [demo_slides[0].name]  # the copy under way finished...
    assert sha256(shared / demo_slides[0].name) == sha256(demo_slides[0])
    assert sorted(p.name for p in scanner.iterdir()) == [s.name for s in demo_slides[1:]]  # ...no new one began
    rows = per_slide(results.read_results(runs(out)[-1] / "results.tsv"))
    assert set(rows) == {demo_slides[0].name}


def test_sigterm_between_passes_stops_at_once(folders, tmp_path):
    scanner, shared, out = folders
    log = tmp_path / "intake.log"
    proc = popen(scanner, shared, out, "--interval", "600", "--settle-seconds", "0", log=log)
    try:
        wait_for(lambda: "intake cycle 1: done" in log.read_text(), 120, "the first pass", proc, log)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
        assert time.monotonic() - started < 10  # did not wait for the next scheduled pass
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "intake stopped on request after 1 cycle" in log.read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--once", "--interval", "5"], "not allowed with"),
        ([], "one of the arguments --interval --once is required"),
        (["--once", "--max-cycles", "2"], "--max-cycles"),
        (["--interval", "5", "--run-name", "x"], "--run-name"),
        (["--once", "--data-dir", "data"], "unrecognized arguments: --data-dir"),
    ],
)
def test_usage_errors(folders, args, message):
    scanner, shared, out = folders
    proc = run_script(INTAKE, "--scanner-dir", str(scanner), "--shared-dir", str(shared), *args, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_flow_graph():
    flow = load_solution("extras/pipeline_intake.py").flow
    assert flow.name == "Slide intake"
    edges = {(e.upstream_task.name, e.downstream_task.name, e.mapped) for e in flow.edges}
    for edge in [
        ("clean_up", "find_candidates", False),
        ("find_candidates", "wait_until_complete", False),
        ("wait_until_complete", "copy_and_verify", True),
        ("copy_and_verify", "qc_arrived", False),
        ("qc_arrived", "release", False),
        ("release", "end_pass", False),
    ]:
        assert edge in edges, edge


def test_a_source_that_cannot_be_removed_is_reported_and_its_slide_still_checked(
    module, folders, demo_slides, monkeypatch
):
    scanner, shared, out = folders
    slide = demo_slides[0]
    shutil.copy2(slide, scanner / slide.name)

    def read_only(outcome, marker=None):
        raise PermissionError(13, "Permission denied", outcome.source)

    monkeypatch.setattr(intake, "remove_source", read_only)
    assert once(module, scanner, shared, out) == 1
    assert (scanner / slide.name).exists() and sha256(shared / slide.name) == sha256(slide)
    [run] = runs(out)
    row = intake_rows(run)[slide.name]
    assert row["action"] == "error" and "source not removed" in row["detail"]
    assert per_slide(results.read_results(run / "results.tsv"))[slide.name][0] in results.JUDGED
    monkeypatch.undo()
    assert once(module, scanner, shared, out) == 0  # next pass: same sha256 on the shared drive, source removed
    assert not (scanner / slide.name).exists()


# --- issue 16: a slide is never removed while it could be its only complete copy -------------------------


def journal_rows(out: Path, name: str) -> list[dict]:
    path = out / intake.JOURNAL_FILE
    return [r for r in results.read_results(path) if r["name"] == name] if path.exists() else []


@pytest.mark.parametrize("scanner_reopens", [False, True], ids=["scanner-keeps-its-handle", "scanner-reopens-by-name"])
def test_a_scanner_that_pauses_longer_than_the_settle_time_loses_nothing(
    folders, demo_slides, tmp_path, scanner_reopens
):
    """The scanner writes half a slide, pauses until the intake has copied that half, then finishes.

    The slide must end up on the shared drive whole (sha256 of the bytes the scanner wrote), exactly
    once, and its source must exist all along until the whole slide is there. No timing is asserted:
    the scanner's pause ends when the half copy is seen on the shared drive, so it is longer than
    the settle time by construction.
    """
    scanner, shared, out = folders
    data = demo_slides[0].read_bytes()
    whole_sha, half = hashlib.sha256(data).hexdigest(), len(data) // 2
    half_sha = hashlib.sha256(data[:half]).hexdigest()
    source = scanner / "paused.svs"
    errors, done = [], threading.Event()

    def scanner_writes():
        try:
            handle = source.open("wb")
            handle.write(data[:half])
            handle.flush()
            os.fsync(handle.fileno())
            wait_for(lambda: (shared / source.name).exists() or done.is_set(), 240, "the half copy")  # the pause
            if scanner_reopens:
                handle.close()
                handle = source.open("ab")
            handle.write(data[half:])
            handle.close()
        except Exception as error:  # noqa: BLE001 - reported by the test
            errors.append(error)

    def source_watch():  # the source must never vanish while the intake runs with a long retention
        while not done.is_set():
            if not source.exists() and not errors:
                errors.append(AssertionError("the source vanished"))
            time.sleep(0.01)

    log = tmp_path / "intake.log"
    threads = [threading.Thread(target=scanner_writes), threading.Thread(target=source_watch)]
    threads[0].start()
    wait_for(source.exists, 30, "the scanner to start")
    threads[1].start()
    proc = popen(
        scanner, shared, out, "--interval", "0.5", "--settle-seconds", "0.2", "--retain-seconds", "3600", log=log
    )
    try:
        wait_for(
            lambda: any(r["action"] == "replaced" for r in journal_rows(out, source.name)),
            240,
            "the whole slide to replace the half copy",
            proc,
            log,
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 1, log.read_text()[-3000:]  # the half slide failed its QC: said, and...
    finally:
        done.set()
        for thread in threads:
            thread.join()
        if proc.poll() is None:
            proc.kill()
    assert not errors, errors
    text = log.read_text()
    assert f"{source.name}: CHANGED after its copy ({half} -> {len(data)} bytes" in text
    assert f"{source.name}: REPLACED" in text
    assert f"{source.name}: QC failed: {source.name}: truncated file" in text
    rows = per_slide(results.read_results(runs(out)[-1] / "results.tsv"))
    assert rows[source.name][0] in results.JUDGED  # ...the whole slide passed it

    # whole, exactly once; the source untouched
    assert sorted(p.name for p in shared.iterdir()) == [source.name]
    assert sha256(shared / source.name) == whole_sha and sha256(source) == whole_sha
    events = [(r["action"], r["sha256"], r["source_removed"]) for r in journal_rows(out, source.name)]
    assert events[0] == ("copied", half_sha, "False") and events[-1] == ("replaced", whole_sha, "False")
    assert all(removed == "False" for _, _, removed in events)

    # later, once retained long enough (here: at once) and QC'd, the source goes, its hashes checked again
    proc = run_script(
        INTAKE,
        "--scanner-dir",
        str(scanner),
        "--shared-dir",
        str(shared),
        "--output-dir",
        str(out),
        "--once",
        "--settle-seconds",
        "0.2",
        "--retain-seconds",
        "0",
        "--executor",
        "local",
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    assert list(scanner.iterdir()) == [] and sha256(shared / source.name) == whole_sha
    last = journal_rows(out, source.name)[-1]
    assert (last["action"], last["sha256"], last["source_removed"]) == ("released", whole_sha, "True")


def test_a_held_source_is_released_only_when_retained_checked_and_unchanged(folders, demo_slides):
    scanner, shared, out = folders
    source = scanner / demo_slides[0].name
    shutil.copy2(demo_slides[0], source)
    original = sha256(demo_slides[0])
    [candidate] = intake.find_slides(scanner)
    outcome = intake.copy_and_verify(candidate, shared)
    record = intake.hold(out, candidate, outcome)
    t0 = record.copied_at

    def release(at):
        return {o.name: o for o in intake.release_sources(out, retain_seconds=600, now=at)}[source.name]

    assert release(t0 + 10).action == "held" and "more" in release(t0 + 10).detail  # within its retention
    assert release(t0 + 700).action == "held" and "QC'd" in release(t0 + 700).detail  # not checked yet
    intake.mark_checked(out, {record.dest: intake.QC_ERROR})
    assert release(t0 + 700).action == "held" and "could not read" in release(t0 + 700).detail
    intake.mark_checked(out, {record.dest: intake.QC_OK})
    (shared / source.name).write_bytes(b"someone changed the shared copy")
    assert release(t0 + 700).action == "error" and source.exists()  # the shared copy is not whole: kept
    assert intake.held_records(out) == {}  # forgotten: the next pass copies it again

    shutil.copy2(demo_slides[0], shared / source.name)
    record = intake.hold(out, candidate, outcome, qc=intake.QC_OK)
    with source.open("ab") as handle:  # the scanner wrote more after the copy
        handle.write(b"more")
    assert release(record.copied_at + 700).action == "held" and source.exists()
    assert intake.to_copy(intake.find_slides(scanner), intake.held_records(out))[1]  # seen as changed
    source.write_bytes(demo_slides[0].read_bytes())
    os.utime(source, ns=(candidate.mtime_ns, candidate.mtime_ns))
    released = release(record.copied_at + 700)
    assert released.action == "released" and released.source_removed and not source.exists()
    assert sha256(shared / source.name) == original


def _copy_fails(monkeypatch, real):
    def copy_file(source, dest, bwlimit=0):
        Path(dest).write_bytes(b"the first bytes")
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(intake, "copy_file", copy_file)


def _disk_full(monkeypatch, real):
    def copy_file(source, dest, bwlimit=0):
        Path(dest).write_bytes(Path(source.path).read_bytes()[:1000])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(intake, "copy_file", copy_file)


def _verify_fails(monkeypatch, real):  # the copy reads back different from what was read from the source
    monkeypatch.setattr(
        intake,
        "sha256_file",
        lambda path, drop_cache=False, limit=None: (
            "0" * 64 if Path(path).name.endswith(".partial") else real.sha256_file(path, drop_cache, limit)
        ),
    )


def _rename_fails(monkeypatch, real):
    def place(partial, final):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(intake, "place", place)


def _journal_full(monkeypatch, real):  # the output drive is full: the slide cannot be queued for QC
    def add_pending(output_dir, shared_path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(intake, "add_pending", add_pending)


def _record_fails(monkeypatch, real):  # placed and verified, but the hold record cannot be written
    def hold(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(intake, "hold", hold)


@pytest.mark.parametrize(
    "fault",
    [_copy_fails, _disk_full, _verify_fails, _rename_fails, _journal_full, _record_fails],
    ids=lambda f: f.__name__.strip("_"),
)
def test_every_failure_before_the_copy_is_verified_in_place_keeps_the_source(
    module, folders, demo_slides, monkeypatch, fault
):
    scanner, shared, out = folders
    original = demo_slides[0].read_bytes()
    original_sha = hashlib.sha256(original).hexdigest()
    source = scanner / demo_slides[0].name
    source.write_bytes(original)
    import types

    fault(monkeypatch, types.SimpleNamespace(sha256_file=intake.sha256_file))
    assert once(module, scanner, shared, out, "--copy-retries", "1", "--retry-delay", "0") == 1
    assert hashlib.sha256(source.read_bytes()).hexdigest() == original_sha  # the source, byte for byte
    assert not partials(shared)
    placed = shared / source.name
    assert not placed.exists() or hashlib.sha256(placed.read_bytes()).hexdigest() == original_sha
    assert [p.name for p in shared.iterdir()] == ([source.name] if placed.exists() else [])
    row = intake_rows(runs(out)[-1])[source.name]
    assert row["action"] == "error" and row["source_removed"] == "False"

    monkeypatch.undo()  # the fault is gone: the next pass finishes the job
    assert once(module, scanner, shared, out) == 0
    assert sha256(shared / source.name) == original_sha and not source.exists()


BAD_OPTIONS = [
    (["--once", "--run-name", "../elsewhere"], "--run-name"),
    (["--interval", "5", "--run-name", "x"], "--run-name"),
    (["--once", "--retain-seconds", "-1"], "--retain-seconds"),
    (["--once", "--settle-seconds", "nan"], "--settle-seconds"),
    (["--once", "--marker", ""], "--marker"),
    (["--once", "--marker", "a/b"], "--marker"),
    (["--once", "--workers", "0"], "--workers"),
    (["--once", "--tile-threads", "0"], "--tile-threads"),
    (["--once", "--blur-max", "-1"], "--blur-max"),
    (["--interval", "0"], "--interval"),
    (["--interval", "nan"], "--interval"),
    (["--once", "--output-dir", "/dev/null/out"], "--output-dir"),
    (["--interval", "1", "--max-cycles", "0"], "--max-cycles"),
    (["--once", "--copy-retries", "-1"], "--copy-retries"),
    (["--once", "--bwlimit", "-5"], "--bwlimit"),
    (["--once", "--file-type", "."], "--file-type"),
]


@pytest.mark.parametrize("args, message", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_a_bad_option_touches_no_file(module, folders, demo_slides, capsys, args, message):
    from slideqc import cli

    scanner, shared, out = folders
    shutil.copy2(demo_slides[0], scanner / demo_slides[0].name)
    before = {p.name: (sha256(p), p.stat().st_mtime_ns) for p in scanner.iterdir()}
    code = cli.run_main(
        module.main,
        [
            "--scanner-dir",
            str(scanner),
            "--shared-dir",
            str(shared),
            "--output-dir",
            str(out),
            "--settle-seconds",
            "0",
            *args,
        ],
    )
    assert code == 2 and message in capsys.readouterr().err
    assert {p.name: (sha256(p), p.stat().st_mtime_ns) for p in scanner.iterdir()} == before
    assert list(shared.iterdir()) == [] and not out.exists()


def test_an_unreadable_hold_record_counts_its_source_as_new_and_nothing_is_copied_twice(module, folders, demo_slides):
    scanner, shared, out = folders
    slide = demo_slides[0]
    shutil.copy2(slide, scanner / slide.name)
    assert once(module, scanner, shared, out, "--retain-seconds", "600") == 0
    assert (scanner / slide.name).exists()  # held
    [entry] = intake.held_dir(out).glob("*.json")
    entry.write_text("{cut short")
    assert once(module, scanner, shared, out) == 0  # found again: the same sha256 is there, so held again, released
    assert not (scanner / slide.name).exists()
    assert sorted(p.name for p in shared.iterdir()) == [slide.name] and sha256(shared / slide.name) == sha256(slide)
