"""report.html in a real browser: headless Chromium opens it from disk, and what it shows matches results.tsv.

Chromium comes from Debian (`apt-get install chromium`; .ci/run installs it). It is
driven three ways: ``--screenshot`` (the page renders), ``--dump-dom`` (the table
as the browser parsed it) and, to click the column headers, the DevTools
protocol over ``--remote-debugging-pipe`` (JSON messages on file descriptors 3
and 4, so no websocket client is needed).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import cv2
import pytest

from slideqc.output import files, results
from tests import bad_slides
from tests.helpers import only_run_dir, run_script

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]  # no network: the report must not need it


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, demo_slides) -> Path:
    """pipeline.py over the demo slides, one of them under a non-ASCII name, and a corrupt slide."""
    data = tmp_path_factory.mktemp("report-data")
    for slide in demo_slides:
        shutil.copyfile(slide, data / slide.name)
        shutil.copyfile(slide.with_suffix(".truth.json"), data / slide.with_suffix(".truth.json").name)
    shutil.copyfile(demo_slides[1], data / "Schnitt ü 2 (blur).svs")
    bad_slides.write_corrupt_tile(demo_slides[0], data / "corrupt <tile>.svs", level=2)
    out = tmp_path_factory.mktemp("report-out")
    proc = run_script("pipeline.py", "--data-dir", str(data), "--output-dir", str(out))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return only_run_dir(out)


@pytest.fixture(scope="module")
def rows(run_dir) -> list[dict[str, str]]:
    return results.read_results(run_dir / files.RESULTS_FILE)


def chromium(*args: str, profile: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    assert Path(CHROMIUM).exists(), "Chromium is needed: apt-get install chromium (.ci/run installs it)"
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, timeout=timeout
    )


# --- the DOM as Chromium parsed it -------------------------------------------------------


class ReportDOM(HTMLParser):
    """The parts of report.html the tests read: the results table, the counts, the pictures, the links."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []  # {"class", "file", "cells"}
        self.counts: dict[str, str] = {}
        self.failed: list[str] = []
        self.urls: list[str] = []  # every src and href
        self.images: list[str] = []
        self._in_body = self._in_cell = self._in_failed = False
        self._count_id: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.urls += [attrs[a] for a in ("src", "href") if attrs.get(a)]
        if tag == "img":
            self.images.append(attrs["src"])
        if tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.rows.append({"class": attrs.get("class", ""), "file": attrs.get("data-file"), "cells": []})
        elif tag == "td" and self._in_body:
            self._in_cell, self._text = True, []
        elif tag == "b" and (attrs.get("id") or "").startswith("count-"):
            self._count_id, self._text = attrs["id"], []
        elif tag == "ul" and attrs.get("id") == "failed":
            self._in_failed = True
        elif tag == "li" and self._in_failed:
            self._text = []

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._in_cell:
            self.rows[-1]["cells"].append("".join(self._text))
            self._in_cell = False
        elif tag == "b" and self._count_id:
            self.counts[self._count_id] = "".join(self._text)
            self._count_id = None
        elif tag == "li" and self._in_failed:
            self.failed.append("".join(self._text))
        elif tag == "ul":
            self._in_failed = False

    def handle_data(self, data):
        self._text.append(data)


def test_screenshot_shows_a_page(run_dir, tmp_path):
    shot = tmp_path / "report.png"
    proc = chromium(
        "--window-size=1280,1600",
        f"--screenshot={shot}",
        (run_dir / "report.html").as_uri(),
        profile=tmp_path / "profile",
    )
    assert shot.is_file(), proc.stderr.decode(errors="replace")[-2000:]
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (1600, 1280)
    assert shot.stat().st_size > 20_000 and image.std() > 20  # text, table colours and pictures, not a blank page


def by_file_cells(dom) -> dict[str, list[str]]:
    return {r["file"]: r["cells"] for r in dom.rows}


