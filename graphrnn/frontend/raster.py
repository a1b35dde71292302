"""Rasterise a :class:`~graphrnn.frontend.layout.Drawing` to an RGB image (PNG, no Graphviz)."""

from __future__ import annotations

import numpy as np

from graphrnn.frontend.layout import Drawing, arrowhead, bezier_point

#: A 5x7 bitmap font: each glyph is its character then 7 rows, one base-32 digit a row
#: (bit 4 the leftmost pixel).
_FONT_TABLE = (
    'AehhvhhhBuhhuhhuCehgggheDuhhhhhuEvgguggvFvggugggGehgnhhfHhhhvhhhIe44444eJ72222icKhikokih'
    'LggggggvMhrllhhhNhhpljhhOehhhhhePuhhugggQehhhlidRuhhukihSfgge11uTv444444UhhhhhheVhhhhha4'
    'WhhhlllaXhha4ahhYhha4444Zv1248gva00e1fhfbggmphhuc00egghed11djhhfe00ehvgef698s888gfhhf11e'
    'hggmphhhi40c444ej20622ickggikokilc44444em00qllhhn00mphhho00ehhhepuhhugggqfhhf111r00mpggg'
    's00ege1ut88s8896u00hhhjdv00hhha4w00hhllax00ha4ahyhhhf11ez00v248v0ehjlphe14c4444e2eh1248v'
    '3v2421he426aiv225vgu11he668guhhe7v1248888ehhehhe9ehhf12c@eh1dlle-000v000>8421248<248g842'
    '[e88888e]e22222e(2488842)8422248{2448442}8442448.00000cc,0000c48:0cc0cc0;0cc0c48=00v0v00'
    '+044v440*04lel40^4ah0000_000000v/01248g0\\0g84210|4444444\'4480000"aaa0000#aavavaa!4444404'
    '?eh12404%op248j3&cik8lid~008l200$4fke5u4`8420000'
)
_DIGITS = "0123456789abcdefghijklmnopqrstuv"
_DESCENDERS = "gpqy"  # drawn two font pixels lower


def _glyphs() -> dict[str, np.ndarray]:
    table, glyphs = _FONT_TABLE, {" ": np.zeros((7, 5), bool)}
    for i in range(0, len(table), 8):
        rows = [_DIGITS.index(c) for c in table[i + 1:i + 8]]
        glyphs[table[i]] = np.array([[(r >> (4 - k)) & 1 for k in range(5)] for r in rows], bool)
    return glyphs


GLYPHS = _glyphs()


def _rgb(colour: str) -> np.ndarray:
    colour = colour.lstrip("#")
    return np.array([int(colour[i:i + 2], 16) for i in (0, 2, 4)], np.uint8)


