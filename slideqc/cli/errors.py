"""The exit codes every script shares, and the two errors that end a run before its slides."""

from __future__ import annotations

EXIT_OK, EXIT_SLIDES_FAILED, EXIT_USAGE, EXIT_NO_SERVER, EXIT_CANNOT_WRITE, EXIT_UNJUDGED = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130
EPILOG = (
    "Exit codes: 0 all slides checked and judged, 1 some slides failed, 2 invalid usage, "
    "3 no Prefect server or Dask scheduler answers, 4 cannot write the outputs (full disk, permissions), "
    "5 some slides cannot be judged (no tissue, too coarse a pixel size) and none failed, "
    '130 interrupted. Runs stopped by 4 or 130 keep their rows in results.tsv; run.json says "running".'
)


class UsageError(Exception):
    """Invalid usage: reported in one line, exit code 2."""


class NoService(Exception):
    """No Prefect server or Dask scheduler answers (or cannot run the QC): one message, exit code 3."""
