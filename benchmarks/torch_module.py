"""The cost of graphrnn inside PyTorch: ``graphrnn.torch.Module`` fwd+bwd against ``gradients``.

Run ``python -m benchmarks.torch_module [--pairs N]`` (or ``graphrnn bench --torch-module``)
from the repository root. Each row times, alternately on the same network and parameters,

* *Module*: ``graphrnn.torch.Module`` forward, ``F.mse_loss`` on the output ``y`` (the mean,
  as graphrnn's ``mse``) and ``loss.backward()`` (torch's autograd through the custom op, the
  parameter gradients landing in ``.grad``), and
* *gradients*: :meth:`graphrnn.Model.gradients` with the same loss on NumPy arrays,

and prints both medians and the ratio (:func:`common.paired`) with its interquartile spread. The
goal (issue 15) is a ratio within 10 % of 1.

Both sides do the same work: the same network and parameters, the same loss, parameter
gradients only (no input gradients: ``x`` does not require grad), gradients compared in the run.

``--floor`` adds a column: a bare ``torch.autograd.Function`` around the tape (no checks, no
state, one output; parameters, loss and zero_grad as the Module's) against ``gradients`` — what
torch's own machinery (Function, loss, autograd engine, 14 AccumulateGrad for an LSTM,
``zero_grad``) costs any layer of this kind, the Module's glue left out.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import graphrnn as gr

try:
    from benchmarks import common
except ImportError:  # run as a script
    import common

#: (cell, T, B, H, I) of the default rows
ROWS = [("lstm", 50, 32, 128, 64), ("gru", 50, 32, 128, 64), ("elman", 100, 64, 128, 64),
        ("lstm", 100, 32, 512, 256)]


def row(torch, cell: str, steps: int, batch: int, hidden: int, inputs: int,
        pairs: int, floor: bool = False) -> dict:
    """One paired row: Module fwd+bwd and ``Model.gradients`` on the same network (float32).

    Returns
    -------
    dict
        ``module_ms``, ``gradients_ms`` (medians), ``ratio`` (median of per-pair ratios),
        ``q1``, ``q3`` (its quartiles), ``check`` (the largest relative difference of the
        two ways' parameter gradients: they do the same work); with ``floor``, ``floor``: the
        bare Function's ratio.
    """
    from graphrnn.torch import Module
    net = gr.load_spec(common.resized_spec(cell, hidden, inputs, None))
    module = Module(net, dtype="float32")
    model = gr.compile(net, dtype="float32")
    params = {name: p.detach().numpy() for name, p in module.params().items()}
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, inputs)).astype(np.float32)
    y = rng.standard_normal((steps, batch, net.size("y"))).astype(np.float32)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)

    def through_torch():
        module.zero_grad(set_to_none=True)
        out = module(xt)[0]["y"]
        torch.nn.functional.mse_loss(out, yt).backward()

    def through_gradients():
        model.gradients(params, {"x": x}, {"y": y})

    through_torch()
    grads = model.gradients(params, {"x": x}, {"y": y})[1]
    check = max(float(np.abs(p.grad.numpy() - grads[name]).max() / (np.abs(grads[name]).max()
                                                                     or 1.0))
                for name, p in module.params().items())
    r = common.paired(through_torch, through_gradients, pairs, warmup=3)
    result = {"module_ms": 1000 * r["ours"], "gradients_ms": 1000 * r["theirs"],
              "ratio": r["ratio"], "q1": r["q1"], "q3": r["q3"], "check": check}
    if floor:
        bare = _bare_function(torch, net, x, yt)
        result["floor"] = common.paired(bare, through_gradients, pairs, warmup=3)["ratio"]
    return result


def _bare_function(torch, net, x, yt):
    """fwd+bwd through a bare ``autograd.Function`` around the tape of a model of its own."""
    from graphrnn.torch import Module
    holder = Module(net, dtype="float32")  # parameters and zero_grad as the Module's
    model = gr.compile(net, dtype="float32")
    tensors = list(holder.params().values())
    names, params = list(holder.params()), {k: p.detach().numpy()
                                            for k, p in holder.params().items()}

    class Bare(torch.autograd.Function):
        @staticmethod
        def forward(ctx, *_):
            outputs, _, ctx.tape = model.forward(params, {"x": x}, record=True,
                                                 input_grads=False)
            return torch.from_numpy(outputs["y"])

        @staticmethod
        def backward(ctx, dy):
            grads = ctx.tape.backward({"y": dy.numpy()})
            return tuple(torch.from_numpy(grads[n]) for n in names)

    def call():
        holder.zero_grad(set_to_none=True)
        torch.nn.functional.mse_loss(Bare.apply(*tensors), yt).backward()

    return call


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=40)
    p.add_argument("--threads", type=int, default=1, help="threads for BLAS and torch")
    p.add_argument("--quick", action="store_true", help="tiny sizes, a few pairs (smoke test)")
    p.add_argument("--floor", action="store_true",
                   help="also a bare autograd.Function around the tape (torch's own cost)")
    args = p.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("graphrnn bench: error: --torch-module needs torch (pip install torch)",
              file=sys.stderr)
        return 2
    common.limit_threads(args.threads)
    torch.set_num_threads(args.threads)
    rows = [(c, 4, 2, 3, 2) for c, *_ in ROWS[:3]] if args.quick else ROWS
    pairs = 3 if args.quick else args.pairs
    print(f"graphrnn.torch.Module fwd+bwd vs Model.gradients, float32, {args.threads} "
          f"thread(s), {pairs} pairs")
    extra = (" bare Function ratio |", "---|") if args.floor else ("", "")
    print(f"| case | Module ms | gradients ms | ratio (IQR) | grads rel. diff |{extra[0]}\n"
          f"|---|---|---|---|---|{extra[1]}")
    for cell, t, b, h, i in rows:
        r = row(torch, cell, t, b, h, i, pairs, floor=args.floor)
        print(f"| {cell} T={t}, B={b}, H={h}, I={i} | {r['module_ms']:.2f} | "
              f"{r['gradients_ms']:.2f} | {r['ratio']:.2f} ({r['q1']:.2f}-{r['q3']:.2f}) | "
              f"{r['check']:.1e} |" + (f" {r['floor']:.2f} |" if args.floor else ""),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
