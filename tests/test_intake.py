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


@pytest.fixture
def folders(tmp_path):
    scanner, shared, out = tmp_path / "scanner", tmp_path / "shared", tmp_path / "out"
    scanner.mkdir()
    shared.mkdir()
    return scanner, shared, out


@pytest.fixture(scope="module")
def module():
    return load_solution("extras/pipeline_intake.py")


def once(module, scanner, shared, out, *extra) -> int:
    return module.main(["--scanner-dir", str(scanner), "--shared-dir", str(shared), "--output-dir", str(out),
                        "--once", "--settle-seconds", "0.5", "--executor", "local", *extra])


def popen(scanner, shared, out, *extra, log: Path) -> subprocess.Popen:
    env = dict(os.environ)
    return subprocess.Popen([sys.executable, str(SCRIPT), "--scanner-dir", str(scanner), "--shared-dir", str(shared),
                             "--output-dir", str(out), "--executor", "local", *extra],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)


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


def test_moves_complete_slides_verifies_and_checks_them_and_waits_for_one_being_written(module, folders,
                                                                                        demo_slides):
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
                chunk = data[written: min(written + 4096, len(data) - 1)]
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
    assert {n: r["action"] for n, r in moved.items()} == {complete[0].name: "copied", complete[1].name: "copied",
                                                           late.name: "waiting"}
    assert all(moved[s.name]["sha256"] == sha256(s) for s in complete)
    rows = per_slide(results.read_results(run1 / "results.tsv"))
    assert set(rows) == {s.name for s in complete} and all(r[0] == "ok" for r in rows.values())
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
    proc = run_script(INTAKE, "--scanner-dir", str(scanner), "--shared-dir", str(shared), "--output-dir", str(out),
                      "--once", "--settle-seconds", "0.2", "--executor", "local", timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 0, text[-3000:]
    kept_as = intake.conflict_name(first.name, sha256(first))
    assert f"{first.name}: CONFLICT: {first.name} on the shared drive has other content: kept as {kept_as}" in text
    assert "same.svs: skipped: already on the shared drive as same.svs (same sha256): not copied again" in text
    assert "same.svs: removed from the scanner folder" in text
    assert f"{kept_as}: QC ok" in text


def test_copy_errors_are_retried_and_a_copy_that_keeps_failing_keeps_its_source(module, folders, demo_slides,
                                                                                monkeypatch):
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
    proc = run_script(INTAKE, "--scanner-dir", str(scanner), "--shared-dir", str(shared), "--output-dir", str(out),
                      "--once", "--settle-seconds", "0.2", "--executor", "local", timeout=300)
    text = proc.stdout + proc.stderr
    assert proc.returncode == 1, text[-3000:]  # the random "slide" fails QC; the demo slide is fine
    assert "a copy interrupted in an earlier pass" in text
    assert not partials(shared)
    assert sorted(p.name for p in shared.iterdir()) == sorted([big.name, small.name])
    assert sha256(shared / big.name) == big_sha and sha256(shared / small.name) == sha256(small)
    assert list(scanner.iterdir()) == []
    rows = per_slide(results.read_results(runs(out)[-1] / "results.tsv"))
    assert rows[small.name][0] == "ok" and rows[big.name][0] == "error"


def test_scheduled_runs_two_cycles_and_stops(folders, demo_slides, tmp_path):
    scanner, shared, out = folders
    shutil.copy2(demo_slides[0], scanner / demo_slides[0].name)
    log = tmp_path / "intake.log"
    proc = popen(scanner, shared, out, "--interval", "1", "--max-cycles", "2", "--settle-seconds", "0.2", log=log)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "intake cycle 1: done: 1 copied" in text and "intake cycle 2: done: no slides" in text
    assert "intake cycle 3" not in text and "intake done after 2 cycle(s)" in text
    assert "Waiting for next scheduled run" in text  # Prefect's own schedule loop ran it
    assert sha256(shared / demo_slides[0].name) == sha256(demo_slides[0])


def test_sigterm_finishes_the_copy_under_way_and_exits_cleanly(folders, demo_slides, tmp_path):
    scanner, shared, out = folders
    for slide in demo_slides:
        shutil.copy2(slide, scanner / slide.name)
    log = tmp_path / "intake.log"
    # about 2.5 s per slide at 2 MB/s: the signal comes while the first one is copying
    proc = popen(scanner, shared, out, "--interval", "1", "--settle-seconds", "0.2", "--bwlimit", "2", log=log)
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


@pytest.mark.parametrize("args, message", [
    (["--once", "--interval", "5"], "not allowed with"),
    ([], "one of the arguments --interval --once is required"),
    (["--once", "--max-cycles", "2"], "--max-cycles"),
    (["--interval", "5", "--run-name", "x"], "--run-name"),
    (["--once", "--data-dir", "data"], "--scanner-dir"),
])
def test_usage_errors(folders, args, message):
    scanner, shared, out = folders
    proc = run_script(INTAKE, "--scanner-dir", str(scanner), "--shared-dir", str(shared), *args, timeout=120)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_flow_graph():
    flow = load_solution("extras/pipeline_intake.py").flow
    assert flow.name == "Slide intake"
    edges = {(e.upstream_task.name, e.downstream_task.name, e.mapped) for e in flow.edges}
    for edge in [("clean_up", "find_candidates", False), ("find_candidates", "wait_until_complete", False),
                 ("wait_until_complete", "copy_and_verify", True), ("copy_and_verify", "remove_source", True),
                 ("remove_source", "qc_arrived", False)]:
        assert edge in edges, edge


def test_a_source_that_cannot_be_removed_is_reported_and_its_slide_still_checked(module, folders, demo_slides,
                                                                                 monkeypatch):
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
    assert per_slide(results.read_results(run / "results.tsv"))[slide.name][0] == "ok"
    monkeypatch.undo()
    assert once(module, scanner, shared, out) == 0  # next pass: same sha256 on the shared drive, source removed
    assert not (scanner / slide.name).exists()
