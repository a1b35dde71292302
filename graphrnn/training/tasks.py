"""Classic recurrent-network tasks generated from a seed (no downloads), time-major arrays."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from graphrnn.files import save_npz

__all__ = ["LETTERS", "LETTER_FEATURES", "REBER_SYMBOLS", "TASKS", "adding",
           "embedded_reber", "letter_sequence", "reber_accuracy", "reber_strings",
           "save_task", "temporal_xor", "text_lm"]

Arrays = dict[str, np.ndarray]


def temporal_xor(batch: int = 32, steps: int = 300, seed: int = 0,
                 dtype: str = "float32") -> Arrays:
    """Elman (1990) temporal XOR: predict the next bit of a stream of (a, b, a XOR b) triples.

    Each sequence starts on a triple boundary, so the target at step ``t`` (the bit at
    ``t + 1``) is predictable exactly when ``(t + 1) % 3 == 2``.

    Parameters
    ----------
    batch : int
        Number of sequences ``B``.
    steps : int
        Sequence length ``T``.
    seed : int
    dtype : str

    Returns
    -------
    dict
        ``x`` (T, B, 1) the bits; ``y`` (T, B, 1) the next bits; ``predictable`` (T, B) 1 where
        the target is an XOR bit (for scoring; training ignores it).
    """
    _positive(batch=batch, steps=steps)
    rng = np.random.default_rng(seed)
    triples = (steps + 1 + 2) // 3
    ab = rng.integers(0, 2, size=(triples, 2, batch))
    stream = np.concatenate([ab, (ab[:, :1] ^ ab[:, 1:])], axis=1).reshape(3 * triples, batch)
    t = np.arange(steps)
    predictable = np.repeat(((t + 1) % 3 == 2)[:, None], batch, axis=1)
    return {"x": stream[:steps, :, None].astype(dtype),
            "y": stream[1:steps + 1, :, None].astype(dtype),
            "predictable": predictable.astype(dtype)}


#: Elman (1990), Table 1: consonant, vowel, interrupted, high, back, voiced.
LETTER_FEATURES: dict[str, tuple[int, ...]] = {
    "b": (1, 0, 1, 0, 0, 1), "d": (1, 0, 1, 1, 0, 1), "g": (1, 0, 1, 0, 1, 1),
    "a": (0, 1, 0, 0, 1, 1), "i": (0, 1, 0, 1, 0, 1), "u": (0, 1, 0, 1, 1, 1)}
LETTERS = "bdgaiu"
_SYLLABLES = ("ba", "dii", "guuu")


def letter_sequence(batch: int = 32, steps: int = 300, seed: int = 0,
                    dtype: str = "float32") -> Arrays:
    """Elman (1990) letter prediction: random b/d/g rewritten ba/dii/guuu; predict the next letter.

    Letters are the 6-bit feature vectors of Elman's Table 1 (:data:`LETTER_FEATURES`).

    Parameters
    ----------
    batch, steps, seed, dtype
        As in :func:`temporal_xor`.

    Returns
    -------
    dict
        ``x`` (T, B, 6) letters; ``y`` (T, B, 6) next letters; ``labels`` (T, B) int index of the
        next letter in ``"bdgaiu"`` (for ``cross_entropy`` with a 6-way output);
        ``predictable`` (T, B) 1 where the next letter is a vowel (determined by the consonant).
    """
    _positive(batch=batch, steps=steps)
    rng = np.random.default_rng(seed)
    table = np.array([LETTER_FEATURES[c] for c in LETTERS])
    index = np.empty((steps + 1, batch), dtype=np.int64)
    for b in range(batch):
        text = ""
        while len(text) < steps + 1:
            text += "".join(_SYLLABLES[i] for i in rng.integers(0, 3, size=steps // 2 + 2))
        index[:, b] = [LETTERS.index(c) for c in text[:steps + 1]]
    return {"x": table[index[:-1]].astype(dtype), "y": table[index[1:]].astype(dtype),
            "labels": index[1:], "predictable": (index[1:] >= 3).astype(dtype)}


REBER_SYMBOLS = "BTSXPVE"
#: Reber's grammar: state -> ((symbol, next state), ...); state 6 emits E and ends.
_REBER = {0: (("B", 1),), 1: (("T", 2), ("P", 3)), 2: (("S", 2), ("X", 4)),
          3: (("T", 3), ("V", 5)), 4: (("X", 3), ("S", 6)), 5: (("P", 4), ("V", 6)),
          6: (("E", -1),)}


def _reber_walk(rng: np.random.Generator) -> tuple[str, list[str]]:
    """One Reber string and, per symbol, the symbols allowed after it."""
    state, text, allowed = 0, "", []
    while state != -1:
        options = _REBER[state]
        sym, state = options[rng.integers(len(options))]
        text += sym
        allowed.append("".join(s for s, _ in _REBER[state]) if state != -1 else "")
    return text, allowed


def reber_strings(n: int, seed: int = 0, embedded: bool = True,
                  max_length: int | None = None) -> list[tuple[str, list[str]]]:
    """Random strings of the (embedded) Reber grammar with the allowed next symbols.

    Parameters
    ----------
    n : int
        Number of strings.
    seed : int
    embedded : bool, optional
        ``B T <reber> T E`` or ``B P <reber> P E`` (Hochreiter & Schmidhuber 1997); otherwise
        plain Reber strings.
    max_length : int, optional
        Redraw strings longer than this.

    Returns
    -------
    list of (str, list of str)
        Each string and, for each of its symbols, the set of symbols that may follow (``""``
        after the final ``E``).
    """
    _positive(n=n)
    if max_length is not None and max_length < (9 if embedded else 5):
        raise ValueError(f"max_length {max_length} is shorter than the shortest string")
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        inner, allowed = _reber_walk(rng)
        if embedded:
            side = "TP"[rng.integers(2)]
            inner, allowed = ("B" + side + inner + side + "E",
                              ["TP", "B"] + allowed[:-1] + [side, "E", ""])
        if max_length is None or len(inner) <= max_length:
            out.append((inner, allowed))
    return out


def embedded_reber(batch: int = 256, seed: int = 0, max_length: int | None = None,
                   dtype: str = "float32") -> Arrays:
    """The embedded Reber grammar (Hochreiter & Schmidhuber 1997), padded to a common length.

    Inputs are each string without its last symbol; the target at each step is the multi-hot
    set of symbols the grammar allows next (including the long-range penultimate T/P), scored
    with :func:`reber_accuracy`.

    Parameters
    ----------
    batch : int
        Number of strings ``B``.
    seed : int
    max_length : int, optional
        Redraw longer strings (``T`` is at most ``max_length - 1``).
    dtype : str

    Returns
    -------
    dict
        ``x`` (T, B, 7) one-hot over ``"BTSXPVE"``; ``y`` (T, B, 7) allowed next symbols;
        ``mask`` (T, B) 1 on real steps, 0 on padding; ``lengths`` (B,) real steps per string.
    """
    strings = reber_strings(batch, seed=seed, embedded=True, max_length=max_length)
    steps = max(len(s) for s, _ in strings) - 1
    x = np.zeros((steps, batch, 7), dtype=dtype)
    y = np.zeros((steps, batch, 7), dtype=dtype)
    mask = np.zeros((steps, batch), dtype=dtype)
    for b, (text, allowed) in enumerate(strings):
        for t, (sym, nxt) in enumerate(zip(text[:-1], allowed[:-1], strict=True)):
            x[t, b, REBER_SYMBOLS.index(sym)] = 1
            y[t, b, [REBER_SYMBOLS.index(c) for c in nxt]] = 1
        mask[:len(text) - 1, b] = 1
    return {"x": x, "y": y, "mask": mask,
            "lengths": np.array([len(s) - 1 for s, _ in strings], dtype=np.int64)}


def reber_accuracy(pred: np.ndarray, allowed: np.ndarray, mask: np.ndarray | None = None,
                   threshold: float = 0.5) -> float:
    """Fraction of strings predicted fully right in Hochreiter & Schmidhuber's sense.

    A string is right when at every real step every allowed symbol's output is above
    ``threshold`` and every other symbol's output is at or below it.

    Parameters
    ----------
    pred : array (T, B, 7)
        The network's outputs (e.g. sigmoid activations).
    allowed : array (T, B, 7)
        The multi-hot targets of :func:`embedded_reber`.
    mask : array (T, B), optional
        1 on real steps (padding is not scored).
    threshold : float, optional

    Returns
    -------
    float
        In [0, 1].
    """
    pred, allowed = np.asarray(pred), np.asarray(allowed)
    if pred.shape != allowed.shape or pred.ndim != 3:
        raise ValueError(f"pred {pred.shape} and allowed {allowed.shape} must both be (T, B, 7)")
    ok = ((pred > threshold) == (allowed > 0.5)).all(axis=2)
    if mask is not None:
        ok |= np.asarray(mask) == 0
    return float(ok.all(axis=0).mean())


def adding(batch: int = 256, steps: int = 100, seed: int = 0, dtype: str = "float32") -> Arrays:
    """The adding problem (Hochreiter & Schmidhuber 1997; the form of Le et al. 2015).

    Input channel 0 holds values uniform in [0, 1); channel 1 marks two of them, one in the
    first half of the sequence and one in the second. The target is their sum, scored at the
    last step only. Always answering 1 gives a mean squared error of about 0.167.

    Parameters
    ----------
    batch, steps, seed, dtype
        As in :func:`temporal_xor` (``steps >= 2``).

    Returns
    -------
    dict
        ``x`` (T, B, 2); ``y`` (T, B, 1) the sum at the last step, 0 elsewhere; ``mask`` (T, B)
        1 at the last step only.
    """
    _positive(batch=batch, steps=steps)
    if steps < 2:
        raise ValueError(f"the adding problem needs steps >= 2, got {steps}")
    rng = np.random.default_rng(seed)
    x = np.zeros((steps, batch, 2), dtype=dtype)
    x[:, :, 0] = rng.random((steps, batch))
    half = steps // 2
    cols = np.arange(batch)
    first, second = rng.integers(0, half, batch), rng.integers(half, steps, batch)
    x[first, cols, 1] = 1
    x[second, cols, 1] = 1
    y = np.zeros((steps, batch, 1), dtype=dtype)
    y[-1, :, 0] = x[first, cols, 0] + x[second, cols, 0]
    mask = np.zeros((steps, batch), dtype=dtype)
    mask[-1] = 1
    return {"x": x, "y": y, "mask": mask}


UNKNOWN = "<unk>"


def text_lm(file: str | os.PathLike, level: str = "char", batch: int = 32,
            steps: int | None = None, vocab: int | None = None) -> Arrays:
    """A language-modelling data set from any text file: predict the next character or word.

    The symbols (characters, or whitespace-separated words) are numbered by frequency, most
    frequent first (ties in order of first appearance). With ``vocab``, only the
    ``vocab - 1`` most frequent keep their own id and the rest share the last one,
    ``"<unk>"``. The stream of ids is cut into ``batch`` contiguous pieces, one per sequence
    (as PyTorch's word-language-model example batches a corpus).

    Parameters
    ----------
    file : str or path
        A UTF-8 text file.
    level : {"char", "word"}
    batch : int
        Number of sequences ``B``.
    steps : int, optional
        Sequence length ``T`` (default: as long as the text allows).
    vocab : int, optional
        The vocabulary size V of the spec's token input (default: every symbol of the text).

    Returns
    -------
    dict
        ``x`` (T, B) int64 token ids; ``y`` (T, B) the next tokens (``cross_entropy`` labels);
        ``vocabulary`` (V,) the symbol of each id.
    """
    if level not in ("char", "word"):
        raise ValueError(f"level must be 'char' or 'word', got {level!r}")
    _positive(batch=batch)
    if vocab is not None:
        _positive(vocab=vocab)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{file}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    symbols = list(text) if level == "char" else text.split()
    counts: dict[str, int] = {}
    for s in symbols:
        counts[s] = counts.get(s, 0) + 1
    first = {s: i for i, s in reversed(list(enumerate(symbols)))}
    ranked = sorted(counts, key=lambda s: (-counts[s], first[s]))
    if vocab is not None and len(ranked) > vocab:
        if vocab < 2:
            raise ValueError(f"vocab {vocab} leaves no room for <unk> and a symbol; use >= 2")
        ranked = ranked[:vocab - 1] + [UNKNOWN]
    ids = {s: i for i, s in enumerate(ranked)}
    unknown = len(ranked) - 1
    stream = np.array([ids.get(s, unknown) for s in symbols], dtype=np.int64)
    length = (len(stream) - 1) // batch
    if length < 1:
        raise ValueError(f"{file}: {len(stream)} {level}s are too few for {batch} sequences "
                         "of at least one step each")
    if steps is None:
        steps = length
    _positive(steps=steps)
    if steps > length:
        raise ValueError(f"{file}: {len(stream)} {level}s give {batch} sequences of at most "
                         f"{length} steps, not {steps}")
    pieces = stream[:batch * length + 1]
    starts = np.arange(batch) * length
    t = np.arange(steps)[:, None]
    vocabulary = np.array(ranked + [""] * ((vocab or 0) - len(ranked)))
    return {"x": pieces[starts + t], "y": pieces[starts + t + 1], "vocabulary": vocabulary}


#: Task name -> generator (the ``graphrnn task NAME`` command).
def parity_tagging(batch: int = 2000, steps: int = 10, seed: int = 0,
                   dtype: str = "float32") -> Arrays:
    """Tag every step of a bit string with the parity of the whole string (a tagging task
    that needs both directions: at step t a causal net has seen only bits 0..t, so before the
    last step it is at chance; a bidirectional one holds the parity of 0..t and of t..L-1).

    Parameters
    ----------
    batch : int
        Number of strings ``B``.
    steps : int
        ``T``: lengths are uniform over ``1..T``.
    seed : int
    dtype : str

    Returns
    -------
    dict
        ``x`` (T, B, 2) one-hot bits (zeros past the end); ``y`` (T, B) labels, the string's
        parity at each of its steps (0 past the end); ``mask`` (T, B); ``lengths`` (B,).
    """
    _positive(batch=batch, steps=steps)
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, steps + 1, batch)
    real = np.arange(steps)[:, None] < lengths[None, :]
    bits = rng.integers(0, 2, (steps, batch)) * real
    parity = bits.sum(axis=0) % 2
    x = np.zeros((steps, batch, 2), dtype=dtype)
    x[..., 0], x[..., 1] = real * (1 - bits), bits
    y = (real * parity[None, :]).astype(np.int64)
    return {"x": x, "y": y, "mask": real.astype(dtype), "lengths": lengths.astype(np.int64)}


TASKS: dict[str, Callable[..., Arrays]] = {
    "xor": temporal_xor, "letters": letter_sequence, "reber": embedded_reber, "adding": adding,
    "text": text_lm, "parity": parity_tagging}


def save_task(name: str, path: str | os.PathLike, *, input_name: str = "x",
              output_name: str = "y", **kw) -> Path:
    """Generate task ``name`` and write it as a ``graphrnn train`` data file.

    Parameters
    ----------
    name : str
        A key of :data:`TASKS`.
    path : str or path
        The ``.npz`` file (written atomically).
    input_name, output_name : str, optional
        Store ``x``/``y`` under the spec's input and output names.
    **kw
        Passed to the generator (``batch``, ``steps``, ``seed``...).

    Returns
    -------
    Path
    """
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(TASKS)}")
    data = TASKS[name](**kw)
    renamed = {input_name if k == "x" else output_name if k == "y" else k: v
               for k, v in data.items()}
    if len(renamed) != len(data):
        raise ValueError(f"input/output names {input_name!r}, {output_name!r} clash with "
                         f"the task's other arrays ({', '.join(data)})")
    return save_npz(path, renamed)


def _positive(**values: int) -> None:
    for key, value in values.items():
        if int(value) != value or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}")
