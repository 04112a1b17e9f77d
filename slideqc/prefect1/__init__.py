"""What the Prefect 1.x lessons share beyond Prefect itself: plain Python around Prefect's objects.

From the modules that do one job each:

- :mod:`~slideqc.prefect1.rows`: a slide's results row from its flow run's task states
  (exercises 1, 2) or from its mapped steps' results by step name (exercises 3 to 5), and
  the QC settings of the flow run under way, for its report;
- :mod:`~slideqc.prefect1.probes`: a quick check that a Prefect server answers (exercises 2
  and 5), and that a Dask scheduler answers with workers that import the QC (``--address``);
- for the extra lessons: persisted results written atomically (:mod:`~slideqc.prefect1.persisted`),
  a results row per server flow run (:mod:`~slideqc.prefect1.server_rows`), messages to a
  chat webhook (:mod:`~slideqc.prefect1.notify`), and an opt-in fix of
  Prefect 1.4.1's per-task overhead (:mod:`~slideqc.prefect1.fast_context`).

``python -m slideqc.prefect1 --check-server`` asks the server, ``--check-docker`` whether one can run
here, and ``--check-params params.json -p FLOW.py`` checks a parameter file for ``prefect run
--param-file`` (:mod:`~slideqc.prefect1.params`): all in :mod:`~slideqc.prefect1.__main__`.
Nothing here changes Prefect when it is imported.
"""

from slideqc.output.cache import default_cache_dir
from slideqc.prefect1.fast_context import skip_identical_config_merge
from slideqc.prefect1.notify import notify_run
from slideqc.prefect1.persisted import AtomicLocalResult, clear_cache, slide_target
from slideqc.prefect1.probes import (
    SCHEDULER_COMMANDS,
    SERVER_COMMANDS,
    NoServer,
    check_scheduler,
    check_server,
    run_main,
    worker_import_problem,
)
from slideqc.prefect1.rows import gathered_rows, row_for, rows_for, run_settings, slide_row
from slideqc.prefect1.server_rows import ROWS_DIRNAME, save_row, saved_rows

__all__ = [
    "ROWS_DIRNAME",
    "SCHEDULER_COMMANDS",
    "SERVER_COMMANDS",
    "AtomicLocalResult",
    "NoServer",
    "check_scheduler",
    "check_server",
    "clear_cache",
    "default_cache_dir",
    "gathered_rows",
    "notify_run",
    "row_for",
    "rows_for",
    "run_main",
    "run_settings",
    "save_row",
    "saved_rows",
    "skip_identical_config_merge",
    "slide_row",
    "slide_target",
    "worker_import_problem",
]
