"""The benchmark's output: console lines, the markdown report, goal checks and the profile."""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import statistics
import time

import numpy as np

try:
    from benchmarks import common
except ImportError:  # run as a script
    import common

#: Comparators in column order.
COLUMNS = ("GEMM floor", "torch GEMM floor", "torch.nn", "torch loop", "jax")
#: (what, cell, size, mode, against, at most): the goals of issues 3 and 4.
GOALS = [
    ("Elman forward <= torch.nn.RNN", "elman", (100, 32, 512, 256), "forward", "torch.nn", 1.0),
    ("LSTM forward within 1.15x of the GEMM floor", "lstm", (100, 32, 512, 256), "forward",
     "GEMM floor", 1.15),
    ("LSTM fwd+bwd <= torch.nn.LSTM", "lstm", (100, 32, 512, 256), "train", "torch.nn", 1.0),
    ("LSTM fwd+bwd within 1.2x of the GEMM floor", "lstm", (100, 32, 512, 256), "train",
     "GEMM floor", 1.2),
    *[("Elman fwd+bwd <= torch.nn.RNN", "elman", s, "train", "torch.nn", 1.0)
      for s in [(100, 32, 128, 64), (100, 32, 512, 256), (500, 16, 64, 32), (50, 1, 256, 256)]],
    ("Jordan fwd+bwd >= 3x faster than the torch loop", "jordan", (500, 16, 64, 32), "train",
     "torch loop", 1 / 3),
    ("Jordan fwd+bwd >= 1.3x faster than the torch loop", "jordan", (100, 32, 512, 256),
     "train", "torch loop", 1 / 1.3),
]


def goal_case(cell: str, size: tuple, mode: str) -> bool:
    """Whether a goal above is judged on this case (it gets a longer timing budget)."""
    return any(g[1:4] == (cell, tuple(size), mode) for g in GOALS)


def _size(size) -> str:
    return ",".join(str(v) for v in size)


def header() -> str:
    cols = "".join(f" | {c:>26}" for c in COLUMNS)
    return f"{'cell':<7} {'T,B,H,I':<15} {'mode':<7} {'graphrnn ms':>11}{cols}"


def legend() -> str:
    """What the console table's columns mean (printed above it)."""
    return "\n".join([
        "How to read the table: 'graphrnn ms' is graphrnn's median time per call; each other "
        "column is",
        "  'its median ms (R x  B x)': R = median of graphrnn's time / its time, the two "
        "timed back to back",
        "  (order alternating; a drifting machine hardly moves it), B = graphrnn's fastest / "
        "its fastest.",
        "  Below 1x graphrnn is faster. '-' = not run (a library missing, or no such "
        "variant).",
        "  GEMM floor: only the matrix products graphrnn's schedule needs, in NumPy "
        "(torch GEMM floor: the",
        "  same via torch.matmul); torch.nn: torch.nn.RNN/LSTM/GRU + nn.Linear; torch loop: "
        "the cell as a",
        "  Python loop of nn.Linear; jax: the cell under jax.lax.scan, jitted. train = "
        "forward + backward."])


def progress(done: int, total: int, what: str, elapsed: float) -> str:
    """``[bench] case 3/14: lstm 100,32,512,256 (41 s elapsed, about 2 min left)`` (stderr)."""
    if done == 0:
        left = "estimate after the first case"
    else:
        left = f"about {_duration(elapsed / done * (total - done))} left"
    return f"[bench] case {done + 1}/{total}: {what} ({_duration(elapsed)} elapsed, {left})"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def _cell(record: dict, col: str, md: bool = False) -> str:
    if col not in record["others"]:
        return "—" if md else "-"
    ms, ratio, best = record["others"][col]
    if md:
        return f"{ms * 1e3:.2f} ({ratio:.2f}× · {best:.2f}×)"
    return f"{ms * 1e3:9.2f} ({ratio:5.2f}x {best:5.2f}x)"


def line(record: dict) -> str:
    """One console line: graphrnn's time, then each comparator's time and ratio."""
    cols = "".join(f" | {_cell(record, c):>26}" for c in COLUMNS)
    return (f"{record['cell']:<7} {_size(record['size']):<15} {record['mode']:<7} "
            f"{record['graphrnn'] * 1e3:11.2f}{cols}")


