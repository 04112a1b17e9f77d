"""Every link inside the README (and from it into docs/) lands on a heading; the contents list every section."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6}) (.+?)\s*$", re.M)
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*|_(?=\W)|(?<=\W)_", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)  # a link in a heading keeps its words
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(markdown: Path) -> set[str]:
    """The anchors of a markdown file's headings (a repeated heading gets -1, -2, ... as on GitHub)."""
    text = FENCE.sub("", markdown.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for _, title in HEADING.findall(text):
        base = slug(title)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return found


def test_slug_by_hand():
    assert slug("Exercise 1: pipeline.py to a Prefect flow") == "exercise-1-pipelinepy-to-a-prefect-flow"
    assert slug("Agenda (120 minutes)") == "agenda-120-minutes"
    assert slug("Pale tissue: a focus measure that ignores the stain's strength") == (
        "pale-tissue-a-focus-measure-that-ignores-the-stains-strength"
    )
    assert slug("Extra: Prefect's own cost per task") == "extra-prefects-own-cost-per-task"


def test_every_anchor_resolves():
    broken = []
    for source in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = FENCE.sub("", source.read_text(encoding="utf-8"))
        for target in LINK.findall(text):
            if re.match(r"[a-z]+://", target) or "#" not in target:
                continue
            path, anchor = target.split("#", 1)
            markdown = (source.parent / path).resolve() if path else source
            if markdown.suffix != ".md" or not markdown.is_file():
                broken.append(f"{source.name}: {target} (no such markdown file)")
            elif anchor not in anchors(markdown):
                broken.append(f"{source.name}: {target}")
    assert not broken, "links to headings that do not exist:\n" + "\n".join(broken)


def test_the_contents_list_every_section_in_order():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    contents = text[text.index("## Contents") : text.index("\n## ", text.index("## Contents") + 1)]
    listed = re.findall(r"\]\(#([^)]+)\)", contents)
    sections = [slug(title) for level, title in HEADING.findall(FENCE.sub("", text)) if level == "##"]
    sections = [s for s in sections if s != "contents"]
    assert [s for s in listed if s in sections] == sections  # every section, in the README's order