def test_dom_table_matches_results_tsv(run_dir, rows, tmp_path):
    proc = chromium("--dump-dom", (run_dir / "report.html").as_uri(), profile=tmp_path / "profile")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-2000:]
    dom = ReportDOM()
    dom.feed(proc.stdout.decode("utf-8"))

    judged = [r for r in rows if r["status"] in results.JUDGED]
    failed = [r for r in rows if r["status"] == "error"]
    flagged = [r for r in judged if r["rescan"] == "true"]
    assert all((r["status"] == "rescan") == (r["rescan"] == "true") for r in judged)
    assert len(rows) == 5 and len(failed) == 1 and len(flagged) == 3  # the fixture is what it should be

    assert len(dom.rows) == len(rows)
    # Failed first, then cannot judge, then rescans, then ok: each by name.
    rank = {"error": 0, "cannot judge": 1}
    expected = sorted(rows, key=lambda r: (rank.get(r["status"], 2 if r["rescan"] == "true" else 3), r["file_name"]))
    assert [r["file"] for r in dom.rows] == [r["file_name"] for r in expected]
    assert [r["cells"][0] for r in dom.rows] == [r["file_name"] for r in expected]  # shown, not only in attributes
    for row in rows:  # tissue in percent of the slide, as blur is in percent of the tissue
        if row["tissue_fraction"]:
            assert by_file_cells(dom)[row["file_name"]][4] == f"{100 * float(row['tissue_fraction']):.1f}"
    assert {r["file"] for r in dom.rows if r["class"] == "rescan"} == {r["file_name"] for r in flagged}
    assert {r["file"] for r in dom.rows if r["class"] == "error"} == {r["file_name"] for r in failed}
    assert dom.counts == {
        "count-slides": str(len(rows)),
        "count-ok": str(sum(r["status"] == "ok" for r in rows)),  # passed, and only those
        "count-failed": str(len(failed)),
        "count-rescan": str(len(flagged)),
        "count-unjudged": str(sum(r["status"] == "cannot judge" for r in rows)),
        "count-recut": str(sum(r["status"] == "recut" for r in rows)),
        "count-artefacts": str(sum(any(float(r[c] or 0) for c in results.ARTEFACT_COLUMNS) for r in rows)),
    }
    assert dom.failed == [r["error"] for r in failed]  # "<b>slide</b>: what is wrong", as in results.tsv
    assert "corrupt tile" in dom.failed[0] and "<tile>" in dom.failed[0]  # escaped, shown as written
    by_file = {r["file"]: r["cells"] for r in dom.rows}
    for row in judged:
        assert row["percent_blurry"] in by_file[row["file_name"]]
    assert len(dom.images) == 2 * len(judged)  # a thumbnail and an overlay per slide


def test_report_needs_nothing_from_the_network(run_dir):
    dom = ReportDOM()
    dom.feed((run_dir / "report.html").read_text(encoding="utf-8"))
    assert dom.urls, "the report has pictures"
    for url in dom.urls:
        parsed = urlparse(url)
        assert not parsed.scheme and not parsed.netloc, url  # relative: beside the report
        target = (run_dir / unquote(parsed.path)).resolve()
        assert target.is_file() and run_dir.resolve() in target.parents, url
    source = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "http://" not in source and "https://" not in source and "@import" not in source


# --- clicking: the DevTools protocol over a pipe -----------------------------------------


