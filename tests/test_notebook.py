"""PrefectHelloWorld.ipynb runs from top to bottom and shows what it says."""

import nbformat
from nbclient import NotebookClient

from tests.helpers import ROOT


def test_hello_world_notebook_runs(tmp_path):
    notebook = nbformat.read(ROOT / "PrefectHelloWorld.ipynb", as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", []))
    assert "Hello, world!" in outputs and "Hello, slide QC!" in outputs
    assert "['HELLO, TISSUE!!!', 'HELLO, BLUR!!!', 'HELLO, RESCAN!!!']" in outputs
    assert "letters: 46" in outputs
    pictures = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
                if "image/svg+xml" in o.get("data", {}) or "image/png" in o.get("data", {})]
    assert pictures, "flow.visualize() drew nothing"
    assert "names -> say_hello" in outputs and "shout -> count_letters" in outputs
