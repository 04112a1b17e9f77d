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
