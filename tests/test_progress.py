"""Progress on long runs: a bar on a terminal, plain lines otherwise, with the right counts."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from tests.helpers import ROOT

# The demo slides: 0 %, ~30 % and ~70 % blurred, so two rescans and no failure (their truth files say so).
EXPECTED_RESCANS = 2


def test_plain_lines_when_not_a_terminal(demo_dir, tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "pipeline.py"), "--data-dir", str(demo_dir), "--output-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "progress:" in line]
    assert [line.split("progress: ")[1].split(" slide")[0] for line in lines] == ["1 of 3", "2 of 3", "3 of 3"]
    assert f"0 failed, {EXPECTED_RESCANS} rescan, 0 re-cut, 0 cannot be judged; about 0 s left" in lines[-1]
    assert "\r" not in proc.stderr  # no bar drawn into a file


def test_a_bar_on_a_terminal(demo_dir, tmp_path):
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a terminal 120 columns wide
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "pipeline.py"), "--data-dir", str(demo_dir), "--output-dir", str(tmp_path)],
        stdin=child,
        stdout=child,
        stderr=child,
        close_fds=True,
    )
    os.close(child)
    output = b""
    while True:
        try:
            chunk = os.read(main, 1 << 16)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert proc.wait(600) == 0
    os.close(main)
    text = output.decode("utf-8", "replace")
    assert "QC: 100%" in text and "3/3" in text  # tqdm's bar, finished
    assert f"rescan={EXPECTED_RESCANS}" in text and "failed=0" in text
    assert "progress:" not in text  # the bar, not the plain lines
