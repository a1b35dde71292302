"""Character LM on the standard library's own source: held-out bits per character vs n-grams.

Run ``python -m benchmarks.text_lm [--quick] [--out DIR]`` from the repository root. The text
is the sorted ``.py`` files of the standard library's ``email/`` and ``json/`` packages
(``sysconfig.get_paths()["stdlib"]``; both exist in every CPython 3.11+), concatenated, so no
download is needed. ``graphrnn.training.tasks.text_lm`` numbers the characters (96 ids, the
rarest share ``<unk>``) and cuts the text into contiguous 64-character sequences in text order;
every ``HOLD_EVERY``-th block of ``BLOCK`` consecutive sequences is held out. Printed (and
written to ``DIR/text_lm.json``): interpolated Witten-Bell character n-gram baselines
(orders 1-5, counted on the training sequences, scored on the same held-out predictions), and
``specs/char_lm.yaml`` trained with ``gr.train`` (Adam, fixed epochs, same seed) without and
with dropout on ``e`` and ``h``, its train and held-out bits per character measured with
``train=False`` after every epoch. ``--quick`` is a seconds-long smoke version.
"""

from __future__ import annotations

import argparse
import json
import math
import sysconfig
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

import graphrnn as gr
from graphrnn.files import write_atomic
from graphrnn.training.tasks import text_lm

#: the standard-library packages whose sorted ``*.py`` files make the text
PACKAGES = ("email", "json")
STEPS = 64   # characters per sequence
BLOCK = 16   # consecutive sequences per held-out / training block
HOLD_EVERY = 10  # every 10th block is held out
VOCAB = 96
FULL_CHARS = 40_000  # the first 40,000 characters: small enough that the LSTM overfits
SPEC = Path(__file__).resolve().parent.parent / "graphrnn" / "specs" / "char_lm.yaml"


