"""Dropout's cost: an LSTM's forward+backward with and without training-time noise, paired.

Run ``python -m benchmarks.dropout [--pairs N]`` (or ``graphrnn bench --dropout``) from the
repository root. Each row times ``gradients(..., train=True)`` of the LSTM with a noise key
and of the plain LSTM alternately on the same parameters, ``pairs`` times, and prints both
medians and the median of the per-pair ratios (noisy / plain) with its interquartile spread.
Rows: node dropout on ``h`` (what ``torch.nn.LSTM(dropout=p)`` applies between layers),
variational dropout on the read-out edge, and AWD-LSTM's weight drop on ``h -> * @1``.
"""

from __future__ import annotations

import argparse
import re

import numpy as np

import graphrnn as gr

try:
    from benchmarks import common
except ImportError:  # run as a script
    import common

#: (label, how the resized LSTM spec text changes)
VARIANTS = [
    ("node dropout 0.3 on h", lambda s: s.replace("  h:\n    size:",
                                                   "  h:\n    dropout: 0.3\n    size:")),
    ("edge dropout 0.3 on h -> y", lambda s: s.replace("- h -> y\n",
                                                        "- {from: h, to: y, dropout: 0.3}\n")),
    ("weight drop 0.5 on h -> * @1", lambda s: re.sub(
        r"- h -> (\w+) @1\n", r"- {from: h, to: \1, delay: 1, weight_dropout: 0.5}\n", s)),
]


def _pairs(ours, theirs, pairs: int) -> dict:
    """:func:`common.paired`, in ms."""
    r = common.paired(ours, theirs, pairs, warmup=3)
    return {"noisy_ms": 1000 * r["ours"], "plain_ms": 1000 * r["theirs"],
            "ratio": r["ratio"], "q1": r["q1"], "q3": r["q3"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=30)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--inputs", type=int, default=64)
    p.add_argument("--backend", default="numpy", help="numpy (default), cupy, ...")
    args = p.parse_args(argv)
    text = common.resized_spec("lstm", args.hidden, args.inputs, None)
    plain = gr.compile(gr.load_spec(text), backend=args.backend)
    params = plain.init_params(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.steps, args.batch, args.inputs)).astype(np.float32)
    y = rng.standard_normal((args.steps, args.batch, plain.net.size("y"))).astype(np.float32)
    print(f"{args.backend}: LSTM H={args.hidden} I={args.inputs} T={args.steps} "
          f"B={args.batch}, fwd+bwd, float32, {args.pairs} pairs")
    print(f"{'variant':<30} {'noisy ms':>9} {'plain ms':>9} {'ratio':>6}  IQR")
    for label, edit in VARIANTS:
        noisy_text = edit(text)
        assert noisy_text != text, label
        noisy = gr.compile(gr.load_spec(noisy_text), backend=args.backend)
        row = _pairs(lambda m=noisy: m.gradients(params, {"x": x}, {"y": y}, seed=1),
                     lambda: plain.gradients(params, {"x": x}, {"y": y}), args.pairs)
        print(f"{label:<30} {row['noisy_ms']:9.2f} {row['plain_ms']:9.2f} {row['ratio']:6.3f}"
              f"  {row['q1']:.3f}-{row['q3']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
