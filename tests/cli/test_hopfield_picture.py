"""``graphrnn hopfield``: the recall picture's rows carry their labels (stored, corrupted, ...)."""

from __future__ import annotations

import struct
import zlib

import numpy as np

from graphrnn.cli.main import main
from graphrnn.frontend import png
from graphrnn.hopfield import bitmaps

LABELS = ("stored", "corrupted", "recalled")


def _decode_gray_png(data: bytes) -> np.ndarray:
    """The pixels of a grayscale PNG as graphrnn.frontend.png writes it (filter 0 per line)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, size = 8, b"", None
    while at < len(data):
        (length,), kind = struct.unpack(">I", data[at:at + 4]), data[at + 4:at + 8]
        body = data[at + 8:at + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert (depth, color) == (8, 0)
            size = (height, width)
        elif kind == b"IDAT":
            idat += body
        at += 12 + length
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(size[0], size[1] + 1)
    assert not raw[:, 0].any()
    return raw[:, 1:]


def test_recall_picture_has_row_labels(tmp_path, capsys):
    assert main(["hopfield", "--out", str(tmp_path)]) == 0
    assert "recalled 10/10" in capsys.readouterr().out
    image = _decode_gray_png((tmp_path / "hopfield_recall.png").read_bytes())
    scale, pad, text_scale = 8, 1, 2
    grid_width = (10 * (bitmaps.SIZE + pad) + pad) * scale
    margin = image.shape[1] - grid_width
    masks = [png.text_image(label, text_scale) for label in LABELS]
    assert margin >= max(m.shape[1] for m in masks)
    for row, mask in enumerate(masks):
        y, x = png.label_origin(row, mask.shape, bitmaps.SIZE, pad, scale, text_scale)
        region = image[y:y + mask.shape[0], x:x + mask.shape[1]]
        assert np.array_equal(region == 0, mask), LABELS[row]  # the word's pixels, exactly
        assert mask.sum() > 20 * len(LABELS[row])  # a word, not a dot
    label_area = image[:, :margin].copy()
    for row, mask in enumerate(masks):
        y, x = png.label_origin(row, mask.shape, bitmaps.SIZE, pad, scale, text_scale)
        label_area[y:y + mask.shape[0], x:x + mask.shape[1]] = 255
    assert (label_area == 255).all()  # nothing but the words in the margin


def test_text_image_refuses_characters_it_has_no_glyph_for():
    import pytest

    with pytest.raises(ValueError, match="no glyph for 'Zb'"):
        png.text_image("Zebra")
