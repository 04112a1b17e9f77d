"""report.html: a self-contained page for a run (no network; pictures beside it).

It opens from disk in any browser: the style and the sorting script are inline,
the pictures are relative links into the run folder's ``slides/``, and nothing
is fetched from the network. Summary counts have the ids ``count-slides``,
``count-ok``, ``count-failed``, ``count-unjudged`` (status ``cannot judge``) and
``count-rescan``; table rows have the class ``ok``, ``rescan``, ``error`` or
``unjudged`` and their slide in ``data-file``. A report of a run that has not
finished says so in ``run-status``.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from urllib.parse import quote

from slideqc.output.files import REPORT_FILE, atomic_write_bytes
from slideqc.output.results import SlideResult
from slideqc.settings import QCSettings

TABLE_COLUMNS = [
    ("file_name", "Slide"), ("status", "Status"), ("format", "Format"), ("objective_power", "Objective"),
    ("tissue_fraction", "Tissue fraction"), ("percent_blurry", "% blurry"),
    ("rescan", "Rescan"), ("seconds_total", "Seconds"), ("error", "Error"),
]

STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
th{background:#f0f0f0;cursor:pointer;user-select:none}th.sorted-asc:after{content:" \\25B2"}
th.sorted-desc:after{content:" \\25BC"}tr.rescan td{background:#fff2cc}tr.error td{background:#f8d7da}
tr.unjudged td{background:#e2e3e5}#run-status{color:#a00;font-weight:bold}
.cards{display:flex;gap:1rem}.card{border:1px solid #ccc;border-radius:6px;padding:.6rem 1rem}
.card b{font-size:1.6rem;display:block}.gallery figure{display:inline-block;margin:.5rem;vertical-align:top}
.gallery img{max-width:300px;border:1px solid #ccc}code{background:#f4f4f4;padding:0 .2rem}
"""

# Sorting without any library: click a header to sort by it, again to reverse. Numbers sort as
# numbers, text as text; empty cells (an error row's values) go last either way.
SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th, index) {
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0];
    var ascending = !th.classList.contains('sorted-asc');
    table.querySelectorAll('th').forEach(function (h) { h.classList.remove('sorted-asc', 'sorted-desc'); });
    th.classList.add(ascending ? 'sorted-asc' : 'sorted-desc');
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[index].dataset.value, y = b.cells[index].dataset.value;
      if (x === '' || y === '') { return (x === '') - (y === ''); }
      var nx = Number(x), ny = Number(y), numeric = !isNaN(nx) && !isNaN(ny);
      var order = numeric ? nx - ny : x.localeCompare(y);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def _value(row: SlideResult, key: str) -> str:
    value = getattr(row, key)
    if key == "error":  # the slide is named beside it: say it once
        return value.removeprefix(f"{row.file_name}: ")
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def render_report(rows: list[SlideResult], params: QCSettings, title: str = "Slide QC report",
                  complete: bool = True, slides: int | None = None) -> str:
    rows = sorted(rows, key=lambda r: r.file_name)
    ok = [r for r in rows if r.ok]
    failed = [r for r in rows if r.failed]
    unjudged = [r for r in rows if r.unjudged]
    flagged = [r for r in ok if r.rescan]
    e = html.escape
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>",
           f"<style>{STYLE}</style></head><body><h1>{e(title)}</h1>",
           f"<p>Made {e(time.strftime('%Y-%m-%d %H:%M:%S'))} with "
           + ", ".join(f"<code>{e(k)}={e(str(v))}</code>" for k, v in params.as_dict().items()) + "</p>",
           "" if complete else (f"<p id='run-status'>incomplete: {len(rows)} of "
                                f"{slides if slides is not None else '?'} slides have a row so far</p>"),
           "<div class='cards'>"]
    for label, count, ident in (("Slides", len(rows), "count-slides"), ("OK", len(ok), "count-ok"),
                                ("Failed", len(failed), "count-failed"),
                                ("Cannot judge", len(unjudged), "count-unjudged"),
                                ("Flagged for rescan", len(flagged), "count-rescan")):
        out.append(f"<div class='card'><b id='{ident}'>{count}</b>{e(label)}</div>")
    out.append("</div><h2>Results</h2><table class='sortable' id='results'><thead><tr>")
    out += [f"<th>{e(label)}</th>" for _, label in TABLE_COLUMNS]
    out.append("</tr></thead><tbody>")
    for row in rows:
        css = "error" if row.failed else "unjudged" if row.unjudged else ("rescan" if row.rescan else "ok")
        out.append(f"<tr class='{css}' data-file='{e(row.file_name)}'>")
        out += [f"<td data-value='{e(_value(row, key))}'>{e(_value(row, key))}</td>" for key, _ in TABLE_COLUMNS]
        out.append("</tr>")
    out.append("</tbody></table>")
    for heading, ident, listed in (("Failed slides", "failed", failed), ("Slides that cannot be judged", "unjudged",
                                                                         unjudged)):
        if listed:
            out.append(f"<h2>{heading}</h2><ul id='{ident}'>")
            out += [f"<li><b>{e(r.file_name)}</b>: {e(_value(r, 'error'))}</li>" for r in listed]
            out.append("</ul>")
    out.append("<h2>Slides</h2><div class='gallery'>")
    for row in ok + unjudged:  # a slide that cannot be judged: its pictures show why
        if not row.outputs:
            continue
        caption = f"{row.file_name}: {row.percent_blurry} % blurry" + (" (rescan)" if row.rescan else "")
        for picture in ("thumbnail", "overlay"):
            src = e(quote(f"{row.outputs}/{picture}.png"))  # a relative URL: spaces and the like escaped
            out.append(f"<figure><img src='{src}' alt='{e(row.file_name)} {picture}'>"
                       f"<figcaption>{e(caption)} - {picture}</figcaption></figure>")
    out.append(f"</div><script>{SCRIPT}</script></body></html>")
    return "\n".join(out)


def write_report(run_dir: Path, rows: list[SlideResult], params: QCSettings, complete: bool = True,
                 slides: int | None = None) -> Path:
    path = Path(run_dir) / REPORT_FILE
    atomic_write_bytes(path, render_report(rows, params, complete=complete, slides=slides).encode("utf-8"))
    return path
