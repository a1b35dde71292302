"""Training with ``lengths`` in the data: padding is invisible, buckets and errors; the parity
tagging task; the CLI (``graphrnn task parity``, ``train`` and ``run`` reading ``lengths``)."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.cli.main import main
from graphrnn.errors import DataError
from graphrnn.training.tasks import parity_tagging
from tests.helpers import SPECS


def _data(seed=0):
    d = parity_tagging(batch=24, steps=6, seed=seed, dtype="float64")
    d.pop("mask")  # the lengths alone say which steps count
    return d


def _train(data, **kw):
    model = gr.compile(gr.load_spec(SPECS / "bilstm_tagger.yaml"), dtype="float64")
    res = gr.train(model, model.init_params(seed=1), data, loss="cross_entropy", epochs=2,
                   batch_size=8, lr=0.01, progress=False, **kw)
    return res.params, res.history


@pytest.mark.parametrize("bucket", [False, True])
def test_padding_is_invisible_to_training_with_lengths(bucket):
    data = _data()
    garbage = dict(data)
    past = np.arange(6)[:, None] >= data["lengths"][None, :]
    rng = np.random.default_rng(5)
    garbage["x"] = np.where(past[..., None], rng.normal(size=data["x"].shape), data["x"])
    garbage["y"] = np.where(past, rng.integers(0, 2, data["y"].shape), data["y"])
    params, history = _train(data, bucket=bucket)
    params2, history2 = _train(garbage, bucket=bucket)
    for k in params:
        np.testing.assert_allclose(params2[k], params[k], rtol=1e-12, atol=1e-14)
    assert history2[-1]["train_loss"] == pytest.approx(history[-1]["train_loss"], rel=1e-12)
    # without lengths the anti-causal chain reads the garbage: training differs
    no_lengths = {k: v for k, v in garbage.items() if k != "lengths"}
    no_lengths["mask"] = (~past).astype(float)
    params3, _ = _train(no_lengths, bucket=bucket)
    assert any(np.abs(params3[k] - params[k]).max() > 1e-6 for k in params)


def test_bad_lengths_in_data_are_one_line():
    data = _data()
    data["lengths"] = data["lengths"].copy()
    data["lengths"][3] = 0
    with pytest.raises(DataError, match=r"data\['lengths'\]: lengths\[3\] = 0 is outside 1\.\.6"):
        _train(data)
    data["lengths"] = data["lengths"][:5]
    with pytest.raises(DataError, match=r"data\['lengths'\]: lengths has shape \(5,\)"):
        _train(data)


def test_tbptt_with_lengths_needs_a_causal_network():
    with pytest.raises(DataError, match="lengths with tbptt on a network that reads ahead"):
        _train(_data(), tbptt=3)


def test_parity_task_arrays():
    d = parity_tagging(batch=50, steps=7, seed=2)
    assert set(d) == {"x", "y", "mask", "lengths"}
    n = d["lengths"]
    assert n.shape == (50,) and n.min() >= 1 and n.max() <= 7
    real = np.arange(7)[:, None] < n[None, :]
    np.testing.assert_array_equal(d["mask"], real)
    bits = d["x"][..., 1]
    assert np.all(d["x"].sum(-1) == real)  # one-hot on real steps, zeros past the end
    parity = bits.sum(0).astype(int) % 2
    np.testing.assert_array_equal(d["y"], real * parity)


def test_cli_task_train_and_run_read_lengths(tmp_path, capsys):
    data, params, out = tmp_path / "p.npz", tmp_path / "w.npz", tmp_path / "o.npz"
    spec = str(SPECS / "bilstm_tagger.yaml")
    assert main(["task", "parity", "--batch", "40", "--steps", "5", "-o", str(data)]) == 0
    with np.load(data) as z:
        assert set(z.files) == {"x", "y", "mask", "lengths"}
        lengths = z["lengths"]
    assert main(["train", spec, "--data", str(data), "--loss", "cross_entropy", "--epochs", "1",
                 "--no-progress", "-o", str(params)]) == 0
    assert main(["run", spec, "--inputs", str(data), "--params", str(params),
                 "-o", str(out)]) == 0
    with np.load(out) as z:
        y = z["y"]
    assert not np.any(y[np.arange(5)[:, None] >= lengths[None, :]])
    bad = tmp_path / "bad.npz"
    with np.load(data) as z:
        np.savez(bad, **{k: z[k] for k in z.files if k != "lengths"},
                 lengths=np.full(40, 6))
    capsys.readouterr()
    for cmd in (["train", spec, "--data", str(bad), "--loss", "cross_entropy", "--epochs", "1",
                 "--no-progress"], ["run", spec, "--inputs", str(bad), "-o", str(out)]):
        assert main(cmd) == 2
        err = capsys.readouterr().err.strip()
        assert "lengths[0] = 6 is outside 1..5" in err and len(err.splitlines()) == 1, err


def test_batch_major_training_data_trains_as_time_major():
    data = _data()
    batch_major = {k: (np.ascontiguousarray(v.swapaxes(0, 1)) if v.ndim >= 2 else v)
                   for k, v in data.items()}
    params, history = _train(data)
    params2, history2 = _train(batch_major, layout="batch")
    for k in params:
        np.testing.assert_allclose(params2[k], params[k], rtol=1e-13, atol=1e-15)
    with pytest.raises(ValueError, match="unknown layout"):
        _train(data, layout="sideways")
