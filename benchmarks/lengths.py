"""Sequences of different lengths: graphrnn with ``lengths=`` (packed, and the masked run)
against the same batch without lengths and against torch's packed-sequence LSTM.

Run ``python -m benchmarks.lengths [--pairs N]`` (or ``graphrnn bench --lengths``) from the
repository root. Lengths are uniform over ``1..T``. Each row times the calls alternately, one
of each per round, and prints medians and the median of per-round ratios with its quartiles
(this machine is shared and drifts: the ratios of adjacent calls are steadier than times).
``bilstm`` rows run ``specs/bilstm.yaml`` against ``torch.nn.LSTM(bidirectional=True)`` and
``Linear(2H, O)`` (issue 13's speed goal is its fwd+bwd at (100, 32, 512, 256)); ``lstm`` rows
copy graphrnn's weights into torch's, ``bilstm`` rows time the same shapes only.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

try:
    from benchmarks import common, refs
except ImportError:  # run as a script
    import common
    import refs

#: (cell, mode, T, B, H, I)
GRID = [("lstm", "forward", 100, 32, 128, 64), ("lstm", "train", 100, 32, 128, 64),
        ("lstm", "forward", 100, 64, 256, 128), ("lstm", "train", 100, 64, 256, 128),
        ("bilstm", "forward", 100, 32, 512, 256), ("bilstm", "train", 100, 32, 512, 256)]


def _rounds(fns: dict, rounds: int) -> dict:
    """Every fn once a round, in rotating order; per fn its median time (ms) and per fn the
    per-round times."""
    names = list(fns)
    for fn in fns.values():
        fn()
    times = {k: [] for k in names}
    for r in range(rounds):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return times


def _ratio(a: list, b: list) -> tuple[float, float, float]:
    ratios = sorted(x / y for x, y in zip(a, b, strict=True))
    q = statistics.quantiles(ratios, n=4)
    return statistics.median(ratios), q[0], q[2]


def case(torch, cell, mode, steps, batch, hidden, inputs, rounds) -> dict:
    """One row: graphrnn packed, masked, without lengths; torch packed."""
    model = common.build(cell, hidden, inputs)
    params = model.init_params(0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, inputs)).astype(np.float32)
    y = rng.standard_normal((steps, batch, model.net.size("y"))).astype(np.float32)
    lengths = rng.integers(1, steps + 1, batch)
    both = cell == "bilstm"
    lstm = torch.nn.LSTM(inputs, hidden, bidirectional=both)
    out = torch.nn.Linear(hidden * (2 if both else 1), y.shape[-1])
    if not both:
        w = refs.stacked(cell, params)
        with torch.no_grad():
            for ours_name, theirs_name in (("wx", "weight_ih_l0"), ("wh", "weight_hh_l0"),
                                           ("bx", "bias_ih_l0"), ("bh", "bias_hh_l0")):
                getattr(lstm, theirs_name).copy_(torch.from_numpy(w[ours_name]))
    xt, yt, lt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(lengths)
    valid = torch.from_numpy((np.arange(steps)[:, None] < lengths[None, :]).astype(np.float32))
    pack, unpack = torch.nn.utils.rnn.pack_padded_sequence, torch.nn.utils.rnn.pad_packed_sequence

    def torch_packed():
        if mode == "forward":
            with torch.inference_mode():
                seq, _ = unpack(lstm(pack(xt, lt, enforce_sorted=False))[0], total_length=steps)
                return out(seq)
        lstm.zero_grad()
        out.zero_grad()
        seq, _ = unpack(lstm(pack(xt, lt, enforce_sorted=False))[0], total_length=steps)
        loss = (((out(seq) - yt) ** 2) * valid[..., None]).sum() / (valid.sum() * y.shape[-1])
        loss.backward()
        return loss

    def ours(lengths_arg, masked=False):
        def run():
            model._in_packed = masked  # masked: the lengths machinery alone, every row
            try:
                if mode == "forward":
                    return model.forward(params, {"x": x}, lengths=lengths_arg)
                return model.gradients(params, {"x": x}, {"y": y}, lengths=lengths_arg)
            finally:
                model._in_packed = False
        return run

    times = _rounds({"packed": ours(lengths), "masked": ours(lengths, masked=True),
                     "full": ours(None), "torch": torch_packed}, rounds)
    med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    return {"ms": med, "vs_full": _ratio(times["packed"], times["full"]),
            "masked_vs_full": _ratio(times["masked"], times["full"]),
            "vs_torch": _ratio(times["packed"], times["torch"])}


def table(results) -> str:
    """A Markdown table of the rows."""
    lines = ["| case | packed ms | masked ms | no lengths ms | torch packed ms | "
             "packed / no lengths | masked / no lengths | packed / torch |",
             "|---|---|---|---|---|---|---|---|"]
    for label, r in results:
        ms = r["ms"]
        cells = [f"{a:.2f} ({b:.2f}-{c:.2f})" for a, b, c in
                 (r["vs_full"], r["masked_vs_full"], r["vs_torch"])]
        lines.append(f"| {label} | {ms['packed']:.1f} | {ms['masked']:.1f} | {ms['full']:.1f} | "
                     f"{ms['torch']:.1f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sizes", help="cell,mode,T,B,H,I;... replacing the grid")
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    common.limit_threads(args.threads)
    grid = GRID if not args.sizes else [
        (c, m, *map(int, rest)) for c, m, *rest in (s.split(",") for s in args.sizes.split(";"))]
    results = []
    for cell, mode, t, b, h, i in grid:
        label = f"{cell.upper()} {mode} T={t}, B={b}, H={h}, I={i}"
        results.append((label, case(torch, cell, mode, t, b, h, i, args.rounds)))
        print(table(results[-1:]).splitlines()[-1], flush=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
