"""How a script ends: what stops a whole run is said in one line with its exit code, Ctrl-C included."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import threading
import time
from typing import NoReturn

from BaseImage import display_name
from slideqc import qc
from slideqc.cli.errors import EXIT_CANNOT_WRITE, EXIT_INTERRUPTED, EXIT_NO_SERVER, EXIT_USAGE, NoService, UsageError
from slideqc.cli.runs import Run, rows_so_far
from slideqc.output.files import RUN_FILE


def cannot_write_message(error: OSError) -> str:
    """One line for an OSError that ended a run: the path, what happened, what to do."""
    path = display_name(str(error.filename)) if error.filename else "a file"
    if error.errno in qc.NO_ROOM:
        advice = "free some space there, or pass another --output-dir, and run again"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "check its permissions (the user running this needs to write there), or pass another --output-dir"
    else:
        advice = "check the disk and the path, then run again"
    return f"error: cannot write {path}: {error.strerror or error}; {advice}. {rows_so_far()}"


def run_main(main, argv: list[str] | None = None) -> int:
    """Run a script's ``main(argv)``; what stops a whole run ends in one line on stderr and its exit code.

    Usage errors exit 2; an output that cannot be written (OSError: a full disk,
    no permission) exits 4; Ctrl-C exits 130 at once (:func:`_exit_now`). No traceback: what was written
    stays valid (every file is written atomically) and run.json says the run did not finish.
    """
    _notice_interrupts()
    try:
        return main(argv)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        _remove_if_empty(Run.active)
        return EXIT_USAGE
    except NoService as error:
        print(f"error: {error}", file=sys.stderr)
        _remove_if_empty(Run.active)
        return EXIT_NO_SERVER
    except KeyboardInterrupt:
        print(f"\ninterrupted: {rows_so_far()}; run again to check every slide", file=sys.stderr)
        _exit_now(EXIT_INTERRUPTED)
    except OSError as error:
        print(cannot_write_message(error), file=sys.stderr)
        return EXIT_CANNOT_WRITE
    except Exception as error:
        if not (_interrupted or _while_interrupted(error)):
            raise
        # An orchestrator that, on Ctrl-C, failed to report it (Prefect 3: its temporary server got the
        # Ctrl-C too): still an interrupt.
        print(f"\ninterrupted: {rows_so_far()}; run again to check every slide", file=sys.stderr)
        _exit_now(EXIT_INTERRUPTED)
    finally:
        Run.active = None


_interrupted = False  # set by the first Ctrl-C in this process


INTERRUPT_GRACE_SECONDS = 10  # after Ctrl-C, the run ends within this many seconds


def _exit_if_still_running(seconds: float) -> None:
    """Ctrl-C's guarantee: a run still going ``seconds`` after it ends there, in one line.

    The KeyboardInterrupt normally ends the run well before. Prefect 3, though, first reports
    the crashed flow run to its temporary server, which the same Ctrl-C stopped, and retries
    for minutes.
    """
    time.sleep(seconds)
    print(f"\ninterrupted: {rows_so_far()}; run again to check every slide", file=sys.stderr)
    _exit_now(EXIT_INTERRUPTED)


def _exit_now(code: int) -> NoReturn:
    """End the process at once after Ctrl-C, its streams flushed, without Python's exit handlers.

    Everything the run wrote is already whole (written and renamed in place). A normal exit
    could hang: Prefect 1 cancels its worker threads by raising KeyboardInterrupt inside
    them, and one stopped while holding a logging handler's lock leaves logging.shutdown()
    waiting forever; Prefect 3 waits at exit for its log queues to reach the temporary
    server that the same Ctrl-C stopped.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _notice_interrupts() -> None:
    """Note Ctrl-C before raising KeyboardInterrupt: an orchestrator may turn it into another error."""
    import signal

    def interrupted(signum, frame):
        global _interrupted
        if not _interrupted:  # the first Ctrl-C: whatever an orchestrator does next, the run ends soon
            threading.Thread(target=_exit_if_still_running, args=(INTERRUPT_GRACE_SECONDS,), daemon=True).start()
        _interrupted = True
        # On Ctrl-C Prefect 1's LocalDaskExecutor cancels its threads by raising KeyboardInterrupt in
        # each of them; an idle thread pool worker then logs it as "Exception in worker" with a
        # traceback. The interrupt is reported once, in one line (run_main): that echo is dropped.
        logging.getLogger("concurrent.futures").disabled = True
        signal.default_int_handler(signum, frame)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, interrupted)


def _while_interrupted(error: BaseException | None) -> bool:
    """Whether ``error`` was raised while a KeyboardInterrupt was being handled (in its context chain)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, KeyboardInterrupt):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _remove_if_empty(run: Run | None) -> None:
    """Remove the folder of a run stopped before its first row (only its run.json was written)."""
    if run is None or run.writer.rows:
        return
    with contextlib.suppress(OSError):
        (run.folder / RUN_FILE).unlink()
        run.folder.rmdir()
