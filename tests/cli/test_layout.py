"""``--layout batch`` on ``graphrnn run`` and ``graphrnn train``: batch-major arrays in (and out),
the same numbers as the time-major run on the transposed arrays."""

from __future__ import annotations

import numpy as np

import graphrnn as gr
from graphrnn.cli.main import main
from tests.helpers import SPECS


def test_run_batch_layout_is_the_time_layout_transposed(tmp_path):
    net = gr.load_spec(SPECS / "bilstm.yaml")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, 3, net.inputs["x"]))
    lengths = np.array([7, 2, 5])
    np.savez(tmp_path / "t.npz", x=x, lengths=lengths)
    np.savez(tmp_path / "b.npz", x=x.swapaxes(0, 1), lengths=lengths)
    base = ["run", str(SPECS / "bilstm.yaml"), "--dtype", "float64", "--seed", "2"]
    assert main(base + ["--inputs", str(tmp_path / "t.npz"), "-o", str(tmp_path / "ot.npz")]) == 0
    assert main(base + ["--layout", "batch", "--inputs", str(tmp_path / "b.npz"),
                        "-o", str(tmp_path / "ob.npz")]) == 0
    with np.load(tmp_path / "ot.npz") as t, np.load(tmp_path / "ob.npz") as b:
        assert set(t.files) == set(b.files)
        for key in t.files:
            if key.startswith("state:"):
                np.testing.assert_allclose(b[key], t[key], rtol=1e-10, atol=1e-12)
            else:
                assert b[key].shape[:2] == (3, 7)
                np.testing.assert_allclose(b[key].swapaxes(0, 1), t[key], rtol=1e-10,
                                           atol=1e-12)


def test_train_batch_layout_learns_what_the_time_layout_learns(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 8, 8))
    y = rng.normal(size=(6, 8, 4))
    np.savez(tmp_path / "t.npz", x=x, y=y)
    np.savez(tmp_path / "b.npz", x=x.swapaxes(0, 1), y=y.swapaxes(0, 1))
    base = ["train", str(SPECS / "elman.yaml"), "--dtype", "float64", "--epochs", "2",
            "--batch-size", "4", "--no-progress", "--val-fraction", "0"]
    assert main(base + ["--data", str(tmp_path / "t.npz"), "-o", str(tmp_path / "pt.npz")]) == 0
    assert main(base + ["--layout", "batch", "--data", str(tmp_path / "b.npz"),
                        "-o", str(tmp_path / "pb.npz")]) == 0
    with np.load(tmp_path / "pt.npz") as t, np.load(tmp_path / "pb.npz") as b:
        assert set(t.files) == set(b.files)
        for key in t.files:
            np.testing.assert_allclose(b[key], t[key], rtol=1e-10, atol=1e-12)
