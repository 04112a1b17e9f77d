"""For the persisted-results extra: Prefect's LocalResult written atomically, and a target per slide and step."""

from __future__ import annotations

import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import prefect
from prefect.engine.results import LocalResult

from slideqc import qc
from slideqc.output import files
from slideqc.output.cache import default_cache_dir, slide_key


class AtomicLocalResult(LocalResult):
    """Prefect's LocalResult, written atomically, and an unreadable file treated as missing.

    LocalResult writes in place: a full disk or a kill during the write leaves
    a truncated pickle, which every later run would fail to read. Here the
    bytes go to a temporary file that is renamed into place, and a target that
    cannot be read back (left by an older version, or damaged) counts as not
    there, so the step runs again and replaces it.
    """

    def write(self, value_, **kwargs):
        """Write ``value_`` to its target atomically (a temporary file renamed into place); return the new result."""
        new = self.format(**kwargs)
        new.value = value_
        path = Path(self.dir) / new.location
        path.parent.mkdir(parents=True, exist_ok=True)
        files.atomic_write_bytes(path, new.serializer.serialize(new.value))
        new.location = str(path)
        return new

    def exists(self, location: str, **kwargs) -> bool:
        """Return True when the target at ``location`` is a file that can be read back."""
        path = Path(self.dir) / location.format(**kwargs)
        if not path.is_file():
            return False
        try:
            self.serializer.deserialize(path.read_bytes())
        except (EOFError, pickle.UnpicklingError, OSError, ValueError, TypeError, AttributeError) as error:
            prefect.context.get("logger").warning(
                "%s: cannot read this persisted result (%s): computing it again", path, type(error).__name__
            )
            return False
        return True


def slide_target(step: qc.StepName) -> Callable[..., str]:
    """Return a Prefect target for one QC step of one slide, under the run's ``cache_dir`` parameter.

    Prefect formats targets with the parameters and the task's inputs: the slide
    is the ``file_name`` input (load step) or the ``s`` input (later steps).
    """

    def target(**context) -> str:
        slide = context.get("s")
        file_name = slide.path if slide is not None and hasattr(slide, "path") else context["file_name"]
        cache_dir = context.get("cache_dir") or default_cache_dir()
        return str(Path(cache_dir).resolve() / slide_key(file_name, context) / f"{step}.pickle")

    return target


def clear_cache(cache_dir: str | Path, file_names: list, settings: dict) -> int:
    """Forget the persisted results of these slides (``--redo``); returns how many were removed."""
    removed = 0
    for file_name in file_names:
        folder = Path(cache_dir) / slide_key(file_name, settings)
        if folder.is_dir():
            shutil.rmtree(folder)
            removed += 1
    return removed
