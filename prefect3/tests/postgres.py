"""A throwaway PostgreSQL for a Prefect server: its own data folder, 127.0.0.1 and a free port.

Used by the tests (prefect3/tests/conftest.py) and the load test
(benchmarks/prefect3_server_scale.py --database postgresql). Debian's
`postgresql` package keeps initdb and pg_ctl in /usr/lib/postgresql/<version>/bin,
off PATH. PostgreSQL refuses to run as root: as root, every command runs as
the `postgres` user the package creates (runuser), in a folder it owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

OS_USER = "postgres"
DB_USER = "prefect"
DATABASE = "prefect"
INSTALL = "apt-get install postgresql (make test installs it when run as root)"


def bin_dir() -> Path:
    """The newest PostgreSQL's programs: Debian's folder, else wherever initdb is on PATH."""

    def version(folder: str) -> tuple:  # 9.6 < 15
        return tuple(int(part) for part in Path(folder).parent.name.split(".") if part.isdigit())

    folders = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version)
    if folders:
        return Path(folders[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise RuntimeError(f"PostgreSQL is not installed (no initdb): {INSTALL}")


class Postgres:
    """``initdb`` into a new folder, ``pg_ctl start`` on 127.0.0.1:``port``, a database for Prefect; stop() ends it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bin = bin_dir()
        self.as_root = os.geteuid() == 0
        # Under /tmp, not a pytest folder: the postgres user cannot enter root's private folders.
        self.folder = Path(tempfile.mkdtemp(prefix="slideqc-postgres-"))
        self.data = self.folder / "data"
        self.log = self.folder / "postgres.log"
        self.url = f"postgresql+asyncpg://{DB_USER}@127.0.0.1:{port}/{DATABASE}"
        self.started = False
        if self.as_root:
            shutil.chown(self.folder, OS_USER, OS_USER)

    def _run(self, program: str, *args: str) -> str:
        command = [str(self.bin / program), *args]
        if self.as_root:
            command = ["runuser", "-u", OS_USER, "--", *command]
        proc = subprocess.run(command, cwd=self.folder, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{program} failed ({proc.returncode}): {proc.stdout[-1500:]}{proc.stderr[-1500:]}{log}")
        return proc.stdout

    def start(self) -> Postgres:
        # Trust on loopback only, for a throwaway cluster: the README's lab set-up uses a password.
        self._run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            DB_USER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-sync",
        )
        self._run(
            "pg_ctl",
            "--pgdata",
            str(self.data),
            "--log",
            str(self.log),
            "--wait",
            "start",
            "--options",
            f"-h 127.0.0.1 -p {self.port} -k {self.folder}",
        )
        self.started = True
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_USER, DATABASE)
        return self

    def query(self, sql: str) -> str:
        """``sql`` run by psql on the Prefect database; its rows, unaligned."""
        return self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            DB_USER,
            "-d",
            DATABASE,
            "--no-align",
            "--tuples-only",
            "--command",
            sql,
        )

    def pid(self) -> int | None:
        """The postmaster's process id (its first line of postmaster.pid), while it runs."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> None:
        if self.started:
            self._run("pg_ctl", "--pgdata", str(self.data), "--mode", "fast", "--wait", "stop")
            self.started = False
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> Postgres:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()
