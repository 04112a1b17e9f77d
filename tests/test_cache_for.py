"""Extra "cache for a while": on its IntervalSchedule the second pass's QC steps come from Prefect's cache
(Cached, not computed again); a changed setting or a changed slide file is computed again."""

from __future__ import annotations

import shutil
from datetime import timedelta

import prefect
import pytest

from slideqc import qc
from slideqc.output import results
from tests.helpers import load_solution, only_run_dir

LESSON = "extras/pipeline_prefect_cached.py"
EXPENSIVE = ["load_image", "tissue_segmentation_simple", "find_artefacts", "identify_blurry_regions"]
# What a slide's row found (not where its pictures went, nor how long its steps took).
FINDINGS = ["status", "tissue_fraction", "percent_blurry", "rescan", "fold_percent", "ink_percent"]
STEP_FUNCTIONS = {
    "load_slide": "load",
    "segment_tissue": "tissue",
    "find_artefacts": "artefacts",
    "detect_blur": "blur",
}


@pytest.fixture
def lesson():
    """The lesson, with Prefect's in-memory cache of this process empty before and after."""
    prefect.context["caches"] = {}
    yield load_solution(LESSON)
    prefect.context["caches"] = {}


@pytest.fixture
def computed(monkeypatch) -> list[tuple[str, str]]:
    """(step, slide file name) for every QC step that really runs."""
    calls = []
    for function, step in STEP_FUNCTIONS.items():
        real = getattr(qc, function)

        def counted(s, *args, _real=real, _step=step, **kwargs):
            name = s.name if hasattr(s, "name") else str(s).rsplit("/", 1)[-1]
            calls.append((_step, name))
            return _real(s, *args, **kwargs)

        monkeypatch.setattr(qc, function, counted)
    return calls


@pytest.fixture
def slides(tmp_path, demo_slides):
    folder = tmp_path / "data"
    folder.mkdir()
    for slide in demo_slides[:2]:
        shutil.copy2(slide, folder / slide.name)
    return sorted(folder.glob("*.svs"))


def task_states(flow, state, name):
    (task,) = flow.get_tasks(name=name)
    return state.result[task].map_states


def test_the_second_scheduled_pass_comes_from_the_cache(lesson, computed, slides, tmp_path, monkeypatch):
    monkeypatch.setattr(lesson, "INTERVAL", timedelta(seconds=6))  # a pass of two small slides takes ~1 s
    passes = []
    real_run = lesson.flow.run

    def run(*args, **kwargs):
        assert kwargs.get("run_on_schedule") is True and lesson.flow.schedule is not None
        state = real_run(*args, **kwargs)
        passes.append(state)
        return state

    monkeypatch.setattr(lesson.flow, "run", run)
    rows_written = []
    monkeypatch.setattr(
        lesson.prefect1, "rows_for", lambda *a, real=lesson.prefect1.rows_for: rows_written.append(1) or real(*a)
    )
    out = tmp_path / "out"
    args = ["--data-dir", str(slides[0].parent), "--output-dir", str(out), "--executor", "threads", "--workers", "2"]
    assert lesson.main(args) == 0

    assert len(passes) == 1 and len(rows_written) == 2  # one flow.run, two scheduled flow runs
    # Every step ran once per slide, in the first pass: the second computed nothing...
    names = [p.name for p in slides]
    assert sorted(computed) == sorted((step, name) for step in STEP_FUNCTIONS.values() for name in names)
    # ...and its expensive steps ended Cached, their results those of the first pass.
    last = passes[0]
    for name in EXPENSIVE:
        states = task_states(lesson.flow, last, name)
        assert [s.is_cached() for s in states] == [True] * len(slides), (name, states)
    for name in ["slide_file", "save_results"]:
        assert not any(s.is_cached() for s in task_states(lesson.flow, last, name))  # cheap: run each pass
    rows = results.read_results(only_run_dir(out) / "results.tsv")
    assert [r["file_name"] for r in rows] == names
    assert all(r["status"] in results.JUDGED for r in rows)


def test_a_changed_setting_or_slide_file_is_computed_again(lesson, computed, slides, tmp_path, demo_slides):
    def run(**settings):
        computed.clear()
        run_dir = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
        run_dir.mkdir()
        state = lesson.flow.run(parameters=dict(file_names=[str(p) for p in slides], run_dir=str(run_dir), **settings))
        assert state.is_successful()
        rows = results.read_results(run_dir / "results.tsv")
        return state, {r["file_name"]: {k: v for k, v in r.items() if k in FINDINGS} for r in rows}

    first, first_rows = run()
    assert len(computed) == 4 * len(slides)
    again, again_rows = run()
    assert computed == [] and again_rows == first_rows

    # Another blur radius: only the blur step's inputs changed, so only it runs again (for every slide).
    changed, _ = run(blur_radius=5.0)
    assert sorted(computed) == sorted(("blur", p.name) for p in slides)
    assert [s.is_cached() for s in task_states(lesson.flow, changed, "identify_blurry_regions")] == [True, True]

    # The first slide's file replaced by another slide (~70 % blurry) under its name: that slide, every step.
    shutil.copyfile(demo_slides[2], slides[0])
    _, rows = run()
    assert sorted(computed) == sorted((step, slides[0].name) for step in STEP_FUNCTIONS.values())
    assert rows[slides[0].name]["status"] == results.RESCAN
    assert float(rows[slides[0].name]["percent_blurry"]) > 50 > float(first_rows[slides[0].name]["percent_blurry"])
    assert rows[slides[1].name] == first_rows[slides[1].name]


def test_without_the_cache_every_pass_computes(lesson, computed, slides, tmp_path):
    """The check itself: the same flow with cache_for off computes every step in every flow run."""
    for task in lesson.flow.get_tasks():
        task.cache_for = None
    for _ in range(2):
        state = lesson.flow.run(parameters=dict(file_names=[str(p) for p in slides], run_dir=str(tmp_path)))
        assert state.is_successful()
        assert not any(s.is_cached() for s in task_states(lesson.flow, state, "load_image"))
    assert len(computed) == 2 * 4 * len(slides)
