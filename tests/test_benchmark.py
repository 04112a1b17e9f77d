"""The benchmark script runs end to end on tiny slides and writes a report of the right shape.

No timing is asserted: timings belong to docs/benchmark.md, not to tests.
"""

from __future__ import annotations

import re

from tests.helpers import run_script

CONFIGS = [
    "plain-serial",
    "plain-serial-1-core",
    "plain-parallel",
    "prefect-serial",
    "prefect-threads",
    "prefect-threads-fixed",
]


def _table(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first table under ``heading``, as cells."""
    lines = text.split(heading, 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[start + 2 : end]]


def test_benchmark_smoke(tmp_path):
    out = tmp_path / "benchmark.md"
    kept = "Hand-written analysis that a rerun must keep.\n"
    out.write_text(
        f"# old\n<!-- notes:start -->\n{kept}<!-- notes:end -->\n"
        "<!-- big-slides:start -->\n| big | 1 |\n<!-- big-slides:end -->\n",
        encoding="utf-8",
    )
    proc = run_script(
        "benchmarks/run_benchmark.py",
        "--size",
        "small",
        "--slides",
        "2",
        "--repeats",
        "1",
        "--workers",
        "1",
        "--data-dir",
        str(tmp_path / "slides"),
        "--out",
        str(out),
        "--configs",
        *CONFIGS,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = out.read_text(encoding="utf-8")

    table = _table(text, "## The workshop's table, measured")
    assert [row[0] for row in table] == CONFIGS
    for row in table:
        median, low_high, ratio, speedup, further, further_ratio, peak_one, peak_all = row[2:]
        low, high = map(float, low_high.split("–"))
        assert low <= float(median) <= high
        assert float(ratio) > 0 and float(speedup.rstrip("×")) > 0
        float(further)  # the second slide's cost beyond the one-slide run: noise may make it negative
        # A number or a dash: on tiny slides the further slide's cost can round to 0.00 (falsy) or below.
        assert further_ratio == "–" or re.fullmatch(r"-?\d+\.\d\d", further_ratio)
        assert 0 < float(peak_one) <= float(peak_all)
    assert table[0][4] == "1.00" and table[2][4] == "1.00"  # each baseline against itself

    targets = _table(text, "## Targets")
    # serial, threads, threads with the opt-in fix (its stock bound), speed-up, decode, artefacts, memory
    assert [row[0].split(" ≤")[0] for row in targets[:3]] == [
        "Prefect serial / plain serial",
        "prefect-threads / plain parallel",
        "(opt-in fix) prefect-threads-fixed / plain parallel",
    ]
    assert len(targets) == 7
    assert targets[5][0] == "artefact step ≤ 15 % of a slide's QC (worst slide)"
    verdict = re.compile(r"met|missed by \d+ %")
    assert all(verdict.fullmatch(row[2]) for row in targets)  # the whole run's
    # per further slide: judged where there is a figure (a noisy tiny run may give none)
    assert all(
        verdict.fullmatch(row[4]) if row[3] != "–" and float(row[3].rstrip("×")) > 0 else row[4] == "–"
        for row in targets
    )
    assert "over plain-serial-1-core" in targets[3][0]

    slides = _table(text, "## Per slide")
    assert [row[0] for row in slides] == ["tiny_01_blur00.svs", "tiny_02_blur30.svs"]
    for row in slides:
        decode, qc, ratio, artefacts = map(float, row[4:8])
        assert decode > 0 and qc > 0 and ratio > 0 and 0 < artefacts < qc
        share, half = float(row[8].rstrip(" %")), 0.0005  # the cells are rounded to 1 ms
        assert 100 * (artefacts - half) / (qc + half) - 0.05 <= share <= 100 * (artefacts + half) / (qc - half) + 0.05

    assert f"<!-- notes:start -->\n{kept}<!-- notes:end -->" in text  # kept verbatim
    assert "<!-- big-slides:start -->\n| big | 1 |\n<!-- big-slides:end -->" in text


def test_benchmark_rejects_bad_usage(tmp_path):
    proc = run_script("benchmarks/run_benchmark.py", "--repeats", "0", "--out", str(tmp_path / "b.md"))
    assert proc.returncode == 2 and "--repeats must be at least 1" in proc.stderr
    proc = run_script("benchmarks/run_benchmark.py", "--configs", "nonsense", "--out", str(tmp_path / "b.md"))
    assert proc.returncode == 2 and "nonsense" in proc.stderr
    assert not (tmp_path / "b.md").exists()


def test_prefect_task_overhead_script_reports_both_variants():
    proc = run_script("benchmarks/prefect_task_overhead.py", "--runs", "2", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 6, proc.stdout
    for flow, block in zip(("serial", "mapped, 2 threads"), (lines[:3], lines[3:]), strict=True):
        for variant, line in zip(("stock", "fixed"), block[:2], strict=True):
            assert re.fullmatch(rf"{flow},\s+{variant}\s+[\d.]+ ms per flow run,\s+[\d.]+ ms per task run", line)
        assert re.fullmatch(rf"{flow},\s+ratio\s+[\d.]+x", block[2])