class DevTools:
    """A minimal Chrome DevTools Protocol client over ``--remote-debugging-pipe``.

    Chromium reads commands from its fd 3 and writes replies to its fd 4, each a
    JSON object followed by a NUL byte.
    """

    def __init__(self, url: str, profile: Path) -> None:
        assert Path(CHROMIUM).exists(), "Chromium is needed: apt-get install chromium"
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child_fds():  # runs in the child before exec: put the pipe ends on fds 3 and 4
            high_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            high_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(high_r, 3)
            os.dup2(high_w, 4)

        self.process = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-pipe", url],
            preexec_fn=child_fds,
            close_fds=False,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._id = 0
        self.session: str | None = None

    def send(self, method: str, params: dict | None = None, session: bool = True, timeout: float = 30) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" not in self._buffer:
                assert time.monotonic() < deadline, f"no reply to {method}"
                chunk = os.read(self._from_chrome, 1 << 16)
                assert chunk, "Chromium closed the pipe"
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                assert "error" not in reply, reply
                return reply["result"]

    def attach_to_page(self) -> None:
        targets = self.send("Target.getTargets", session=False)["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.send(
            "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}, session=False
        )["sessionId"]

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def close(self) -> None:
        try:
            self.send("Browser.close", session=False, timeout=10)
        except (AssertionError, OSError):
            pass
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


@pytest.fixture
def browser(run_dir, tmp_path):
    tools = DevTools((run_dir / "report.html").as_uri(), tmp_path / "profile")
    try:
        tools.attach_to_page()
        for _ in range(200):  # until the report, its pictures and its script are in
            if tools.evaluate("document.readyState === 'complete' && !!document.querySelector('#results th')"):
                break
            time.sleep(0.05)
        else:
            pytest.fail("report.html did not load")
        yield tools
    finally:
        tools.close()


COLUMN_VALUES = """(function (index) {
  return Array.from(document.querySelectorAll('#results tbody tr')).map(function (row) {
    return [row.dataset.file, row.cells[index].dataset.value];
  });
})(%d)"""


def header_index(browser, label: str) -> int:
    labels = browser.evaluate("Array.from(document.querySelectorAll('#results th')).map(h => h.textContent)")
    return labels.index(label)


def test_clicking_a_header_sorts_the_table(browser, rows):
    blurry = header_index(browser, "% blurry")
    browser.evaluate(f"document.querySelectorAll('#results th')[{blurry}].click()")
    ascending = browser.evaluate(COLUMN_VALUES % blurry)
    numbers = [float(v) for _, v in ascending if v != ""]
    assert numbers == sorted(numbers) and len(numbers) == 4
    assert [v for _, v in ascending[len(numbers) :]] == [""]  # the failed slide's empty cell last
    assert browser.evaluate(f"document.querySelectorAll('#results th')[{blurry}].className") == "sorted-asc"

    browser.evaluate(f"document.querySelectorAll('#results th')[{blurry}].click()")
    descending = browser.evaluate(COLUMN_VALUES % blurry)
    assert [float(v) for _, v in descending if v != ""] == sorted(numbers, reverse=True)
    assert descending[-1][1] == ""

    slide = header_index(browser, "Slide")
    browser.evaluate(f"document.querySelectorAll('#results th')[{slide}].click()")
    names = [name for name, _ in browser.evaluate(COLUMN_VALUES % slide)]
    assert sorted(names) == sorted(r["file_name"] for r in rows)  # every row still there, once
    browser.evaluate(f"document.querySelectorAll('#results th')[{slide}].click()")
    assert [name for name, _ in browser.evaluate(COLUMN_VALUES % slide)] == names[::-1]


def test_every_picture_loads_in_the_browser(browser, rows):
    assert browser.evaluate("Array.from(document.images).every(i => i.loading === 'lazy')")
    for _ in range(200):  # lazy pictures load as they come into view: bring each one there
        if browser.evaluate(
            "Array.from(document.images).every(function (i) { i.scrollIntoView(); "
            "return i.complete && i.naturalWidth > 0; })"
        ):
            break
        time.sleep(0.05)
    images = browser.evaluate(
        "Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, i.naturalWidth])"
    )
    assert len(images) == 2 * sum(r["status"] in results.JUDGED for r in rows)
    broken = [src for src, complete, width in images if not complete or width == 0]
    assert broken == []


