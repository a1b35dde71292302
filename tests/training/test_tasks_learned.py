"""Classic tasks are learned: the embedded Reber grammar by the LSTM spec, temporal XOR by Elman."""

from __future__ import annotations

import numpy as np

import graphrnn as gr
from benchmarks.tasks import train_bucketed
from graphrnn.training.tasks import REBER_SYMBOLS, embedded_reber, reber_accuracy, temporal_xor
from tests.helpers import SPECS


def test_embedded_reber_is_learned_by_the_lstm_spec():
    """Hochreiter & Schmidhuber (1997), experiment 1, on held-out strings.

    A string is right when at every step every symbol the grammar allows next is above 0.5
    and every other below; the penultimate T/P (the second symbol, remembered across the
    whole inner Reber string) is checked on its own as well.
    """
    model = gr.compile(gr.load_spec(SPECS / "reber_lstm.yaml"), dtype="float32")
    train = embedded_reber(batch=1000, seed=0)
    test = embedded_reber(batch=4000, seed=1)  # ~85% repeat training strings: see below
    params = train_bucketed(model, model.init_params(seed=0), train, epochs=30,
                             batch_size=16, lr=0.02, final_lr=0.004, seed=0)
    y = model.forward(params, {"x": test["x"]})[0]["y"]

    allowed, real = test["y"] > 0.5, test["mask"] > 0
    step_ok = ((y > 0.5) == allowed).all(axis=2) | ~real
    string_ok = step_ok.all(axis=0)
    assert string_ok.mean() >= 0.99, f"only {string_ok.mean():.2%} of held-out strings right"
    assert reber_accuracy(y, test["y"], test["mask"]) == string_ok.mean()

    # The long-range step: after the inner string's E, the net must name the second symbol.
    cols = np.arange(test["x"].shape[1])
    lengths = test["lengths"]
    penult = lengths - 2  # the input there is the inner string's E; the target is T or P
    assert (test["x"][penult, cols].argmax(axis=1) == REBER_SYMBOLS.index("E")).all()
    second = test["x"][1].argmax(axis=1)
    assert set(second) == {REBER_SYMBOLS.index("T"), REBER_SYMBOLS.index("P")}
    expect = np.zeros((len(cols), 7), dtype=bool)
    expect[cols, second] = True
    np.testing.assert_array_equal(allowed[penult, cols], expect)  # the data's own claim
    penult_ok = ((y[penult, cols] > 0.5) == expect).all(axis=1)
    assert penult_ok.mean() >= 0.99, f"penultimate T/P right in only {penult_ok.mean():.2%}"
    assert penult_ok.sum() >= string_ok.sum()
    lags = penult - 1  # steps between reading the second symbol and having to repeat it
    assert lags.max() >= 15 and penult_ok[lags >= 15].mean() >= 0.9

    # Held out in the strict sense: strings never seen in training (short strings repeat).
    seen = set(_strings(train))
    novel = np.array([s not in seen for s in _strings(test)])
    assert novel.sum() >= 400
    assert string_ok[novel].mean() >= 0.99, f"only {string_ok[novel].mean():.2%} of novel strings"


def _strings(data) -> list[str]:
    """The input strings of an embedded Reber data set, as text."""
    idx = data["x"].argmax(axis=2).T
    return ["".join(REBER_SYMBOLS[k] for k in row[:n]) for row, n in zip(idx, data["lengths"],
                                                                            strict=True)]


def test_temporal_xor_is_learned_by_an_elman_net():
    """Elman (1990): every third bit is the XOR of the two before it, and only it is predictable.

    Chance (answering 0.5) is an RMS error of 0.5 everywhere; the net must be far below it on
    the XOR bits and cannot be below it on the random ones.
    """
    model = gr.compile(gr.load_spec(SPECS / "xor_elman.yaml"), dtype="float64")
    train = temporal_xor(batch=256, steps=30, seed=0, dtype="float64")
    test = temporal_xor(batch=100, steps=300, seed=1, dtype="float64")
    result = gr.train(model, model.init_params(seed=0), train, epochs=60, batch_size=16,
                      lr=0.03, val_fraction=0, progress=False, seed=0)
    y = model.forward(result.params, {"x": test["x"]})[0]["y"][..., 0]
    target, xor_bit = test["y"][..., 0], test["predictable"] > 0
    rms_xor = np.sqrt(np.mean((y - target)[xor_bit] ** 2))
    rms_random = np.sqrt(np.mean((y - target)[~xor_bit] ** 2))
    assert rms_xor < 0.3, f"RMS error on the XOR bits {rms_xor:.3f} (chance 0.5)"
    assert rms_random > 0.45, f"RMS error on the random bits {rms_random:.3f} is below chance?"
    assert ((y > 0.5) == (target > 0.5))[xor_bit].mean() >= 0.95
