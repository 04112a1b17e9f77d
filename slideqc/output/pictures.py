"""A slide's pictures in its run folder: thumbnail, tissue mask, blurry tissue, overlay."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from BaseImage import BaseImage
from slideqc.algorithms import resize_mask
from slideqc.artefacts import KINDS as ARTEFACT_KINDS
from slideqc.artefacts import ArtefactKind
from slideqc.output.files import atomic_write_bytes, slide_dir

OVERLAY_COLOUR = (255, 0, 255)  # blurry tissue, RGB: magenta
OUTLINE_COLOUR = (0, 160, 0)  # the tissue's outline, RGB: green
# Each kind of artefact in the overlay, RGB: away from magenta, green and the stains' pinks and purples.
ARTEFACT_COLOURS: dict[ArtefactKind, tuple[int, int, int]] = {
    "ink": (0, 200, 255),  # cyan
    "bubble": (255, 200, 0),  # amber
    "debris": (255, 110, 0),  # orange
    "edge": (110, 60, 0),  # brown
    "fold": (200, 0, 0),  # red
}
THUMBNAIL_SIDE = 1024  # longest side of a slide's pictures, pixels


def write_png(path: Path, rgb_or_mask: np.ndarray) -> None:
    """Write an RGB uint8 image or a bool mask (white where True) to ``path`` as a PNG, atomically."""
    image = rgb_or_mask
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, encoded.tobytes())


def overlay(
    thumbnail: np.ndarray,
    tissue: np.ndarray,
    blur: np.ndarray,
    artefact_masks: Mapping[ArtefactKind, np.ndarray] | None = None,
) -> np.ndarray:
    """Blurry tissue coloured over the thumbnail, each kind of artefact in its colour; the tissue outline in green."""
    shape = thumbnail.shape[:2]
    tissue_t, blurry_t = resize_mask(tissue, shape), resize_mask(blur & tissue, shape)
    out = thumbnail.copy()
    out[blurry_t] = (0.45 * out[blurry_t] + 0.55 * np.array(OVERLAY_COLOUR)).astype(np.uint8)
    for kind, mask in (artefact_masks or {}).items():
        found = resize_mask(mask, shape)
        out[found] = (0.35 * out[found] + 0.65 * np.array(ARTEFACT_COLOURS[kind])).astype(np.uint8)
    contours, _ = cv2.findContours(tissue_t.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(out, contours, -1, OUTLINE_COLOUR, 1)
    return out


def artefact_masks(s: BaseImage) -> dict[ArtefactKind, np.ndarray]:
    """Return the masks of the artefacts found on the slide, by kind (none before the artefact step)."""
    return {kind: s.masks[kind] for kind in ARTEFACT_KINDS if kind in s.masks and s.masks[kind].any()}


def slide_thumbnail(s: BaseImage) -> np.ndarray:
    """Return the slide's overview, from the image the tissue was found on, at most :data:`THUMBNAIL_SIDE` pixels.

    Read again rather than carried from the tissue step: the slide object that travels
    between a flow's tasks stays small (masks packed and deflated, no pixels).
    """
    s.get_image(s.image_work_size)
    return s.thumbnail(THUMBNAIL_SIDE)


def write_slide_images(s: BaseImage, run_dir: Path) -> str:
    """thumbnail, tissue, blur and overlay PNGs of one slide; returns their folder, relative.

    The time it takes is recorded as the slide's ``save`` step.
    """
    started = time.perf_counter()
    folder = slide_dir(run_dir, s.name)
    folder.mkdir(parents=True, exist_ok=True)
    thumb = slide_thumbnail(s)
    if max(thumb.shape[:2]) < 512:  # upscale small work images so the pictures are legible
        scale = 512 / max(thumb.shape[:2])
        thumb = cv2.resize(
            thumb, (round(thumb.shape[1] * scale), round(thumb.shape[0] * scale)), interpolation=cv2.INTER_NEAREST
        )
    write_png(folder / "thumbnail.png", thumb)
    write_png(folder / "tissue.png", s.masks["tissue"])
    write_png(folder / "blur.png", s.masks["blur"] & s.masks["tissue"])
    write_png(folder / "overlay.png", overlay(thumb, s.masks["tissue"], s.masks["blur"], artefact_masks(s)))
    s.close()
    s.timings["save"] = time.perf_counter() - started
    return folder.relative_to(Path(run_dir).resolve()).as_posix()
