"""Capacity of a Hebbian Hopfield net: stable patterns and recall overlap against the load P/N.

Sweeps alpha = P/N at fixed N (default 500) with Hebb's rule and measures, per load,

* the fraction of stored patterns that are fixed points (one synchronous update leaves them
  unchanged), and
* the mean overlap m = s.xi/N (and the fraction recovered exactly) after asynchronous recall
  from probes with 10% of their bits flipped, through ``gr.hopfield.recall`` (the compiled
  NumPy backend; ``--reference`` uses the pure-NumPy reference instead),

prints a table and writes a plot marking the critical load alpha_c ~ 0.138 (Amit, Gutfreund &
Sompolinsky 1985). ``--relax-bench`` also times relaxing 1,000 probes on N = 1,000.

    .venv/bin/python benchmarks/hopfield_capacity.py [--reference] [-o docs/hopfield_capacity.png]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, any cwd
import graphrnn as gr  # noqa: E402
from graphrnn import hopfield
from graphrnn.files import atomic_file  # noqa: E402
from graphrnn.frontend import png  # noqa: E402

ALPHA_C = 0.138


def measure(n: int, alpha: float, trials: int, noise: float, max_steps: int, seed: int,
            backend: str) -> dict:
    """One load: averages over ``trials`` independent pattern sets."""
    p = max(1, int(round(alpha * n)))
    stable, m, exact, conv, steps = [], [], [], [], []
    for trial in range(trials):
        rng_seed = seed + 1000 * trial + p
        x = np.random.default_rng(rng_seed).choice([-1.0, 1.0], size=(p, n))
        w = hopfield.hebbian(x)
        stable.append(np.all(np.where(x @ w.T >= 0, 1.0, -1.0) == x, axis=1).mean())
        res = hopfield.recall(w, hopfield.corrupt(x, noise, seed=rng_seed), max_steps=max_steps,
                              seed=rng_seed, backend=backend)
        m.append(hopfield.overlap(res.states, x).mean())
        exact.append(np.all(res.states == x, axis=1).mean())
        conv.append(res.converged.mean())
        steps.append(res.steps.mean())
    return {"alpha": p / n, "P": p, "stable": np.mean(stable), "overlap": np.mean(m),
            "exact": np.mean(exact), "converged": np.mean(conv), "steps": np.mean(steps)}


def plot(rows: list[dict], path: Path, n: int, noise: float) -> str:
    """Write the plot with matplotlib when installed, else a bare PNG line plot."""
    alphas = np.array([r["alpha"] for r in rows])
    series = {"stable fixed points (fraction of patterns)": [r["stable"] for r in rows],
              f"mean overlap after recall from {noise:.0%} noise": [r["overlap"] for r in rows],
              "recalled exactly (fraction)": [r["exact"] for r in rows]}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        png.write_png(path, png.line_plot(alphas, [np.array(v) for v in series.values()],
                                          vlines=[ALPHA_C], ylim=(-0.05, 1.05)))
        return ("matplotlib is not installed (pip install 'graphrnn[plot]'): wrote a bare plot "
                "without labels; lines blue/orange/green = " + " / ".join(series)
                + f"; dashed = alpha_c {ALPHA_C}")
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for (label, ys), marker in zip(series.items(), "osd", strict=True):
        ax.plot(alphas, ys, marker=marker, ms=4, label=label)
    ax.axvline(ALPHA_C, color="gray", ls="--", lw=1)
    ax.text(ALPHA_C + 0.003, 0.5, r"$\alpha_c \approx 0.138$" + "\n(Amit, Gutfreund &\n"
            "Sompolinsky 1985)", color="gray", fontsize=8)
    ax.set(xlabel=r"load $\alpha = P/N$", ylim=(-0.03, 1.03),
           title=f"Hebbian Hopfield net, N = {n}: storage capacity")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    try:
        with atomic_file(path) as handle:
            fig.savefig(handle, format="png")
    finally:
        plt.close(fig)
    return f"wrote {path}"


def relax_bench(backend: str, n: int = 1000, batch: int = 1000, steps: int = 5) -> None:
    """Time ``steps`` relaxation steps of ``batch`` probes on ``n`` units, both update modes."""
    x = np.random.default_rng(0).choice([-1.0, 1.0], size=(50, n))
    w = hopfield.hebbian(x)
    probes = hopfield.corrupt(x[np.arange(batch) % 50], 0.1, seed=1)
    print(f"\nrelaxation, B = {batch} probes, N = {n}, {steps} steps, backend {backend}:")
    for update in ("synchronous", "asynchronous"):
        if backend == "reference":
            def run(update=update):
                return hopfield.relax(w, probes, steps=steps, update=update)
        else:
            model = gr.compile(hopfield.network(n, update=update), backend=backend,
                               dtype="float64")

            def run(update=update, model=model):
                return model.forward({"W": w}, {}, state={"s": probes}, steps=steps, seed=0)
        run()
        times = []
        for _ in range(3):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        best = min(times)
        print(f"  {update:>12}: {best:.3f} s  ({1e3 * best / steps:.1f} ms per step)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="units (default 500)")
    ap.add_argument("--alphas", type=float, nargs="+",
                    default=[*(round(a, 3) for a in np.arange(0.02, 0.2001, 0.01)), 0.22, 0.25],
                    help="loads P/N to sweep (default 0.02 .. 0.20 by 0.01, 0.22, 0.25)")
    ap.add_argument("--trials", type=int, default=2, help="pattern sets per load (default 2)")
    ap.add_argument("--noise", type=float, default=0.10, help="fraction of bits flipped")
    ap.add_argument("--max-steps", type=int, default=30, help="recall step limit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--reference", action="store_true",
                    help="recall with the pure-NumPy reference instead of the compiled net")
    ap.add_argument("--backend", default="numpy", help="compiled backend (default numpy)")
    ap.add_argument("--relax-bench", action="store_true",
                    help="also time 1,000 probes on N = 1,000 (synchronous and asynchronous)")
    ap.add_argument("-o", "--out", type=Path, default=Path("docs/hopfield_capacity.png"))
    args = ap.parse_args(argv)
    if args.n < 2 or args.trials < 1 or not 0 <= args.noise <= 1 or min(args.alphas) <= 0:
        print("error: need --n >= 2, --trials >= 1, 0 <= --noise <= 1 and loads > 0",
              file=sys.stderr)
        return 2
    backend = "reference" if args.reference else args.backend
    if backend != "reference" and not hasattr(gr, "compile"):
        print("note: gr.compile is not available in this checkout; using --reference",
              file=sys.stderr)
        backend = "reference"
    print(f"Hebbian Hopfield net, N = {args.n}, {args.trials} trials per load, recall from "
          f"{args.noise:.0%} noise (asynchronous, <= {args.max_steps} steps, {backend})")
    print(f"{'alpha':>6} {'P':>4} {'stable':>7} {'overlap':>8} {'exact':>6} {'conv':>5} "
          f"{'steps':>6} {'time':>6}")
    rows, start = [], time.perf_counter()
    for alpha in args.alphas:
        t0 = time.perf_counter()
        r = measure(args.n, alpha, args.trials, args.noise, args.max_steps, args.seed, backend)
        rows.append(r)
        print(f"{r['alpha']:6.3f} {r['P']:4d} {r['stable']:7.3f} {r['overlap']:8.3f} "
              f"{r['exact']:6.3f} {r['converged']:5.2f} {r['steps']:6.2f} "
              f"{time.perf_counter() - t0:5.1f}s", flush=True)
    print(f"sweep: {time.perf_counter() - start:.1f} s")
    print(plot(rows, args.out, args.n, args.noise))
    if args.relax_bench:
        relax_bench(backend if backend == "reference" else args.backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