def overhead_table(rows: list[dict], md: bool = False) -> str:
    """Per-call and per-step costs at tiny sizes, in microseconds."""
    keys = [k for k in rows[0] if k != "cell"]
    if md:
        out = ["| cell | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
        out += ["| " + r["cell"] + " | " + " | ".join(f"{r[k] * 1e6:.1f}" for k in keys) + " |"
                for r in rows]
        return "\n".join(out)
    out = ["per-call overhead (µs; H = I = O = B = 1):"]
    for r in rows:
        out.append(f"  {r['cell']:<6} " + "  ".join(f"{k}={r[k] * 1e6:.1f}" for k in keys))
    return "\n".join(out)


def goals(records: list[dict]) -> list[str]:
    """The goals as markdown table rows: measured ratio and met / not met / not measured."""
    found = {(r["cell"], tuple(r["size"]), r["mode"]): r for r in records}
    rows = []
    for what, cell, size, mode, against, bound in GOALS:
        r = found.get((cell, size, mode))
        if r is None or against not in r["others"]:
            rows.append(f"| {what} | {_size(size)} | ≤ {bound:.2f} | — | — | not measured |")
            continue
        _, ratio, best = r["others"][against]
        verdict = "met" if ratio <= bound else "**not met**"
        rows.append(f"| {what} | {_size(size)} | ≤ {bound:.2f} | {ratio:.2f} | {best:.2f} | "
                    f"{verdict} |")
    return rows


def _category(key) -> str:
    filename, _, func = key
    path = filename.replace(os.sep, "/")
    if path.endswith("ops/matmul.py"):
        return "GEMM (MatMul kernels)"
    if path.endswith("backends/host_loop.py") and func in ("forward", "backward"):
        return "compiled loops (C: their GEMMs and element-wise chains)"
    if path.endswith("backends/host_ops.py"):
        return "element-wise (compiled C kernels)"
    if "/ops/" in path or path.endswith(("/fused.py", "/activations.py", "/node_update.py")):
        return "element-wise (NumPy ufuncs)"
    if filename == "~":
        return "numpy calls seen by cProfile (copyto, reshape, ...)"
    return "Python: executor, checks, API"


def profile_forward(cell: str, size: tuple, top: int = 0) -> str:
    """Where one forward pass spends its time, by cProfile, grouped by module.

    cProfile does not see ufunc calls (``np.matmul``, ``np.tanh``, in-place operators): their
    time counts in the Python function that made them, so the MatMul kernels' time is the
    GEMMs' (plus a little Python), the NodeUpdate kernels' is the element-wise work.
    """
    steps, batch, hidden, width = size
    model = common.build(cell, hidden, width)
    params = model.init_params(seed=0)
    x = np.random.default_rng(1).standard_normal((steps, batch, width)).astype(np.float32)

    def call():
        return model.forward(params, {"x": x})
    call()
    plain = []
    for _ in range(5):
        start = time.perf_counter()
        call()
        plain.append(time.perf_counter() - start)
    prof = cProfile.Profile()
    prof.runcall(call)
    stats = pstats.Stats(prof)
    groups: dict[str, float] = {}
    for key, (_, _, tottime, _, _) in stats.stats.items():
        groups[_category(key)] = groups.get(_category(key), 0.0) + tottime
    total = sum(groups.values())
    lines = [f"profile of {cell} forward at (T,B,H,I) = ({_size(size)}): "
             f"{statistics.median(plain) * 1e3:.1f} ms unprofiled, {total * 1e3:.1f} ms under "
             "cProfile"]
    for name, secs in sorted(groups.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {secs / total:6.1%}  {secs * 1e3:8.1f} ms  {name}")
    if top:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
        lines.append(buf.getvalue())
    return "\n".join(lines)


def markdown(env: dict, records: list[dict], overhead: list[dict], profile: str | None,
             args: str, elapsed: float) -> str:
    """The whole RESULTS.md."""
    out = ["# graphrnn benchmark results", "",
           "Written by `python -m benchmarks.bench " + args + "` (also `graphrnn bench`); "
           f"the run took {elapsed:.0f} s. Re-run it to refresh this file.", "",
           "Float32, NumPy backend, on the CPU. Each cell is `time (ratio · best ratio)`: the "
           "median time of the other implementation; the median over rounds of graphrnn's "
           "time divided by its time, the two timed back to back (order alternating); and "
           "graphrnn's fastest time over its fastest (load from other processes only adds "
           "time, so on a busy machine this one is steadier). **Below 1× graphrnn is "
           "faster.** `train` is forward + backward of an MSE loss on the output `y` "
           "(all weight gradients). Every network ends in a read-out `y` (size O, "
           "`nn.Linear` on the torch side) as the specs do. A case that a goal below is "
           "judged on is timed for 20 s of rounds (the others for a few), so its median ratio "
           "rests on many pairs.", "",
           "- *GEMM floor*: only the matrix products graphrnn's schedule needs, in NumPy's "
           "BLAS with preallocated operands (batched stages once over T·B rows, loop stages "
           "T times over B rows; backward adds the source-gradient and weight-gradient "
           "products). *torch GEMM floor*: the same products through `torch.matmul`.",
           "- *torch.nn*: `torch.nn.RNN/LSTM/GRU` (oneDNN) + `nn.Linear`; `torch.inference_mode` "
           "for forward. *torch loop*: the cell as a Python loop of `nn.Linear` (what people "
           "write for a custom topology). *jax*: the cell under `jax.lax.scan`, jitted "
           "(`value_and_grad` for train).",
           "- All implementations get graphrnn's weights; the forward outputs are compared "
           "before timing (column *check*, max relative difference).",
           "- The machine has 2 cores and may be shared: a load average above ~1 (see below) "
           "means other processes competed for the cores, and two-thread BLAS and OpenMP "
           "calls then stall erratically (a thread waits at a barrier for a descheduled "
           "one); on a shared machine run with `--threads 1` (every library one thread), "
           "which keeps the ratios meaningful. The issues' goals are for 2 threads on a "
           "quiet machine: re-run without `--threads` there.",
           "",
           "## Machine", "", "| | |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in env.items()]
    out += ["", "OpenBLAS picks its kernel by CPU; `OPENBLAS_CORETYPE` / `OPENBLAS_L2_SIZE` "
            "(set on some of these machines because old OpenBLAS builds misbehave on them) "
            "override that and slow a current numpy. The *BLAS environment* row above shows "
            "them for this run and *BLAS* the kernel that ran (threadpoolctl). To benchmark, "
            "unset both in that command alone: `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "
            "python -m benchmarks.bench --out benchmarks/RESULTS.md`; never in tests or CI.",
            "", "## Results (ms)", ""]
    head = ["cell", "T,B,H,I", "O", "mode", "graphrnn", *COLUMNS, "GFLOP", "check"]
    out += ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for r in records:
        cells = [r["cell"], _size(r["size"]), str(r["out"]), r["mode"],
                 f"{r['graphrnn'] * 1e3:.2f}", *[_cell(r, c, md=True) for c in COLUMNS],
                 f"{r['gflop']:.2f}", f"{r['check']:.1e}"]
        out.append("| " + " | ".join(cells) + " |")
    out += ["", "## Goals (issues 3 and 4)", "",
            "Met or not by the median paired ratio; the best-times ratio beside it.", "",
            "| goal | T,B,H,I | ratio at most | median ratio | best ratio | |",
            "|---|---|---|---|---|---|",
            *goals(records)]
    if overhead:
        out += ["", "## Fixed costs (µs)", "",
                "Tiny networks (H = I = O = B = 1): the time of one call with T = 1, and the "
                "cost of each further step ((T=101 − T=1) / 100): what bounds the small "
                "sizes. Compiled loops (these three) cost about a microsecond a step; a loop "
                "stepped from Python pays ~10 µs of dispatch per kernel and step, whatever H "
                "is.", "", overhead_table(overhead, md=True)]
    if profile:
        out += ["", "## Profile", "", "```", profile, "```"]
    return "\n".join(out) + "\n"
