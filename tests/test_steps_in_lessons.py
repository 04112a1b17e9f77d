"""The QC steps are one ordered list (slideqc.qc.STEPS): every lesson calls each of them, in that order.

The lessons keep one visible task per step (that is the workshop); a lesson, an extra or a
Prefect 3 flow that left a step out, or called the steps in another order, would check slides
differently from the others. Read from the source: for each lesson, which QC step function each
of its tasks calls, then the order in which its flow (or pipeline.py's check_slide) calls the tasks.
The mapped flows hand every step's results to the task that makes the rows, by step name.
The runners that are not lessons run the list itself (qc.run_steps, run.check_slide).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from slideqc import qc
from tests.helpers import ROOT

STEP_FUNCTIONS = {step.function.__name__: step.name for step in qc.STEPS}
STEP_NAMES = [step.name for step in qc.STEPS]
# Every lesson whose flow calls the steps itself (the intake runs the mapped lesson's flow).
LESSONS = sorted(
    [
        "pipeline.py",
        *(str(p.relative_to(ROOT)) for p in (ROOT / "solutions").glob("pipeline_*.py")),
        *(str(p.relative_to(ROOT)) for p in (ROOT / "extras").glob("pipeline_prefect_*.py")),
        "prefect3/qc_flow.py",
        "prefect3/qc_flow_parallel.py",
    ]
)
# The runners that are not lessons: they run the list, never a step by hand.
RUNNERS = [
    "pipeline_parallel.py",
    "benchmarks/run_benchmark.py",
    "benchmarks/profile_qc.py",
    "benchmarks/batch_scale.py",
    "docs/make_pictures.py",
]


def parse(path: str | Path) -> ast.Module:
    return ast.parse((ROOT / path).read_text(encoding="utf-8"))


def called_names(node: ast.AST) -> list[tuple[tuple[int, int], str]]:
    """(position, name) of every call in ``node``: ``f(...)``, ``f.map(...)``, ``f.submit(...)``, ``qc.f(...)``."""
    found = []
    for call in ast.walk(node):
        if not isinstance(call, ast.Call):
            continue
        func = call.func
        while isinstance(func, ast.Attribute) and func.attr in ("map", "submit", "with_options"):
            func = func.value
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if name:
            found.append(((call.lineno, call.col_offset), name))
        # apply_map(check_rescan, ...) calls its first argument.
        if isinstance(call.func, ast.Name) and call.func.id == "apply_map" and isinstance(call.args[0], ast.Name):
            found.append(((call.lineno, call.col_offset + 1), call.args[0].id))
    return sorted(found)


def functions_of(module: ast.Module) -> dict[str, ast.FunctionDef]:
    return {node.name: node for node in module.body if isinstance(node, ast.FunctionDef)}


def steps_called(name: str, functions: dict[str, ast.FunctionDef], seen: frozenset = frozenset()) -> list[str]:
    """The QC steps a lesson's function calls, through its own plain functions (check_rescan)."""
    if name in STEP_FUNCTIONS:
        return [STEP_FUNCTIONS[name]]
    if name not in functions or name in seen:
        return []
    return [
        step for _, called in called_names(functions[name]) for step in steps_called(called, functions, seen | {name})
    ]


def flow_bodies(module: ast.Module) -> list[ast.AST]:
    """Where a lesson calls its steps: `with Flow(...)` blocks, @flow functions, pipeline.py's check_slide."""
    bodies = []
    for node in module.body:
        if isinstance(node, ast.With) and any(
            isinstance(item.context_expr, ast.Call) and getattr(item.context_expr.func, "id", "") == "Flow"
            for item in node.items
        ):
            bodies.append(node)
        elif isinstance(node, ast.FunctionDef) and (
            node.name == "check_slide"
            or any(isinstance(d, ast.Call) and getattr(d.func, "id", "") == "flow" for d in node.decorator_list)
        ):
            bodies.append(node)
    return bodies


def lesson_functions(path: str) -> dict[str, ast.FunctionDef]:
    """The lesson's functions, and those it imports from another lesson (prefect3/qc_flow_parallel.py)."""
    module = parse(path)
    functions = functions_of(module)
    for node in module.body:
        if isinstance(node, ast.ImportFrom) and node.module in ("prefect3.qc_flow", "pipeline"):
            source = functions_of(parse(node.module.replace(".", "/") + ".py"))
            functions |= {alias.name: source[alias.name] for alias in node.names if alias.name in source}
    return functions


