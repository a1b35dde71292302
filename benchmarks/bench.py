"""The benchmark: graphrnn (NumPy) against torch.nn, torch Python loops, JAX and the GEMM floor.

Run ``python -m benchmarks.bench [--quick] [--out benchmarks/RESULTS.md]`` from the repository
root (``graphrnn bench`` calls :func:`main`). Every ratio is graphrnn's time over the other's,
the median of per-pair ratios, the two timed back to back (these machines drift by up to 2x
within seconds); below 1 means graphrnn is faster.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

try:
    from benchmarks import common, refs, report
except ImportError:  # run as a script: python benchmarks/bench.py
    import common
    import refs
    import report

GRID = [(100, 32, 128, 64), (100, 32, 512, 256), (500, 16, 64, 32), (50, 1, 256, 256)]
JORDAN_GRID = [(500, 16, 64, 32), (100, 32, 512, 256)]
CELLS = ("elman", "lstm", "gru", "jordan")
MODES = ("forward", "train")
#: The LSTM case whose forward pass is profiled in the report.
PROFILED = ("lstm", (100, 32, 512, 256))


def optional(name: str):
    """The module ``name``, or None when it is not importable."""
    try:
        return __import__(name)
    except ImportError:
        return None


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(ours: Callable, others: dict[str, Callable], budget: float, reps: tuple[int, int]
            ) -> tuple[float, dict[str, tuple[float, float]]]:
    """Time ``ours`` against each of ``others`` side by side.

    Each round times ours and each other back to back (the order alternating between
    rounds). Returns ours' median time and, per other, ``(median time, median ratio)`` where
    a ratio is ours over theirs within one pair. The number of rounds fits ``budget``
    seconds, within ``reps = (least, most)``.
    """
    for _ in range(2):  # warm-up: caches, JIT compilation, allocator pools
        ours()
        for fn in others.values():
            fn()
    round_s = sum(timed(ours) + timed(fn) for fn in others.values()) or timed(ours)
    rounds = int(min(max(budget / max(round_s, 1e-9), reps[0]), reps[1]))
    mine: list[float] = []
    times: dict[str, list[float]] = {k: [] for k in others}
    ratios: dict[str, list[float]] = {k: [] for k in others}
    gc.collect()
    for r in range(rounds):
        for name, fn in others.items():
            if r % 2:
                b, a = timed(fn), timed(ours)
            else:
                a, b = timed(ours), timed(fn)
            mine.append(a)
            times[name].append(b)
            ratios[name].append(a / b)
        if not others:
            mine.append(timed(ours))
    med = statistics.median
    return med(mine), {k: (med(times[k]), med(ratios[k])) for k in others}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def run_case(cell: str, size: tuple, modes, libs: dict, budget: float, reps) -> list[dict]:
    """Benchmark one cell at one size in each mode; returns one record per mode."""
    steps, batch, hidden, width = size
    model = common.build(cell, hidden, width)
    params = model.init_params(seed=0)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((steps, batch, width)).astype(np.float32)
    out_size = model.net.size("y")
    y = rng.standard_normal((steps, batch, out_size)).astype(np.float32)
    impls = []
    if libs.get("torch") is not None:
        if cell in refs.FUSED:
            impls.append(refs.torch_nn(libs["torch"], cell, params, x, y))
        impls.append(refs.torch_loop(libs["torch"], cell, params, x, y))
    if libs.get("jax") is not None:
        impls.append(refs.jax_scan(libs["jax"], cell, params, x, y))
    ours_y = model.forward(params, {"x": x})[0]["y"]
    check = max((rel_err(impl.output(), ours_y) for impl in impls), default=float("nan"))
    records = []
    for mode in modes:
        train = mode == "train"
        shapes = common.gemm_shapes(model.program, steps, batch, backward=train)
        others = {"GEMM floor": common.gemm_floor(shapes)}
        if libs.get("torch") is not None:
            others["torch GEMM floor"] = common.gemm_floor(shapes, torch=libs["torch"])
        for impl in impls:
            others[impl.name] = impl.train_step if train else impl.forward
        if train:
            def ours():
                return model.gradients(params, {"x": x}, {"y": y}, loss="mse")
        else:
            def ours():
                return model.forward(params, {"x": x})
        mine, theirs = measure(ours, others, budget, reps)
        flops = sum(2 * c * m * k * n for c, m, k, n in shapes)
        records.append({"cell": cell, "size": size, "out": out_size, "mode": mode,
                        "graphrnn": mine, "others": theirs, "check": check, "gflop": flops / 1e9})
        print(report.line(records[-1]), flush=True)
    return records


def per_call_overhead(libs: dict, quick: bool) -> list[dict]:
    """graphrnn's fixed costs at tiny sizes (H = I = O = B = 1): a call of one step, the cost
    of each further step (from T = 1 and T = 101), forward and forward+backward; torch's
    for comparison."""
    rows = []
    n = 50 if quick else 300
    for cell in ("elman", "lstm", "gru"):
        model = common.build(cell, 1, 1, 1)
        params = model.init_params(seed=0)
        row = {"cell": cell}
        for steps in (1, 101):
            x = np.zeros((steps, 1, 1), np.float32)
            y = np.zeros((steps, 1, 1), np.float32)
            fwd = _best_of(lambda x=x: model.forward(params, {"x": x}), n)
            trn = _best_of(lambda x=x, y=y: model.gradients(params, {"x": x}, {"y": y}), n)
            row[f"forward T={steps}"], row[f"train T={steps}"] = fwd, trn
            if libs.get("torch") is not None and steps == 1:
                impl = refs.torch_nn(libs["torch"], cell, params, x, y)
                row["torch.nn forward T=1"] = _best_of(impl.forward, n)
                impl = refs.torch_loop(libs["torch"], cell, params, x, y)
                row["torch loop forward T=1"] = _best_of(impl.forward, n)
        row["forward per step"] = (row["forward T=101"] - row["forward T=1"]) / 100
        row["train per step"] = (row["train T=101"] - row["train T=1"]) / 100
        rows.append(row)
    return rows


def _best_of(fn: Callable, n: int) -> float:
    """The median of ``n`` timed calls after a warm-up (seconds per call)."""
    for _ in range(3):
        fn()
    return statistics.median(timed(fn) for _ in range(n))


def parse_sizes(text: str) -> list[tuple[int, int, int, int]]:
    """``"T,B,H,I;T,B,H,I"`` -> list of tuples."""
    try:
        sizes = [tuple(int(v) for v in part.split(",")) for part in text.split(";") if part]
    except ValueError:
        sizes = []
    if not sizes or any(len(s) != 4 or min(s) < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"bad --sizes {text!r}: want 'T,B,H,I;T,B,H,I'")
    return sizes


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="graphrnn bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats (about a minute)")
    p.add_argument("--out", metavar="MD", help="write the markdown report here (atomically)")
    p.add_argument("--cells", default=",".join(CELLS),
                   help=f"comma-separated subset of {','.join(CELLS)}")
    p.add_argument("--modes", default=",".join(MODES), help="forward,train (train: fwd+bwd)")
    p.add_argument("--sizes", type=parse_sizes,
                   help="T,B,H,I;... replacing the grid (and the Jordan grid)")
    p.add_argument("--budget", type=float, help="seconds of timing per case")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--no-jax", action="store_true", help="leave JAX out")
    p.add_argument("--no-overhead", action="store_true", help="skip the per-call table")
    p.add_argument("--profile", action="store_true",
                   help="print the cProfile breakdown of the profiled case's forward pass")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (2 for bad arguments)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    cells = [c for c in args.cells.split(",") if c]
    modes = [m for m in args.modes.split(",") if m]
    bad = [c for c in cells if c not in CELLS] + [m for m in modes if m not in MODES]
    if bad or not cells or not modes:
        print(f"graphrnn bench: error: unknown cell or mode {bad}; cells: {', '.join(CELLS)}; "
              f"modes: {', '.join(MODES)}", file=sys.stderr)
        return 2
    libs = {"torch": None if args.no_torch else optional("torch"),
            "jax": None if args.no_jax else optional("jax")}
    if libs["torch"] is not None:
        libs["torch"].set_num_threads(common.blas_threads())
    env = common.environment(libs["torch"], libs["jax"])
    for key, value in env.items():
        print(f"{key:>16}: {value}")
    budget = args.budget or (1.5 if args.quick else 6.0)
    reps = (3, 9) if args.quick else (5, 25)
    records = []
    started = time.perf_counter()
    print(report.header(), flush=True)
    for cell in cells:
        grid = args.sizes or (JORDAN_GRID if cell == "jordan" else GRID)
        for size in grid:
            records += run_case(cell, size, modes, libs, budget, reps)
    overhead = [] if args.no_overhead else per_call_overhead(libs, args.quick)
    if overhead:
        print(report.overhead_table(overhead))
    profile = None
    if args.profile or args.out:
        cell, size = PROFILED if args.sizes is None else (cells[0], args.sizes[0])
        if cell in cells or args.profile:
            profile = report.profile_forward(cell, size, top=15 if args.profile else 0)
            print(profile)
    elapsed = time.perf_counter() - started
    print(f"(benchmark took {elapsed:.0f} s)")
    if args.out:
        text = report.markdown(env, records, overhead, profile, argv_text(argv), elapsed)
        report.write_atomic(args.out, text)
        print(f"wrote {args.out}")
    return 0


def argv_text(argv: list[str] | None) -> str:
    return " ".join(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
