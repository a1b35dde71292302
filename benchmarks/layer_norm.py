"""The LayerNorm LSTM (``specs/ln_lstm.yaml``) against graphrnn's plain LSTM and the same cell
as a torch Python loop, fwd+bwd, paired (``graphrnn bench --layer-norm``).

Torch has no fused LayerNorm LSTM, so the loop of ``nn.Linear`` and ``F.layer_norm`` calls is
what users run. Each ratio is the LN-LSTM's time over the other's, the median of per-pair
ratios (:func:`benchmarks.bench.measure`).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

try:
    from benchmarks import bench, common, refs
except ImportError:  # run as a script: python benchmarks/layer_norm.py
    import bench
    import common
    import refs

SIZE = (100, 32, 512, 256)
GATES = ("i", "f", "g", "o")


def torch_ln_loop(torch, params: dict, x: np.ndarray, y: np.ndarray) -> refs.Impl:
    """Ba et al.'s cell as users write it: one ``nn.Linear`` per source for the four gates,
    ``F.layer_norm`` per gate and on the cell before its tanh, a Python loop over steps."""
    ln, sig, tanh = torch.nn.functional.layer_norm, torch.sigmoid, torch.tanh
    wx = refs._linear(torch, np.concatenate([params[f"x->{g}"] for g in GATES]))
    wh = refs._linear(torch, np.concatenate([params[f"h->{g}@1"] for g in GATES]))
    out = refs._linear(torch, params["h->y"], params["y.bias"])
    norm = {n: (torch.nn.Parameter(torch.from_numpy(params[f"{n}.gain"].copy())),
                torch.nn.Parameter(torch.from_numpy(params[f"{n}.bias"].copy())))
            for n in (*GATES, "tc")}
    hidden, batch = params["i.gain"].shape[0], x.shape[1]

    def run(xt):
        h = c = torch.zeros(batch, hidden)
        gx, hs = wx(xt), []
        for t in range(xt.shape[0]):
            pre = (gx[t] + wh(h)).chunk(4, 1)
            i, f, g, o = (ln(p, (hidden,), *norm[n], eps=1e-5)
                          for p, n in zip(pre, GATES, strict=True))
            c = sig(f) * c + sig(i) * tanh(g)
            h = sig(o) * tanh(ln(c, (hidden,), *norm["tc"], eps=1e-5))
            hs.append(h)
        return out(torch.stack(hs))

    class Norms(torch.nn.Module):  # their parameters join the weights the step zeroes
        def __init__(self):
            super().__init__()
            self.p = torch.nn.ParameterList([p for pair in norm.values() for p in pair])

    return refs._torch_impl(torch, "torch LN loop", run, [wx, wh, out, Norms()], x, y)


def run(size=SIZE, budget: float = 4.0, reps=(3, 99), torch=None) -> dict:
    """Time LN-LSTM fwd+bwd against the plain LSTM and the torch loop; returns the record."""
    steps, batch, hidden, width = size
    ln_model, plain = common.build("ln_lstm", hidden, width), common.build("lstm", hidden, width)
    ln_params, plain_params = ln_model.init_params(seed=0), plain.init_params(seed=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((steps, batch, width)).astype(np.float32)
    y = rng.standard_normal((steps, batch, ln_model.net.size("y"))).astype(np.float32)
    others = {"graphrnn LSTM": (lambda: plain.gradients(plain_params, {"x": x}, {"y": y}),
                                "numpy")}
    check = float("nan")
    if torch is not None:
        impl = torch_ln_loop(torch, ln_params, x, y)
        others[impl.name] = (impl.train_step, impl.lib)
        check = bench.rel_err(impl.output(), ln_model.forward(ln_params, {"x": x})[0]["y"])
    mine, theirs = bench.measure(lambda: ln_model.gradients(ln_params, {"x": x}, {"y": y}),
                                 others, budget, reps)
    return {"size": size, "ln_lstm": mine, "others": theirs, "check": check}


def main(argv: list[str] | None = None) -> int:
    """Print the comparison (``--budget`` seconds of timing)."""
    p = argparse.ArgumentParser(prog="graphrnn bench --layer-norm", description=__doc__)
    p.add_argument("--budget", type=float, default=4.0)
    p.add_argument("--sizes", type=bench.parse_sizes, default=[SIZE])
    args = p.parse_args(argv)
    torch = bench.optional("torch")
    for size in args.sizes:
        r = run(size, args.budget, torch=torch)
        print(f"LN-LSTM fwd+bwd {size}: {r['ln_lstm'] * 1e3:.1f} ms (torch loop output "
              f"rel. err {r['check']:.1e})")
        for name, (t, ratio, best) in r["others"].items():
            print(f"  vs {name}: {t * 1e3:.1f} ms, ratio {ratio:.2f} (best/best {best:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
