"""BaseImage: one whole-slide image and what the QC learns about it.

After HistoQC's BaseImage: one object per slide carries the open slide, the
images read at each work size, the masks the QC steps make and the values to
report, through uniform steps. Unlike HistoQC's it has typed parameters and
no module-level state, and it is picklable (the OpenSlide handle and the pixel
cache are dropped and reopened on demand), so Prefect and Dask can pass it
between processes.

Work sizes
----------
A work size names the resolution a step works at, in one of two forms:

* a magnification, ``"1.25x"``: the objective power the image should look
  like it was scanned at. Needs the slide's objective power, or else its
  microns per pixel (10 µm / magnification per pixel, so 40x = 0.25 µm/px);
* a pixel size, ``"1000"``: the image's longest side in pixels.

The image is read from the smallest pyramid level that still has at least
the wanted resolution and then resized down, so level 0 of a large slide is
never read whole.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
import zlib
from array import array
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar, cast

import cv2
import numpy as np
import openslide

# Reading more than this many pixels in one call is refused: it is the sign of a
# work size that asks for (nearly) level 0 of a whole slide.
MAX_READ_PIXELS = 400_000_000
MICRONS_AT_1X = 10.0  # 1x objective ~ 10 µm per pixel, so 40x ~ 0.25 µm per pixel

_MAGNIFICATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[xX]\s*$")
_PIXELS = re.compile(r"^\s*(\d+)\s*$")


class SlideError(Exception):
    """A slide that cannot be quality-checked: ``reason`` in a lab person's words, ``slide`` its name.

    ``str(error)`` is ``"<slide>: <reason>"``, one line for the log and the slide's row.
    """

    def __init__(self, reason: str, slide: str = "") -> None:
        super().__init__(f"{slide}: {reason}" if slide else reason)
        self.reason, self.slide = reason, slide


class SettingError(ValueError):
    """A setting's value cannot be used: ``setting`` names it, ``reason`` says why.

    ``str(error)`` is ``"<setting>: <reason>"``. The command line says it as ``--<setting>: <reason>``.
    """

    def __init__(self, setting: str, reason: str) -> None:
        super().__init__(f"{setting}: {reason}")
        self.setting, self.reason = setting, reason


@dataclass(frozen=True)
class WorkSize:
    """A parsed work size: a magnification (``"1.25x"``) or a longest side in pixels (``"1000"``)."""

    text: str
    magnification: float | None = None
    longest_side: int | None = None
    setting: str = field(default="work size", compare=False)  # the setting it came from, for messages

    @classmethod
    def parse(cls, text: str | float | int, parameter: str = "work size") -> WorkSize:
        """Parse ``text`` as a work size; a SettingError naming ``parameter`` says why it is neither form."""
        raw = str(text)
        if match := _MAGNIFICATION.match(raw):
            value = float(match.group(1))
            if value <= 0:
                raise SettingError(parameter, f"magnification must be > 0, got {raw!r}")
            return cls(text=f"{value:g}x", magnification=value, setting=parameter)
        if match := _PIXELS.match(raw):
            value = int(match.group(1))
            if value < 16:
                raise SettingError(parameter, f"pixel size must be >= 16, got {raw!r}")
            return cls(text=str(value), longest_side=value, setting=parameter)
        raise SettingError(
            parameter,
            f"{raw!r} is not a work size; use a magnification like '1.25x' or a longest side in pixels like '1000'",
        )


@dataclass
class LevelRead:
    """One pixel read from the slide, recorded so tests and profiles can see what was read."""

    level: int
    location: tuple[int, int]
    size: tuple[int, int]
    seconds: float


class ReadLog(Sequence):
    """Every pixel read of a slide, in order, as :class:`LevelRead` items.

    Kept as six 32-bit integers per read in one array (24 bytes a read) instead of a
    list of LevelRead objects (~400 bytes a read): a flow keeps every slide object
    until its run ends, and a 20480 x 15360 slide is read ~50 times.
    """

    FIELDS = 6  # level, x, y, width, height (pixels, below 2**31), microseconds (up to 35 minutes)

    def __init__(self) -> None:
        self._values = array("i")

    def add(self, level: int, location: tuple[int, int], size: tuple[int, int], seconds: float) -> None:
        """Record one read: ``size`` (width, height) px of ``level`` at ``location`` (x, y at level 0), in ``seconds``."""
        # One in-place concatenation is one C call under the GIL: rows from tile threads never interleave.
        microseconds = min(round(seconds * 1e6), 2**31 - 1)
        self._values += array("i", (level, *location, *size, microseconds))

    def __len__(self) -> int:
        """Return the number of reads."""
        return len(self._values) // self.FIELDS

    def __getitem__(self, index):
        """Return the read at ``index`` as a LevelRead (a list of them for a slice)."""
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"read {index} of {len(self)}")
        level, x, y, width, height, microseconds = self._values[index * self.FIELDS : (index + 1) * self.FIELDS]
        return LevelRead(level, (x, y), (width, height), microseconds / 1e6)


@dataclass
class MaskStep:
    """What one QC step did to the tissue: HistoQC's ``relative2mask``."""

    name: str
    removed_fraction: float  # fraction of the tissue before the step that the step flagged


