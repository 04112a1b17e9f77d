"""A slide's results row from Prefect 1's task states or mapped results, and the settings of the run under way.

Rows are found by what the states hold, never by a task's position: the task that
returned a row made it; else the step that failed with its own exception says why
(the steps after it fail only with TRIGGERFAIL, which says that something before
them failed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import prefect
from prefect.engine import signals
from prefect.engine.state import State

from slideqc.output import results
from slideqc.settings import QCSettings


def row_for(file_name: str | Path, step_results: Iterable[Any]) -> results.SlideResult:
    """Return a slide's row from what its steps returned (in any order): the row, or the step's own error.

    A failed step's result is its exception; the steps after it fail with TRIGGERFAIL,
    which says only that something before them failed.
    """
    found = list(step_results)
    row = next((r for r in found if isinstance(r, results.SlideResult)), None)
    if row is not None:
        return row
    cause = next((r for r in found if isinstance(r, BaseException) and not isinstance(r, signals.TRIGGERFAIL)), None)
    if cause is None:
        return results.error_result(file_name, "a QC step did not run because an earlier one failed")
    return results.error_row(file_name, cause)


def rows_for(file_names: Sequence[str | Path], steps: Mapping[str, Sequence[Any]]) -> list[results.SlideResult]:
    """Each slide's row from its mapped steps' results, given by step name (``dict(load=..., ..., save=...)``)."""
    per_step = [
        list(values) if isinstance(values, list | tuple) else [values] * len(file_names) for values in steps.values()
    ]
    return [row_for(name, [values[i] for values in per_step]) for i, name in enumerate(file_names)]


def _value(state: State) -> Any:
    if state.is_failed() and not isinstance(state.result, BaseException):
        return signals.FAIL(state.message)
    return state.result


def slide_row(file_name: str | Path, flow_state: State) -> results.SlideResult:
    """Return a slide's row from its flow run's task states (exercises 1 and 2): see :func:`row_for`."""
    task_states = flow_state.result if isinstance(flow_state.result, dict) else {}
    return row_for(file_name, [_value(state) for state in task_states.values()])


def gathered_rows(flow_state: State, gather, file_names) -> list[results.SlideResult]:
    """Return the rows the mapped flow's gathering task returned; error rows for all when it failed itself."""
    state = flow_state.result.get(gather) if isinstance(flow_state.result, dict) else None
    if state is not None and state.is_successful() and isinstance(state.result, list):
        return state.result
    why = state.message if state is not None else flow_state.message
    return [results.error_result(name, f"the flow did not finish: {' '.join(str(why).split())}") for name in file_names]


def run_settings() -> QCSettings:
    """Return the QC settings of the flow run under way: its Parameters (a run from the server passes them all)."""
    return QCSettings.from_values(prefect.context.get("parameters", {}))