VISIBLE = """Array.from(document.querySelectorAll('%s')).filter(function (e) {
  return !e.classList.contains('hidden'); }).map(function (e) { return e.dataset.file; })"""


def test_filter_shows_one_status_everywhere(browser, rows):
    failed = sorted(r["file_name"] for r in rows if r["status"] == "error")
    rescans = sorted(r["file_name"] for r in rows if r["rescan"] == "true")
    everyone = sorted(r["file_name"] for r in rows)
    browser.evaluate("document.querySelector(\"#filter button[data-show='error']\").click()")
    assert sorted(browser.evaluate(VISIBLE % "#results tbody tr")) == failed
    assert browser.evaluate(VISIBLE % "#plot circle") == []  # a failed slide has no percent to plot
    browser.evaluate("document.querySelector(\"#filter button[data-show='rescan']\").click()")
    assert sorted(browser.evaluate(VISIBLE % "#results tbody tr")) == rescans
    assert sorted(browser.evaluate(VISIBLE % "#plot circle")) == rescans
    assert sorted(browser.evaluate(VISIBLE % "figure.slide")) == rescans
    browser.evaluate("document.querySelector(\"#filter button[data-show='all']\").click()")
    assert sorted(browser.evaluate(VISIBLE % "#results tbody tr")) == everyone


def test_plot_puts_exactly_the_rescans_above_the_limit(browser, rows):
    """A property, not the drawing code again: in screen space, a mark is above the limit line iff its slide is a rescan."""
    limit_y = browser.evaluate("document.getElementById('limit').getBoundingClientRect().top")
    marks = browser.evaluate(
        "Array.from(document.querySelectorAll('#plot circle')).map(function (c) {"
        " var r = c.getBoundingClientRect(); return [c.dataset.file, r.top + r.height / 2]; })"
    )
    measured = {r["file_name"]: r for r in rows if r["percent_blurry"]}
    assert sorted(name for name, _ in marks) == sorted(measured)
    for name, y in marks:
        assert (y < limit_y) == (measured[name]["rescan"] == "true"), (name, y, limit_y)
    # Ranked from least to most blurry, left to right: higher percent, higher on the page.
    ys = [y for _, y in marks]
    assert ys == sorted(ys, reverse=True)


def test_header_states_the_rule_the_settings_and_every_colour(run_dir):
    from slideqc.output import pictures

    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert "when more than <b id='rescan-limit'>5 %</b> of its tissue is blurry" in page
    for setting in (
        "image_work_size=1.25x",
        "blur_work_size=10x",
        "blur_radius=7.0",
        "blur_threshold=0.05",
        "blur_max=0.05",
    ):
        assert setting in page
    for ident in ("picture-blur", "picture-outline", "row-error", "row-unjudged", "row-rescan", "row-ok"):
        assert f"id='legend-{ident}'" in page
    # The legend's swatches are the colours the overlay is drawn with.
    assert "rgb({},{},{})".format(*pictures.OVERLAY_COLOUR) in page and "magenta" in page
    assert "rgb({},{},{})".format(*pictures.OUTLINE_COLOUR) in page and "green" in page


def test_a_report_of_300_slides_in_chromium(tmp_path):
    """Hundreds of rows: the page opens, every row and every measured slide's mark is there."""
    from slideqc.output import report
    from slideqc.settings import DEFAULTS

    made = []
    for i in range(300):
        name = f"slide_{i:03d}.svs"
        if i % 40 == 3:
            made.append(results.SlideResult(file_name=name, status="error", error=f"{name}: cannot open"))
        else:
            percent = (i * 37 % 200) / 10  # 0 to 19.9
            made.append(
                results.SlideResult(
                    file_name=name,
                    status="rescan" if percent > 5 else "ok",
                    tissue_fraction=0.3,
                    percent_blurry=percent,
                    rescan=percent > 5,
                )
            )
    report.write_report(tmp_path, made, DEFAULTS)
    proc = chromium("--dump-dom", (tmp_path / "report.html").as_uri(), profile=tmp_path / "profile")
    assert proc.returncode == 0
    page = proc.stdout.decode("utf-8")
    dom = ReportDOM()
    dom.feed(page)
    assert len(dom.rows) == 300 and dom.counts["count-slides"] == "300"
    assert page.count('<circle class="mark') == sum(r.percent_blurry is not None for r in made)
    assert dom.counts["count-rescan"] == str(sum(bool(r.rescan) for r in made))


