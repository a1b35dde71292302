"""Task generators obey their definitions; data files have the documented layout."""

from __future__ import annotations

import os
import re
from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphrnn.training.tasks import (
    LETTER_FEATURES,
    LETTERS,
    REBER_SYMBOLS,
    TASKS,
    adding,
    embedded_reber,
    letter_sequence,
    reber_accuracy,
    reber_strings,
    save_task,
    temporal_xor,
)

# Reber's grammar written independently of the generator's transition table: from the state
# after "BT"/"BP" loops are S* and T*; state 4 either ends with S or goes X T* V and then ends
# with V or returns with P.
_S4 = r"(?:XT*VP)*(?:S|XT*VV)"
REBER = rf"B(?:TS*X{_S4}|PT*V(?:V|P{_S4}))E"
EMBEDDED = re.compile(rf"B([TP]){REBER}\1E")


def test_registry_names_the_tasks():
    assert set(TASKS) == {"xor", "letters", "reber", "adding", "text", "parity"}


@given(batch=st.integers(1, 5), steps=st.integers(1, 40), seed=st.integers(0, 2**31))
@settings(max_examples=30, deadline=None)
def test_temporal_xor_every_third_bit_is_xor_of_previous_two(batch, steps, seed):
    d = temporal_xor(batch=batch, steps=steps, seed=seed)
    assert d["x"].shape == d["y"].shape == (steps, batch, 1)
    stream = np.concatenate([d["x"][:, :, 0], d["y"][-1:, :, 0]]).astype(int)
    np.testing.assert_array_equal(d["y"][:-1], d["x"][1:])  # y is x shifted by one step
    n = len(stream) // 3 * 3
    triples = stream[:n].reshape(-1, 3, batch)
    np.testing.assert_array_equal(triples[:, 2], triples[:, 0] ^ triples[:, 1])
    assert set(np.unique(stream)) <= {0, 1}
    t = np.arange(steps)
    np.testing.assert_array_equal(d["predictable"][:, 0], ((t + 1) % 3 == 2).astype(float))


def test_temporal_xor_is_seeded():
    a, b, c = temporal_xor(seed=3), temporal_xor(seed=3), temporal_xor(seed=4)
    np.testing.assert_array_equal(a["x"], b["x"])
    assert not np.array_equal(a["x"], c["x"])


def test_letter_features_are_elmans_table():
    assert LETTER_FEATURES["b"] == (1, 0, 1, 0, 0, 1)
    assert LETTER_FEATURES["u"] == (0, 1, 0, 1, 1, 1)
    assert len({v for v in LETTER_FEATURES.values()}) == 6  # all distinct
    for c in "bdg":
        assert LETTER_FEATURES[c][:2] == (1, 0)
    for c in "aiu":
        assert LETTER_FEATURES[c][:2] == (0, 1)


def _decode_letters(vectors: np.ndarray) -> str:
    table = {v: k for k, v in LETTER_FEATURES.items()}
    return "".join(table[tuple(int(x) for x in row)] for row in vectors)


def test_letter_sequence_follows_ba_dii_guuu():
    d = letter_sequence(batch=3, steps=200, seed=5)
    assert d["x"].shape == d["y"].shape == (200, 3, 6)
    for b in range(3):
        text = _decode_letters(d["x"][:, b]) + _decode_letters(d["y"][-1:, b])
        assert _decode_letters(d["y"][:, b]) == text[1:]
        assert re.fullmatch(r"(?:ba|dii|guuu)*(?:b|d|di|g|gu|guu)?", text), text
        assert "".join(LETTERS[i] for i in d["labels"][:, b]) == text[1:]
        np.testing.assert_array_equal(d["predictable"][:, b], [c in "aiu" for c in text[1:]])
    assert {c for b in range(3) for c in _decode_letters(d["x"][:, b])} == set(LETTERS)


def test_reber_strings_are_accepted_by_the_grammar():
    strings = reber_strings(500, seed=0)
    for text, allowed in strings:
        assert EMBEDDED.fullmatch(text), text
        assert len(allowed) == len(text) and allowed[-1] == ""
        assert allowed[-3] == text[1]  # the long-range penultimate symbol
    plain = reber_strings(200, seed=1, embedded=False)
    assert all(re.fullmatch(REBER, s) for s, _ in plain)
    assert {text[1] for text, _ in strings} == {"T", "P"}
    assert len({text for text, _ in strings}) > 50


def test_reber_allowed_sets_match_the_language():
    # For every prefix seen often, the symbols that follow it in samples are exactly the
    # allowed set: missing a branch of probability >= 1/2 in 30 draws has chance < 1e-9.
    follow, allowed_at = defaultdict(set), {}
    counts = defaultdict(int)
    for text, allowed in reber_strings(4000, seed=2):
        for i in range(len(text) - 1):
            prefix = text[:i + 1]
            follow[prefix].add(text[i + 1])
            counts[prefix] += 1
            allowed_at.setdefault(prefix, set(allowed[i]))
            assert set(allowed[i]) == allowed_at[prefix]
    frequent = [p for p, n in counts.items() if n >= 30]
    assert len(frequent) > 40
    for prefix in frequent:
        assert follow[prefix] == allowed_at[prefix], prefix


