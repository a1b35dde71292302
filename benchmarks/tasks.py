"""Classic recurrent-net tasks trained end to end: what our nets reach next to what papers report.

Trains, from the specs in ``specs/`` and data from :mod:`graphrnn.training.tasks` (no downloads):

* temporal XOR and letter sequences with Elman nets (Elman 1990, "Finding structure in time");
* the embedded Reber grammar with an LSTM, and for contrast with an Elman net of about the same
  size, trained once with full BPTT and once as Elman trained his nets (the context is an input
  with no gradient through it: truncated BPTT of one step) (Hochreiter & Schmidhuber 1997);
* the adding problem with an LSTM (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015),

scores each on held-out data, and prints and writes a markdown table (``docs/TASKS.md``).
The default run takes a few minutes on 2 cores.

    .venv/bin/python -m benchmarks.tasks [--out docs/TASKS.md] [--only reber adding] [--seed 0]
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from a checkout, any cwd
import graphrnn as gr  # noqa: E402
from graphrnn.files import write_atomic  # noqa: E402
from graphrnn.training.optim import Adam  # noqa: E402
from graphrnn.training.tasks import adding, embedded_reber, letter_sequence, temporal_xor  # noqa: E402

try:
    from benchmarks.common import cpu_model
    from benchmarks.reber_accuracy import score, strings
except ImportError:  # run as a script: python benchmarks/tasks.py
    from common import cpu_model
    from reber_accuracy import score, strings

SPECS = ROOT / "specs"


@dataclass
class Row:
    """One line of the table."""

    task: str
    paper: str
    net: str
    training: str
    ours: str
    seconds: float


def _model(name: str, dtype: str = "float32"):
    return gr.compile(gr.load_spec(SPECS / f"{name}.yaml"), dtype=dtype)


def _weights(params: dict) -> int:
    return sum(int(np.size(v)) for v in params.values())


def _rms(err: np.ndarray, where: np.ndarray) -> float:
    return float(np.sqrt(np.mean(err[where] ** 2)))


def train_bucketed(model, params: dict, data: dict, *, epochs: int, batch_size: int, lr: float,
                   final_lr: float, seed: int) -> dict:
    """Adam on mini-batches of strings of similar length, each cut to its longest string.

    Strings are sorted by length (ties broken at random each epoch) and cut into mini-batches
    that run in shuffled order, each only as long as its longest string: the gradients of
    padded batches (padding is masked out) for about 2.5 times fewer steps. The last third of
    the epochs use ``final_lr``. ``params`` is updated in place and returned.
    """
    rng = np.random.default_rng(seed)
    lengths = data["lengths"]
    opt = Adam(lr)
    for epoch in range(epochs):
        opt.lr = lr if epoch < 2 * epochs // 3 else final_lr
        order = np.argsort(lengths + rng.random(len(lengths)))
        batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
        for j in rng.permutation(len(batches)):
            idx = batches[j]
            t = int(lengths[idx].max())
            _, grads = model.gradients(params, {"x": data["x"][:t, idx]},
                                       {"y": data["y"][:t, idx]}, loss="mse",
                                       mask=data["mask"][:t, idx])
            opt.step(params, grads)
    return params


def run_xor(seed: int) -> list[Row]:
    """Elman (1990) section 3: every third bit is predictable (the XOR of the two before)."""
    model = _model("xor_elman", "float64")
    train = temporal_xor(batch=256, steps=30, seed=seed, dtype="float64")
    test = temporal_xor(batch=100, steps=300, seed=seed + 1, dtype="float64")
    start = time.perf_counter()
    res = gr.train(model, model.init_params(seed=seed), train, epochs=60, batch_size=16,
                   lr=0.03, val_fraction=0, progress=False, seed=seed)
    secs = time.perf_counter() - start
    y = model.forward(res.params, {"x": test["x"]})[0]["y"][..., 0]
    target, xor = test["y"][..., 0], test["predictable"] > 0
    acc = float(((y > 0.5) == (target > 0.5))[xor].mean())
    return [Row("temporal XOR",
                "Elman 1990: 1-2-1 net (2 context units), one 3,000-bit stream, 600 passes. "
                "Fig. 3: the error falls on every third (XOR) bit and stays high on the others.",
                f"`xor_elman`: 1-4-1 Elman, {_weights(res.params)} weights (with 2 hidden "
                "units, some seeds get stuck)",
                "256 sequences × 30 bits, 60 epochs, Adam 0.03, batch 16",
                f"RMS error {_rms(y - target, xor):.2f} on the XOR bits, "
                f"{_rms(y - target, ~xor):.2f} on the random ones (chance: 0.50); XOR bit right "
                f"{acc:.1%}", secs)]


def run_letters(seed: int) -> list[Row]:
    """Elman (1990) section 4: b/d/g rewritten ba/dii/guuu; vowels are predictable."""
    model = _model("letters_elman")
    train = letter_sequence(batch=128, steps=30, seed=seed)
    test = letter_sequence(batch=100, steps=300, seed=seed + 1)
    start = time.perf_counter()
    res = gr.train(model, model.init_params(seed=seed), train, epochs=30, batch_size=16,
                   lr=0.01, val_fraction=0, progress=False, seed=seed)
    secs = time.perf_counter() - start
    y = model.forward(res.params, {"x": test["x"]})[0]["y"]
    target, vowel = test["y"], test["predictable"] > 0
    err = np.sqrt(((y - target) ** 2).sum(axis=-1))  # over the whole feature vector
    vowels_right = float(((y > 0.5) == (target > 0.5)).all(axis=-1)[vowel].mean())
    consonant_bit = float(((y[..., 0] > 0.5) == (target[..., 0] > 0.5)).mean())
    return [Row("letter sequences",
                "Elman 1990: 6-20-6 net (20 context units), 200 passes. Fig. 4: error low on "
                "the vowels, high on the consonants; the Consonant feature has low error at "
                "every step (the net knows when a consonant is due, not which).",
                f"`letters_elman`: 6-20-6 Elman, {_weights(res.params)} weights",
                "128 sequences × 30 letters, 30 epochs, Adam 0.01, batch 16",
                f"RMS error (6 features) {float(err[vowel].mean()):.2f} on vowels, "
                f"{float(err[~vowel].mean()):.2f} on consonants; vowels fully right "
                f"{vowels_right:.1%}; Consonant bit right {consonant_bit:.1%} of all steps",
                secs)]


def _long_strings(seed: int, min_length: int, count: int) -> dict:
    """Embedded Reber strings of at least ``min_length`` symbols (rare: drawn from many)."""
    pool = embedded_reber(batch=40 * count, seed=seed)
    keep = np.flatnonzero(pool["lengths"] >= min_length - 1)[:count]
    t = int(pool["lengths"][keep].max())
    return {"x": pool["x"][:t, keep], "y": pool["y"][:t, keep], "mask": pool["mask"][:t, keep],
            "lengths": pool["lengths"][keep]}


def run_reber(seed: int) -> list[Row]:
    """Hochreiter & Schmidhuber (1997) experiment 1, LSTM against Elman nets."""
    train = embedded_reber(batch=1000, seed=seed)
    test = embedded_reber(batch=4000, seed=seed + 1)
    long = _long_strings(seed + 2, 20, 300)
    seen = set(strings(train))
    paper = ("Hochreiter & Schmidhuber 1997 exp. 1, Table 1: LSTM (3-4 memory blocks) "
             "succeeds in 97-100% of trials; Elman nets in 0% (a trial succeeds when every "
             "next symbol of every test and training string is predicted)")
    data = f"1000 strings (T ≤ {train['x'].shape[0]})"
    bucketed = "30 epochs, Adam 0.02 then 0.004, batch 16 (length-bucketed)"

    def full_bptt(model, params):
        return train_bucketed(model, params, train, epochs=30, batch_size=16, lr=0.02,
                              final_lr=0.004, seed=seed)

    def elmans_way(model, params):  # the context is an input: no gradient through it
        return gr.train(model, params, train, epochs=10, batch_size=16, lr=0.005,
                        val_fraction=0, progress=False, seed=seed, tbptt=1).params

    runs: list[tuple[str, str, str, Callable]] = [
        ("reber_lstm", "LSTM, 16 cells", bucketed, full_bptt),
        ("reber_elman", "Elman, 32 hidden, full BPTT", bucketed, full_bptt),
        ("reber_elman", "Elman, 32 hidden, Elman's training", "10 epochs, Adam 0.005, "
         "batch 16, gradient cut after one step (`--tbptt 1`)", elmans_way)]
    rows = []
    for spec, label, how, fit in runs:
        model = _model(spec)
        start = time.perf_counter()
        params = fit(model, model.init_params(seed=seed))
        secs = time.perf_counter() - start
        s = score(model.forward(params, {"x": test["x"]})[0]["y"], test, seen=seen)
        lg = score(model.forward(params, {"x": long["x"]})[0]["y"], long)
        first = not rows
        rows.append(Row("embedded Reber" if first else "", paper if first else "",
                        f"`{spec}`: {label}, {_weights(params)} weights", f"{data}, {how}",
                        f"{s['strings']:.2%} of {s['n']} held-out strings fully right "
                        f"({s['novel']:.2%} of the {s['n_novel']} unseen in training); "
                        f"penultimate T/P {s['penultimate']:.2%}; {lg['n']} strings of ≥ 20 "
                        f"symbols {lg['strings']:.1%}", secs))
    return rows


def run_adding(seed: int, steps: int) -> list[Row]:
    """The adding problem, Le et al.'s form: sum of the two marked values in [0, 1)."""
    train = adding(batch=6400, steps=steps, seed=seed)
    test = adding(batch=1000, steps=steps, seed=seed + 1)
    target = test["y"][-1, :, 0]
    baseline = float(np.mean((1 - target) ** 2))
    rows = []
    for spec, label, epochs in (("adding_lstm", "LSTM, 16 cells", 10 if steps <= 60 else 16),
                                ("adding_elman", "Elman (tanh), 32 hidden", 10)):
        model = _model(spec)
        start = time.perf_counter()
        res = gr.train(model, model.init_params(seed=seed), train, epochs=epochs,
                       batch_size=32, lr=0.01, clip=1.0, val_fraction=0.1, progress=False,
                       seed=seed)
        secs = time.perf_counter() - start
        err = model.forward(res.params, {"x": test["x"]})[0]["y"][-1, :, 0] - target
        first = not rows
        rows.append(Row(
            "adding problem" if first else "",
            "Hochreiter & Schmidhuber 1997 exp. 4 (T = 100-1000): LSTM solves it (a sequence "
            "counts as right at absolute error < 0.04). Le et al. 2015 (this form, T = "
            "150-400): IRNN and LSTM get far below the baseline (answering 1: MSE about "
            "0.17), a tanh RNN does not" if first else "",
            f"`{spec}`: {label}, {_weights(res.params)} weights",
            f"T = {steps}: 5760 + 640 validation sequences, {epochs} epochs, Adam 0.01, "
            "clip 1, batch 32, best epoch",
            f"test MSE {float(np.mean(err ** 2)):.4f} (answering 1: {baseline:.3f}); "
            f"absolute error < 0.04 on {float(np.mean(np.abs(err) < 0.04)):.1%}", secs))
    return rows