class _Canvas:
    def __init__(self, width: int, height: int, scale: float):
        self.img = np.full((height, width, 3), 255, np.uint8)
        self.scale = scale

    def stamp(self, xs: np.ndarray, ys: np.ndarray, colour: np.ndarray, width: float) -> None:
        """Square pens of ``width`` (drawing units) centred on the points ``xs, ys``."""
        h, w = self.img.shape[:2]
        r = max(int(round(width * self.scale / 2 - 0.25)), 0)
        xs, ys = np.round(xs * self.scale).astype(int), np.round(ys * self.scale).astype(int)
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                ok = (ys + dy >= 0) & (ys + dy < h) & (xs + dx >= 0) & (xs + dx < w)
                self.img[ys[ok] + dy, xs[ok] + dx] = colour

    def polyline(self, pts: np.ndarray, colour: str, width: float, dash=None) -> None:
        seg = np.diff(pts, axis=0)
        lengths = np.hypot(seg[:, 0], seg[:, 1])
        n = max(int(lengths.sum() * self.scale * 2), 2)
        along = np.concatenate([[0.0], np.cumsum(lengths)])
        s = np.linspace(0.0, along[-1], n)
        xs, ys = np.interp(s, along, pts[:, 0]), np.interp(s, along, pts[:, 1])
        if dash:
            pattern = np.cumsum(dash)
            phase = np.mod(s, pattern[-1])
            index = np.searchsorted(pattern, phase, side="right")
            keep = index % 2 == 0
            xs, ys = xs[keep], ys[keep]
        self.stamp(xs, ys, _rgb(colour), width)

    def polygon(self, pts: list, colour: str) -> None:
        """Fill a convex polygon."""
        p = np.array(pts) * self.scale
        x0, y0 = np.floor(p.min(axis=0)).astype(int)
        x1, y1 = np.ceil(p.max(axis=0)).astype(int)
        h, w = self.img.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
        if x1 < x0 or y1 < y0:
            return
        gy, gx = np.mgrid[y0:y1 + 1, x0:x1 + 1] + 0.5
        inside = np.ones(gx.shape, bool)
        sign = None
        for (ax, ay), (bx, by) in zip(p, np.roll(p, -1, axis=0), strict=True):
            cross = (bx - ax) * (gy - ay) - (by - ay) * (gx - ax)
            sign = np.sign(np.sum(cross)) if sign is None else sign
            inside &= cross * (sign or 1) >= -1e-9
        self.img[y0:y1 + 1, x0:x1 + 1][inside] = _rgb(colour)

    def rect(self, box, fill: str, stroke: str, dash, width: float) -> None:
        x, y, w, h = box
        s = self.scale
        self.img[int(y * s):int((y + h) * s), int(x * s):int((x + w) * s)] = _rgb(fill)
        corners = np.array([(x, y), (x + w, y), (x + w, y + h), (x, y + h), (x, y)], float)
        self.polyline(corners, stroke, width, dash)

    def text(self, x: float, y: float, s: str, size: float, colour: str, anchor: str,
             bold: bool, halo: bool) -> None:
        px = max(int(round(size * self.scale / 10)), 1)  # screen pixels per font pixel
        advance = size * 0.6 * self.scale
        left = x * self.scale - {"start": 0, "middle": 0.5, "end": 1.0}[anchor] * advance * len(s)
        top = int(round(y * self.scale)) - 7 * px
        h, w = self.img.shape[:2]
        if halo:
            x0, x1 = max(int(left) - px, 0), min(int(left + advance * len(s)) + px, w)
            self.img[max(top - px, 0):min(top + 8 * px, h), x0:x1] = 255
        rgb = _rgb(colour)
        for k, ch in enumerate(s):
            glyph = GLYPHS.get(ch, GLYPHS["?"])
            big = np.kron(glyph, np.ones((px, px), bool))
            if bold:
                big[:, 1:] |= big[:, :-1]
            gx = int(round(left + k * advance + (advance - 5 * px) / 2))
            ys, xs = np.nonzero(big)
            ys, xs = ys + top + (2 * px if ch in _DESCENDERS else 0), xs + gx
            ok = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)
            self.img[ys[ok], xs[ok]] = rgb


def rasterise(drawing: Drawing, scale: float = 2.0) -> np.ndarray:
    """Draw ``drawing`` into an RGB ``uint8`` image, ``scale`` pixels per drawing unit.

    Parameters
    ----------
    drawing : Drawing
        Rectangles, cubic curves with arrowheads and text, in drawing units.
    scale : float
        Pixels per unit (2 gives sharp text from the 5x7 bitmap font at size 10).

    Returns
    -------
    numpy.ndarray
        ``(H, W, 3)`` ``uint8``, for :func:`graphrnn.frontend.png.encode_png`.
    """
    canvas = _Canvas(int(np.ceil(drawing.width * scale)), int(np.ceil(drawing.height * scale)),
                     scale)
    for item in drawing.items:
        if item[0] == "rect":
            _, box, fill, stroke, dash, width, _ = item
            canvas.rect(box, fill, stroke, dash, width)
        elif item[0] == "curve":
            _, pts, stroke, dash, width, arrow, _ = item
            n = 24 if pts[0] != pts[1] else 2
            line = np.array([bezier_point(pts, s) for s in np.linspace(0.0, 1.0, n)])
            canvas.polyline(line, stroke, width, dash)
            if arrow:
                canvas.polygon(arrowhead(pts[2] if pts[2] != pts[3] else pts[0], pts[3]),
                               stroke)
        else:
            _, x, y, s, size, fill, anchor, bold, halo = item
            canvas.text(x, y, s, size, fill, anchor, bold, halo)
    return canvas.img
