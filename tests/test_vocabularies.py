"""The closed vocabularies are Literal types; each tuple of values is derived from its type, and what
goes with each value (a constant, a label, a colour, a step) is there for every value."""

from typing import get_args

from slideqc import algorithms, cli, qc
from slideqc.output import report, results


def test_each_tuple_of_values_is_its_literal_type():
    assert algorithms.MEASURES == get_args(algorithms.Measure) == ("laplacian", "normalized")
    assert results.STATUSES == get_args(results.Status)
    assert report.KINDS == get_args(report.Kind)
    assert cli.EXECUTORS == get_args(cli.Executor)
    assert qc.STEP_NAMES == get_args(qc.StepName)


def test_every_value_has_what_goes_with_it():
    assert algorithms.DEFAULT_MEASURE in algorithms.MEASURES
    assert set(algorithms.DEFAULT_THRESHOLDS) == set(algorithms.MEASURES)
    assert {results.OK, results.RESCAN, results.RECUT, results.CANNOT_JUDGE, results.ERROR} == set(results.STATUSES)
    assert set(results.JUDGED) <= set(results.STATUSES)
    assert set(report.KIND_LABELS) == set(report.ROW_COLOURS) == set(report.MARK_COLOURS) == set(report.KINDS)
    assert tuple(step.name for step in qc.STEPS) == qc.STEP_NAMES
