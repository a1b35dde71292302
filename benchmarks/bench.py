"""The benchmark: graphrnn (NumPy) against torch.nn, torch Python loops, JAX and the GEMM floor.

Run ``python -m benchmarks.bench [--quick] [--out benchmarks/RESULTS.md]`` from the repository
root (``graphrnn bench`` calls :func:`main`). Every ratio is graphrnn's time over the other's,
the median of per-pair ratios, the two timed back to back (these machines drift by up to 2x
within seconds); below 1 means graphrnn is faster.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np

from graphrnn.cli.base import CommandParser
from graphrnn.files import write_atomic

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
#: The cases whose forward pass is profiled in the report: GEMM-bound and dispatch-bound.
PROFILED = [("lstm", (100, 32, 512, 256)), ("lstm", (500, 16, 64, 32))]


def optional(name: str):
    """The module ``name``, or None when it is not importable."""
    try:
        return __import__(name)
    except ImportError:
        return None


#: Seconds to pause when switching libraries: idle OpenBLAS workers spin for about 2**28
#: cycles (~0.13 s here) and torch's OpenMP workers for a while too; on 2 cores a spinning
#: pool of one library slows the next call of the other by up to 5x.
COOLDOWN = 0.2
#: Seconds of timing for a case a goal is judged on (in a full run): the machine drifts, and
#: the median of more pairs is steadier.
GOAL_BUDGET = 20.0


class Timer:
    """Times calls, pausing first whenever the library differs from the last call's."""

    def __init__(self, cooldown: float = COOLDOWN):
        self.cooldown, self.last = cooldown, None

    def __call__(self, fn: Callable[[], object], lib: str) -> float:
        if self.last is not None and lib != self.last:
            time.sleep(self.cooldown)
        self.last = lib
        start = time.perf_counter()
        fn()
        return time.perf_counter() - start


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(ours: Callable, others: dict[str, tuple[Callable, str]], budget: float,
            reps: tuple[int, int], cooldown: float = COOLDOWN
            ) -> tuple[float, dict[str, tuple[float, float, float]]]:
    """Time ``ours`` (a NumPy caller) against each of ``others`` (name -> (fn, library)).

    A round runs ``a, ours, b`` for each two others ``a, b`` (the whole sequence reversed
    every other round), so each of ours' calls is timed right next to both neighbours, with a
    ``cooldown`` pause between calls of different libraries. Returns ours' median time and,
    per other, ``(median time, median ratio)``, a ratio being ours' time over theirs in one
    adjacent pair. Rounds run until ``budget`` seconds have passed: at least ``reps[0]``, at
    most ``reps[1]``. One warm-up call of each comes first (caches, JIT compilation).
    """
    timer = Timer(cooldown)
    names = list(others)
    for fn, lib in [(ours, "numpy"), *others.values()]:
        timer(fn, lib)
    chunks = [names[i:i + 2] for i in range(0, len(names), 2)] or [[]]
    mine: list[float] = []
    times: dict[str, list[float]] = {k: [] for k in others}
    ratios: dict[str, list[float]] = {k: [] for k in others}
    gc.collect()
    start, r = time.perf_counter(), 0
    while r < reps[0] or (r < reps[1] and time.perf_counter() - start < budget):
        for chunk in (chunks if r % 2 == 0 else [c[::-1] for c in chunks[::-1]]):
            took = {chunk[0]: timer(*others[chunk[0]])} if chunk else {}
            own = timer(ours, "numpy")
            if len(chunk) > 1:
                took[chunk[1]] = timer(*others[chunk[1]])
            mine.append(own)
            for name, t in took.items():
                times[name].append(t)
                ratios[name].append(own / t)
        r += 1
    med = statistics.median
    return med(mine), {k: (med(times[k]), med(ratios[k]), min(mine) / min(times[k]))
                       for k in others}


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def run_case(cell: str, size: tuple, modes, libs: dict, budget: float, reps,
             cooldown: float = COOLDOWN) -> list[dict]:
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
        others = {"GEMM floor": (common.gemm_floor(shapes), "numpy")}
        if libs.get("torch") is not None and not train:
            others["torch GEMM floor"] = (common.gemm_floor(shapes, torch=libs["torch"]), "torch")
        for impl in impls:
            others[impl.name] = (impl.train_step if train else impl.forward, impl.lib)
        if train:
            def ours():
                return model.gradients(params, {"x": x}, {"y": y}, loss="mse")
        else:
            def ours():
                return model.forward(params, {"x": x})
        if report.goal_case(cell, size, mode) and reps[1] > 3:  # a full run: more pairs
            mine, theirs = measure(ours, others, max(budget, GOAL_BUDGET), (reps[0], 99),
                                   cooldown)
        else:
            mine, theirs = measure(ours, others, budget, reps, cooldown)
        flops = sum(2 * c * m * k * n for c, m, k, n in shapes)
        records.append({"cell": cell, "size": size, "out": out_size, "mode": mode,
                        "graphrnn": mine, "others": theirs, "check": check, "gflop": flops / 1e9})
        print(report.line(records[-1]), flush=True)
    return records


