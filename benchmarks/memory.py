"""Peak resident memory of one LSTM training call: graphrnn (with and without recomputation)
against torch.nn.LSTM, each measured in a process of its own.

Run ``python -m benchmarks.memory [--steps 2000 4000] [--batch 32] [--hidden 512]
[--inputs 256] [--remat K]`` from the repository root. Each row starts a fresh Python process
that builds the case, makes the data, notes its resident memory (the baseline), runs one
forward+backward (``model.gradients``, or torch's ``loss.backward()``) and reports
``ru_maxrss``, the peak resident set of the whole process; the table gives both and the ratio
of the peaks' growth over the baseline is not used: the goal compares whole peaks.
``--breakdown`` (graphrnn only) lists each large array the call touched and its resident size.
``--quick``: tiny sizes (T=200, B=4, H=32, I=16), seconds in all: that the rows run, not what
they measure. ``x time``: the call's seconds over plain graphrnn's (the checkpointing goal).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time

import numpy as np

try:
    from benchmarks import common, refs
except ImportError:  # run as a script
    import common
    import refs

MB = 2**20


def _rss_now() -> int:
    """The current resident set in bytes (``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak() -> int:
    """The process's peak resident set in bytes (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _regions() -> list[tuple[int, int, int]]:
    """``(start, end, rss bytes)`` of each mapping of this process (``/proc/self/smaps``)."""
    out, current = [], None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                a, b = (int(x, 16) for x in head[0].split("-"))
                current = [a, b, 0]
                out.append(current)
            elif head[0] == "Rss:" and current is not None:
                current[2] = int(head[1]) * 1024
    return [tuple(r) for r in out]


def _breakdown(arrays: dict) -> list[tuple[str, float, float]]:
    """Each named array's size and resident megabytes (of the mappings it lies in: NumPy
    maps large arrays one each)."""
    regions = _regions()
    rows = []
    for name, a in arrays.items():
        lo, hi = a.ctypes.data, a.ctypes.data + a.nbytes
        if a.nbytes >= MB:  # NumPy's madvise(hugepage) splits an array's mapping in several
            rss = sum(r[2] for r in regions if r[0] < hi and r[1] > lo)
            rows.append((name, a.nbytes / MB, rss / MB))
    return sorted(rows, key=lambda r: -r[2])


def measure(lib: str, steps: int, batch: int, hidden: int, inputs: int, remat: int | None,
            breakdown: bool) -> dict:
    """One case in this process: baseline and peak resident bytes, seconds of the call."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((steps, batch, inputs)).astype(np.float32)
    model = common.build("lstm", hidden, inputs)
    params = model.init_params(0)
    y = rng.standard_normal((steps, batch, model.net.size("y"))).astype(np.float32)
    if lib == "torch":
        import torch
        torch.set_num_threads(1)
        step = refs.torch_nn(torch, "lstm", params, x, y).train_step
    else:
        kw = {} if remat is None else {"remat": remat}

        def step():
            return model.gradients(params, {"x": x}, {"y": y}, **kw)
    runs = []
    if breakdown and lib == "graphrnn":
        kept = model._kept_run

        def keep(*args, **kwargs):
            runs.append(kept(*args, **kwargs))
            return runs[-1]
        model._kept_run = keep
    base = _rss_now()
    t0 = time.perf_counter()
    step()
    seconds = time.perf_counter() - t0
    row = {"lib": lib, "steps": steps, "remat": remat, "base": base, "peak": _peak(),
           "seconds": seconds}
    if breakdown and lib == "graphrnn":
        for run in runs[-1:]:
            arrays = {f"buf {k}": v for k, v in run.arrays.items()}
            arrays.update({f"grad {k}": v for k, v in run.grads.items()})
            row["breakdown"] = _breakdown(arrays)
    return row


def _child(args: list[str]) -> dict:
    """:func:`measure` in a fresh process (its peak is its own)."""
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-m", "benchmarks.memory", "--child", *args],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory child {' '.join(args)} failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[2000, 4000])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--inputs", type=int, default=256)
    parser.add_argument("--remat", type=int, default=0,
                        help="segment length of the recomputed rows (0: about sqrt(T))")
    parser.add_argument("--breakdown", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: the rows run, fast")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--lib", default="graphrnn", help=argparse.SUPPRESS)
    a = parser.parse_args(argv)
    if a.quick:
        a.steps, a.batch, a.hidden, a.inputs = [200], 4, 32, 16
    if a.child:
        remat = a.remat if a.remat > 0 else None
        row = measure(a.lib, a.steps[0], a.batch, a.hidden, a.inputs, remat, a.breakdown)
        print(json.dumps(row))
        return 0
    print(f"LSTM training call, B={a.batch} H={a.hidden} I={a.inputs} float32; peak RSS of "
          "a process each (MB)")
    print(f"{'T':>6} {'implementation':<26} {'base':>7} {'peak':>7} {'x torch':>8} {'s':>7} "
          f"{'x time':>7}")
    for steps in a.steps:
        k = a.remat or max(1, math.isqrt(steps))
        common_args = [str(steps), "--batch", str(a.batch), "--hidden", str(a.hidden),
                       "--inputs", str(a.inputs)]
        torch_row = _child(["--steps", *common_args, "--lib", "torch"])
        cases = [("torch.nn.LSTM", torch_row),
                 ("graphrnn", _child(["--steps", *common_args]
                                     + (["--breakdown"] if a.breakdown else []))),
                 (f"graphrnn remat={k}", _child(["--steps", *common_args, "--remat", str(k)]
                                               + (["--breakdown"] if a.breakdown else [])))]
        plain = cases[1][1]["seconds"]
        for label, row in cases:
            row["label"] = label
            row["ratio"] = row["peak"] / torch_row["peak"]
            row["time_ratio"] = row["seconds"] / plain
            print(f"{steps:>6} {label:<26} {row['base'] / MB:>7.0f} {row['peak'] / MB:>7.0f} "
                  f"{row['ratio']:>8.2f} {row['seconds']:>7.2f} {row['time_ratio']:>7.2f}")
            for name, size, rss in row.get("breakdown", []):
                print(f"{'':>8}{name:<30} {size:>8.0f} MB, resident {rss:>8.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
