"""Score a trained net on held-out embedded Reber strings (Hochreiter & Schmidhuber 1997).

A string counts as right when at every step every symbol the grammar allows next is predicted
above the threshold and every other below it; the penultimate T/P, which repeats the second
symbol across the whole inner string, is also scored on its own. Strings are drawn from the
grammar with a seed other than the training data's; ``--train`` also scores only those never
seen in training (short strings repeat a lot).

    python -m benchmarks.reber_accuracy specs/reber_lstm.yaml out/reber_params.npz \
        --train out/reber.npz
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, any cwd
import graphrnn as gr  # noqa: E402
from graphrnn.training.loop import load_data  # noqa: E402
from graphrnn.training.tasks import REBER_SYMBOLS, embedded_reber  # noqa: E402


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


def main(argv: list[str] | None = None) -> int:
    """Print one line: the held-out accuracy of SPEC with parameters P.npz."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("spec", metavar="SPEC")
    p.add_argument("params", metavar="P.npz", help="trained parameters (graphrnn train -o)")
    p.add_argument("--strings", type=int, default=2000, help="held-out strings to draw")
    p.add_argument("--seed", type=int, default=12345, help="seed of the held-out strings")
    p.add_argument("--train", metavar="D.npz", help="the training data, to count novel strings")
    p.add_argument("--threshold", type=float, default=0.5)
    args = p.parse_args(argv)
    try:
        model = gr.compile(gr.load_spec(args.spec))
        loaded = load_data(args.params)
        missing = sorted(set(model.init_params()) - set(loaded))
        if missing:
            raise ValueError(f"{args.params} lacks parameters {', '.join(missing)}")
        params = {k: loaded[k] for k in model.init_params()}
        test = embedded_reber(batch=args.strings, seed=args.seed)
        seen = set(strings(load_data(args.train))) if args.train else None
        y = model.forward(params, {"x": test["x"]})[0]["y"]
    except (ValueError, OSError) as exc:
        print(f"reber_accuracy: error: {exc}", file=sys.stderr)
        return 2
    s = score(y, test, args.threshold, seen)
    line = (f"embedded Reber, {s['n']} held-out strings: {s['strings']:.2%} fully right "
            f"(penultimate T/P: {s['penultimate']:.2%})")
    if seen is not None:
        line += f"; {s['novel']:.2%} of the {s['n_novel']} never seen in training"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