def per_call_overhead(libs: dict, quick: bool, cooldown: float = COOLDOWN) -> list[dict]:
    """graphrnn's fixed costs at tiny sizes (H = I = O = B = 1): a call of one step, the cost
    of each further step (from T = 1 and T = 101), forward and forward+backward; torch's
    for comparison."""
    rows = []
    n = 30 if quick else 100
    for cell in ("elman", "lstm", "gru"):
        model = common.build(cell, 1, 1, 1)
        params = model.init_params(seed=0)
        row: dict = {"cell": cell}
        for steps in (1, 101):
            x = np.zeros((steps, 1, 1), np.float32)
            data = ({"x": x}, {"y": x})
            row[f"forward T={steps}"] = _median_time(partial(model.forward, params, data[0]), n)
            row[f"train T={steps}"] = _median_time(partial(model.gradients, params, *data), n)
        row["forward per step"] = (row["forward T=101"] - row["forward T=1"]) / 100
        row["train per step"] = (row["train T=101"] - row["train T=1"]) / 100
        if libs.get("torch") is not None:
            time.sleep(cooldown)
            x = np.zeros((1, 1, 1), np.float32)
            for impl in (refs.torch_nn(libs["torch"], cell, params, x, x),
                         refs.torch_loop(libs["torch"], cell, params, x, x)):
                row[f"{impl.name} forward T=1"] = _median_time(impl.forward, n)
            time.sleep(cooldown)
        rows.append(row)
    return rows


def _median_time(fn: Callable, n: int) -> float:
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


def _threads(args) -> list[str]:
    return ["--threads", str(args.threads or 1)]


#: the narrower tables, a module of benchmarks/ each: flag -> (help, the module's arguments)
TABLES: dict[str, tuple[str, Callable]] = {
    "small": ("the small-size grid and the streaming row (benchmarks/small.py)",
              lambda a: _threads(a) + (["--torch-compile", a.torch_compile]
                                       if a.torch_compile else [])),
    "bidirectional": ("a bidirectional LSTM's fwd+bwd against torch.nn "
                      "(benchmarks/bidirectional.py)", lambda a: []),
    "dropout": ("an LSTM's fwd+bwd with and without dropout (benchmarks/dropout.py)",
                lambda a: []),
    "layer-norm": ("the LayerNorm LSTM against the LSTM and a torch loop "
                   "(benchmarks/layer_norm.py)",
                   lambda a: ["--budget", str(a.budget or 4.0)] + (
                       ["--sizes", ";".join(",".join(map(str, z)) for z in a.sizes)]
                       if a.sizes else [])),
    "torch-module": ("graphrnn.torch.Module's fwd+bwd against Model.gradients "
                     "(benchmarks/torch_module.py)",
                     lambda a: _threads(a) + ["--floor"] + (["--quick"] if a.quick else [])),
    "memory": ("peak memory of an LSTM training call, graphrnn with and without "
               "checkpointing against torch.nn, a process each (benchmarks/memory.py)",
               lambda a: ["--quick"] if a.quick else []),
    "lengths": ("sequences of different lengths: packed, masked, none, torch packed "
                "(benchmarks/lengths.py)",
                lambda a: _threads(a) + (["--rounds", "3"] if a.quick else [])),
}