def render(rows: list[Row], total: float, argv: list[str]) -> str:
    """The markdown page: the table, and how it was made."""
    lines = ["# Classic tasks: our nets next to the papers", "",
             "Made by `python -m benchmarks.tasks` "
             f"({' '.join(argv) or 'defaults'}); NumPy backend, float32 (XOR: float64), one "
             "seed. Held-out data are drawn with another seed than the training data. Times are "
             "training only.", "",
             "| task | papers report | our net | training | we reach | time |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.task} | {r.paper} | {r.net} | {r.training} | {r.ours} | "
                     f"{r.seconds:.0f} s |")
    when = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    lines += ["", f"Total {total:.0f} s on {cpu_model()}, "
              f"{os.cpu_count()} CPUs, numpy {np.__version__}, {when}.", "",
              "Notes: the 1997 LSTM had no forget gate and was trained online with a truncated "
              "gradient; ours has one and is trained with full BPTT and Adam. An Elman net "
              "trained the way Elman trained his (no gradient through the context units) gets "
              "the penultimate T/P right only by chance, in line with Hochreiter & "
              "Schmidhuber's 0%; with full BPTT and Adam the same net learns these lags (at "
              "most about 35 steps here) too. The papers' success rates are over many trials; "
              "ours are fractions of held-out strings or sequences in one run. About 85% of "
              "held-out Reber strings also occur in the training set (short strings repeat), "
              "so the strings never seen in training are scored on their own.", ""]
    return "\n".join(lines)


