"""report.html: a self-contained page for a run (no network; pictures beside it).

It opens from disk in any browser: the style, the plot (SVG) and the sorting and
filtering script are inline, the pictures are relative links into the run folder's
``slides/`` that load as they scroll into view, and nothing is fetched from the
network. A lab person reads it without the README: the rescan rule and the settings
on top, a legend for every colour, the failed and not-judged slides first.

For the tests and for scripts: summary counts have the ids ``count-slides``,
``count-ok``, ``count-failed``, ``count-unjudged`` (status ``cannot judge``) and
``count-rescan``; table rows, plot marks (``#plot circle``) and pictures
(``figure.slide``) carry ``data-kind`` (``error``, ``unjudged``, ``recut``, ``rescan``, ``ok``),
``data-artefacts`` (``yes`` when any artefact was found) and their slide in ``data-file``;
``count-recut`` and ``count-artefacts`` count re-cuts and slides with artefacts. A report of a run that has not finished says so
in ``run-status``.
"""

from __future__ import annotations

import html
import math
import time
from pathlib import Path
from typing import Literal, get_args
from urllib.parse import quote

from slideqc.artefacts import KINDS as ARTEFACT_KINDS
from slideqc.output.files import REPORT_FILE, atomic_write_bytes
from slideqc.output.pictures import ARTEFACT_COLOURS, OUTLINE_COLOUR, OVERLAY_COLOUR
from slideqc.output.results import SlideResult
from slideqc.settings import QCSettings

# (SlideResult field, header). The error column shows the reason: the slide is named beside it.
TABLE_COLUMNS = [
    ("file_name", "Slide"),
    ("status", "Status"),
    ("format", "Format"),
    ("objective_power", "Objective"),
    ("tissue_percent", "Tissue %"),
    ("artefacts", "Artefacts, % of the tissue"),
    ("usable_percent", "Judged on %"),
    ("percent_blurry", "% blurry"),
    ("rescan", "Rescan"),
    ("recut", "Re-cut"),
    ("seconds_total", "Seconds"),
    ("reason", "Error"),
]
# Row order and filter keys: what needs a person first. A row's key is also its CSS class.
# "ok" is a slide that passed, and only that: a slide that needs a rescan says RESCAN everywhere.
# A new kind: one more value of Kind, its label and its two colours.
Kind = Literal["error", "unjudged", "recut", "rescan", "ok"]
KINDS: tuple[Kind, ...] = get_args(Kind)
KIND_LABELS: dict[Kind, str] = {
    "error": "Failed",
    "unjudged": "Cannot judge",
    "recut": "Re-cut",
    "rescan": "Rescan",
    "ok": "Passed",
}
ROW_COLOURS: dict[Kind, str] = {
    "error": "#f8d7da",
    "unjudged": "#e2e3e5",
    "recut": "#f5d0a9",
    "rescan": "#fff2cc",
    "ok": "#ffffff",
}
MARK_COLOURS: dict[Kind, str] = {
    "error": "#c0392b",
    "unjudged": "#7f8c8d",
    "recut": "#a04000",
    "rescan": "#d68910",
    "ok": "#2e86c1",
}
ARTEFACTS_FILTER = "artefacts"  # the filter button that shows the slides with any artefact found

STYLE = (
    """
body{font-family:system-ui,sans-serif;margin:1.5rem;color:#222}
table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;padding:.3rem .6rem;text-align:left}
th{background:#f0f0f0;cursor:pointer;user-select:none}th.sorted-asc:after{content:" \\25B2"}
th.sorted-desc:after{content:" \\25BC"}#run-status{color:#a00;font-weight:bold}
"""
    + "".join(f"tr.{kind} td{{background:{colour}}}" for kind, colour in ROW_COLOURS.items())
    + """
#decision{font-size:1.15rem}.cards{display:flex;gap:1rem;flex-wrap:wrap}
.card{border:1px solid #ccc;border-radius:6px;padding:.6rem 1rem}.card b{font-size:1.6rem;display:block}
#legend span{display:inline-block;margin-right:1.2rem}.swatch{display:inline-block;width:1em;height:1em;
border:1px solid #999;vertical-align:middle;margin-right:.3rem}#filter button{margin-right:.4rem}
#filter button.active{font-weight:bold;border-width:2px}.hidden{display:none !important}
.gallery{display:flex;flex-wrap:wrap;gap:.8rem}figure.slide{margin:0;border:1px solid #ddd;padding:.4rem}
figure.slide .pair{display:flex;flex-wrap:nowrap;gap:.3rem}figure.slide img{width:240px;height:auto;
border:1px solid #ccc}code{background:#f4f4f4;padding:0 .2rem}#plot{max-width:100%;height:auto}
"""
)