class PackedMasks(MutableMapping):
    """The slide's bool masks by name, packed 8 pixels to a byte (``np.packbits``) and deflated (zlib).

    A flow keeps every step's slide object until its run ends, and the process
    executors copy it between processes several times per slide. A tissue or blur
    mask is a few large regions: deflated at zlib's fastest level its packed bits
    shrink 12 to 30 times (a 640 x 480 mask: 38,400 bytes packed, 1.3 to 3.4 KB;
    ~0.1 ms each way). A mask that does not shrink (noise) is kept packed only.
    Reading a mask unpacks a new array.
    """

    def __init__(self) -> None:
        self._packed: dict[str, tuple[bytes, bool, tuple[int, ...]]] = {}  # name -> (bytes, deflated, shape)

    def __getitem__(self, name: str) -> np.ndarray:
        """Return the mask ``name``, unpacked to a bool array of its shape."""
        data, deflated, shape = self._packed[name]
        packed = np.frombuffer(zlib.decompress(data) if deflated else data, np.uint8)
        return np.unpackbits(packed, count=math.prod(shape)).view(bool).reshape(shape)

    def __setitem__(self, name: str, mask: np.ndarray) -> None:
        """Store the bool ``mask`` as ``name``, packed 8 pixels a byte (deflated when that is smaller)."""
        if mask.dtype != bool:
            raise TypeError(f"mask {name!r} must be bool, got {mask.dtype}")
        packed = np.packbits(mask, axis=None).tobytes()
        deflated = zlib.compress(packed, 1)
        smaller = len(deflated) < len(packed)
        self._packed[name] = (deflated if smaller else packed, smaller, mask.shape)

    def __delitem__(self, name: str) -> None:
        """Forget the mask ``name``."""
        del self._packed[name]

    def __setstate__(self, state: dict) -> None:
        """Restore the masks from a pickle, also one made before masks were deflated."""
        # A slide object persisted before the masks were deflated holds (packed array, shape) per mask:
        # still read, so a persisted-results cache from then stays usable.
        self._packed = {
            name: entry if len(entry) == 3 else (entry[0].tobytes(), False, tuple(entry[1]))
            for name, entry in state["_packed"].items()
        }

    def __iter__(self) -> Iterator[str]:
        """Iterate over the masks' names, in the order they were first stored."""
        return iter(self._packed)

    def __len__(self) -> int:
        """Return the number of masks."""
        return len(self._packed)

    def nbytes(self) -> int:
        """Bytes the packed masks hold."""
        return sum(len(data) for data, _, _ in self._packed.values())


Finding = TypeVar("Finding")


class Findings:
    """What the QC steps found on a slide: one typed value per kind, looked up by its type.

    Each step stores its own frozen dataclass (``slideqc.qc.Tissue``, ``slideqc.qc.Blur``, ...)
    with :meth:`add` and reads another's with ``s.found[Tissue]``, typed as that class: a new
    step brings its own type and needs no new field here.
    """

    def __init__(self) -> None:
        self._by_type: dict[type, object] = {}

    def add(self, finding: object) -> None:
        """Store ``finding``, replacing an earlier one of its type."""
        self._by_type[type(finding)] = finding

    def __getitem__(self, kind: type[Finding]) -> Finding:
        """Return the finding of type ``kind``; a KeyError says when its step has not run."""
        try:
            return cast(Finding, self._by_type[kind])
        except KeyError:
            raise KeyError(f"no {kind.__name__} found yet: its step has not run") from None

    def get(self, kind: type[Finding]) -> Finding | None:
        """Return the finding of type ``kind``, or None when its step has not run."""
        return cast(Finding | None, self._by_type.get(kind))

    def __contains__(self, kind: object) -> bool:
        """Return True when a finding of type ``kind`` is stored."""
        return kind in self._by_type

    def __repr__(self) -> str:
        """Return the types of the findings stored, as ``Findings(Tissue, Blur)``."""
        return f"Findings({', '.join(kind.__name__ for kind in self._by_type)})"


