"""A tiny dependency-free PNG writer (zlib + struct), image grids with labels, a bare line plot."""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from graphrnn.files import write_atomic


def encode_png(image: np.ndarray) -> bytes:
    """Encode an 8-bit grayscale ``(H, W)`` or RGB ``(H, W, 3)`` image as PNG bytes.

    Parameters
    ----------
    image : numpy.ndarray
        ``uint8`` values are used as they are; float values are read as ``[0, 1]``
        (clipped) and scaled to ``0..255``; bool arrays map to black/white.

    Returns
    -------
    bytes
        A complete PNG file (8 bits per channel, no interlace).
    """
    img = _to_uint8(image)
    height, width = img.shape[:2]
    color = 0 if img.ndim == 2 else 2
    raw = img.reshape(height, -1)
    # Filter type 0 (None) before each scan line.
    data = np.concatenate([np.zeros((height, 1), np.uint8), raw], axis=1).tobytes()
    header = struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(data, 9)) + _chunk(b"IEND", b""))


def write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write ``image`` (see :func:`encode_png`) to ``path`` atomically (temp file + replace).

    Parameters
    ----------
    path : str or os.PathLike
        Destination; its folder is created if needed.
    image : numpy.ndarray
        ``(H, W)`` grayscale or ``(H, W, 3)`` RGB.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    payload = encode_png(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, payload)


def image_grid(rows: Sequence[Sequence[np.ndarray]], scale: int = 8, pad: int = 1,
               background: float = 0.5, labels: Sequence[str] | None = None,
               text_scale: int = 2) -> np.ndarray:
    """Tile ±1 (or ``[0, 1]``) images into one grayscale grid, each pixel a ``scale`` square.

    Parameters
    ----------
    rows : sequence of sequences of numpy.ndarray
        ``rows[r][c]`` is a 2-D image; all the same shape. Values > 0 are drawn black (ink)
        for ±1 images; ``[0, 1]`` float images are drawn as ``1 - value`` (1 is ink).
    scale : int
        Screen pixels per image pixel.
    pad : int
        Gap between images, in image pixels.
    background : float
        Gray level of the gaps (0 black, 1 white).
    labels : sequence of str, optional
        One label per row, drawn in black on white to the left of the row (lowercase letters
        and spaces of :data:`FONT`), centred on it; see :func:`label_origin`.
    text_scale : int
        Screen pixels per font pixel of the labels.

    Returns
    -------
    numpy.ndarray
        ``uint8`` grayscale image, ready for :func:`write_png`.
    """
    if labels is not None and len(labels) != len(rows):
        raise ValueError(f"image_grid: {len(labels)} labels for {len(rows)} rows")
    if not rows or not rows[0]:
        raise ValueError("image_grid needs at least one image")
    h, w = np.asarray(rows[0][0]).shape
    ncols = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + pad) + pad, ncols * (w + pad) + pad), background)
    for r, row in enumerate(rows):
        for c, img in enumerate(row):
            img = np.asarray(img, dtype=float)
            if img.shape != (h, w):
                raise ValueError(f"image_grid: image [{r}][{c}] has shape {img.shape}, "
                                 f"expected {(h, w)}")
            ink = (img > 0) if img.min() < 0 else np.clip(img, 0, 1)
            y, x = pad + r * (h + pad), pad + c * (w + pad)
            grid[y:y + h, x:x + w] = 1.0 - ink
    big = np.kron(grid, np.ones((scale, scale)))
    if labels is not None:
        texts = [text_image(label, text_scale) for label in labels]
        margin = max(t.shape[1] for t in texts) + 4 * text_scale
        big = np.concatenate([np.ones((big.shape[0], margin)), big], axis=1)
        for r, text in enumerate(texts):
            y, x = label_origin(r, text.shape, h, pad, scale, text_scale)
            big[y:y + text.shape[0], x:x + text.shape[1]][text] = 0.0
    return _to_uint8(big)


def label_origin(row: int, text_shape: tuple[int, int], height: int, pad: int, scale: int,
                 text_scale: int) -> tuple[int, int]:
    """Top-left screen pixel of row ``row``'s label in :func:`image_grid` (its vertical middle)."""
    top = (pad + row * (height + pad)) * scale
    return top + (height * scale - text_shape[0]) // 2, 2 * text_scale