def stdlib_text(packages=PACKAGES, limit: int | None = None) -> tuple[str, list[str]]:
    """The concatenated source of ``packages`` (sorted file names) and the file list."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [f for p in packages for f in sorted((root / p).glob("*.py"))]
    text = "".join(f.read_text(encoding="utf-8") for f in files)
    return (text if limit is None else text[:limit]), [str(f.relative_to(root)) for f in files]


def split(x: np.ndarray, y: np.ndarray, block: int = BLOCK) -> tuple[dict, dict]:
    """Training and held-out sequences: every HOLD_EVERY-th block of ``block`` columns."""
    held = (np.arange(x.shape[1]) // block) % HOLD_EVERY == HOLD_EVERY - 1
    return {"tok": x[:, ~held], "y": y[:, ~held]}, {"tok": x[:, held], "y": y[:, held]}


def ngram_bpc(train: dict, held: dict, order: int, vocab: int) -> float:
    """Interpolated Witten-Bell n-gram bits per character of ``held``'s labels.

    Counts come from the training sequences; the context of a prediction is the previous
    ``order - 1`` characters of its own sequence (fewer at its start), as the LSTM sees only
    its sequence. The order-0 distribution is uniform over ``vocab``.
    """
    counts: list[Counter] = [Counter() for _ in range(order)]   # (context, next) per length
    for seq_x, seq_y in zip(train["tok"].T, train["y"].T, strict=True):
        chars = [int(seq_x[0])] + [int(c) for c in seq_y]
        for t in range(1, len(chars)):
            for k in range(order):
                if t - k >= 0:
                    counts[k][(tuple(chars[t - k:t]), chars[t])] += 1
    totals: list[Counter] = [Counter() for _ in range(order)]
    types: list[Counter] = [Counter() for _ in range(order)]
    for k in range(order):
        for (ctx, _), n in counts[k].items():
            totals[k][ctx] += n
            types[k][ctx] += 1
    bits = 0.0
    n_pred = 0
    for seq_x, seq_y in zip(held["tok"].T, held["y"].T, strict=True):
        chars = [int(seq_x[0])] + [int(c) for c in seq_y]
        for t in range(1, len(chars)):
            p = 1.0 / vocab
            for k in range(min(order - 1, t) + 1):
                ctx = tuple(chars[t - k:t])
                total = totals[k][ctx]
                if total:
                    seen = types[k][ctx]
                    p = (counts[k][(ctx, chars[t])] + seen * p) / (total + seen)
            bits -= math.log2(p)
            n_pred += 1
    return bits / n_pred


def lm_bpc(model, params: dict, data: dict, batch: int = 512) -> float:
    """Mean cross-entropy in bits per character of ``data`` with ``train=False``."""
    nats = 0.0
    for start in range(0, data["tok"].shape[1], batch):
        x = data["tok"][:, start:start + batch]
        logits = np.asarray(model.forward(params, {"tok": x}, train=False)[0]["y"],
                             dtype=np.float64)
        logits -= logits.max(axis=-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
        labels = data["y"][:, start:start + batch]
        nats -= np.take_along_axis(logp, labels[..., None], axis=-1).sum()
    return nats / data["y"].size / math.log(2)


def with_dropout(spec_text: str, p: float) -> str:
    """``spec_text`` with node dropout ``p`` on the embedding ``e`` and the LSTM output ``h``."""
    out = spec_text.replace("  e: {size: 32,", f"  e: {{dropout: {p}, size: 32,")
    out = out.replace("  h: {size: 128,", f"  h: {{dropout: {p}, size: 128,")
    assert out.count("dropout") == spec_text.count("dropout") + 2, "spec layout changed"
    return out


def train_lm(spec_text: str, train: dict, held: dict, epochs: int, workdir: Path,
             label: str, batch_size: int, lr: float) -> dict:
    """Train epoch by epoch (resuming one checkpoint, so Adam's state carries over) and
    measure train and held-out bits per character after each epoch."""
    model = gr.compile(gr.load_spec(spec_text))
    params = model.init_params(0)
    ckpt = workdir / f"{label}.ckpt.npz"
    curve = []
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        result = gr.train(model, params, train, loss="cross_entropy", lr=lr, epochs=epoch,
                          batch_size=batch_size, clip=1.0, val_fraction=0.0, seed=0,
                          checkpoint=ckpt, resume=True, progress=False, restore_best=False)
        row = {"epoch": epoch, "train_bpc": lm_bpc(model, result.params, train),
               "held_bpc": lm_bpc(model, result.params, held),
               "seconds": round(time.perf_counter() - start, 1)}
        curve.append(row)
        print(f"  {label:<12} epoch {epoch:2d}: train {row['train_bpc']:.3f}  "
              f"held-out {row['held_bpc']:.3f} bpc  ({row['seconds']:.0f} s)", flush=True)
    return {"curve": curve, "final": curve[-1],
            "best_held": min(curve, key=lambda r: r["held_bpc"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a seconds-long smoke version")
    p.add_argument("--chars", type=int, default=None, help="use the first N characters")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--dropout", type=float, default=0.2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--out", default=None, help="folder for text_lm.json (default: a temp dir)")
    args = p.parse_args(argv)
    chars = args.chars or (6000 if args.quick else FULL_CHARS)
    epochs = args.epochs or (1 if args.quick else 60)
    orders = (1, 2, 3) if args.quick else (1, 2, 3, 4, 5)
    text, files = stdlib_text(limit=chars)
    out = Path(args.out or tempfile.mkdtemp(prefix="text_lm-"))
    out.mkdir(parents=True, exist_ok=True)
    corpus = out / "corpus.txt"
    corpus.write_text(text, encoding="utf-8")
    n_seq = (len(text) - 1) // STEPS
    data = text_lm(corpus, batch=n_seq, steps=STEPS, vocab=VOCAB)
    train, held = split(data["x"], data["y"], 2 if args.quick else BLOCK)
    start = "the start of " if chars else ""
    print(f"text: {start}{len(files)} files of {', '.join(PACKAGES)} ({len(text):,} characters, "
          f"{len(set(text))} distinct); {train['tok'].shape[1]} training and "
          f"{held['tok'].shape[1]} held-out sequences of {STEPS}", flush=True)
    report: dict = {"files": files, "characters": len(text), "steps": STEPS,
                    "train_chars": int(train["y"].size), "held_chars": int(held["y"].size),
                    "epochs": epochs, "dropout": args.dropout, "lr": args.lr,
                    "batch_size": args.batch_size, "ngram": {}}
    for order in orders:
        t0 = time.perf_counter()
        bpc = ngram_bpc(train, held, order, VOCAB)
        report["ngram"][order] = bpc
        print(f"  {order}-gram (Witten-Bell): held-out {bpc:.3f} bpc "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
    spec_text = SPEC.read_text(encoding="utf-8")
    for label, text_variant in (("no dropout", spec_text),
                                (f"dropout {args.dropout}", with_dropout(spec_text,
                                                                         args.dropout))):
        key = "dropout" if label.startswith("dropout") else "plain"
        report[key] = train_lm(text_variant, train, held, epochs, out, key,
                               args.batch_size, args.lr)
    write_atomic(out / "text_lm.json", json.dumps(report, indent=1) + "\n")
    print(f"wrote {out / 'text_lm.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