def test_embedded_reber_arrays():
    d = embedded_reber(batch=40, seed=3)
    strings = reber_strings(40, seed=3)
    t = max(len(s) for s, _ in strings) - 1
    assert d["x"].shape == d["y"].shape == (t, 40, 7) and d["mask"].shape == (t, 40)
    np.testing.assert_array_equal(d["mask"].sum(axis=0), d["lengths"])
    for b, (text, allowed) in enumerate(strings):
        n = len(text) - 1
        decoded = "".join(REBER_SYMBOLS[i] for i in d["x"][:n, b].argmax(axis=1))
        assert decoded == text[:-1]
        assert (d["x"][:n, b].sum(axis=1) == 1).all() and not d["x"][n:, b].any()
        for i in range(n):
            assert {REBER_SYMBOLS[j] for j in np.flatnonzero(d["y"][i, b])} == set(allowed[i])
        assert not d["y"][n:, b].any()
        assert EMBEDDED.fullmatch(decoded + "E")


def test_embedded_reber_max_length():
    d = embedded_reber(batch=50, seed=0, max_length=12)
    assert d["lengths"].max() <= 11 and d["x"].shape[0] <= 11
    with pytest.raises(ValueError, match="shorter than the shortest string"):
        reber_strings(5, max_length=5)


def test_reber_accuracy_scores_whole_strings():
    d = embedded_reber(batch=20, seed=1)
    pred = d["y"] * 0.9 + 0.05
    assert reber_accuracy(pred, d["y"], d["mask"]) == 1.0
    pad = d["mask"] == 0  # padding must not count
    pred[pad] = 1.0
    assert reber_accuracy(pred, d["y"], d["mask"]) == 1.0
    assert reber_accuracy(pred, d["y"]) < 1.0  # without the mask padding counts
    n = int(d["lengths"][4])
    pred[n - 2, 4] = 0.0  # the penultimate symbol (T/P) of string 4 missed
    assert reber_accuracy(pred, d["y"], d["mask"]) == pytest.approx(19 / 20)
    pred[0, 7, REBER_SYMBOLS.index("E")] = 0.6  # a forbidden symbol above threshold
    assert reber_accuracy(pred, d["y"], d["mask"]) == pytest.approx(18 / 20)
    assert reber_accuracy(pred, d["y"], d["mask"], threshold=0.7) == pytest.approx(19 / 20)
    with pytest.raises(ValueError, match="must both be"):
        reber_accuracy(pred[:, :, :3], d["y"])


@given(batch=st.integers(1, 6), steps=st.integers(2, 60), seed=st.integers(0, 2**31))
@settings(max_examples=30, deadline=None)
def test_adding_target_is_the_marked_sum(batch, steps, seed):
    d = adding(batch=batch, steps=steps, seed=seed)
    x, y, mask = d["x"], d["y"], d["mask"]
    assert x.shape == (steps, batch, 2) and y.shape == (steps, batch, 1)
    markers = x[:, :, 1]
    assert (markers.sum(axis=0) == 2).all()
    half = steps // 2
    assert (markers[:half].sum(axis=0) == 1).all() and (markers[half:].sum(axis=0) == 1).all()
    np.testing.assert_allclose(y[-1, :, 0], (x[:, :, 0] * markers).sum(axis=0), rtol=1e-6)
    assert not y[:-1].any()
    np.testing.assert_array_equal(mask[-1], 1)
    assert not mask[:-1].any()
    assert ((x[:, :, 0] >= 0) & (x[:, :, 0] < 1)).all()


def test_bad_generator_arguments():
    with pytest.raises(ValueError, match="batch must be a positive integer"):
        temporal_xor(batch=0)
    with pytest.raises(ValueError, match="steps >= 2"):
        adding(steps=1)


def test_save_task_writes_the_data_layout(tmp_path):
    path = save_task("adding", tmp_path / "add.npz", input_name="u", output_name="out",
                     batch=4, steps=10, seed=1)
    with np.load(path) as z:
        assert set(z.files) == {"u", "out", "mask"}
        ref = adding(batch=4, steps=10, seed=1)
        np.testing.assert_array_equal(z["u"], ref["x"])
        np.testing.assert_array_equal(z["out"], ref["y"])
    assert os.listdir(tmp_path) == ["add.npz"]  # no temp file left behind
    with pytest.raises(ValueError, match="unknown task 'nonsense'; choose one of xor, letters"):
        save_task("nonsense", tmp_path / "p.npz")
    with pytest.raises(ValueError, match="clash"):
        save_task("adding", tmp_path / "c.npz", input_name="mask", batch=2, steps=4)
    save_task("reber", tmp_path / "r", batch=3)
    assert (tmp_path / "r").exists()  # written as named, no suffix appended


def test_text_task_numbers_symbols_by_frequency(tmp_path):
    from graphrnn.training.tasks import text_lm

    path = tmp_path / "t.txt"
    path.write_text("the cat sat on the mat and the dog sat on the log", encoding="utf-8")
    data = text_lm(path, level="word", batch=2, vocab=4)
    vocab = list(data["vocabulary"])
    assert vocab == ["the", "sat", "on", "<unk>"]
    words = path.read_text().split()
    ids = [vocab.index(w) if w in vocab else 3 for w in words]
    assert data["x"].shape == (6, 2) and data["x"].dtype.kind == "i"  # 13 words, 12 targets
    assert data["x"][:, 0].tolist() == ids[0:6] and data["y"][:, 0].tolist() == ids[1:7]
    assert data["x"][:, 1].tolist() == ids[6:12] and data["y"][:, 1].tolist() == ids[7:13]
    chars = text_lm(path, batch=3, steps=4)
    assert chars["x"].shape == (4, 3) and chars["vocabulary"][0] in (" ", "t")