# Sorting and filtering without any library. Click a header to sort by it, again to reverse:
# numbers sort as numbers, text as text, empty cells (an error row's values) last. The filter
# buttons show one status (or all) in the table, the plot and the pictures.
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
document.querySelectorAll('#filter button').forEach(function (button) {
  button.addEventListener('click', function () {
    var show = button.dataset.show;
    document.querySelectorAll('#filter button').forEach(function (b) { b.classList.toggle('active', b === button); });
    document.querySelectorAll('[data-kind]').forEach(function (item) {
      var shown = show === 'all' || item.dataset.kind === show
        || (show === 'artefacts' && item.dataset.artefacts === 'yes');
      item.classList.toggle('hidden', !shown);
    });
  });
});
"""

# The plot: percent blurry of every slide, ranked, against the rescan limit (SVG user units).
PLOT_WIDTH, PLOT_HEIGHT, MARGIN = 900, 260, 44
# The legend's words for each kind of artefact.
ARTEFACT_WORDS = {
    "ink": "marker ink",
    "bubble": "air bubbles",
    "debris": "dust and debris",
    "edge": "coverslip or slide edge",
    "fold": "tissue folded over itself",
}


def _kind(row: SlideResult) -> Kind:
    if row.failed or row.unjudged:
        return "error" if row.failed else "unjudged"
    return "recut" if row.needs_recut else "rescan" if row.needs_rescan else "ok"


def _artefacts(row: SlideResult) -> str:
    """Each kind found, with its percent of the tissue ("ink 3.1, bubble 0.4"), or "on glass" when only there."""
    parts = []
    for kind in ARTEFACT_KINDS:
        over, glass = getattr(row, f"{kind}_percent"), getattr(row, f"{kind}_glass_percent", None)
        if over:
            parts.append(f"{kind} {over:g}")
        elif glass:
            parts.append(f"{kind} on glass")
    return ", ".join(parts)


def _value(row: SlideResult, key: str) -> str:
    if key == "tissue_percent":  # tissue and blur both in percent: of the slide, of the tissue
        return "" if row.tissue_fraction is None else f"{100 * row.tissue_fraction:.1f}"
    if key == "artefacts":
        return _artefacts(row)
    value = getattr(row, key)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def plot_scale(rows: list[SlideResult], limit_percent: float) -> float:
    """Return the plot's top, percent blurry: the largest value or the limit, rounded up to 10 (at least 10)."""
    highest = max([r.percent_blurry for r in rows if r.percent_blurry is not None] + [limit_percent, 0.0])
    return max(10.0, 10.0 * math.ceil(highest / 10.0))


