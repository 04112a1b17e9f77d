"""The README cannot rot: every shell command it shows as runnable offline is run here.

Convention: each line of a ```bash block is a command, run from the project root
(a copy of it). A block right after an HTML comment starting with
``<!-- not run by the tests`` is skipped; the comment says why (it needs Docker,
the network, or it installs software, which `make test` has already done).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

SKIP_MARK = "<!-- not run by the tests"
# Commands run elsewhere: `make test` is this very suite.
ALREADY_RUNNING = {"make test"}
BLOCK = re.compile(r"(?P<before>[^\n]*)\n```bash\n(?P<body>.*?)```", re.S)


def readme_blocks() -> list[tuple[bool, list[str]]]:
    """(runnable, commands) for every bash block of README.md, in order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = []
    for match in BLOCK.finditer(text):
        before = text[: match.start("body")].rstrip().rsplit("\n", 2)
        runnable = not any(line.strip().startswith(SKIP_MARK) for line in before[-2:])
        commands = [line.split(" #")[0].strip() for line in match.group("body").splitlines()]
        blocks.append((runnable, [c for c in commands if c and not c.startswith("#")]))
    return blocks


def test_readme_has_runnable_and_skipped_blocks():
    blocks = readme_blocks()
    assert any(runnable for runnable, _ in blocks)
    assert all(commands for _, commands in blocks)


def _project_copy(dest: Path) -> Path:
    """The project's files (tracked and new, not ignored) copied into ``dest``."""
    listing = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.splitlines()
    for name in listing:
        source = ROOT / name
        if source.is_file() and not name.startswith(("tests/", "prefect3/tests/")):
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest


def test_readme_commands_run(tmp_path):
    project = _project_copy(tmp_path / "project")
    # `make demo` finds the venv `make test` made already up to date (its stamp is newer
    # than the requirements), so the README's first command runs without reinstalling.
    (project / ".venv").symlink_to(ROOT / ".venv")
    for requirements in project.glob("requirements*.txt"):
        os.utime(requirements, (0, 0))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": str(project)}
    ran = 0
    for runnable, commands in readme_blocks():
        if not runnable:
            continue
        for command in commands:
            if command in ALREADY_RUNNING:
                continue
            proc = subprocess.run(["bash", "-c", command], cwd=project, env=env, capture_output=True, text=True,
                                  timeout=900)
            # Exit 1 means "some slides failed", which a README example may show on purpose.
            assert proc.returncode in (0, 1), f"README command failed: {command}\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}"
            ran += 1
    assert ran >= 3


def test_readme_links_exist():
    """Every file or folder the README links to is in the project, the lessons' scripts among them."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", text)}
    local = {t for t in targets if t and not re.match(r"[a-z]+://", t)}
    missing = sorted(t for t in local if not (ROOT / t).exists())
    assert not missing, f"README links to missing files: {missing}"
    lessons = {"pipeline.py", "pipeline_parallel.py", "solutions/pipeline_prefect.py",
               "solutions/pipeline_prefect_parallel.py", "solutions/pipeline_prefect_server.py",
               "solutions/pipeline_prefect_parallel_server.py", "solutions/pipeline_intake.py",
               "PrefectHelloWorld.ipynb", "docs/pipeline_overview.png", "docs/flow_serial.png",
               "docs/flow_parallel.png", "prefect3/qc_flow.py", "prefect3/qc_flow_parallel.py"}
    assert lessons <= local, f"README does not link {sorted(lessons - local)}"
