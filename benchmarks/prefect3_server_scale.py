"""The Prefect 3 server path at lab scale: a batch of slides through a real server, against the mapped flow.

    .venv-prefect3/bin/python benchmarks/prefect3_server_scale.py                  # 128 slides, SQLite; ~3 min
    .venv-prefect3/bin/python benchmarks/prefect3_server_scale.py --database postgresql
    .venv-prefect3/bin/python benchmarks/prefect3_server_scale.py --batch-size 1 --no-write

What a lab runs, on 127.0.0.1 and free ports, with a throwaway PREFECT_HOME:
`prefect server start` (on SQLite in that home, or on a throwaway PostgreSQL:
initdb, pg_ctl), `prefect3/serve.py`, then `prefect3/run_deployments.py` on N
synthetic slides (the batch_scale.py slides under N names), timed from start to
exit. Then, on the same slides, `prefect3/qc_flow_parallel.py --workers 2`
twice: against the same server, and as a user starts it without one (its own
temporary server). Counted in the server's log: ERROR lines and `database is
locked`; sampled: the peak memory of the server's process tree (with
PostgreSQL's processes when it runs on PostgreSQL).

docs/benchmark.md keeps one row per database and --batch-size between ``<!-- prefect3-server:start -->``
and ``<!-- prefect3-server:end -->``; --no-write only prints.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import batch_scale as bs  # the sibling scripts: slides under N names, a free port, the docs section
import run_benchmark as rb

from slideqc import synthetic

ROOT = rb.ROOT
SECTION = "prefect3-server"
HEADING = "## The Prefect 3 server path at lab scale"
BIN = Path(sys.executable).parent
ROW = re.compile(r"^\| (sqlite|postgresql) \|")
# Measured on main before the batches (one run per slide, all made at once, Prefect's 10 s poll).
BEFORE = (
    "Before (main at ec1d268, SQLite, 128 slides): a flow run per slide, all 128 made at once, "
    "serve.py polling every 10 s: 5.14 s per slide; runs ended in pairs every 10 s, the last waited "
    "640 s to start, and the server logged 1,216 `database is locked` errors marking the waiting runs "
    "Late. Now: runs of 32 slides of the mapped flow (--batch-size), made two at a time as the serving "
    "slots free (--limit), serve.py polling every 2 s (--poll-seconds): no run waits long enough to be "
    "marked Late. The row with 1 slide per flow run is the same windowing without the batches."
)


def wait_for(check, what: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.5)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f} s:\n{log.read_text(errors='replace')[-2000:]}")


def get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.read()
    except urllib.error.HTTPError:
        return None


class Background:
    """A process started in its own session, logging to a file; stopped (its children too) on exit."""

    def __init__(self, command: list[str], log: Path, env: dict, cwd: Path) -> None:
        self.log = log
        with open(log, "wb") as handle:
            self.proc = subprocess.Popen(
                command,
                cwd=cwd,
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def __enter__(self) -> Background:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(10)


def environment(home: Path, port: int, database_url: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    return env


def measure(args, slides: list[Path], scratch: Path) -> dict:
    home = scratch / "prefect-home"
    home.mkdir()
    port = bs.free_port()
    with ExitStack() as stack:
        database_url, also = None, []
        if args.database == "postgresql":
            from prefect3.tests.postgres import Postgres

            postgres = stack.enter_context(Postgres(bs.free_port()))
            database_url, also = postgres.url, [postgres.pid()]
        env = environment(home, port, database_url)
        server = stack.enter_context(
            Background(
                [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                scratch / "server.log",
                env,
                scratch,
            )
        )
        api = env["PREFECT_API_URL"]
        wait_for(lambda: get(f"{api}/health") == b"true", "prefect server start", server.proc, server.log)
        peaks, stop = [0.0, 0.0], threading.Event()
        sampler = threading.Thread(target=rb._sample_memory, args=([server.proc.pid, *also], stop, peaks), daemon=True)
        sampler.start()
        serve = stack.enter_context(
            Background(
                [
                    sys.executable,
                    str(ROOT / "prefect3" / "serve.py"),
                    "--limit",
                    str(args.limit),
                    "--workers",
                    str(args.workers),
                    "--poll-seconds",
                    str(args.poll_seconds),
                ],
                scratch / "serve.log",
                env,
                scratch,
            )
        )
        batch = urllib.parse.quote("Image QC (mapped)") + "/qc-batch"
        wait_for(lambda: get(f"{api}/deployments/name/{batch}"), "prefect3/serve.py", serve.proc, serve.log)

        server_run = rb.run_config(
            rb.Config("server", "prefect3/run_deployments.py", ("--batch-size", str(args.batch_size)), True, ""),
            slides,
            scratch,
            env=env,
        )
        during_server = server.log.read_text(errors="replace")  # its errors apart from the mapped flow's
        mapped = rb.Config("mapped", "prefect3/qc_flow_parallel.py", ("--workers", str(args.workers)), True, "")
        mapped_same = rb.run_config(mapped, slides, scratch, env=env)
        stop.set()
        sampler.join()
    # As a user runs it: no server, so its own temporary one, on SQLite (the PostgreSQL is stopped).
    own_env = {k: v for k, v in env.items() if k not in ("PREFECT_API_URL", "PREFECT_API_DATABASE_CONNECTION_URL")}
    mapped_own = rb.run_config(mapped, slides, scratch, env=own_env)
    during_mapped = server.log.read_text(errors="replace")[len(during_server) :]
    errors = {
        what: [line for line in log.splitlines() if re.search(r"\bERROR\b", line)]
        for what, log in (("server path", during_server), ("mapped flow", during_mapped))
    }
    for what, lines in errors.items():
        if lines:
            print(f"server log, ERROR lines during the {what}:", *lines[:10], sep="\n  ", flush=True)
    return dict(
        server=server_run.seconds,
        mapped_same=mapped_same.seconds,
        mapped_own=mapped_own.seconds,
        errors=len(errors["server path"]),
        locked=during_server.count("database is locked"),
        errors_mapped=len(errors["mapped flow"]),
        locked_mapped=during_mapped.count("database is locked"),
        peak_mb=peaks[1],
    )


def render_row(args, m: dict) -> str:
    n = args.slides
    return (
        f"| {args.database} | {args.batch_size} | {m['server'] / n:.3f} | {m['mapped_same'] / n:.3f} "
        f"| {m['server'] / m['mapped_same']:.2f} | {m['mapped_own'] / n:.3f} | {m['errors']} / {m['locked']} "
        f"| {m['errors_mapped']} / {m['locked_mapped']} | {m['peak_mb']:.0f} |"
    )


def write(args, row: str) -> None:
    """One row per database and batch size in the section: this run's replaces the same one's."""
    marker = f"<!-- {SECTION}:start -->"
    current = args.out.read_text() if args.out.exists() else ""
    rows = []
    if marker in current:
        rows = [
            line
            for line in current.split(marker, 1)[1].split(f"<!-- {SECTION}:end -->")[0].splitlines()
            if ROW.match(line) and not line.startswith(f"| {args.database} | {args.batch_size} |")
        ]
    rows = sorted([*rows, row], key=lambda line: (line.split("|")[1].strip() != "sqlite", -int(line.split("|")[2])))
    text = (
        "\n".join(
            [
                f"`.venv-prefect3/bin/python benchmarks/prefect3_server_scale.py --slides {args.slides} --database DB` on "
                f"{rb.machine_line()}: {bs.SLIDE_KINDS} synthetic 8192x6144 slides under {args.slides} names; serve.py "
                f"--limit {args.limit} --workers {args.workers} --poll-seconds {args.poll_seconds}. Seconds per slide: wall "
                "time from start to exit over the slides; the mapped flow against the same running server, and as a user "
                "starts it without one (its own temporary server). Server log lines and the server's peak memory "
                "(with PostgreSQL's processes), MB, over both runs against it.",
                "",
                "| database | slides per flow run | server path, s per slide | mapped flow, same server | server / mapped "
                "| mapped flow, own server | server log while the server path ran: ERROR lines / `database is locked` "
                "| the same while the mapped flow ran | server peak MB |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
                *rows,
                "",
                BEFORE,
            ]
        )
        + "\n"
    )
    bs.write_section(args.out, text, SECTION, HEADING)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--slides", type=int, default=128, help="slides in the batch")
    parser.add_argument(
        "--database",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="the server's database: SQLite in PREFECT_HOME, or a throwaway PostgreSQL",
    )
    parser.add_argument("--batch-size", type=int, default=32, help="run_deployments.py --batch-size")
    parser.add_argument("--limit", type=int, default=2, help="serve.py --limit")
    parser.add_argument("--workers", type=int, default=2, help="serve.py --workers, and the mapped flow's")
    parser.add_argument("--poll-seconds", type=int, default=2, help="serve.py --poll-seconds")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=ROOT / "benchmarks" / "data" / "batch",
        help="where the 6 slides are made or reused",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmark.md")
    parser.add_argument("--no-write", action="store_true", help="print the row, leave --out as it is")
    parser.add_argument("--keep-logs", type=Path, help="copy the server's and serve.py's logs into this folder")
    args = parser.parse_args(argv)
    if min(args.slides, args.batch_size, args.limit, args.workers, args.poll_seconds) < 1:
        parser.error("--slides, --batch-size, --limit, --workers and --poll-seconds must be >= 1")
    kinds = synthetic.write_set(synthetic.demo_specs(bs.SLIDE_KINDS), args.data_dir)
    with tempfile.TemporaryDirectory(prefix="prefect3-server-scale-") as scratch_name:
        scratch = Path(scratch_name)
        slides = bs.make_batch(kinds, args.slides, scratch / "slides")
        try:
            measured = measure(args, slides, scratch)
        finally:
            if args.keep_logs:
                args.keep_logs.mkdir(parents=True, exist_ok=True)
                for log in ("server.log", "serve.log"):
                    if (scratch / log).exists():
                        shutil.copy2(scratch / log, args.keep_logs / log)
    row = render_row(args, measured)
    print(row, flush=True)
    if not args.no_write:
        write(args, row)
        print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
