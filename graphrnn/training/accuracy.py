"""Embedded Reber accuracy of a trained net on held-out strings (Hochreiter & Schmidhuber 1997).

A string counts as right when at every step every symbol the grammar allows next is predicted
above the threshold and every other below it; the penultimate T/P, which repeats the second
symbol across the whole inner string, is also scored on its own. Strings are drawn from the
grammar with a seed other than the training data's; with the training data, also scored are
only those never seen in training (short strings repeat a lot).
"""

from __future__ import annotations

import os

import numpy as np

from graphrnn.errors import DataError
from graphrnn.training.data import load_data
from graphrnn.training.tasks import REBER_SYMBOLS, embedded_reber

__all__ = ["reber_report", "score", "strings"]


def strings(data: dict) -> list[str]:
    """The input strings of an embedded Reber data set (``x`` one-hot, ``lengths``) as text.

    Parameters
    ----------
    data : dict
        As :func:`graphrnn.training.tasks.embedded_reber` returns (or a data file holding it).

    Returns
    -------
    list of str
        Each string without its final ``E`` (what the net reads).
    """
    idx = np.asarray(data["x"]).argmax(axis=2).T
    return ["".join(REBER_SYMBOLS[k] for k in row[:n])
            for row, n in zip(idx, np.asarray(data["lengths"]), strict=True)]


def score(y: np.ndarray, data: dict, threshold: float = 0.5,
          seen: set[str] | None = None) -> dict[str, float]:
    """Fractions of strings right, overall, at the penultimate step and among novel strings.

    Parameters
    ----------
    y : array (T, B, 7)
        The net's outputs on ``data["x"]``.
    data : dict
        :func:`graphrnn.training.tasks.embedded_reber` arrays: ``x``, ``y`` (allowed next symbols),
        ``mask``, ``lengths``.
    threshold : float, optional
    seen : set of str, optional
        Training strings (:func:`strings`); adds ``novel`` and ``n_novel``.

    Returns
    -------
    dict
        ``strings`` (all steps right), ``penultimate`` (the T/P step right), ``n``, and with
        ``seen`` also ``novel`` (all steps right, unseen strings only) and ``n_novel``.
    """
    allowed, real = np.asarray(data["y"]) > 0.5, np.asarray(data["mask"]) > 0
    ok = (((y > threshold) == allowed).all(axis=2) | ~real).all(axis=0)
    cols = np.arange(y.shape[1])
    penult = np.asarray(data["lengths"]) - 2  # input: the inner string's E; target: T or P
    pen_ok = ((y[penult, cols] > threshold) == allowed[penult, cols]).all(axis=1)
    out = {"strings": float(ok.mean()), "penultimate": float(pen_ok.mean()), "n": len(cols)}
    if seen is not None:
        novel = np.array([s not in seen for s in strings(data)])
        out["n_novel"] = int(novel.sum())
        out["novel"] = float(ok[novel].mean()) if novel.any() else float("nan")
    return out


def reber_report(model, params_path: str | os.PathLike, *, n_strings: int = 2000,
                 seed: int = 12345, train_data: str | os.PathLike | None = None,
                 threshold: float = 0.5) -> str:
    """One line: the held-out embedded Reber accuracy of ``model`` with saved parameters.

    Parameters
    ----------
    model : Model
        A compiled net with input ``x`` and output ``y`` of 7 symbols (specs/reber_*.yaml).
    params_path : path
        Its trained parameters (``graphrnn train -o``).
    n_strings, seed : int
        How many held-out strings to draw, and their seed.
    train_data : path, optional
        The training data file, to also score the strings never seen in training.
    threshold : float

    Raises
    ------
    DataError
        Parameters missing from the file, or a net that does not read and predict symbols.
    """
    names = model.init_params()
    loaded = load_data(params_path, names)
    missing = sorted(set(names) - set(loaded))
    if missing:
        raise DataError(f"{params_path} lacks parameters {', '.join(missing)}")
    net = model.net
    if dict(net.inputs) != {"x": 7} or "y" not in net.outputs or net.size("y") != 7:
        raise DataError("the Reber accuracy needs a net with input 'x' and output 'y' of 7 "
                        "symbols (as specs/reber_lstm.yaml)")
    test = embedded_reber(batch=n_strings, seed=seed)
    seen = set(strings(load_data(train_data, ("x", "lengths")))) if train_data else None
    y = np.asarray(model.forward(loaded, {"x": test["x"]})[0]["y"])
    s = score(y, test, threshold, seen)
    line = (f"embedded Reber, {s['n']} held-out strings: {s['strings']:.2%} fully right "
            f"(penultimate T/P: {s['penultimate']:.2%})")
    if seen is not None:
        line += f"; {s['novel']:.2%} of the {s['n_novel']} never seen in training"
    return line
