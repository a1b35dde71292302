"""Bundled binary images (10x10 letters A..J) as ±1 arrays, and a text renderer for them."""

from __future__ import annotations

import numpy as np

#: Letters A..J on a 10x10 grid: ``#`` is on (+1), ``.`` is off (-1).
_LETTERS = {
    "A": """
....##....
...####...
..##..##..
.##....##.
.##....##.
.########.
.########.
.##....##.
.##....##.
.##....##.
""",
    "B": """
.######...
.##...##..
.##...##..
.##...##..
.######...
.##....##.
.##....##.
.##....##.
.##...##..
.######...
""",
    "C": """
...#####..
..##...##.
.##.......
.##.......
.##.......
.##.......
.##.......
.##.......
..##...##.
...#####..
""",
    "D": """
.#####....
.##..##...
.##...##..
.##....##.
.##....##.
.##....##.
.##....##.
.##...##..
.##..##...
.#####....
""",
    "E": """
.########.
.##.......
.##.......
.##.......
.######...
.######...
.##.......
.##.......
.##.......
.########.
""",
    "F": """
.########.
.########.
.##.......
.##.......
.######...
.######...
.##.......
.##.......
.##.......
.##.......
""",
    "G": """
..######..
.##....##.
.##.......
.##.......
.##.......
.##..####.
.##....##.
.##....##.
.##....##.
..######..
""",
    "H": """
.##....##.
.##....##.
.##....##.
.##....##.
.########.
.########.
.##....##.
.##....##.
.##....##.
.##....##.
""",
    "I": """
.########.
....##....
....##....
....##....
....##....
....##....
....##....
....##....
....##....
.########.
""",
    "J": """
....#####.
......##..
......##..
......##..
......##..
......##..
.##...##..
.##...##..
.##...##..
..####....
""",
}

#: The side of every bundled letter, in pixels.
SIZE = 10


def letter(name: str) -> np.ndarray:
    """One bundled letter as a ``(10, 10)`` array of ±1 (``+1`` is ink).

    Parameters
    ----------
    name : str
        One of ``"A"`` .. ``"J"``.

    Returns
    -------
    numpy.ndarray
        ``int8`` array of shape ``(10, 10)``.
    """
    if name not in _LETTERS:
        raise ValueError(f"no bundled letter {name!r}; choose one of {''.join(_LETTERS)}")
    rows = _LETTERS[name].strip().splitlines()
    return np.array([[1 if c == "#" else -1 for c in row] for row in rows], dtype=np.int8)


def letters(names: str = "ABCDEFGHIJ") -> np.ndarray:
    """Several bundled letters, flattened: ``(len(names), 100)`` of ±1, one pattern a row.

    Parameters
    ----------
    names : str
        Letters to take, in order (default all ten, ``"ABCDEFGHIJ"``).

    Returns
    -------
    numpy.ndarray
        ``int8`` array of shape ``(len(names), SIZE * SIZE)``.
    """
    return np.stack([letter(c).reshape(-1) for c in names])


def render(images: np.ndarray, shape: tuple[int, int] = (SIZE, SIZE), gap: int = 2,
           per_line: int | None = None) -> str:
    """Text picture of ±1 images side by side: ``█`` for +1, ``·`` otherwise.

    Parameters
    ----------
    images : numpy.ndarray
        ``(K, H*W)`` or ``(K, H, W)`` (or one image ``(H*W,)``/``(H, W)``).
    shape : tuple of int
        ``(H, W)`` used when the images are flat.
    gap : int
        Spaces between images.
    per_line : int, optional
        Wrap after this many images (a blank line between bands); default all on one band.

    Returns
    -------
    str
        ``H`` lines per band, without a trailing newline.
    """
    arr = np.asarray(images)
    if arr.ndim == 1 or (arr.ndim == 2 and arr.shape == tuple(shape)):
        arr = arr[None]
    arr = arr.reshape(arr.shape[0], *shape)
    step = per_line or len(arr)
    bands = []
    for start in range(0, len(arr), step):
        lines, band = [], arr[start:start + step]
        for r in range(shape[0]):
            parts = ["".join("█" if v > 0 else "·" for v in img[r]) for img in band]
            lines.append((" " * gap).join(parts))
        bands.append("\n".join(lines))
    return "\n\n".join(bands)
