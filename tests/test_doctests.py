"""The Examples in the docstrings of slideqc.algorithms and slideqc.settings run, and their printed results are checked.

doctest.testmod here rather than ``--doctest-modules`` in pyproject's pytest options: those
options apply to every pytest run from this folder (each tests/ file, the Prefect 3 edition's
own ``pytest prefect3/tests``), where --doctest-modules would also import every test and helper
module once more as a doctest module; this test keeps the doctests to the modules that have them.
"""

import doctest
import inspect

import pytest

from slideqc import algorithms, settings


def test_every_public_function_of_algorithms_has_an_example():
    public = {
        name
        for name, value in vars(algorithms).items()
        if not name.startswith("_") and inspect.isfunction(value) and value.__module__ == algorithms.__name__
    }
    with_examples = {test.name.removeprefix("slideqc.algorithms.") for test in doctest.DocTestFinder().find(algorithms)}
    assert public - with_examples == set(), "public functions of slideqc.algorithms without an Examples section"
    assert "BlurCounts.of" in with_examples
    for name in public:
        doc = inspect.getdoc(getattr(algorithms, name))
        for section in ("Parameters\n----------", "Returns\n-------", "Examples\n--------"):
            assert section in doc, f"slideqc.algorithms.{name}: no {section.splitlines()[0]} section"


@pytest.mark.parametrize("module", [algorithms, settings], ids=lambda module: module.__name__)
def test_the_examples_print_what_they_say(module):
    failed, attempted = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, report=True)
    assert attempted > 0
    assert failed == 0, f"{failed} of {attempted} doctest examples of {module.__name__} failed (printed above)"
