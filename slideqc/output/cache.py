"""The key of a slide's persisted results: it changes when the slide file or a QC setting changes.

Both editions use it: Prefect 1's targets (extras/pipeline_prefect_persisted.py)
and Prefect 3's cache_key_fn (prefect3/).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from pathlib import Path

from slideqc.output.files import safe_name
from slideqc.settings import QCSettings

# The slide objects a persisted result holds: raised when BaseImage's fields change (2: what the
# steps found moved into s.found; 3: the artefact step), so a cache from before is computed again,
# never half-read.
PERSISTED_FORMAT = 3
CACHE_DIRNAME = ".qc-cache"  # persisted results, inside the output folder unless --cache-dir says otherwise


def default_cache_dir(output_dir: str | Path = "output") -> Path:
    """Where persisted results go by default: ``<output-dir>/.qc-cache`` (both editions)."""
    return Path(output_dir) / CACHE_DIRNAME


# blur_max is left out: it decides, after the measurement, and is applied again on every run.
MEASURED_WITH = tuple(f.name for f in fields(QCSettings) if f.name != "blur_max")


def slide_key(file_name: str | Path, settings: dict, names: tuple[str, ...] = MEASURED_WITH) -> str:
    """Return a folder-safe key: the slide's name, and a hash of its path, size, mtime and the settings ``names``."""
    path = Path(file_name).resolve()
    stat = path.stat() if path.exists() else None
    identity = {
        "format": PERSISTED_FORMAT,
        "path": str(path),
        "size": stat.st_size if stat else None,
        "mtime_ns": stat.st_mtime_ns if stat else None,
        **{name: str(settings.get(name)) for name in names},
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return f"{safe_name(path.name)}-{digest}"