def kept_sections(path: Path) -> str:
    """The ``## `` sections of the page at ``path`` (written by other benchmarks, e.g.
    ``benchmarks.text_lm``, or by hand): kept when this table is rewritten above them."""
    text = path.read_text() if path.is_file() else ""
    at = text.find("\n## ")
    return "" if at < 0 else "\n" + text[at + 1:]


TASK_RUNS = {"xor": run_xor, "letters": run_letters, "reber": run_reber, "adding": run_adding}


def main(argv: list[str] | None = None) -> int:
    """Train the tasks, print the table and write it (``--out``)."""
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "docs" / "TASKS.md"), metavar="FILE.md",
                   help="where to write the table ('-': print only)")
    p.add_argument("--only", nargs="+", choices=sorted(TASK_RUNS), help="run only these tasks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--adding-steps", type=int, default=50, metavar="T",
                   help="sequence length of the adding problem (100 takes about 3x longer)")
    args = p.parse_args(argv)
    rows: list[Row] = []
    start = time.perf_counter()
    for name, run in TASK_RUNS.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        new = run(args.seed, args.adding_steps) if name == "adding" else run(args.seed)
        rows += new
        for r in new:
            print(f"{name}: {r.net}: {r.ours} ({r.seconds:.1f} s training)", flush=True)
        print(f"{name}: {time.perf_counter() - t0:.1f} s in all", flush=True)
    page = render(rows, time.perf_counter() - start, argv)
    print(page)
    if args.out != "-":
        write_atomic(args.out, page + kept_sections(Path(args.out)))
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
