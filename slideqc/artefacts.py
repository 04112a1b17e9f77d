"""STAND-IN until the artefacts branch lands: the interface only, nothing is found."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

import numpy as np

from slideqc.algorithms import resize_mask

ArtefactKind = Literal["ink", "bubble", "debris", "edge", "fold"]
KINDS: tuple[ArtefactKind, ...] = typing.get_args(ArtefactKind)
ON_COVERSLIP: tuple[ArtefactKind, ...] = ("ink", "bubble", "debris", "edge")


@dataclass(frozen=True)
class Artefacts:
    ink: np.ndarray
    bubble: np.ndarray
    debris: np.ndarray
    edge: np.ndarray
    fold: np.ndarray
    tissue: np.ndarray

    def of(self, kind: ArtefactKind) -> np.ndarray:
        return getattr(self, kind)

    def union(self) -> np.ndarray:
        return np.logical_or.reduce([self.of(kind) for kind in KINDS])


def find_artefacts(rgb: np.ndarray, tissue: np.ndarray, mpp: float | None) -> Artefacts:
    shape = rgb.shape[:2]
    none = np.zeros(shape, bool)
    return Artefacts(none, none, none, none, none, resize_mask(tissue, shape))