def make_parser() -> argparse.ArgumentParser:
    """The command line of ``graphrnn bench``."""
    p = CommandParser(prog="graphrnn bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="fewer repeats: 0.5 s of timing (1 to 3 rounds) per case and mode "
                        "instead of 4 s (20 s for the goals' cases); the default grid's 14 "
                        "cases x 2 modes then take a few minutes, longer on a busy machine "
                        "(progress and an estimate go to stderr)")
    p.add_argument("--out", metavar="MD",
                   help="write the markdown report here (atomically; '-': standard output)")
    p.add_argument("--cells", default=",".join(CELLS),
                   help=f"comma-separated subset of {','.join(CELLS)}")
    p.add_argument("--modes", default=",".join(MODES), help="forward,train (train: fwd+bwd)")
    p.add_argument("--sizes", type=parse_sizes,
                   help="T,B,H,I;... replacing the grid (and the Jordan grid)")
    p.add_argument("--budget", type=float, help="seconds of timing per case")
    p.add_argument("--cooldown", type=float, default=COOLDOWN,
                   help="seconds to pause when switching libraries (idle BLAS threads spin)")
    p.add_argument("--threads", type=int, metavar="N",
                   help="threads for every library (default: numpy's BLAS threads)")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--no-jax", action="store_true", help="leave JAX out")
    p.add_argument("--no-overhead", action="store_true", help="skip the per-call table")
    p.add_argument("--profile", action="store_true",
                   help="print the cProfile breakdown of the profiled case's forward pass")
    for flag, (text, _) in TABLES.items():
        p.add_argument(f"--{flag}", action="store_true", help=text)
    p.add_argument("--torch-compile", metavar="T,T,...",
                   help="with --small: rows against an LSTM loop under torch.compile at these "
                        "steps, with compile times")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (2 for bad arguments)."""
    parser = make_parser()
    args = parser.parse_args(argv)
    for flag, (_, arguments) in TABLES.items():
        if getattr(args, flag.replace("-", "_")):
            table = importlib.import_module(f"benchmarks.{flag.replace('-', '_')}")
            return table.main(arguments(args))
    cells = [c for c in args.cells.split(",") if c]
    modes = [m for m in args.modes.split(",") if m]
    bad = [c for c in cells if c not in CELLS] + [m for m in modes if m not in MODES]
    if bad or not cells or not modes:
        print(f"graphrnn bench: error: unknown cell or mode {bad}; cells: {', '.join(CELLS)}; "
              f"modes: {', '.join(MODES)}", file=sys.stderr)
        return 2
    threads = args.threads or common.blas_threads()
    if args.threads:
        common.limit_threads(threads)
    libs = {"torch": None if args.no_torch else optional("torch"),
            "jax": None if args.no_jax else optional("jax")}
    if libs["torch"] is not None:
        libs["torch"].set_num_threads(threads)
    env = common.environment(libs["torch"], libs["jax"])
    for key, value in env.items():
        print(f"{key:>16}: {value}")
    budget = args.budget or (0.5 if args.quick else 4.0)
    reps = (1, 3) if args.quick else (5, 25)
    records = []
    started, load_start = time.perf_counter(), os.getloadavg()[0]
    warning = common.load_warning(load_start, os.cpu_count())
    if warning:
        print(f"graphrnn bench: warning: {warning}", file=sys.stderr, flush=True)
    cases = [(cell, size) for cell in cells
             for size in (args.sizes or (JORDAN_GRID if cell == "jordan" else GRID))]
    steps = len(cases) + (0 if args.no_overhead else 1)
    print(report.legend())
    print(report.header(), flush=True)
    for done, (cell, size) in enumerate(cases):
        what = f"{cell} {','.join(map(str, size))} ({','.join(modes)})"
        print(report.progress(done, steps, what, time.perf_counter() - started),
              file=sys.stderr, flush=True)
        records += run_case(cell, size, modes, libs, budget, reps, args.cooldown)
    if not args.no_overhead:
        print(report.progress(len(cases), steps, "per-call overhead at tiny sizes",
                              time.perf_counter() - started), file=sys.stderr, flush=True)
    overhead = [] if args.no_overhead else per_call_overhead(libs, args.quick, args.cooldown)
    if overhead:
        print(report.overhead_table(overhead))
    profile = None
    if args.profile or args.out:
        cases = PROFILED if args.sizes is None else [(cells[0], args.sizes[0])]
        cases = [(c, s) for c, s in cases if c in cells or args.profile]
        profile = "\n\n".join(report.profile_forward(c, s, top=15 if args.profile else 0)
                                for c, s in cases) or None
        if profile:
            print(profile)
    elapsed = time.perf_counter() - started
    print(f"(benchmark took {elapsed:.0f} s)")
    if args.out:
        env["load average (1 min) at start / end"] = f"{load_start:.2f} / {os.getloadavg()[0]:.2f}"
        text = report.markdown(env, records, overhead, profile, argv_text(argv), elapsed)
        if args.out == "-":
            print(text)
            return 0
        write_atomic(args.out, text + kept_sections(args.out))
        print(f"wrote {args.out}")
    return 0


#: In RESULTS.md, what follows this line is written by hand (GPU, Hopfield) and kept on a re-run.
KEEP_MARKER = "<!-- sections below are kept when the benchmark rewrites this file -->"


def kept_sections(path: str) -> str:
    """The hand-written tail of an existing results file (from :data:`KEEP_MARKER` on)."""
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        return ""
    at = text.find(KEEP_MARKER)
    return "" if at < 0 else "\n" + text[at:]


def argv_text(argv: list[str] | None) -> str:
    return " ".join(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
