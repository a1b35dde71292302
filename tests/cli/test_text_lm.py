"""``graphrnn task text`` then ``graphrnn train specs/lstm_lm.yaml``, as subprocesses."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np

from tests.helpers import ROOT, SPECS

WORDS = "the quick brown fox jumps over a lazy dog while seven wizards box jolly zebras".split()


def graphrnn(*argv) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "graphrnn", *map(str, argv)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def _text_data(tmp_path, text: str, *extra) -> tuple:
    source = tmp_path / "book.txt"
    source.write_text(text, encoding="utf-8")
    data = tmp_path / "book.npz"
    made = graphrnn("task", "text", "--file", source, "--input-name", "tok", "--batch", 4,
                    "--steps", 12, *extra, "-o", data)
    return made, data


def test_task_text_then_train_the_lstm_language_model(tmp_path):
    rng = np.random.default_rng(0)
    made, data = _text_data(tmp_path, " ".join(rng.choice(WORDS, 80)), "--vocab", 64)
    assert made.returncode == 0, made.stderr
    with np.load(data) as z:
        assert z["tok"].shape == z["y"].shape == (12, 4)
        np.testing.assert_array_equal(z["tok"][1:], z["y"][:-1])  # y: the next token
    params = tmp_path / "p.npz"
    done = graphrnn("train", SPECS / "lstm_lm.yaml", "--data", data, "--loss", "cross_entropy",
                    "--epochs", 1, "--batch-size", 2, "--no-progress", "-o", params)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    loss = float(re.search(r"train loss ([0-9.]+)", done.stdout + done.stderr).group(1))
    # one epoch from a random init: about the uniform guess's loss, ln 64
    assert math.isfinite(loss) and 0.5 * math.log(64) < loss < 2 * math.log(64)
    with np.load(params) as p:
        assert p["emb"].shape == (64, 32)


def test_training_on_tokens_outside_the_vocabulary_is_one_error_line(tmp_path):
    """70 distinct characters and no --vocab: ids beyond lstm_lm's 64 are refused (exit 2)."""
    made, data = _text_data(tmp_path, "".join(chr(0x100 + k) for k in range(70)) * 2)
    assert made.returncode == 0, made.stderr
    done = graphrnn("train", SPECS / "lstm_lm.yaml", "--data", data, "--loss", "cross_entropy",
                    "--epochs", 1, "--no-progress")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "outside the vocabulary 0..63" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
