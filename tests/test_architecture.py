"""The layers of docs/architecture.md, checked: every import points down, and nothing imports in a circle."""

from __future__ import annotations

import ast

from tests.helpers import ROOT

# module -> layer (docs/architecture.md). Within output/, the order of the files is a layer of its own.
LAYERS = {
    "BaseImage": 1,
    "slideqc.settings": 2,
    "slideqc.algorithms": 3,
    "slideqc.artefacts": 3.1,
    "slideqc.tiled": 4,
    "slideqc.qc": 5,
    "slideqc.output.files": 6.0,
    "slideqc.output.results": 6.1,
    "slideqc.output.cache": 6.1,
    "slideqc.output.pictures": 6.2,
    "slideqc.output.report": 6.3,  # its legend names the pictures' colours
    "slideqc.output.run": 6.4,
    # The command line, a module a job; the package's __init__ hands the lessons what they use.
    "slideqc.cli.errors": 7.0,
    "slideqc.cli.logs": 7.0,
    "slideqc.cli.progress": 7.0,
    "slideqc.cli.processes": 7.0,
    "slideqc.cli.options": 7.01,
    "slideqc.cli.runs": 7.02,
    "slideqc.cli.ending": 7.03,
    "slideqc.cli": 7.04,
    # Prefect 1 around the QC, the same way.
    "slideqc.prefect1.rows": 7.1,
    "slideqc.prefect1.probes": 7.1,
    "slideqc.prefect1.persisted": 7.1,
    "slideqc.prefect1.server_rows": 7.1,
    "slideqc.prefect1.fast_context": 7.1,
    "slideqc.prefect1.params": 7.1,
    "slideqc.prefect1.notify": 7.1,
    "slideqc.prefect1.__main__": 7.11,
    "slideqc.prefect1": 7.12,
    "slideqc.synthetic": 7.0,
    "slideqc.intake": 7.0,
}


def module_path(module: str):
    """The file of ``module``: its .py, or its package's __init__.py."""
    path = ROOT / (module.replace(".", "/") + ".py")
    return path if path.exists() else ROOT / module.replace(".", "/") / "__init__.py"


def project_imports(module: str) -> set[str]:
    """The project modules ``module`` imports (anywhere in it, function bodies too)."""
    path = module_path(module)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        found |= {name for name in names if name in LAYERS}
    return found


def test_every_module_has_a_layer():
    modules = {"BaseImage"} | {
        ".".join(p.relative_to(ROOT).with_suffix("").parts)
        for p in (ROOT / "slideqc").rglob("*.py")
        if p.name != "__init__.py"
    }
    # A package whose __init__ has code of its own is a module too (the cli and prefect1 facades).
    modules |= {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "slideqc").rglob("__init__.py")
        if p.parent != ROOT / "slideqc" and "import" in p.read_text(encoding="utf-8")
    }
    assert modules == set(LAYERS)


def test_imports_point_down_only():
    upward = [
        (module, imported)
        for module in LAYERS
        for imported in project_imports(module)
        if LAYERS[imported] >= LAYERS[module] and imported != module
    ]
    assert upward == []


def test_no_import_circles():
    graph = {module: project_imports(module) - {module} for module in LAYERS}
    seen, on_path = set(), []

    def visit(module: str) -> None:
        assert module not in on_path, f"import circle: {' -> '.join(on_path + [module])}"
        if module in seen:
            return
        on_path.append(module)
        for imported in graph[module]:
            visit(imported)
        on_path.pop()
        seen.add(module)

    for module in graph:
        visit(module)


def test_no_sys_path_lines_anywhere():
    """The project is installed: no script, test or tool edits sys.path or silences E402 for it."""
    offenders = [
        str(p.relative_to(ROOT))
        for p in ROOT.rglob("*.py")
        if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
        and ("sys.path.insert" in (text := p.read_text(encoding="utf-8")) or "noqa: E402" in text)
        and p.name != "test_architecture.py"
    ]
    assert offenders == []