def test_artefacts_and_recuts_in_the_report(tmp_path):
    """Hand-made rows: the artefact column, the re-cut status, their counts, legend and filter, in Chromium."""
    from slideqc.output import pictures, report
    from slideqc.settings import DEFAULTS

    made = [
        results.SlideResult("clean.svs", tissue_fraction=0.4, percent_blurry=1.0, rescan=False, ink_percent=0.0),
        results.SlideResult(
            "inked.svs",
            tissue_fraction=0.4,
            percent_blurry=1.5,
            rescan=False,
            ink_percent=3.1,
            bubble_percent=0.0,
            bubble_glass_percent=0.7,
            usable_percent=96.9,
        ),
        results.SlideResult(
            "folded.svs",
            status="recut",
            tissue_fraction=0.4,
            percent_blurry=2.0,
            rescan=False,
            recut=True,
            fold_percent=22.5,
            usable_percent=77.5,
        ),
        results.SlideResult("blurry.svs", status="rescan", tissue_fraction=0.4, percent_blurry=30.0, rescan=True),
    ]
    report.write_report(tmp_path, made, DEFAULTS)
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "for a <b>re-cut</b> when more than <b id='recut-limit'>10 %</b> of its tissue is folded" in page
    for kind, colour in pictures.ARTEFACT_COLOURS.items():  # each kind's swatch is its overlay colour
        assert f"id='legend-picture-{kind}'><span class='swatch' style='background:rgb{colour}'".replace(" ", "") in (
            page.replace(" ", "")
        )
    assert "id='legend-row-recut'" in page
    tools = DevTools((tmp_path / "report.html").as_uri(), tmp_path / "profile")
    try:
        tools.attach_to_page()
        for _ in range(200):
            if tools.evaluate("document.readyState === 'complete' && !!document.querySelector('#results th')"):
                break
            time.sleep(0.05)
        counts = tools.evaluate(
            "Object.fromEntries(Array.from(document.querySelectorAll('b[id^=count-]')).map(b => [b.id, b.textContent]))"
        )
        assert counts["count-artefacts"] == "2" and counts["count-recut"] == "1" and counts["count-ok"] == "2"
        column = header_index(tools, "Artefacts, % of the tissue")
        cells = dict(tools.evaluate(COLUMN_VALUES % column))
        assert cells == {
            "clean.svs": "",
            "inked.svs": "ink 3.1, bubble on glass",
            "folded.svs": "fold 22.5",
            "blurry.svs": "",
        }
        kinds = tools.evaluate(
            "Object.fromEntries(Array.from(document.querySelectorAll('#results tbody tr'))"
            ".map(r => [r.dataset.file, r.dataset.kind]))"
        )
        assert kinds == {"clean.svs": "ok", "inked.svs": "ok", "folded.svs": "recut", "blurry.svs": "rescan"}
        tools.evaluate("document.querySelector(\"#filter button[data-show='artefacts']\").click()")
        assert sorted(tools.evaluate(VISIBLE % "#results tbody tr")) == ["folded.svs", "inked.svs"]
        assert sorted(tools.evaluate(VISIBLE % "#plot circle")) == ["folded.svs", "inked.svs"]
        tools.evaluate("document.querySelector(\"#filter button[data-show='recut']\").click()")
        assert tools.evaluate(VISIBLE % "#results tbody tr") == ["folded.svs"]
    finally:
        tools.close()
