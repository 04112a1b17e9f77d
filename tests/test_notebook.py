"""PrefectHelloWorld.ipynb runs from top to bottom and shows what it says."""

import nbformat
from nbclient import NotebookClient

from tests.helpers import ROOT


def test_hello_world_notebook_runs(tmp_path):
    notebook = nbformat.read(ROOT / "PrefectHelloWorld.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
    )
    assert "Hello, world!" in outputs and "Hello, slide QC!" in outputs
    assert "['HELLO, TISSUE!!!', 'HELLO, BLUR!!!', 'HELLO, RESCAN!!!']" in outputs
    assert "letters: 46" in outputs
    pictures = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/svg+xml" in o.get("data", {}) or "image/png" in o.get("data", {})
    ]
    assert pictures, "flow.visualize() drew nothing"
    assert "names -> say_hello" in outputs and "shout -> count_letters" in outputs


def test_readme_counts_the_notebooks_cells():
    import re

    words = {"four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8}
    notebook = nbformat.read(ROOT / "PrefectHelloWorld.ipynb", as_version=4)
    said = re.search(r"in (\w+) code cells", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert said, "README no longer says how many code cells the notebook has"
    assert words[said.group(1)] == sum(cell.cell_type == "code" for cell in notebook.cells)
