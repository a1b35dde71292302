"""The small-size grid and the streaming row: graphrnn against torch.nn, paired medians.

Run ``python -m benchmarks.small [--pairs N]`` from the repository root. Each row times
graphrnn and torch.nn alternately (one call each, ``pairs`` times) on the same parameters and
prints both medians, the median of the per-pair ratios (graphrnn / torch.nn; below 1:
graphrnn is faster) and that ratio's interquartile spread. The streaming row runs one step a
call, carrying the state: ``out, state = model.forward(params, {"x": x_t}, state=state)``.
``--torch-compile T,T,...`` adds rows against the same LSTM cell written as a torch Python loop
under ``torch.compile`` (what a PyTorch user would try next), with its compile time (the first
call) beside graphrnn's (its ``compile`` plus its first call).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

try:
    from benchmarks import common, refs
except ImportError:  # run as a script
    import common
    import refs

#: (cell, mode, T, B, H, I): the cases of the issue "Speed at the small end"
SMALL_GRID = [("lstm", "forward", 1, 1, 256, 256), ("lstm", "forward", 1, 1, 64, 64),
              ("lstm", "forward", 10, 1, 256, 256), ("lstm", "forward", 50, 1, 256, 256),
              ("lstm", "train", 20, 8, 128, 64), ("elman", "forward", 1, 1, 128, 128),
              ("gru", "forward", 1, 1, 256, 256)]
#: the streaming row: LSTM H = I = 256, B = 1, one step a call, state carried
STREAM = ("lstm", 256, 256)
#: the torch.compile rows: LSTM H = I = 256, B = 1, at the steps asked for
COMPILED = ("lstm", 256, 256)


def _pairs(ours, theirs, pairs: int) -> dict:
    """:func:`common.paired`, in us."""
    r = common.paired(ours, theirs, pairs, warmup=10)
    return {"ours_us": 1e6 * r["ours"], "torch_us": 1e6 * r["theirs"],
            "ratio": r["ratio"], "q1": r["q1"], "q3": r["q3"]}


def case(torch, cell: str, mode: str, steps: int, batch: int, hidden: int, inputs: int,
         pairs: int) -> dict:
    """One row of :data:`SMALL_GRID`."""
    model = common.build(cell, hidden, inputs)
    params = model.init_params(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, inputs)).astype(np.float32)
    y = rng.standard_normal((steps, batch, model.net.size("y"))).astype(np.float32)
    ref = refs.torch_nn(torch, cell, params, x, y)
    if mode == "forward":
        def ours():
            return model.forward(params, {"x": x})
        theirs = ref.forward
    else:
        def ours():
            return model.gradients(params, {"x": x}, {"y": y})
        theirs = ref.train_step
    return _pairs(ours, theirs, pairs)


def streaming(torch, pairs: int) -> dict:
    """One LSTM step a call with the state carried, against torch.nn.LSTM with (h, c)."""
    cell, hidden, inputs = STREAM
    model = common.build(cell, hidden, inputs)
    params = model.init_params(0)
    x = np.random.default_rng(0).standard_normal((1, 1, inputs)).astype(np.float32)
    state = {"box": None}
    w = refs.stacked(cell, params)
    lstm = torch.nn.LSTM(inputs, hidden)
    out = torch.nn.Linear(hidden, w["wo"].shape[0])
    with torch.no_grad():
        for ours_name, theirs_name in (("wx", "weight_ih_l0"), ("wh", "weight_hh_l0"),
                                       ("bx", "bias_ih_l0"), ("bh", "bias_hh_l0")):
            getattr(lstm, theirs_name).copy_(torch.from_numpy(w[ours_name]))
    xt, hc = torch.from_numpy(x), {"box": None}

    def ours():
        _, state["box"] = model.forward(params, {"x": x}, state=state["box"])

    def theirs():
        with torch.inference_mode():
            h, hc["box"] = lstm(xt, hc["box"])
            return out(h)
    return _pairs(ours, theirs, pairs)


def lstm_loop(torch, params: dict, steps: int, batch: int):
    """The LSTM cell as a torch Python loop over steps (two ``nn.Linear`` a step, then the
    read-out ``nn.Linear``), on the weights of ``params``: a function of ``x``."""
    w = refs.stacked("lstm", params)
    modules = {}
    for name, weight, bias in (("wx", w["wx"], w["bx"]), ("wh", w["wh"], w["bh"]),
                               ("wo", w["wo"], w["bo"])):
        lin = modules[name] = torch.nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
            lin.bias.copy_(torch.from_numpy(bias))
    wx, wh, wo, hidden = modules["wx"], modules["wh"], modules["wo"], w["wh"].shape[1]

    def run(xt):
        h = c = torch.zeros(batch, hidden)
        hs = []
        for t in range(steps):
            i, f, g, o = (wx(xt[t]) + wh(h)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            hs.append(h)
        return wo(torch.stack(hs))
    return run


def compiled(torch, steps: int, pairs: int) -> dict:
    """graphrnn against the LSTM loop under ``torch.compile`` (T = ``steps``, B = 1), with
    both compile times: torch's first call, and graphrnn's ``compile`` plus first call."""
    cell, hidden, inputs = COMPILED
    t0 = time.perf_counter()
    model = common.build(cell, hidden, inputs)
    params = model.init_params(0)
    x = np.random.default_rng(0).standard_normal((steps, 1, inputs)).astype(np.float32)
    ours_y = model.forward(params, {"x": x})[0]["y"]
    ours_compile = time.perf_counter() - t0
    fn, xt = torch.compile(lstm_loop(torch, params, steps, 1)), torch.from_numpy(x)
    t0 = time.perf_counter()
    with torch.no_grad():
        theirs_y = fn(xt).numpy()
    theirs_compile = time.perf_counter() - t0
    err = float(np.max(np.abs(theirs_y - ours_y)) / max(np.max(np.abs(ours_y)), 1e-30))

    def theirs():
        with torch.no_grad():
            return fn(xt)
    got = _pairs(lambda: model.forward(params, {"x": x}), theirs, pairs)
    got.update(ours_compile_s=ours_compile, torch_compile_s=theirs_compile, rel_err=err)
    return got


def compiled_table(results: list[tuple[int, dict]]) -> str:
    """A Markdown table of :func:`compiled` rows, by steps."""
    lines = ["| LSTM B=1, H=I=256 | graphrnn | torch.compile loop | ratio (median, IQR) | "
             "compile: graphrnn | compile: torch | max rel. difference |",
             "|---|---|---|---|---|---|---|"]
    for steps, r in results:
        lines.append(f"| T={steps} | {r['ours_us']:.0f} µs | {r['torch_us']:.0f} µs | "
                     f"{r['ratio']:.2f} ({r['q1']:.2f}-{r['q3']:.2f}) | "
                     f"{1e3 * r['ours_compile_s']:.0f} ms | {r['torch_compile_s']:.1f} s | "
                     f"{r['rel_err']:.1e} |")
    return "\n".join(lines)


def rows(pairs: int = 200, threads: int = 1) -> list[tuple[str, dict]]:
    """Every row: (label, timings)."""
    import torch
    torch.set_num_threads(threads)
    got = []
    for cell, mode, t, b, h, i in SMALL_GRID:
        label = f"{cell.upper() if cell != 'elman' else 'Elman'} {mode} T={t}, B={b}, H={h}, I={i}"
        got.append((label, case(torch, cell, mode, t, b, h, i, pairs)))
    got.append(("LSTM streaming (T=1 a call, state carried), B=1, H=I=256",
                streaming(torch, pairs)))
    return got


def table(results: list[tuple[str, dict]]) -> str:
    """A Markdown table of :func:`rows`."""
    lines = ["| case | graphrnn | torch.nn | ratio (median, IQR) |", "|---|---|---|---|"]
    for label, r in results:
        lines.append(f"| {label} | {r['ours_us']:.0f} µs | {r['torch_us']:.0f} µs | "
                     f"{r['ratio']:.2f} ({r['q1']:.2f}-{r['q3']:.2f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.small", description=__doc__)
    parser.add_argument("--pairs", type=int, default=200, help="paired calls a row")
    parser.add_argument("--threads", type=int, default=1,
                        help="threads for BLAS, graphrnn's loops and torch (default 1)")
    parser.add_argument("--torch-compile", metavar="T,T,...", type=_steps_list, default=(),
                        help="also rows against an LSTM loop under torch.compile at these "
                             "steps (B=1, H=I=256), with both compile times")
    parser.add_argument("--only-compiled", action="store_true",
                        help="with --torch-compile: skip the grid and the streaming row")
    args = parser.parse_args(argv)
    common.limit_threads(args.threads)
    if not args.only_compiled:
        print(table(rows(args.pairs, args.threads)))
    if args.torch_compile:
        import torch
        torch.set_num_threads(args.threads)
        print(compiled_table([(t, compiled(torch, t, args.pairs)) for t in args.torch_compile]))
    return 0


def _steps_list(text: str) -> tuple[int, ...]:
    """``"1,10,100"`` -> ``(1, 10, 100)``: positive step counts."""
    try:
        steps = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        steps = ()
    if not steps or min(steps) < 1:
        raise argparse.ArgumentTypeError(f"bad step counts {text!r}: want e.g. '1,10,100'")
    return steps


if __name__ == "__main__":
    raise SystemExit(main())