class BaseImage:
    """One slide: its OpenSlide handle, images per work size, masks and what the QC found."""

    TISSUE, USABLE = "tissue", "usable"  # the masks every slide gets (see :meth:`set_tissue`)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.name = display_name(self.path.name)  # the name shown in rows, logs and folder names
        self.masks = PackedMasks()
        self.mask_steps: list[MaskStep] = []
        # Set by the load step (qc.load_slide), which every other step follows: tissue is found at the
        # image work size, blur at the other. Declared here, not assigned: nothing reads them before.
        self.image_work_size: WorkSize
        self.blur_work_size: WorkSize
        self.found = Findings()  # what each step found, by its type
        self.settings_used: dict[str, str | float] = {}  # each setting a step ran with (ran_with), by name
        self.timings: dict[str, float] = {}  # seconds per step
        self.reads = ReadLog()
        self._images: dict[str, np.ndarray] = {}
        self._slide: openslide.OpenSlide | None = None
        slide = self._open()
        self.vendor = slide.properties.get(openslide.PROPERTY_NAME_VENDOR, "unknown")
        self.dimensions: tuple[int, int] = slide.dimensions
        self.level_dimensions: tuple[tuple[int, int], ...] = slide.level_dimensions
        self.level_downsamples: tuple[float, ...] = slide.level_downsamples
        self.objective_power = _float_property(slide, openslide.PROPERTY_NAME_OBJECTIVE_POWER)
        self.mpp = _float_property(slide, openslide.PROPERTY_NAME_MPP_X)

    # --- opening, pickling ---------------------------------------------------------

    def _open(self) -> openslide.OpenSlide:
        """Open the OpenSlide handle and return it; any failure becomes one SlideError in a lab person's words."""
        if self.path.is_dir():
            raise SlideError("is a folder, not a slide file", self.name)
        if not self.path.is_file():
            raise SlideError(f"no such file: {self.path}", self.name)
        if self.path.stat().st_size == 0:
            raise SlideError("empty file (0 bytes); copy it again from the scanner", self.name)
        try:
            self._slide = openslide.OpenSlide(str(self.path))
        except openslide.OpenSlideUnsupportedFormatError:
            raise SlideError(why_unreadable(self.path), self.name) from None
        except (openslide.OpenSlideError, OSError) as error:
            raise SlideError(why_unreadable(self.path, error), self.name) from None
        return self._slide

    @property
    def slide(self) -> openslide.OpenSlide:
        """The OpenSlide handle, opened again when the slide was closed or unpickled."""
        if self._slide is None:
            return self._open()
        return self._slide

    def close(self) -> None:
        """Let go of the OpenSlide handle (and its tile cache) and of the work images read so far.

        The masks and the values stay: a flow keeps every step's slide object until
        its run ends, so what a closed slide holds is all that grows with the batch.
        Anything read later reopens the slide.
        """
        self._images = {}
        if self._slide is not None:
            self._slide.close()
            self._slide = None

    def __getstate__(self) -> dict:
        """Return the state to pickle: without the OpenSlide handle and the cached work images."""
        state = self.__dict__.copy()
        state["_slide"] = None  # an OpenSlide handle cannot cross processes
        state["_images"] = {}  # nor should large pixel arrays: they are re-read on demand
        return state

    def __setstate__(self, state: dict) -> None:
        """Restore from a pickle, also one made when the read log was a list of LevelRead."""
        # A slide object persisted before the read log was compact holds a list of LevelRead.
        if isinstance(state.get("reads"), list):
            log = ReadLog()
            for read in state["reads"]:
                log.add(read.level, read.location, read.size, read.seconds)
            state["reads"] = log
        self.__dict__.update(state)

    def __repr__(self) -> str:
        """Return the slide's name, its level-0 size (width x height) and its masks' names."""
        return f"BaseImage({self.name!r}, {self.dimensions[0]}x{self.dimensions[1]}, masks={list(self.masks)})"

    # --- work sizes ----------------------------------------------------------------

    @property
    def base_magnification(self) -> float | None:
        """Level 0's magnification: the objective power, else derived from microns per pixel."""
        if self.objective_power:
            return self.objective_power
        if self.mpp:
            return MICRONS_AT_1X / self.mpp
        return None

    def downsample_for(self, work_size: str | WorkSize) -> float:
        """Return the downsample from level 0 that gives ``work_size``.

        Parameters
        ----------
        work_size : str or WorkSize
            A magnification (``"1.25x"``) or a longest side in pixels (``"2000"``).

        Returns
        -------
        float, > 0
            Level-0 pixels per work pixel along a side: >= 1 means smaller than level 0. A
            magnification on a slide that states neither objective power nor pixel size is
            a SlideError.
        """
        size = work_size if isinstance(work_size, WorkSize) else WorkSize.parse(work_size)
        if size.longest_side is not None:
            return max(self.dimensions) / size.longest_side
        base = self.base_magnification
        if base is None:
            raise SlideError(
                f"no objective power or microns per pixel in the slide, so {size.setting} {size.text!r} cannot be "
                "used; pass a pixel work size such as '2000' instead",
                self.name,
            )
        assert size.magnification is not None  # WorkSize.parse sets exactly one of the two
        return base / size.magnification

    def work_shape(self, work_size: str | WorkSize) -> tuple[int, int]:
        """Return the (rows, cols) of the image at ``work_size``.

        Parameters
        ----------
        work_size : str or WorkSize
            A magnification (``"1.25x"``) or a longest side in pixels (``"2000"``).

        Returns
        -------
        (int, int), each >= 1
            In pixels; never larger than level 0.
        """
        downsample = max(self.downsample_for(work_size), 1.0)
        width, height = self.dimensions
        return max(1, round(height / downsample)), max(1, round(width / downsample))

    def microns_per_pixel(self, work_size: str | WorkSize) -> float | None:
        """Return the pixel size in µm at ``work_size``, when the slide states its own.

        Parameters
        ----------
        work_size : str or WorkSize
            A magnification (``"1.25x"``) or a longest side in pixels (``"2000"``).

        Returns
        -------
        float or None
            µm per work pixel (> 0); None when the slide states no pixel size.
        """
        if not self.mpp:
            return None
        return self.mpp * max(self.downsample_for(work_size), 1.0)

    def level_for(self, work_size: str | WorkSize) -> int:
        """Return the smallest pyramid level that still has at least the resolution of ``work_size``.

        Parameters
        ----------
        work_size : str or WorkSize
            A magnification (``"1.25x"``) or a longest side in pixels (``"2000"``).

        Returns
        -------
        int, >= 0
            The pyramid level to read from (0 when none is fine enough but level 0).
        """
        downsample = max(self.downsample_for(work_size), 1.0) * 1.0001
        # OpenSlide picks the level whose downsample is the largest one <= the wanted one. Done
        # here from the level list, not by the handle: tile threads ask for every tile, and a
        # handle that failed a read in another thread fails every later call.
        fitting = [level for level, d in enumerate(self.level_downsamples) if d <= downsample]
        return max(fitting, key=lambda level: self.level_downsamples[level]) if fitting else 0

    # --- pixels --------------------------------------------------------------------

    def get_image(self, work_size: str | WorkSize) -> np.ndarray:
        """Return the slide as an RGB uint8 array at ``work_size``, cached per work size.

        Parameters
        ----------
        work_size : str or WorkSize
            A magnification (``"1.25x"``) or a longest side in pixels (``"2000"``).

        Returns
        -------
        (rows, cols, 3) uint8
            Of :meth:`work_shape`; transparent areas are white, as glass.
        """
        size = work_size if isinstance(work_size, WorkSize) else WorkSize.parse(work_size)
        if size.text not in self._images:
            self._images[size.text] = self._read_work_image(size)
        return self._images[size.text]

    def drop_image(self, work_size: str | WorkSize) -> None:
        """Let go of the work image cached at ``work_size`` (read again if asked for)."""
        size = work_size if isinstance(work_size, WorkSize) else WorkSize.parse(work_size)
        self._images.pop(size.text, None)

    def _read_work_image(self, size: WorkSize) -> np.ndarray:
        rows, cols = self.work_shape(size)
        return self.read_work_region(size, (0, 0, rows, cols))

    def level_region(
        self, work_size: str | WorkSize, window: tuple[int, int, int, int]
    ) -> tuple[int, tuple[int, int], tuple[int, int]]:
        """Return where ``window`` at ``work_size`` is read from: (level, location, size).

        As :meth:`read_region` takes them: the location in level-0 pixels, the
        size in pixels of the level (the best one, :meth:`level_for`).

        Parameters
        ----------
        work_size : str or WorkSize
            A magnification (``"1.25x"``) or a longest side in pixels (``"2000"``).
        window : (top, left, rows, cols)
            In pixels of the image at ``work_size``.

        Returns
        -------
        (int, (int, int), (int, int))
            The level, the location (x, y) in level-0 pixels and the size (width, height)
            in pixels of the level.
        """
        size = work_size if isinstance(work_size, WorkSize) else WorkSize.parse(work_size)
        top, left, rows, cols = window
        work_rows, work_cols = self.work_shape(size)
        level = self.level_for(size)
        width, height = self.level_dimensions[level]
        # Work pixel x covers level pixels [x * scale_x, (x + 1) * scale_x): the same scale the
        # whole-image resize uses, so a tile lines up with the whole image.
        scale_x, scale_y = width / work_cols, height / work_rows
        x0, x1 = math.floor(left * scale_x), min(width, math.ceil((left + cols) * scale_x))
        y0, y1 = math.floor(top * scale_y), min(height, math.ceil((top + rows) * scale_y))
        downsample = self.level_downsamples[level]
        return level, (round(x0 * downsample), round(y0 * downsample)), (x1 - x0, y1 - y0)

    def read_work_region(self, work_size: str | WorkSize, window: tuple[int, int, int, int]) -> np.ndarray:
        """Return the RGB uint8 pixels of ``window``, in pixels of the image at ``work_size``.

        Read from the best pyramid level (:meth:`level_region`) and resized with
        ``INTER_AREA`` when the work size is not exactly that level. Tiles
        read this way are exact crops of :meth:`get_image` when the work size is a
        pyramid level; otherwise they can differ from it in the last bit of
        interpolation at a tile's edge.

        Parameters
        ----------
        work_size : str or WorkSize
            A magnification (``"1.25x"``) or a longest side in pixels (``"2000"``).
        window : (top, left, rows, cols)
            In pixels of the image at ``work_size``.

        Returns
        -------
        (rows, cols, 3) uint8
            The window's pixels. A read of more than :data:`MAX_READ_PIXELS` level pixels
            at once is a SlideError.
        """
        size = work_size if isinstance(work_size, WorkSize) else WorkSize.parse(work_size)
        level, location, (width, height) = self.level_region(size, window)
        if width * height > MAX_READ_PIXELS:
            level_width, level_height = self.level_dimensions[level]
            whole = "read whole" if (width, height) == (level_width, level_height) else f"{width}x{height} px at once"
            raise SlideError(
                f"work size {size.text!r} needs level {level} ({level_width}x{level_height} px) {whole}; "
                "choose a smaller work size",
                self.name,
            )
        rgb = self.read_region(location, level, (width, height))
        rows, cols = window[2:]
        if (rows, cols) != rgb.shape[:2]:
            rgb = cv2.resize(rgb, (cols, rows), interpolation=cv2.INTER_AREA)
        return rgb

    def read_region(self, location: tuple[int, int], level: int, size: tuple[int, int]) -> np.ndarray:
        """Return the RGB uint8 pixels of a region of one pyramid level.

        Transparent areas (outside the scanned region) come back white, as glass.

        Parameters
        ----------
        location : (x, y)
            The region's top-left corner, in level-0 pixels.
        level : int, >= 0
            The pyramid level to read.
        size : (width, height)
            In pixels of ``level``.

        Returns
        -------
        (height, width, 3) uint8
            The region; a failed read is a SlideError (:meth:`read_failed`).
        """
        started = time.perf_counter()
        try:
            rgba = np.asarray(self.slide.read_region(location, level, size))
        except openslide.OpenSlideError as error:
            raise self.read_failed(level, error) from None
        self.reads.add(level, location, size, time.perf_counter() - started)
        rgb = cv2.cvtColor(rgba, cv2.COLOR_RGBA2RGB)  # ~15x faster than slicing and copying
        alpha = cv2.extractChannel(rgba, 3)
        if cv2.countNonZero(alpha) < alpha.size:  # rare: only outside the scanned region
            rgb[alpha == 0] = 255
        return rgb

    def read_failed(self, level: int, error: BaseException) -> SlideError:
        """Return the SlideError for a failed pixel read, and drop the OpenSlide handle.

        OpenSlide keeps the first error in its handle: every later call on it
        (reads, even properties) fails with the same message. The handle is
        dropped, not closed, so a reader in another thread is not cut off; it is
        freed when the last reference goes, and the next access reopens the
        file. Tiled readers should raise ``self.read_failed(level, error)`` too.
        """
        self._slide = None
        truncated = _truncation(self.path)
        if truncated:
            return SlideError(truncated, self.name)
        detail = _one_line(error).replace(str(self.path), self.name)
        return SlideError(f"cannot read pixels at level {level} (corrupt tile?): {detail}", self.name)

    def thumbnail(self, longest_side: int = 1024) -> np.ndarray:
        """Return a small RGB overview, resized from the smallest cached work image that is big enough.

        Parameters
        ----------
        longest_side : int, >= 1
            The overview's longest side at most, in pixels.

        Returns
        -------
        (rows, cols, 3) uint8
            The overview (a cached work image itself when it is small enough already).
        """
        cached = sorted(self._images.values(), key=lambda image: image.size)
        source = next((im for im in cached if max(im.shape[:2]) >= longest_side), None)
        if source is None:
            source = cached[-1] if cached else self.get_image(str(longest_side))
        scale = min(1.0, longest_side / max(source.shape[:2]))
        if scale == 1.0:
            return source
        size = (max(1, round(source.shape[1] * scale)), max(1, round(source.shape[0] * scale)))
        return cv2.resize(source, size, interpolation=cv2.INTER_AREA)

    # --- masks and results ---------------------------------------------------------

    def set_mask(self, name: str, mask: np.ndarray, removed_fraction: float | None = None) -> None:
        """Store a bool mask, and the share of the tissue the step flagged (HistoQC's steps).

        Parameters
        ----------
        name : str
            The mask's name (the step's).
        mask : bool array
            At any shape.
        removed_fraction : float, 0 to 1, optional
            The share of the tissue the step flagged, recorded in :attr:`mask_steps`.
        """
        self.masks[name] = mask
        if removed_fraction is not None:
            self.mask_steps.append(MaskStep(name, removed_fraction))

    def ran_with(self, **settings: str | float) -> None:
        """Record the settings a step ran with (QC setting names), for the slide's own report."""
        self.settings_used.update(settings)

    def set_tissue(self, tissue: np.ndarray) -> None:
        """Store the tissue mask; the usable tissue (:attr:`usable`) starts as all of it.

        Set again (a step that finds some of the "tissue" is ink on glass, say), the usable
        tissue is the new mask less what earlier steps excluded.
        """
        usable = tissue
        if self.USABLE in self.masks:
            excluded = self.masks[self.TISSUE] & ~self.masks[self.USABLE]
            usable = tissue & ~excluded
        self.masks[self.TISSUE] = tissue
        self.masks[self.USABLE] = usable

    @property
    def usable(self) -> np.ndarray:
        """The tissue the QC judges (bool, at the tissue mask's shape): the tissue minus what steps excluded.

        HistoQC's "mask in use": each step that finds something not to judge the focus on
        (:meth:`exclude`) narrows it, and the blur step reads only it.
        """
        if self.USABLE not in self.masks:
            raise SlideError("no tissue mask yet: run the tissue step first", self.name)
        return self.masks[self.USABLE]

    def exclude(self, name: str, mask: np.ndarray) -> float:
        """Take ``mask`` out of the usable tissue, and return the share of the tissue it took.

        A tissue pixel is taken out when any of it is covered by ``mask`` (resized to the
        tissue mask's shape by area). The share is recorded as the step ``name``
        (:attr:`mask_steps`), and ``mask`` is kept under that name at its own shape.

        Parameters
        ----------
        name : str
            The step that excludes.
        mask : bool array
            What it found, at any shape.

        Returns
        -------
        float, 0 to 1
            The share of the tissue that was usable and is not any more.
        """
        usable = self.usable
        covered = mask
        if mask.shape != usable.shape:
            covered = cv2.resize(mask.astype(np.float32), usable.shape[::-1], interpolation=cv2.INTER_AREA) > 0
        tissue_pixels = int(np.count_nonzero(self.masks[self.TISSUE]))
        share = int(np.count_nonzero(usable & covered)) / tissue_pixels if tissue_pixels else 0.0
        self.masks[self.USABLE] = usable & ~covered
        self.set_mask(name, mask, removed_fraction=share)
        return share


