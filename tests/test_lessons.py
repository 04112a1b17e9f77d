"""The lessons are exactly their exercises: each file is its predecessor plus the README's steps for it.

For every lesson: the diff against its predecessor stays within a stated bound of changed lines,
every Prefect name the diff adds is named in that exercise's README steps, the Prefect lines the
exercise teaches are in the lesson file itself, and the README prints the command that shows the diff.
"""

from __future__ import annotations

import ast
import difflib
import re

import pytest

from tests.helpers import ROOT

# (predecessor, lesson, README sections whose steps make the difference, most changed lines allowed).
# The bounds are today's diffs, as ruff format writes them (measured on every lesson when its bound was
# set), with a little room: a lesson that grows past them carries more than its steps.
LESSONS = [
    ("pipeline.py", "solutions/pipeline_prefect.py", ["Exercise 1"], 69),
    ("solutions/pipeline_prefect.py", "solutions/pipeline_prefect_server.py", ["Exercise 2"], 33),
    ("solutions/pipeline_prefect.py", "solutions/pipeline_prefect_mapped.py", ["Exercise 3"], 59),
    ("solutions/pipeline_prefect_mapped.py", "solutions/pipeline_prefect_parallel.py", ["Exercise 4"], 25),
    ("solutions/pipeline_prefect_parallel.py", "solutions/pipeline_prefect_parallel_server.py", ["Exercise 5"], 39),
    ("solutions/pipeline_prefect.py", "extras/pipeline_prefect_retries.py", ["Extra: retries"], 12),
    ("solutions/pipeline_prefect.py", "extras/pipeline_prefect_persisted.py", ["Extra: persisted results"], 27),
    ("solutions/pipeline_prefect.py", "extras/pipeline_prefect_fast_context.py", ["Extra: Prefect's own cost"], 14),
    ("solutions/pipeline_prefect.py", "extras/pipeline_prefect_log_stdout.py", ["Extra: logs from print"], 12),
    ("solutions/pipeline_prefect_parallel.py", "extras/pipeline_prefect_cached.py", ["Extra: cache for a while"], 48),
    (
        "solutions/pipeline_prefect_parallel.py",
        "extras/pipeline_prefect_batches.py",
        ["Extra: a folder of hundreds of slides"],
        67,
    ),
    # A second flow, not the QC: its diff shows the QC steps replaced by reading their persisted results.
    (
        "extras/pipeline_prefect_persisted.py",
        "extras/report_from_persisted.py",
        ["Extra: a second flow reads the first one's results"],
        135,
    ),
    (
        "solutions/pipeline_prefect_server.py",
        "extras/pipeline_prefect_server_rows.py",
        ["Extra: a results row per server flow run"],
        20,
    ),
    (
        "solutions/pipeline_prefect_parallel.py",
        "extras/pipeline_prefect_notify.py",
        ["Extra: notifications to a chat webhook"],
        24,
    ),
    (
        "solutions/pipeline_prefect_parallel.py",
        "extras/pipeline_prefect_dask_tiles.py",
        ["Extra: Dask inside a task, on a cluster"],
        64,
    ),
    (
        "solutions/pipeline_prefect_parallel_server.py",
        "extras/pipeline_prefect_flow_of_flows.py",
        ["Extra: a flow of flows"],
        46,
    ),
]
# Prefect ideas written without a name imported from prefect: keyword arguments and methods.
PREFECT_WORDS = [
    "upstream_tasks",
    "skip_on_upstream_skip",
    "trigger",
    "target",
    "result",
    "checkpointing",
    "set_reference_tasks",
    "executor",
    "register",
    "create_project",
    "create_flow_run",
    "map",
    "add_task",
    "max_retries",
    "retry_delay",
    "retry_on",
    "get_cloud_url",
    "log_stdout",
    "cache_for",
    "cache_validator",
    "schedule",
    "run_on_schedule",
    "state_handlers",
]
# What each exercise teaches, as it must read in the lesson file itself (issue "Lessons you can see").
TEACHES = {
    "solutions/pipeline_prefect.py": ["@task", "with Flow(", "Parameter(", "with case(", "flow.run(parameters="],
    "solutions/pipeline_prefect_server.py": ['flow.register(project_name="Image QC")', "Client()", ".create_flow_run("],
    "solutions/pipeline_prefect_mapped.py": [".map(", "unmapped(", "apply_map(", "trigger=all_finished"],
    "solutions/pipeline_prefect_parallel.py": [
        "executor=executor",
        "LocalDaskExecutor(scheduler=",
        "num_workers=",
        "DaskExecutor(address=",
    ],
    "solutions/pipeline_prefect_parallel_server.py": [
        "flow.executor = executor",
        "LocalDaskExecutor(scheduler=",
        'flow.register(project_name="Image QC")',
    ],
}


def readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def section(title: str) -> str:
    """A README section: from its '### <title>' heading to the next heading."""
    match = re.search(rf"^### {re.escape(title)}[^\n]*\n(.*?)(?=^#{{2,3}} )", readme(), re.S | re.M)
    assert match, f"README has no section '### {title}'"
    return match.group(1)


def steps(title: str) -> str:
    """The numbered steps of a README section."""
    return "\n".join(re.findall(r"^\d+\. .*(?:\n {3}.*)*", section(title), re.M))


def prefect_names(path: str) -> set[str]:
    """Names the lesson imports from Prefect, and `prefect.<attribute>`s it uses."""
    names = set()
    for node in ast.walk(ast.parse((ROOT / path).read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "prefect":
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "prefect":
            names.add(node.attr)
    return names


def changed_lines(before: str, after: str) -> tuple[int, list[str], list[str]]:
    """How many lines changed, and the added and the removed lines (comments cut off)."""
    old = (ROOT / before).read_text(encoding="utf-8").splitlines()
    new = (ROOT / after).read_text(encoding="utf-8").splitlines()
    diff = [
        line
        for line in difflib.unified_diff(old, new, lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    added = [line[1:].split("#")[0] for line in diff if line.startswith("+")]
    removed = [line[1:].split("#")[0] for line in diff if line.startswith("-")]
    return len(diff), added, removed


def words_in(names: set[str], lines: list[str]) -> set[str]:
    text = "\n".join(lines)
    return {w for w in names if re.search(rf"\b{re.escape(w)}\b", text)}


@pytest.mark.parametrize("before, lesson, sections, bound", LESSONS, ids=[lesson for _, lesson, _, _ in LESSONS])
def test_a_lesson_is_its_predecessor_plus_its_steps(before, lesson, sections, bound):
    count, added, removed = changed_lines(before, lesson)
    assert count <= bound, f"{lesson}: {count} changed lines against {before} (at most {bound})"
    taught = "\n".join(steps(title) for title in sections)
    assert taught, f"README sections {sections} have no numbered steps"
    # New to this lesson: Prefect names on its added lines that were neither on the lines it
    # changed nor imported by its predecessor (an import line rewritten to add one name adds one).
    words = prefect_names(lesson) | set(PREFECT_WORDS)
    new = words_in(words, added) - words_in(words, removed) - prefect_names(before)
    missing = sorted(w for w in new if not re.search(rf"\b{re.escape(w)}\b", taught))
    assert missing == [], f"{lesson} adds Prefect names its README steps do not mention: {missing}"


# The project's names a lesson calls (``cli.check_usage``, ``prefect1.run_main``, ``DEFAULTS.blur_max``): plain
# Python, but an attendee writing the lesson from its steps must find each one named.
PROJECT_NAME = re.compile(r"\b(cli|prefect1|qc|run|results|DEFAULTS)\.(\w+)")


@pytest.mark.parametrize("before, lesson, sections, bound", LESSONS, ids=[lesson for _, lesson, _, _ in LESSONS])
def test_every_project_name_the_diff_adds_is_in_its_steps(before, lesson, sections, bound):
    """Each project name on the diff's added lines is named by the exercise's steps, or introduced earlier in the README."""
    _, added, removed = changed_lines(before, lesson)
    new = set(PROJECT_NAME.findall("\n".join(added))) - set(PROJECT_NAME.findall("\n".join(removed)))
    taught = "\n".join(steps(title) for title in sections)
    earlier = readme()[: min(readme().index(f"### {title}") for title in sections)]
    missing = sorted(
        f"{owner}.{name}"
        for owner, name in new
        if f"{owner}.{name}" not in taught + earlier and not (owner == "DEFAULTS" and "DEFAULTS" in taught)
    )
    assert missing == [], f"{lesson} calls project names its README steps do not name: {missing}"


@pytest.mark.parametrize("before, lesson, sections, bound", LESSONS, ids=[lesson for _, lesson, _, _ in LESSONS])
def test_the_readme_shows_the_diff_command(before, lesson, sections, bound):
    assert f"diff -u {before} {lesson}" in section(sections[0])


@pytest.mark.parametrize("lesson", sorted(TEACHES))
def test_the_prefect_lines_are_in_the_lesson_itself(lesson):
    # As the formatter may write a call: its arguments on the lines after the "(".
    text = re.sub(r"\(\s+", "(", (ROOT / lesson).read_text(encoding="utf-8"))
    assert [line for line in TEACHES[lesson] if line not in text] == []
