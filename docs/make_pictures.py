"""Make the pictures in docs/ from the real code.

    python docs/make_pictures.py            # flow_serial.png, flow_parallel.png
    python docs/make_pictures.py --overview # also pipeline_overview.png (QCs a demo slide)

Needs graphviz's `dot` program for the flow pictures.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load_solution(name: str):
    """Import a solution script as a module (solutions/ is not a package)."""
    path = ROOT / "solutions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flow_pictures(out_dir: Path) -> list[Path]:
    made = []
    for name, picture in (("pipeline_prefect", "flow_serial"), ("pipeline_prefect_parallel", "flow_parallel")):
        flow = load_solution(name).flow
        graph = flow.visualize(filename=str(out_dir / picture), format="png")
        if graph is None:  # older Prefect returns nothing when it writes the file
            raise RuntimeError(f"{picture}: graphviz did not render")
        (out_dir / picture).unlink(missing_ok=True)  # the DOT source graphviz leaves beside the PNG
        made.append(out_dir / f"{picture}.png")
    return made


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs")
    parser.add_argument("--overview", action="store_true", help="also make pipeline_overview.png")
    args = parser.parse_args(argv)
    for path in flow_pictures(args.out_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