def display_name(text: str) -> str:
    r"""Return ``text`` with the bytes of a name that is not valid UTF-8 shown as ``\xNN`` (``M\xfcller.svs``).

    Python reads such a name (from a Windows share, say) with its bytes as lone
    surrogates, which no UTF-8 file, log or web page can hold. Shown this way the
    name is printable, the same everywhere, and different names stay different.
    Valid names are returned unchanged.
    """
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that did not come from a byte: show its code point
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _float_property(slide: openslide.OpenSlide, key: str) -> float | None:
    value = slide.properties.get(key)
    try:
        number = float(value) if value not in (None, "") else None
    except ValueError:
        return None
    return number if number and number > 0 else None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


# --- why a file is not a readable slide -----------------------------------------------

_TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # TIFF and BigTIFF, both byte orders
# TIFF compression codes OpenSlide cannot decode that scanners and converters write.
_COMPRESSIONS = {
    "34712": "JPEG 2000",
    "34887": "LERC",
    "34925": "LZMA",
    "34933": "PNG",
    "34934": "JPEG XR",
    "50000": "Zstandard",
    "50001": "WebP",
    "50002": "JPEG XL",
}
_OTHER_FORMATS = (
    (b"\x89PNG", "a PNG picture"),
    (b"\xff\xd8\xff", "a JPEG picture"),
    (b"GIF8", "a GIF picture"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive"),
)
_UNSUPPORTED_COMPRESSION = re.compile(r"Unsupported TIFF compression: (\d+)")


class _QuietInThisThread(logging.Filter, threading.local):
    """Drops tifffile's log records in the thread that is diagnosing a file, only while it does."""

    active = False

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.active


_quiet_tifffile = _QuietInThisThread()
logging.getLogger("tifffile").addFilter(_quiet_tifffile)


def why_unreadable(path: str | Path, error: BaseException | None = None) -> str:
    """Why OpenSlide cannot open ``path``, in words a lab person understands (one line).

    ``error`` is what OpenSlide raised, if more than "unsupported format".
    """
    path = Path(path)
    detail = _one_line(error).replace(str(path), path.name) if error is not None else ""
    if match := _UNSUPPORTED_COMPRESSION.search(detail):
        code = match.group(1)
        name = _COMPRESSIONS.get(code, "a method")
        return (
            f"compressed with {name} (TIFF compression {code}), which OpenSlide cannot decode; "
            "export the slide again with JPEG compression"
        )
    truncated = _truncation(path)
    if truncated:
        return truncated
    if detail:
        return f"cannot open: {detail}"
    try:
        with open(path, "rb") as handle:
            head = handle.read(512)
    except OSError as os_error:
        return f"cannot read the file: {os_error.strerror or _one_line(os_error)}"
    if head[:4] in _TIFF_MAGIC:
        return "not a slide OpenSlide can read: a TIFF image, but not a tiled whole-slide image"
    for magic, kind in _OTHER_FORMATS:
        if head.startswith(magic):
            return f"not a slide OpenSlide can read: the file is {kind}, not a slide"
    if _looks_like_text(head):
        return "not a slide OpenSlide can read: the file holds text, not an image"
    return f"not a slide OpenSlide can read: unknown file format (it starts with {head[:8].hex(' ')})"


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t" for ch in text)


def _truncation(path: Path) -> str | None:
    """Return a message when ``path`` is a TIFF whose image data runs past the end of the file, else None."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            if handle.read(4) not in _TIFF_MAGIC:
                return None
    except OSError:
        return None
    import tifffile

    _quiet_tifffile.active = True  # it logs a warning per damaged tag; the message below says it once
    try:
        with tifffile.TiffFile(path) as tif:
            spans = [zip(page.dataoffsets, page.databytecounts, strict=False) for page in tif.pages]
            end = max((int(offset) + int(count) for span in spans for offset, count in span), default=0)
    except Exception:  # a TIFF whose structure cannot even be parsed is damaged
        return "damaged file: its TIFF structure cannot be read (truncated copy?); copy it again"
    finally:
        _quiet_tifffile.active = False
    if end == 0:
        return "damaged file: no image data in its TIFF structure (truncated copy?); copy it again"
    if end > size:
        return (
            f"truncated file: {size:,} bytes, but its image data runs to byte {end:,}; copy it again from the scanner"
        )
    return None
