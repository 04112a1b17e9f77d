"""The flow pictures in docs/ show the flows as they are: made by `make pictures` from the flows themselves."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from tests.helpers import ROOT


def png_texts(path: Path) -> dict[str, str]:
    """The tEXt chunks of a PNG file (key -> text), each chunk's CRC checked."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    texts, at = {}, 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + body), f"{path}: bad CRC in its {kind!r} chunk"
        if kind == b"tEXt":
            key, _, text = body.partition(b"\0")
            texts[key.decode("latin-1")] = text.decode("latin-1")
        at += 12 + length
    return texts


def make_pictures():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_pictures", ROOT / "docs" / "make_pictures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("solution, picture", make_pictures().FLOW_PICTURES)
def test_each_picture_shows_its_flows_parameters_and_tasks(solution, picture):
    module = make_pictures()
    shown = png_texts(ROOT / "docs" / f"{picture}.png").get(module.FLOW_KEY)
    assert shown, f"docs/{picture}.png does not say what it shows: run `make pictures`"
    flow = module.load_solution(solution).flow
    expected = {  # from the flow itself, not from the picture's maker
        "parameters": sorted(p.name for p in flow.parameters()),
        "tasks": sorted({t.name for t in flow.tasks} - {p.name for p in flow.parameters()}),
    }
    assert json.loads(shown) == expected, f"docs/{picture}.png is out of date with its flow: run `make pictures`"


def test_the_text_chunk_survives_a_round_trip(tmp_path):
    import cv2
    import numpy as np

    path = tmp_path / "x.png"
    path.write_bytes(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    make_pictures().add_png_text(path, "k", '{"a": 1}')
    assert png_texts(path) == {"k": '{"a": 1}'}
    assert cv2.imread(str(path)).shape == (4, 4, 3)  # still a PNG any reader opens
