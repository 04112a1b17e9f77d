"""For the parameter-file extra: a params.json checked against a flow's Parameters before ``prefect run`` reads it.

Prefect 1.4.1's ``prefect run -p FLOW.py --param-file params.json`` says one clear line for a
file that is not JSON, but a traceback for a JSON list (``'list' object has no attribute
'keys'``) and, after loading the flow, for a name the flow does not declare (``Flow.run received
the following unexpected parameters``); a bad setting's value fails only in the task that uses
it. :func:`check_params` finds all of these first and says each in one line
(``python -m slideqc.prefect1 --check-params params.json -p FLOW.py``, exit 2).
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

from BaseImage import SettingError
from slideqc.settings import QCSettings


class BadParams(ValueError):
    """The parameter file cannot be used with the flow; ``str(error)`` says why in one line."""


def read_params(path: str | Path) -> dict[str, Any]:
    """Return the parameter file's names and values: a JSON object, as ``prefect run --param-file`` reads it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadParams(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise BadParams(f"{path}: cannot be read ({error})") from None
    try:
        values = json.loads(text)
    except json.JSONDecodeError as error:
        raise BadParams(f"{path}: not JSON: {error.msg} (line {error.lineno}, column {error.colno})") from None
    if not isinstance(values, dict):
        raise BadParams(
            f"{path}: a JSON object of parameter names and values is expected, not a {type(values).__name__}"
        )
    return values


def check_params(path: str | Path, flow) -> dict[str, Any]:
    """Return the file's parameters, checked against ``flow``'s.

    Every name declared, the required ones there, the QC settings valid (as
    :class:`~slideqc.settings.QCSettings` checks them), the slides there.

    Relative slide paths are read from the current folder, as ``prefect run`` runs the flow there.
    Raises :class:`BadParams`, whose message is one line.
    """
    values = read_params(path)
    declared = {p.name: p for p in flow.parameters()}
    for name in values:
        if name not in declared:
            close = difflib.get_close_matches(name, declared, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise BadParams(
                f"{path}: flow {flow.name!r} has no parameter {name!r}{hint}; it takes: {', '.join(sorted(declared))}"
            )
    missing = sorted(name for name, p in declared.items() if p.required and name not in values)
    if missing:
        raise BadParams(f"{path}: flow {flow.name!r} needs the parameter(s) {', '.join(missing)}")
    try:
        QCSettings.from_values(values)
    except SettingError as error:
        raise BadParams(f"{path}: {error}") from None
    slides = values.get("file_names") or []
    if not isinstance(slides, list):
        raise BadParams(f"{path}: file_names is a list of slide paths, got {slides!r}")
    slides = [values["file_name"], *slides] if "file_name" in values else slides
    for slide in slides:
        if not isinstance(slide, str) or not Path(slide).is_file():
            raise BadParams(f"{path}: no such slide: {slide!r} (from the folder {Path.cwd()})")
    return values