#: A 5x7 bitmap font for labels: the lowercase letters of a few words, and space.
FONT = {ch: rows.split() for ch, rows in {
    "a": "..... ..... .###. ....# .#### #...# .####",
    "c": "..... ..... .###. #.... #.... #...# .###.",
    "d": "....# ....# .##.# #..## #...# #...# .####",
    "e": "..... ..... .###. #...# ##### #.... .###.",
    "l": ".##.. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "o": "..... ..... .###. #...# #...# #...# .###.",
    "p": "..... ..... ####. #...# ####. #.... #....",
    "r": "..... ..... #.##. ##..# #.... #.... #....",
    "s": "..... ..... .#### #.... .###. ....# ####.",
    "t": ".#... .#... ###.. .#... .#... .#..# ..##.",
    "u": "..... ..... #...# #...# #...# #..## .##.#",
    " ": "..... ..... ..... ..... ..... ..... .....",
}.items()}


def text_image(text: str, scale: int = 1) -> np.ndarray:
    """``text`` in :data:`FONT` as a boolean ink mask ``(7 * scale, 6 * len(text) * scale)``.

    Parameters
    ----------
    text : str
        Characters of :data:`FONT` (lowercase letters of the labels, space).
    scale : int
        Screen pixels per font pixel.

    Returns
    -------
    numpy.ndarray
        ``bool`` array, True where there is ink (one blank column after each character).
    """
    missing = sorted({c for c in text if c not in FONT})
    if missing:
        raise ValueError(f"text_image: no glyph for {''.join(missing)!r}; the font has "
                         f"{''.join(sorted(FONT))!r}")
    glyphs = [np.array([[c == "#" for c in row + "."] for row in FONT[ch]]) for ch in text]
    mask = np.concatenate(glyphs, axis=1) if glyphs else np.zeros((7, 0), bool)
    return np.kron(mask, np.ones((scale, scale), bool))


def line_plot(xs: np.ndarray, series: Sequence[np.ndarray], *, vlines: Sequence[float] = (),
              size: tuple[int, int] = (360, 560), ylim: tuple[float, float] = (0.0, 1.0),
              colors: Sequence[tuple[int, int, int]] | None = None) -> np.ndarray:
    """A bare RGB line plot (axes, lines, dashed vertical markers; no text).

    The fallback used when matplotlib is not installed; legend and labels belong in the
    caller's printed output.

    Parameters
    ----------
    xs : numpy.ndarray
        Shared x values, increasing.
    series : sequence of numpy.ndarray
        One y array per line, each as long as ``xs``.
    vlines : sequence of float
        x positions of dashed gray vertical lines.
    size : tuple of int
        ``(height, width)`` in pixels.
    ylim : tuple of float
        y range shown.
    colors : sequence of RGB tuples, optional
        Line colors (default blue, orange, green, red).

    Returns
    -------
    numpy.ndarray
        ``uint8`` array ``(height, width, 3)``.
    """
    height, width = size
    colors = colors or [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
    img = np.full((height, width, 3), 255, np.uint8)
    margin = 30
    x0, x1 = float(xs[0]), float(xs[-1])

    def to_px(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        px = margin + (np.asarray(x) - x0) / (x1 - x0 or 1.0) * (width - 2 * margin)
        py = height - margin - (np.asarray(y) - ylim[0]) / (ylim[1] - ylim[0]) * (
            height - 2 * margin)
        return px, py

    img[height - margin, margin:width - margin] = 0
    img[margin:height - margin + 1, margin] = 0
    for v in vlines:
        px, _ = to_px(np.array([v]), np.array([0.0]))
        col = int(round(px[0]))
        for y in range(margin, height - margin, 8):
            img[y:y + 4, col] = 128
    for k, ys in enumerate(series):
        px, py = to_px(xs, ys)
        color = colors[k % len(colors)]
        for i in range(len(xs) - 1):
            n = int(max(abs(px[i + 1] - px[i]), abs(py[i + 1] - py[i]))) + 1
            lx = np.round(np.linspace(px[i], px[i + 1], n)).astype(int)
            ly = np.round(np.linspace(py[i], py[i + 1], n)).astype(int)
            for dy in (-1, 0, 1):
                ok = (ly + dy >= 0) & (ly + dy < height) & (lx >= 0) & (lx < width)
                img[ly[ok] + dy, lx[ok]] = color
        for cx, cy in zip(np.round(px).astype(int), np.round(py).astype(int), strict=True):
            img[max(cy - 2, 0):cy + 3, max(cx - 2, 0):cx + 3] = color
    return img


def _to_uint8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3) or 0 in img.shape:
        raise ValueError(f"PNG images are (H, W) or (H, W, 3) and not empty; got {img.shape}")
    if img.dtype == np.uint8:
        return np.ascontiguousarray(img)
    if img.dtype == bool:
        return img.astype(np.uint8) * 255
    img = np.asarray(img, dtype=float)
    if not np.all(np.isfinite(img)):
        raise ValueError("PNG image has NaN or infinite values")
    return np.round(np.clip(img, 0.0, 1.0) * 255).astype(np.uint8)


def _chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
