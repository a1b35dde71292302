"""A bidirectional LSTM's forward+backward: ``specs/bilstm.yaml`` against torch.nn, paired.

Run ``python -m benchmarks.bidirectional [--pairs N] [--sizes T,B,H,I]`` (or ``graphrnn bench
--bidirectional``) from the repository root. graphrnn runs ``gradients`` (MSE on ``y``) of the
bidirectional LSTM spec resized to (T, B, H, I); torch runs
``torch.nn.LSTM(I, H, bidirectional=True)`` followed by ``nn.Linear(2H, O)``, the same
function, forward, the MSE loss and ``backward``. Both float32 on the CPU, timed alternately;
the row gives both medians and the median of the per-pair ratios with its quartiles.
"""

from __future__ import annotations

import argparse

import numpy as np

import graphrnn as gr

try:
    from benchmarks import common
except ImportError:  # run as a script
    import common

SIZES = [(100, 32, 512, 256), (50, 16, 128, 64)]


def case(torch, steps: int, batch: int, hidden: int, inputs: int, pairs: int) -> dict:
    """One row: graphrnn's and torch's fwd+bwd times and their paired ratio."""
    model = gr.compile(gr.load_spec(common.resized_spec("bilstm", hidden, inputs)))
    params = model.init_params(0)
    out = model.net.size("y")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, inputs)).astype(np.float32)
    y = rng.standard_normal((steps, batch, out)).astype(np.float32)
    rnn = torch.nn.LSTM(inputs, hidden, bidirectional=True)
    linear = torch.nn.Linear(2 * hidden, out)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def theirs():
        for m in (rnn, linear):
            m.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(linear(rnn(xt)[0]), yt)
        loss.backward()

    row = common.paired(lambda: model.gradients(params, {"x": x}, {"y": y}), theirs, pairs)
    return {"size": (steps, batch, hidden, inputs), **row}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=15)
    p.add_argument("--sizes", type=lambda s: tuple(int(v) for v in s.split(",")), nargs="+",
                   default=SIZES, metavar="T,B,H,I")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(common.blas_threads())
    print(f"bidirectional LSTM fwd+bwd, float32, {args.pairs} pairs; torch {torch.__version__}")
    print(f"{'T, B, H, I':<20} {'graphrnn ms':>11} {'torch.nn ms':>11} {'ratio':>6}  IQR")
    for size in args.sizes:
        r = case(torch, *size, args.pairs)
        print(f"{', '.join(map(str, size)):<20} {1e3 * r['ours']:11.1f} "
              f"{1e3 * r['theirs']:11.1f} {r['ratio']:6.2f}  {r['q1']:.2f}-{r['q3']:.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
