"""The Makefile's set-up on a machine that is not ready: wrong Python, a venv of another version, missing programs.

Each check runs the real Makefile (or tools/system_deps.sh) in a scratch copy, with
stand-in programs on PATH where a real one would install or change the machine.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def fake_python(path: Path, version: str) -> Path:
    """An executable that answers like Python ``version`` to ``--version`` and to the Makefile's check."""
    major, minor = version.split(".")[:2]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = --version ]; then echo "Python {version}"; exit 0; fi\n'
        f'exec {sys.executable} -c "import sys; sys.exit(({major}, {minor}) != (3, 11))"\n'
    )
    path.chmod(0o755)
    return path


def make(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    return subprocess.run(
        ["make", "--no-print-directory", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_another_python_is_refused_in_one_line_before_any_venv(tmp_path):
    python = fake_python(tmp_path / "bin" / "python3", "3.12.4")
    proc = make(tmp_path, "install", f"PYTHON={python}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    # make's own closing line ("make: ***", or "make[1]: ***" under another make) aside:
    lines = [line for line in proc.stderr.strip().splitlines() if not re.match(r"make(\[\d+\])?: \*\*\*", line)]
    assert len(lines) == 1 and "Python 3.11 is needed" in lines[0] and "Python 3.12.4" in lines[0]
    assert "PYTHON=/path/to/python3.11" in lines[0] and "apt-get install python3.11" in lines[0]
    assert not (tmp_path / ".venv").exists()


def test_a_venv_of_another_version_is_made_again(tmp_path):
    fake_python(tmp_path / ".venv" / "bin" / "python", "3.12.4")
    (tmp_path / ".venv" / ".installed").touch()
    proc = make(tmp_path, "venv-version", f"PYTHON={sys.executable}")
    assert proc.returncode == 0, proc.stderr
    assert ".venv is Python 3.12.4, not 3.11: making it again" in proc.stdout
    assert not (tmp_path / ".venv").exists()


def test_a_venv_of_3_11_is_kept(tmp_path):
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    proc = make(tmp_path, "venv-version", f"PYTHON={sys.executable}")
    assert proc.returncode == 0 and "making it again" not in proc.stdout, proc.stdout + proc.stderr
    assert (tmp_path / ".venv" / "bin" / "python").exists()


def test_missing_programs_without_root_stop_with_the_commands(tmp_path):
    """Not root: nothing is installed; one line names graphviz and chromium with both platforms' commands."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "id").write_text("#!/bin/sh\necho 1000\n")
    (bin_dir / "id").chmod(0o755)
    for tool in ("sed",):
        os.symlink(shutil.which(tool), bin_dir / tool)
    proc = subprocess.run(
        [shutil.which("bash"), str(ROOT / "tools" / "system_deps.sh")],
        capture_output=True,
        text=True,
        env={"PATH": str(bin_dir)},
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "graphviz chromium" in lines[0] and "sudo apt-get install graphviz chromium" in lines[0]
    assert "brew install graphviz && brew install --cask chromium" in lines[0]


def test_programs_present_pass_silently():
    proc = subprocess.run(["bash", str(ROOT / "tools" / "system_deps.sh")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout == proc.stderr == ""
    assert shutil.which("dot") and (shutil.which("chromium") or shutil.which("chromium-browser"))
    assert glob.glob("/usr/lib/postgresql/*/bin/initdb") or shutil.which("initdb")


def lint_copy(tmp_path: Path) -> Path:
    """A scratch project for ``make test``: the real Makefile, pyproject.toml and ruff; stand-ins for the rest.

    The venvs' pythons log what they run (pytest) to ``ran.log`` and answer the version check;
    mypy logs too; the system check passes. So ``make test`` runs the real lint gate (ruff check
    and ruff format --check with this project's configuration) on the scratch copy's files.
    """
    for name in ("Makefile", "pyproject.toml", "requirements.txt", "requirements-qc.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    (tmp_path / "prefect3").mkdir()
    for name in ("requirements.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / "prefect3" / name, tmp_path / "prefect3" / name)
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "system_deps.sh").write_text("exit 0\n")
    log = tmp_path / "ran.log"
    for venv in (".venv", ".venv-prefect3"):
        bin_dir = tmp_path / venv / "bin"
        bin_dir.mkdir(parents=True)
        (bin_dir / "python").write_text(
            f'#!/bin/sh\nif [ "$1" = -m ]; then echo "{venv} python $*" >> {log}; exit 0; fi\nexec {sys.executable} "$@"\n'
        )
        (bin_dir / "python").chmod(0o755)
        (tmp_path / venv / ".installed").touch()
    (tmp_path / ".venv" / "bin" / "ruff").symlink_to(Path(sys.executable).parent / "ruff")
    (tmp_path / ".venv" / "bin" / "mypy").write_text(f"#!/bin/sh\necho mypy >> {log}\n")
    (tmp_path / ".venv" / "bin" / "mypy").chmod(0o755)
    (tmp_path / "slideqc").mkdir()
    (tmp_path / "slideqc" / "__init__.py").write_text('"""A package with its docstring."""\n')
    return log


def run_make_test(tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "test", f"PYTHON={sys.executable}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_make_test_runs_the_lint_gate_first(tmp_path):
    log = lint_copy(tmp_path)
    proc = run_make_test(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ran = log.read_text().splitlines()
    assert ran == ["mypy", ".venv python -m pytest", ".venv-prefect3 python -m pytest prefect3/tests"], ran
    assert proc.stdout.index("ruff check .") < proc.stdout.index("ruff format --check .") < proc.stdout.index("pytest")


def test_a_lint_finding_stops_make_test_before_any_test(tmp_path):
    """An unused import (rule F401) fails the gate; no test runs."""
    log = lint_copy(tmp_path)
    (tmp_path / "slideqc" / "bad.py").write_text('"""A module."""\n\nimport os\n')
    proc = run_make_test(tmp_path)
    assert proc.returncode != 0
    assert "slideqc/bad.py" in proc.stdout and "F401" in proc.stdout, proc.stdout
    assert not log.exists() or "pytest" not in log.read_text()


def test_a_file_ruff_would_reformat_stops_make_test(tmp_path):
    log = lint_copy(tmp_path)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_ugly.py").write_text("def test_ugly( ):\n    assert  1\n")
    proc = run_make_test(tmp_path)
    assert proc.returncode != 0
    assert "tests/test_ugly.py" in proc.stdout and "1 file would be reformatted" in proc.stdout, proc.stdout
    assert not log.exists() or "pytest" not in log.read_text()