def aliases(body: ast.AST, functions: dict) -> dict[str, str]:
    """`load = load_image.with_options(...) if redo else load_image`: load stands for load_image."""
    found = {}
    for node in ast.walk(body):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            names = {n.id for n in ast.walk(node.value) if isinstance(n, ast.Name) and n.id in functions}
            if len(names) == 1 and not isinstance(node.value, ast.Call | ast.Subscript):
                found[node.targets[0].id] = names.pop()
            elif len(names) == 1 and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute):
                if node.value.func.attr == "with_options":
                    found[node.targets[0].id] = names.pop()
    return found


def step_order(path: str) -> list[list[str]]:
    """For each flow of the lesson, the QC steps in the order its body calls them."""
    functions = lesson_functions(path)
    orders = []
    for body in flow_bodies(parse(path)):
        alias = aliases(body, functions)
        order: list[str] = []
        for _, name in called_names(body):
            for step in steps_called(alias.get(name, name), functions):
                if not order or order[-1] != step:
                    order.append(step)
        orders.append(order)
    return orders


@pytest.mark.parametrize("lesson", LESSONS)
def test_a_lesson_calls_every_step_in_order(lesson):
    # A flow that calls no QC step at all is a parent of flow runs (extras/pipeline_prefect_flow_of_flows.py):
    # the lesson's other flow has the steps.
    orders = [order for order in step_order(lesson) if order]
    assert orders, f"{lesson}: no flow (and no check_slide) calls a QC step"
    for order in orders:
        assert order == STEP_NAMES, f"{lesson} calls the steps {order}, the QC's list is {STEP_NAMES}"


def gathered_by_name(lesson: str) -> list[list[str]]:
    """The step names of each call in the lesson's flows that hands on its steps' results by name (save=...)."""
    found = []
    for body in flow_bodies(parse(lesson)):
        for call in ast.walk(body):
            names = [keyword.arg for keyword in call.keywords] if isinstance(call, ast.Call) else []
            if "save" in names:
                found.append([name for name in names if name in (*STEP_NAMES, "save")])
    return found


@pytest.mark.parametrize("lesson", LESSONS)
def test_the_rows_are_gathered_by_step_name(lesson):
    """Where a flow hands its steps' results on by name (load=..., save=...), it names every step."""
    for names in gathered_by_name(lesson):
        assert names == [*STEP_NAMES, "save"], f"{lesson}: rows gathered from {names}"


def test_the_mapped_flows_gather_by_name():
    for lesson in (
        "solutions/pipeline_prefect_mapped.py",
        "solutions/pipeline_prefect_parallel.py",
        "extras/pipeline_prefect_batches.py",
        "extras/pipeline_prefect_server_rows.py",
        "prefect3/qc_flow_parallel.py",
    ):
        assert gathered_by_name(lesson), f"{lesson} hands on its steps' results by name"


@pytest.mark.parametrize("runner", RUNNERS)
def test_a_runner_runs_the_list_not_a_step_by_hand(runner):
    calls = {name for _, name in called_names(parse(runner))}
    assert calls & {"run_steps", "check_slide"} or "qc.STEPS" in (ROOT / runner).read_text(encoding="utf-8")
    by_hand = sorted(calls & set(STEP_FUNCTIONS))
    assert by_hand == [], f"{runner} calls {by_hand} itself: a step added to qc.STEPS would not reach it"


def test_the_check_sees_a_step_left_out(tmp_path, monkeypatch):
    """The check itself: a lesson without its artefact task, or with two steps swapped, is caught."""
    source = (ROOT / "solutions/pipeline_prefect.py").read_text(encoding="utf-8")
    left_out = source.replace(
        "    artefacts = find_artefacts(tissue, artefact_work_size, fold_max)\n",
        "    artefacts = tissue\n",
    )
    swapped = source.replace(
        "    artefacts = find_artefacts(tissue, artefact_work_size, fold_max)\n"
        "    blurry = identify_blurry_regions(artefacts, blur_radius, blur_threshold, tile_threads)\n",
        "    artefacts = identify_blurry_regions(tissue, blur_radius, blur_threshold, tile_threads)\n"
        "    blurry = find_artefacts(artefacts, artefact_work_size, fold_max)\n",
    )
    assert left_out != source and swapped != source
    for name, text in (("left_out.py", left_out), ("swapped.py", swapped)):
        (tmp_path / name).write_text(text, encoding="utf-8")
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    assert step_order("left_out.py") == [["load", "tissue", "blur"]]
    assert step_order("swapped.py") == [["load", "tissue", "blur", "artefacts"]]
