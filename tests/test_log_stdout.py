"""Extra "logs from print": the blur step's print is a record of the flow run's log, not a line on stdout."""

from __future__ import annotations

import logging

from slideqc import prefect1
from slideqc.output import results
from tests.helpers import load_solution

LESSON = "extras/pipeline_prefect_log_stdout.py"


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def run_logged(flow, **parameters):
    """The flow run's state, and every record Prefect's loggers made during it."""
    handler = Records()
    prefect_logger = logging.getLogger("prefect")
    prefect_logger.addHandler(handler)
    try:
        return flow.run(parameters=parameters), handler.records
    finally:
        prefect_logger.removeHandler(handler)


def test_the_printed_line_is_in_the_flow_runs_log(demo_slides, tmp_path, capsys):
    module = load_solution(LESSON)
    slide = demo_slides[1]  # ~30 % blurry
    state, records = run_logged(module.flow, file_name=str(slide), run_dir=str(tmp_path))
    assert state.is_successful()
    row = prefect1.slide_row(slide, state)
    assert row.status == results.RESCAN
    # What the task printed: the percent of the row the flow saved.
    line = f"{slide.name}: {row.percent_blurry:.1f} % of the tissue is blurry"
    printed = [r for r in records if r.getMessage().strip() == line]
    assert len(printed) == 1, [r.getMessage() for r in records]
    record = printed[0]
    # A record of the flow run's log, at INFO, made inside the blur task's run.
    assert record.levelno == logging.INFO
    assert record.name.startswith("prefect.")
    assert getattr(record, "task_name", None) == "identify_blurry_regions"
    assert getattr(record, "flow_name", None) == "Image QC"
    # Redirected, not copied: the print never reached stdout itself.
    assert line not in capsys.readouterr().out


def test_without_log_stdout_the_print_is_not_in_the_log(demo_slides, tmp_path, capsys):
    """The check itself: the same task with log_stdout off prints to stdout and logs nothing of it."""
    module = load_solution(LESSON)
    # Calling a task in the `with Flow` block adds a copy of it: change the flow's copy.
    (blur,) = module.flow.get_tasks(name="identify_blurry_regions")
    assert blur.log_stdout
    blur.log_stdout = False
    state, records = run_logged(module.flow, file_name=str(demo_slides[1]), run_dir=str(tmp_path))
    assert state.is_successful()
    assert not [r for r in records if r.getMessage().strip().endswith("% of the tissue is blurry")]
    assert f"{demo_slides[1].name}: " in capsys.readouterr().out
