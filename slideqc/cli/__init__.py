"""The command-line vocabulary every script shares, and the start and end of every run.

What the lessons use, from the modules that do one job each:

- :mod:`~slideqc.cli.options`: the options (``parse_args``, ``build_parser``) and their checks;
- :mod:`~slideqc.cli.runs`: a run's folder, rows, summary and exit code (``start_run``, ``Run``);
- :mod:`~slideqc.cli.ending`: how a script ends (``run_main``): one line, an exit code, Ctrl-C;
- :mod:`~slideqc.cli.logs`: one log line per bad slide (``setup_logging``);
- :mod:`~slideqc.cli.progress`, :mod:`~slideqc.cli.processes`: the progress bar, workers that end with
  their script.

Exit codes (all scripts):
  0    every slide was checked and judged
  1    some slides failed (each has an error row in results.tsv)
  2    invalid usage: a bad parameter, a missing, unreadable or empty data folder,
       an existing --run-name without --overwrite
  3    no Prefect server (server scripts) or Dask scheduler (--address) answers
  4    the outputs cannot be written (a full disk, no permission): one line names the path;
       the rows written so far stay in results.tsv, run.json says "running"
  5    every slide was checked, but some cannot be judged (status "cannot judge": no tissue,
       or too coarse a pixel size for blur); none failed
  130  interrupted (Ctrl-C): the rows so far stay in results.tsv, run.json says "running"
"""

from slideqc.cli.ending import cannot_write_message, run_main
from slideqc.cli.errors import (
    EPILOG,
    EXIT_CANNOT_WRITE,
    EXIT_INTERRUPTED,
    EXIT_NO_SERVER,
    EXIT_OK,
    EXIT_SLIDES_FAILED,
    EXIT_UNJUDGED,
    EXIT_USAGE,
    NoService,
    UsageError,
)
from slideqc.cli.logs import OneLineSlideErrors, dask_setup, quiet_slide_tracebacks, setup_logging
from slideqc.cli.options import (
    EXECUTORS,
    Executor,
    add_batch_arguments,
    add_executor_arguments,
    add_persisted_arguments,
    build_parser,
    check_usage,
    chunks,
    option_name,
    parse_args,
    refuse_undeclared,
    settings_from_args,
    slide_paths,
    tile_threads,
)
from slideqc.cli.processes import end_with_parent
from slideqc.cli.progress import Progress
from slideqc.cli.runs import Run, finish_run, rows_so_far, start_run, summary_table

__all__ = [
    "EPILOG",
    "EXECUTORS",
    "EXIT_CANNOT_WRITE",
    "EXIT_INTERRUPTED",
    "EXIT_NO_SERVER",
    "EXIT_OK",
    "EXIT_SLIDES_FAILED",
    "EXIT_UNJUDGED",
    "EXIT_USAGE",
    "Executor",
    "NoService",
    "OneLineSlideErrors",
    "Progress",
    "Run",
    "UsageError",
    "add_batch_arguments",
    "add_executor_arguments",
    "add_persisted_arguments",
    "build_parser",
    "cannot_write_message",
    "check_usage",
    "chunks",
    "dask_setup",
    "end_with_parent",
    "finish_run",
    "option_name",
    "parse_args",
    "quiet_slide_tracebacks",
    "refuse_undeclared",
    "rows_so_far",
    "run_main",
    "settings_from_args",
    "setup_logging",
    "slide_paths",
    "start_run",
    "summary_table",
    "tile_threads",
]
