"""Bad input for the QC, written by the tests themselves: every way a slide file goes wrong.

Each ``write_*`` function writes one bad file into a folder and returns its
path. :func:`write_corpus` writes all of them next to good slides and returns
what each file must produce: an error row whose message contains given words,
or (names with spaces and non-ASCII characters) complete outputs.

The corrupt bytes are made here, from a good synthetic slide: tifffile tells
where a tile's bytes lie (``page.dataoffsets``, ``page.databytecounts``), and
they are overwritten so that OpenSlide still opens the slide but cannot decode
the tile.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from slideqc import synthetic

APERIO_DESCRIPTION = (
    "Aperio Image Library v12.0.16 \r\n{w}x{h} [0,0 {w}x{h}] ({tile}x{tile}) JPEG/RGB Q=85"
    "|AppMag = 40|MPP = 0.2500|Filename = {name}"
)


def write_corrupt_tile(source: Path, dest: Path, level: int) -> Path:
    """A copy of ``source`` whose largest tile at ``level`` is garbage: it opens, its pixels do not read.

    The largest tile holds the most detail, so it is tissue, never plain glass:
    a reader that skips glass still reaches it.
    """
    dest = Path(dest)
    shutil.copyfile(source, dest)
    with tifffile.TiffFile(dest) as tif:
        page = tif.pages[level]
        index = int(np.argmax(page.databytecounts))
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
    garbage = np.random.default_rng(level).integers(0, 256, count, dtype=np.uint8).tobytes()
    with open(dest, "r+b") as handle:
        handle.seek(offset)
        handle.write(garbage)
    return dest


def write_unsupported_compression(dest: Path, compression: str = "webp") -> Path:
    """An Aperio-style tiled TIFF compressed with a codec OpenSlide cannot decode (WebP, TIFF code 50001).

    (Zstandard is no use here: openslide-bin 4 decodes it.)
    """
    dest = Path(dest)
    rng = np.random.default_rng(1)
    image = np.clip(rng.normal(200, 30, (512, 512, 3)), 0, 255).astype(np.uint8)
    tifffile.imwrite(
        dest,
        image,
        tile=(256, 256),
        photometric="rgb",
        compression=compression,
        description=APERIO_DESCRIPTION.format(w=512, h=512, tile=256, name=dest.name),
        metadata=None,
    )
    return dest


def write_truncated(source: Path, dest: Path, fraction: float = 0.5) -> Path:
    """The first ``fraction`` of ``source``: a copy that stopped half way."""
    data = Path(source).read_bytes()
    Path(dest).write_bytes(data[: int(len(data) * fraction)])
    return Path(dest)


def write_empty(dest: Path) -> Path:
    Path(dest).write_bytes(b"")
    return Path(dest)


def write_text(dest: Path) -> Path:
    """A text file with a slide's extension."""
    Path(dest).write_text("Slide list for Monday\nS1 ok\nS2 rescan\n", encoding="utf-8")
    return Path(dest)


def write_png_named_svs(dest: Path) -> Path:
    """A PNG picture with a slide's extension."""
    import cv2

    ok, encoded = cv2.imencode(".png", np.full((32, 32, 3), 255, np.uint8))
    assert ok
    Path(dest).write_bytes(encoded.tobytes())
    return Path(dest)


def write_no_objective_power(dest: Path) -> Path:
    """A good slide that states neither its objective power nor its microns per pixel."""
    spec = synthetic.SlideSpec(
        name=Path(dest).name, width=2048, height=1536, seed=4, write_objective_power=False, write_mpp=False
    )
    synthetic.write_slide(spec, Path(dest))
    return Path(dest)


def write_tiny(dest: Path, width: int = 8, height: int = 6) -> Path:
    """A real, readable slide a few pixels wide (one 16x16 tile): too small to check."""
    dest = Path(dest)
    image = np.full((height, width, 3), 230, np.uint8)
    image[height // 3 :, width // 3 :] = (180, 80, 150)
    tifffile.imwrite(
        dest,
        image,
        tile=(16, 16),
        photometric="rgb",
        compression="jpeg",
        description=APERIO_DESCRIPTION.format(w=width, h=height, tile=16, name=dest.name),
        metadata=None,
    )
    return dest


@dataclass(frozen=True)
class Expected:
    """What one file of the corpus must produce."""

    ok: bool
    words: tuple[str, ...] = ()  # for an error: the message must contain each of these


# Names with spaces and non-ASCII characters: copies of good slides, which must go through.
ODD_NAMES = ("slide with spaces.svs", "Schnitt ü 1 – ärger.svs", "标本 #3 (re-scan).svs")


def write_corpus(folder: Path, good: list[Path]) -> dict[str, Expected]:
    """Every bad file, plus ``good`` slides (copied, some under odd names), into ``folder``.

    ``good`` are synthetic slides with levels at downsamples 1, 4, 16 (the demo
    slides): at the default work sizes the tissue is read from level 2 and the
    blur from level 1, so a corrupt tile at either level fails a different step.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    expected: dict[str, Expected] = {}
    for path in good:
        shutil.copyfile(path, folder / path.name)
        truth = path.with_suffix(".truth.json")  # the ground truth goes with the original name only
        if truth.is_file():
            shutil.copyfile(truth, folder / truth.name)
        expected[path.name] = Expected(ok=True)
    for name, source in zip(ODD_NAMES, good * len(ODD_NAMES), strict=False):
        shutil.copyfile(source, folder / name)
        expected[name] = Expected(ok=True)

    source = good[0]
    bad = {
        "corrupt tile level 2.svs": (
            lambda p: write_corrupt_tile(source, p, level=2),
            ("cannot read pixels at level 2", "corrupt tile"),
        ),
        "corrupt tile level 1.svs": (
            lambda p: write_corrupt_tile(source, p, level=1),
            ("cannot read pixels at level 1", "corrupt tile"),
        ),
        "webp.svs": (write_unsupported_compression, ("WebP", "OpenSlide cannot decode")),
        "truncated.svs": (lambda p: write_truncated(source, p), ("truncated file",)),
        "zero bytes.svs": (write_empty, ("empty file (0 bytes)",)),
        "notes.svs": (write_text, ("not a slide", "text")),
        "picture.svs": (write_png_named_svs, ("not a slide", "PNG picture")),
        "no power.svs": (write_no_objective_power, ("no objective power", "pass a pixel work size")),
        "tiny.svs": (write_tiny, ("too small", "8x6 px")),
    }
    for name, (write, words) in bad.items():
        write(folder / name)
        expected[name] = Expected(ok=False, words=words)
    return expected
