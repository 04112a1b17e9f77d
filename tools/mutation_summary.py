"""The mutation score per module, from mutmut's results (run `make mutation` first).

    python tools/mutation_summary.py            # a Markdown table on stdout

A mutant is *killed* when a test failed with it in place, *survived* when every test passed,
*no tests* when no selected test runs its function; timeouts and segfaults count as killed (the
mutant hung or crashed the tests: a test noticed). Score = killed / (killed + survived), per module and overall.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

KILLED = {"killed", "timeout", "segfault"}


def module_of(mutant: str) -> str:
    """``slideqc.settings.x_name__mutmut_3`` -> ``slideqc.settings``."""
    parts = mutant.split(".")
    return ".".join(p for p in parts[:-1])


def main() -> int:
    mutmut = str(Path(sys.executable).with_name("mutmut"))
    listing = subprocess.run([mutmut, "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    counts: dict[str, Counter] = defaultdict(Counter)
    for line in listing.splitlines():
        if ": " not in line:
            continue
        mutant, status = (part.strip() for part in line.rsplit(": ", 1))
        counts[module_of(mutant)][status] += 1
    print("| module | killed | survived | no tests | not checked | score |")
    print("|---|---:|---:|---:|---:|---:|")
    total = Counter()
    for module in sorted(counts):
        c = counts[module]
        killed, survived = sum(c[s] for s in KILLED), c["survived"]
        total.update(
            {"killed": killed, "survived": survived, "no tests": c["no tests"], "not checked": c["not checked"]}
        )
        score = f"{100 * killed / (killed + survived):.0f} %" if killed + survived else "-"
        print(f"| {module} | {killed} | {survived} | {c['no tests']} | {c['not checked']} | {score} |")
    checked = total["killed"] + total["survived"]
    overall = f"{100 * total['killed'] / checked:.0f} %" if checked else "-"
    print(
        f"| all | {total['killed']} | {total['survived']} | {total['no tests']} | {total['not checked']} | {overall} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
