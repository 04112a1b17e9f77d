"""The notifications extra: its flow posts a message per slide that needs someone, and a summary, to a webhook.

A webhook receiver (http.server) runs on 127.0.0.1 on a free port; the lesson runs as a user runs it.
What each slide should get comes from outside the code: the demo slides' truth (0 % blurry is ok,
~30 % and ~70 % need a rescan), a text file named .svs (fails), blank glass (cannot be judged).
A receiver that is down or slow costs the run at most a few seconds and one warning line.
"""

from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from slideqc import synthetic
from slideqc.output import results
from tests import bad_slides
from tests.helpers import free_port, only_run_dir, run_script, truth_status

LESSON = "extras/pipeline_prefect_notify.py"


class Receiver:
    """An incoming-webhook stand-in: keeps every JSON body posted to it; ``delay`` seconds before answering."""

    def __init__(self, delay: float = 0.0) -> None:
        self.messages: list[dict] = []
        self.release = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.messages.append(json.loads(body))
                if delay:
                    receiver.release.wait(delay)
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def slides(tmp_path_factory, demo_dir):
    """The demo slides, a text file named like a slide, and blank glass: each status but re-cut."""
    folder = tmp_path_factory.mktemp("notify-data")
    for slide in sorted(demo_dir.glob("*.svs")):
        os.link(slide, folder / slide.name)
    bad_slides.write_text(folder / "notes.svs")
    synthetic.write_slide(
        synthetic.SlideSpec(name="blank.svs", width=2048, height=1536, tissue_fraction=0.0, seed=5),
        folder / "blank.svs",
    )
    expected = {"notes.svs": "error", "blank.svs": "cannot judge"}
    for slide in sorted(demo_dir.glob("*.svs")):
        expected[slide.name] = truth_status(synthetic.read_truth(slide))
    return folder, expected


def run_lesson(folder, out, webhook):
    started = time.monotonic()
    proc = run_script(LESSON, "--data-dir", str(folder), "--output-dir", str(out), "--webhook", webhook)
    return proc, time.monotonic() - started


def statuses(out) -> dict[str, str]:
    return {r["file_name"]: r["status"] for r in results.read_results(only_run_dir(out) / "results.tsv")}


LABELS = {"rescan": "RESCAN", "recut": "RE-CUT", "error": "FAILED", "cannot judge": "CANNOT JUDGE"}


def test_a_message_per_slide_that_needs_someone_and_a_summary(slides, tmp_path):
    folder, expected = slides
    with Receiver() as receiver:
        proc, _ = run_lesson(folder, tmp_path / "out", receiver.url)
    assert proc.returncode == 1, proc.stderr[-2000:]  # a slide failed
    assert statuses(tmp_path / "out") == expected
    texts = [m["text"] for m in receiver.messages]
    assert all(set(m) == {"text"} for m in receiver.messages)  # Slack's incoming-webhook JSON
    *per_slide, summary = texts
    wanted = sorted(f"{LABELS[status]}: {name}: " for name, status in expected.items() if status != "ok")
    assert sorted(t[: len(w)] for t, w in zip(sorted(per_slide), wanted, strict=True)) == wanted
    assert "CANNOT JUDGE: blank.svs: no tissue" in "\n".join(per_slide)
    assert "FAILED: notes.svs: not a slide" in "\n".join(per_slide)
    assert summary.startswith("Image QC parallel: 5 slide(s): 1 ok, 2 rescan, 0 re-cut, 1 cannot judge, 1 failed")
    assert str(only_run_dir(tmp_path / "out").resolve()) in summary
    assert "webhook http" not in proc.stderr


@pytest.mark.parametrize("receiver_state", ["down", "slow"])
def test_a_webhook_down_or_slow_costs_seconds_and_one_warning_never_a_result(slides, tmp_path, receiver_state):
    folder, expected = slides
    with Receiver() as fast:
        _, usual = run_lesson(folder, tmp_path / "usual", fast.url)
    if receiver_state == "down":
        proc, took = run_lesson(folder, tmp_path / "out", f"http://127.0.0.1:{free_port()}/hook")
    else:
        with Receiver(delay=60) as slow:
            proc, took = run_lesson(folder, tmp_path / "out", slow.url)
        assert len(slow.messages) == 1  # the first post timed out; no other was tried
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert statuses(tmp_path / "out") == expected
    warnings = [line for line in proc.stderr.splitlines() if "webhook http://127.0.0.1" in line]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and "5 of 5 message(s) not sent" in warnings[0], warnings
    assert took < usual + 5, (took, usual)