def render_plot(rows: list[SlideResult], blur_max: float) -> str:
    """Inline SVG: one mark per measured slide (ranked by percent blurry), the rescan limit as a line."""
    e = html.escape
    limit = 100 * blur_max
    measured = sorted(
        ((r, r.percent_blurry) for r in rows if r.percent_blurry is not None), key=lambda m: (m[1], m[0].file_name)
    )
    top = plot_scale(rows, limit)
    inner_w, inner_h = PLOT_WIDTH - 2 * MARGIN, PLOT_HEIGHT - 2 * MARGIN

    def y(percent: float) -> float:
        return MARGIN + inner_h * (1 - percent / top)

    out = [
        f"<svg id='plot' viewBox='0 0 {PLOT_WIDTH} {PLOT_HEIGHT}' "
        f"width='{PLOT_WIDTH}' height='{PLOT_HEIGHT}' data-top='{top:g}' role='img' "
        f"aria-label='percent blurry of each slide against the rescan limit'>",
        f"<rect x='{MARGIN}' y='{MARGIN}' width='{inner_w}' height='{inner_h}' fill='#fafafa' stroke='#ccc'/>",
    ]
    for tick in range(0, int(top) + 1, max(10, int(top) // 5 // 10 * 10)):
        out.append(f"<text x='{MARGIN - 6}' y='{y(tick) + 4:.1f}' font-size='11' text-anchor='end'>{tick}</text>")
    out.append(
        f"<line id='limit' x1='{MARGIN}' x2='{PLOT_WIDTH - MARGIN}' y1='{y(limit):.2f}' y2='{y(limit):.2f}' "
        f"stroke='#c0392b' stroke-dasharray='6 4' data-value='{limit:g}'/>"
        f"<text x='{PLOT_WIDTH - MARGIN}' y='{y(limit) - 5:.1f}' font-size='12' text-anchor='end' "
        f"fill='#c0392b'>rescan above {limit:g} %</text>"
        f"<text x='12' y='{PLOT_HEIGHT / 2:.0f}' font-size='12' transform='rotate(-90 12 {PLOT_HEIGHT / 2:.0f})' "
        f"text-anchor='middle'>% of the tissue blurry</text>"
        f"<text x='{PLOT_WIDTH / 2:.0f}' y='{PLOT_HEIGHT - 10}' font-size='12' text-anchor='middle'>"
        f"slides, from least to most blurry ({len(measured)})</text>"
    )
    step = inner_w / max(len(measured), 1)
    radius = max(1.5, min(5.0, step / 2))
    for i, (row, percent) in enumerate(measured):
        kind = _kind(row)
        out.append(
            f"<circle class='mark {kind}' data-kind='{kind}' data-artefacts='{_yes(row.artefacts_found)}' "
            f"data-file='{e(row.file_name)}' "
            f"data-value='{percent:g}' cx='{MARGIN + step * (i + 0.5):.2f}' "
            f"cy='{y(percent):.2f}' r='{radius:.1f}' fill='{MARK_COLOURS[kind]}'>"
            f"<title>{e(row.file_name)}: {percent:g} % blurry</title></circle>"
        )
    out.append("</svg>")
    return "".join(out)


def _legend() -> str:
    def swatch(colour: str) -> str:
        return f"<span class='swatch' style='background:{colour}'></span>"

    rgb = "rgb({},{},{})".format
    items = [
        ("picture-blur", swatch(rgb(*OVERLAY_COLOUR)), "blurry tissue (magenta, in the overlay)"),
        ("picture-outline", swatch(rgb(*OUTLINE_COLOUR)), "edge of the tissue found (green line, in the overlay)"),
        *(
            (f"picture-{kind}", swatch(rgb(*colour)), f"{ARTEFACT_WORDS[kind]} (in the overlay)")
            for kind, colour in ARTEFACT_COLOURS.items()
        ),
        ("row-error", swatch(ROW_COLOURS["error"]), "failed: the slide could not be checked"),
        ("row-unjudged", swatch(ROW_COLOURS["unjudged"]), "cannot judge: no tissue, too faint or too coarse"),
        ("row-recut", swatch(ROW_COLOURS["recut"]), "re-cut: too much of the tissue is folded (a rescan cannot help)"),
        ("row-rescan", swatch(ROW_COLOURS["rescan"]), "rescan: too much of the tissue is blurry"),
        ("row-ok", swatch(ROW_COLOURS["ok"]), "ok: passed, nothing to do"),
    ]
    return (
        "<p id='legend'>"
        + "".join(f"<span id='legend-{ident}'>{mark}{text}</span>" for ident, mark, text in items)
        + "</p>"
    )


def render_report(
    rows: list[SlideResult],
    params: QCSettings,
    title: str = "Slide QC report",
    complete: bool = True,
    slides: int | None = None,
) -> str:
    """Return report.html's text for ``rows``: the settings, counts, legend, plot, table and pictures."""
    order = {kind: i for i, kind in enumerate(KINDS)}
    rows = sorted(rows, key=lambda r: (order[_kind(r)], r.file_name))  # what needs a person first
    ok = [r for r in rows if r.ok]
    failed = [r for r in rows if r.failed]
    unjudged = [r for r in rows if r.unjudged]
    flagged = [r for r in rows if r.needs_rescan]
    recut = [r for r in rows if r.needs_recut]
    e = html.escape
    out = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(title)}</title>",
        f"<style>{STYLE}</style></head><body><h1>{e(title)}</h1>",
        ""
        if complete
        else (
            f"<p id='run-status'>incomplete: {len(rows)} of "
            f"{slides if slides is not None else '?'} slides have a row so far</p>"
        ),
        f"<p id='decision'>A slide is flagged for a <b>rescan</b> when more than <b id='rescan-limit'>"
        f"{100 * params.blur_max:g} %</b> of its tissue is blurry, and for a <b>re-cut</b> when more than "
        f"<b id='recut-limit'>{100 * params.fold_max:g} %</b> of its tissue is folded over itself. Marker ink, "
        "air bubbles, debris, coverslip edges and folds are left out of the tissue whose focus is judged.</p>",
        f"<p id='settings'>Made {e(time.strftime('%Y-%m-%d %H:%M:%S'))} with "
        + ", ".join(f"<code>{e(k)}={e(str(v))}</code>" for k, v in params.as_dict().items())
        + "</p>",
        "<div class='cards'>",
    ]
    for label, count, ident in (
        ("Slides", len(rows), "count-slides"),
        ("Passed (ok)", len(ok), "count-ok"),
        ("Failed", len(failed), "count-failed"),
        ("Cannot judge", len(unjudged), "count-unjudged"),
        ("Rescan", len(flagged), "count-rescan"),
        ("Re-cut", len(recut), "count-recut"),
        ("With artefacts", sum(r.artefacts_found for r in rows), "count-artefacts"),
    ):
        out.append(f"<div class='card'><b id='{ident}'>{count}</b>{e(label)}</div>")
    out.append("</div>")
    out.append(_legend())
    out.append(
        "<p id='filter'>Show: <button data-show='all' class='active'>all</button>"
        + "".join(f"<button data-show='{kind}'>{e(KIND_LABELS[kind].lower())}</button>" for kind in KINDS)
        + f"<button data-show='{ARTEFACTS_FILTER}'>with artefacts</button></p>"
    )
    out.append("<h2>Percent blurry, every slide</h2>" + render_plot(rows, params.blur_max))
    for heading, ident, listed in (
        ("Failed slides", "failed", failed),
        ("Slides that cannot be judged", "unjudged", unjudged),
    ):
        if listed:
            out.append(f"<h2>{heading}</h2><ul id='{ident}'>")
            out += [f"<li><b>{e(r.file_name)}</b>: {e(_value(r, 'reason'))}</li>" for r in listed]
            out.append("</ul>")
    out.append("<h2>Results</h2><table class='sortable' id='results'><thead><tr>")
    out += [f"<th>{e(label)}</th>" for _, label in TABLE_COLUMNS]
    out.append("</tr></thead><tbody>")
    for row in rows:
        kind = _kind(row)
        out.append(
            f"<tr class='{kind}' data-kind='{kind}' data-artefacts='{_yes(row.artefacts_found)}' "
            f"data-file='{e(row.file_name)}'>"
        )
        out += [f"<td data-value='{e(_value(row, key))}'>{e(_value(row, key))}</td>" for key, _ in TABLE_COLUMNS]
        out.append("</tr>")
    out.append("</tbody></table>")
    out.append("<h2>Slides</h2><div class='gallery'>")
    for row in rows:  # a slide that cannot be judged: its pictures show why
        if not row.outputs:
            continue
        kind = _kind(row)
        verdict = {"recut": "RE-CUT", "rescan": "RESCAN", "unjudged": "cannot judge", "ok": "ok"}.get(kind, kind)
        caption = f"{row.file_name}: {row.percent_blurry} % blurry, {verdict}"
        images = []
        for picture in ("thumbnail", "overlay"):
            src = e(quote(f"{row.outputs}/{picture}.png"))  # a relative URL: spaces and the like escaped
            # loading=lazy: a report of hundreds of slides loads the pictures as they scroll into view
            images.append(f"<img src='{src}' loading='lazy' alt='{e(row.file_name)} {picture}'>")
        out.append(
            f"<figure class='slide' data-kind='{kind}' data-artefacts='{_yes(row.artefacts_found)}' "
            f"data-file='{e(row.file_name)}'>"
            f"<div class='pair'>{''.join(images)}</div><figcaption>{e(caption)}</figcaption></figure>"
        )
    out.append(f"</div><script>{SCRIPT}</script></body></html>")
    return "\n".join(out)


def write_report(
    run_dir: Path, rows: list[SlideResult], params: QCSettings, complete: bool = True, slides: int | None = None
) -> Path:
    """Write report.html into ``run_dir`` atomically and return its path."""
    path = Path(run_dir) / REPORT_FILE
    atomic_write_bytes(path, render_report(rows, params, complete=complete, slides=slides).encode("utf-8"))
    return path
