"""The training loop with a stub model: convergence, stopping, checkpoints, TBPTT, bad data."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from graphrnn.errors import DataError, DivergenceError
from graphrnn.frontend.network import Edge, Network, Node
from graphrnn.training.checkpoints import CheckpointError
from graphrnn.training.data import check_data, load_data
from graphrnn.training.loop import NonFiniteLossError, parse_tbptt, train
from graphrnn.training.losses import loss_and_grad
from graphrnn.training.progress import plot_history


class StubModel:
    """``c[t] = decay c[t-1] + x[t]``, ``y[t] = W c[t] + b``: the compiled model's API with
    analytic gradients; state ``{"c": (B, n_in)}``. ``fail``: gradients call -> "nan" | raise."""

    def __init__(self, n_in=2, n_out=1, decay=0.5, frozen=False):
        edge = Edge("x", "y", param="x->y", trainable=not frozen)
        self.net = Network("stub", {"x": n_in}, {"y": Node("y", n_out)}, (edge,), ("y",))
        self.dtype, self.decay = np.float64, decay
        self.calls: list[tuple[int, bool]] = []  # (window length, state passed)
        self.fail: dict[int, object] = {}

    def init_params(self, seed=0):
        rng = np.random.default_rng(seed)
        return {"x->y": rng.standard_normal(self.net.params["x->y"].shape) * 0.1,
                "y.bias": np.zeros(self.net.params["y.bias"].shape)}

    def _cells(self, x, state):
        c = np.zeros(x.shape[1:]) if state is None else state["c"].copy()
        cells = np.empty_like(x)
        for t in range(len(x)):
            c = self.decay * c + x[t]
            cells[t] = c
        return cells, c

    def forward(self, params, inputs, state=None, steps=None):
        cells, c = self._cells(inputs["x"], state)
        return {"y": cells @ params["x->y"].T + params["y.bias"]}, {"c": c}

    def gradients(self, params, inputs, targets, loss="mse", state=None, mask=None,
                  return_state=False):
        self.calls.append((len(inputs["x"]), state is not None))
        failure = self.fail.get(len(self.calls))
        if isinstance(failure, BaseException):
            raise failure
        cells, c = self._cells(inputs["x"], state)
        y = cells @ params["x->y"].T + params["y.bias"]
        value, dy = loss_and_grad(loss, y, targets["y"], mask)
        if failure == "nan":
            value = float("nan")
        grads = {"x->y": np.einsum("tbo,tbi->oi", dy, cells), "y.bias": dy.sum(axis=(0, 1))}
        if self.net.params["x->y"].trainable is False:
            grads["x->y"][...] = 0
        if state is not None:
            back = dy @ params["x->y"]
            powers = self.decay ** np.arange(1, len(y) + 1)
            grads["state:c"] = np.einsum("t,tbi->bi", powers, back)
        return (value, grads, {"c": c}) if return_state else (value, grads)


def linear_data(batch=64, steps=12, seed=0, decay=0.5):
    """Targets from a known W, b on the stub's cells: a perfectly learnable set."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((steps, batch, 2))
    model = StubModel(decay=decay)
    true = {"x->y": np.array([[0.7, -0.4]]), "y.bias": np.array([0.3])}
    return {"x": x, "y": model.forward(true, {"x": x})[0]["y"]}, true


def quiet(**kw):
    return {"progress": False, **kw}


def test_training_the_stub_converges():
    data, true = linear_data()
    result = train(StubModel(), StubModel().init_params(), data, lr=0.05, epochs=40,
                   batch_size=16, **quiet())
    assert result.stopped_reason == "completed" and len(result.history) == 40
    assert result.history[-1]["train_loss"] < 1e-4 < result.history[0]["train_loss"]
    assert result.history[-1]["val_loss"] < 1e-4
    np.testing.assert_allclose(result.params["x->y"], true["x->y"], atol=1e-2)
    assert all(h["seqs_per_s"] > 0 for h in result.history)


def test_sgd_with_momentum_and_clipping_converges():
    data, true = linear_data()
    model = StubModel()
    result = train(model, model.init_params(), data, optimizer="sgd", lr=0.05,
                   optimizer_kw={"momentum": 0.9, "nesterov": True}, clip=1.0, epochs=30,
                   batch_size=8, **quiet())
    np.testing.assert_allclose(result.params["y.bias"], true["y.bias"], atol=1e-2)


def test_params_passed_in_are_not_modified_and_frozen_params_stay():
    data, _ = linear_data(batch=16)
    model = StubModel(frozen=True)
    params = model.init_params()
    before = {k: v.copy() for k, v in params.items()}
    result = train(model, params, data, lr=0.1, epochs=3, **quiet())
    for k in params:
        np.testing.assert_array_equal(params[k], before[k])
    np.testing.assert_array_equal(result.params["x->y"], before["x->y"])
    assert not np.array_equal(result.params["y.bias"], before["y.bias"])


def test_early_stopping_triggers_and_the_best_epoch_has_the_lowest_val_loss():
    data, _ = linear_data(batch=20)
    result = train(StubModel(), StubModel().init_params(), data, lr=0.0, epochs=50, patience=2,
                   **quiet())
    assert result.stopped_reason == "early_stopping"
    assert len(result.history) == 3 and result.best_epoch == 1
    best = train(StubModel(), StubModel().init_params(), data, lr=0.05, epochs=6, **quiet())
    assert best.best_epoch == int(np.argmin([h["val_loss"] for h in best.history])) + 1


def run_to_end(model, data, tmp_path, **kw):
    return train(model, model.init_params(), data, lr=0.05, epochs=4, batch_size=8,
                 checkpoint=tmp_path / "ck.npz", resume=True, **quiet(**kw))


@pytest.mark.parametrize("kw", [{}, {"optimizer": "sgd", "optimizer_kw": {"momentum": 0.9}}])
def test_resume_from_an_epoch_checkpoint_matches_an_uninterrupted_run(tmp_path, kw):
    data, _ = linear_data(batch=30)
    ref = train(StubModel(), StubModel().init_params(), data, lr=0.05, epochs=4, batch_size=8,
                **quiet(**kw))
    first = train(StubModel(), StubModel().init_params(), data, lr=0.05, epochs=2,
                  batch_size=8, checkpoint=tmp_path / "ck.npz", **quiet(**kw))
    assert len(first.history) == 2
    resumed = run_to_end(StubModel(), data, tmp_path, **kw)
    for k in ref.params:
        np.testing.assert_array_equal(resumed.params[k], ref.params[k])
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in ref.history]
    assert resumed.best_epoch == ref.best_epoch


def test_ctrl_c_writes_a_checkpoint_and_resume_is_exact(tmp_path):
    data, _ = linear_data(batch=30)
    ref = train(StubModel(), StubModel().init_params(), data, lr=0.05, epochs=4, batch_size=8,
                **quiet())
    model = StubModel()
    model.fail = {6: KeyboardInterrupt()}  # epoch 2 (4 batches an epoch), second batch
    out = run_to_end(model, data, tmp_path)
    assert out.stopped_reason == "interrupted" and len(out.history) == 1
    assert (tmp_path / "ck.npz").exists()
    resumed = run_to_end(StubModel(), data, tmp_path)
    assert resumed.stopped_reason == "completed"
    for k in ref.params:
        np.testing.assert_array_equal(resumed.params[k], ref.params[k])
    assert [h["train_loss"] for h in resumed.history] == [h["train_loss"] for h in ref.history]


def test_ctrl_c_without_a_checkpoint_returns_interrupted():
    data, _ = linear_data(batch=30)
    model = StubModel()
    model.fail = {2: KeyboardInterrupt()}
    out = train(model, model.init_params(), data, epochs=3, batch_size=8, **quiet())
    assert out.stopped_reason == "interrupted" and out.history == [] and out.checkpoint is None


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(tmp_path):
    data, _ = linear_data(batch=30)
    path = tmp_path / "ck.npz"
    train(StubModel(), StubModel().init_params(), data, epochs=1, batch_size=8,
          checkpoint=path, **quiet())
    good = path.read_bytes()
    model = StubModel()
    model.fail = {3: "nan"}  # resumed at epoch 2: its third batch
    with pytest.raises(NonFiniteLossError) as info:
        train(model, model.init_params(), data, epochs=3, batch_size=8, checkpoint=path,
              resume=True, **quiet())
    assert isinstance(info.value, ValueError)
    assert (info.value.epoch, info.value.step) == (2, 3)
    msg = str(info.value)
    assert "epoch 2, step 3" in msg and "nan" in msg and "left as it was" in msg
    assert "\n" not in msg
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck.npz"]


@pytest.mark.parametrize("failure, message", [
    ("nan", "epoch 1, step 2: the loss is nan; no checkpoint was written"),
    (DivergenceError("the loss is inf: the forward pass overflowed"),
     "epoch 1, step 2: the loss is inf: the forward pass overflowed; no checkpoint"),
])
def test_divergence_without_checkpoint_names_the_step(failure, message):
    data, _ = linear_data(batch=10)
    model = StubModel()
    model.fail = {2: failure}
    with pytest.raises(NonFiniteLossError) as info:
        train(model, model.init_params(), data, epochs=1, batch_size=4, val_fraction=0,
              **quiet())
    assert message in str(info.value)


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path):
    data, _ = linear_data(batch=30)
    path = tmp_path / "ck.npz"
    train(StubModel(), StubModel().init_params(), data, epochs=1, batch_size=8,
          checkpoint=path, **quiet())
    with pytest.raises(CheckpointError, match="written with batch_size=8, this run has "
                                              "batch_size=4"):
        train(StubModel(), StubModel().init_params(), data, epochs=2, batch_size=4,
              checkpoint=path, resume=True, **quiet())
    other = StubModel(n_in=3)
    data3 = {"x": np.zeros((5, 30, 3)), "y": np.zeros((5, 30, 1))}
    with pytest.raises(CheckpointError, match="parameter 'x->y' has shape"):
        train(other, other.init_params(), data3, epochs=2, batch_size=8, checkpoint=path,
              resume=True, **quiet())
    path.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        train(StubModel(), StubModel().init_params(), data, epochs=2, batch_size=8,
              checkpoint=path, resume=True, **quiet())


def test_tbptt_windows_and_carried_state():
    data, _ = linear_data(batch=4, steps=10)
    model = StubModel()
    params = model.init_params()
    full = loss_and_grad("mse", model.forward(params, data)[0]["y"], data["y"])[0]
    for tbptt, windows in [(4, [4, 4, 2]), ((3, 5), [3, 5, 5, 3]), ((10, 10), [10])]:
        model.calls.clear()
        out = train(model, params, data, lr=0.0, epochs=1, batch_size=4, val_fraction=0,
                    tbptt=tbptt, **quiet())
        assert [n for n, _ in model.calls] == windows
        assert [s for _, s in model.calls] == [False] + [True] * (len(windows) - 1)
        # lr = 0: every step's loss is counted once, with the state carried exactly
        assert out.history[0]["train_loss"] == pytest.approx(full, rel=1e-12)


def test_tbptt_with_one_window_equals_full_bptt():
    data, _ = linear_data(batch=16, steps=8)
    a = train(StubModel(), StubModel().init_params(), data, epochs=2, batch_size=4,
              tbptt=8, **quiet())
    b = train(StubModel(), StubModel().init_params(), data, epochs=2, batch_size=4, **quiet())
    for k in a.params:
        np.testing.assert_allclose(a.params[k], b.params[k], rtol=1e-12)
    assert a.history[-1]["val_loss"] == pytest.approx(b.history[-1]["val_loss"], rel=1e-12)


def test_tbptt_overlapping_windows_mask_the_repeated_steps():
    data, _ = linear_data(batch=4, steps=10)
    data["mask"] = np.ones((10, 4))
    data["mask"][:, 0] = 0.0
    model = StubModel()
    params = model.init_params()
    y = model.forward(params, data)[0]["y"]
    full = loss_and_grad("mse", y, data["y"], data["mask"])[0]
    out = train(model, params, data, lr=0.0, epochs=1, val_fraction=0, tbptt=(3, 5),
                **quiet())
    assert out.history[0]["train_loss"] == pytest.approx(full, rel=1e-12)


def test_a_last_step_mask_trains_only_that_step_and_skips_empty_windows():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 8, 2))
    data = {"x": x, "y": rng.standard_normal((9, 8, 1)), "mask": np.zeros((9, 8))}
    data["mask"][-1] = 1
    model = StubModel()
    params = model.init_params()
    y = model.forward(params, data)[0]["y"]
    expect = loss_and_grad("mse", y, data["y"], data["mask"])[0]
    out = train(model, params, data, lr=0.0, epochs=1, batch_size=8, val_fraction=0,
                **quiet())
    assert out.history[0]["train_loss"] == pytest.approx(expect, rel=1e-12)
    model.calls.clear()
    out = train(model, params, data, lr=0.0, epochs=1, batch_size=8, val_fraction=0,
                tbptt=3, **quiet())
    assert [n for n, _ in model.calls] == [3]  # the two windows without loss only run forward
    assert out.history[0]["train_loss"] == pytest.approx(expect, rel=1e-12)
    data["mask"][:, :5] = 0  # mini-batches of one sequence: 5 have nothing to learn
    model.calls.clear()
    train(model, params, data, epochs=1, batch_size=1, val_fraction=0, **quiet())
    assert len(model.calls) == 3


def test_cross_entropy_labels_train():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 40, 2))
    model = StubModel(n_out=3)
    labels = (x[..., 0] > 0).astype(np.int64) + (x[..., 1] > 1)
    out = train(model, model.init_params(), {"x": x, "y": labels}, loss="cross_entropy",
                lr=0.05, epochs=15, batch_size=10, **quiet())
    assert out.history[-1]["train_loss"] < out.history[0]["train_loss"]


BAD = [
    (lambda d: d.pop("x"), "data has no array 'x' for input 'x' (data has: y)"),
    (lambda d: d.update(x=np.zeros((12, 8, 3))), "data['x'] has shape (12, 8, 3); input 'x' "
                                                 "needs (12, 8, 2)"),
    (lambda d: d.update(y=np.zeros((11, 8, 1))), "data['y'] has shape (11, 8, 1); output 'y' "
                                                 "with mse needs (12, 8, 1)"),
    (lambda d: d.pop("y"), "data has no target: name an array after an output (y)"),
    (lambda d: d.update(mask=np.ones((12, 7))), "data['mask'] has shape (12, 7); the per-step "
                                                "mask needs (12, 8)"),
    (lambda d: d.update(mask=np.zeros((12, 8))), "data['mask'] is all zero"),
    (lambda d: d["x"].__setitem__((3, 2, 0), np.nan), "data['x'] contains NaN or inf (first "
                                                      "at step 3, sequence 2)"),
    (lambda d: d.update(x=np.zeros((12, 8, 2), dtype=object)), "has dtype object"),
]


@pytest.mark.parametrize("spoil, message", BAD)
def test_bad_data_gives_one_clear_line(spoil, message):
    data, _ = linear_data(batch=8)
    spoil(data)
    with pytest.raises(DataError) as info:
        train(StubModel(), StubModel().init_params(), data, **quiet())
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("labels, message", [
    (np.full((5, 4), 3), "data['y'] has label 3 out of range: output 'y' has 3 classes "
                         "(labels 0..2)"),
    (np.full((5, 4), -1), "has label -1 out of range"),
    (np.full((5, 4), 0.5), "non-integer labels"),
    (np.zeros((5, 4, 3)), "cross_entropy takes integer class labels (T, B), not one-hot"),
])
def test_bad_labels_for_cross_entropy(labels, message):
    model = StubModel(n_out=3)
    data = {"x": np.zeros((5, 4, 2)), "y": labels}
    with pytest.raises(DataError) as info:
        check_data(model, data, "cross_entropy")
    assert message in str(info.value)


def test_other_bad_arguments():
    data, _ = linear_data(batch=8)
    model = StubModel()
    with pytest.raises(DataError, match="target 'z' is not an output of the network"):
        check_data(model, data, targets=["z"])
    with pytest.raises(DataError, match="1 sequence.* too few for a validation split"):
        train(model, model.init_params(), {k: v[:, :1] for k, v in data.items()}, **quiet())
    with pytest.raises(ValueError, match="need 1 <= k1 <= k2"):
        parse_tbptt((5, 3))
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        train(model, model.init_params(), data, batch_size=0, **quiet())
    with pytest.raises(DataError, match="unknown loss 'hinge'"):
        train(model, model.init_params(), data, loss="hinge", **quiet())


def test_load_data_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_data(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_text("hello")
    with pytest.raises(DataError, match="cannot read data file .*bad.npz as .npz"):
        load_data(tmp_path / "bad.npz")
    data, _ = linear_data(batch=10)
    np.savez(tmp_path / "d.npz", **data)
    out = train(StubModel(), StubModel().init_params(), tmp_path / "d.npz", epochs=1,
                **quiet())
    assert len(out.history) == 1


@pytest.mark.parametrize("has_tqdm", [False, True])
def test_progress_shows_loss_and_throughput(monkeypatch, capsys, has_tqdm):
    if has_tqdm:
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setitem(sys.modules, "tqdm", None)
    data, _ = linear_data(batch=10)
    train(StubModel(), StubModel().init_params(), data, epochs=2, batch_size=2)
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "seq/s" in err and "val" in err
    if not has_tqdm:  # one refreshed line
        assert err.startswith("\r") and err.endswith("\n") and err.count("\n") == 1


def test_plot_history_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    data, _ = linear_data(batch=10)
    out = train(StubModel(), StubModel().init_params(), data, epochs=3, **quiet())
    path = plot_history(out.history, tmp_path / "loss.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]
    with pytest.raises(ValueError, match="history is empty"):
        plot_history([], tmp_path / "x.png")


def test_plot_history_without_matplotlib(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ImportError, match=r"needs matplotlib: pip install 'graphrnn\[plot\]'"):
        plot_history([{"epoch": 1, "train_loss": 1.0}], tmp_path / "x.png")


def padded_data(extra: int = 0, seed: int = 0):
    """Sequences ending at steps 3..12, padded with junk past their ends (mask 0), plus
    ``extra`` more junk steps for all."""
    data, _ = linear_data(batch=40, steps=12 + extra, seed=seed)
    ends = np.random.default_rng(seed).integers(3, 13, size=40)
    data["mask"] = (np.arange(12 + extra)[:, None] < ends[None, :]).astype(float)
    return data, ends


def test_each_mini_batch_runs_only_to_its_longest_sequence():
    runs = []
    for extra in (0, 5):
        data, ends = padded_data(extra)
        model = StubModel()
        res = train(model, model.init_params(), data, lr=0.05, epochs=2, batch_size=8,
                    **quiet())
        runs.append((res, [n for n, _ in model.calls]))
    (short, calls), (long, calls_long) = runs
    assert calls == calls_long and set(calls) <= set(ends.tolist()) and min(calls) < 12
    for k in short.params:  # the junk steps changed nothing: cutting them is exact
        np.testing.assert_array_equal(short.params[k], long.params[k])
    assert [h["val_loss"] for h in short.history] == [h["val_loss"] for h in long.history]


def test_bucketing_groups_similar_lengths_resumes_and_needs_a_mask(tmp_path):
    data, _ = padded_data()
    steps = {}
    for bucket in (False, True):
        model = StubModel()
        train(model, model.init_params(), data, lr=0.05, epochs=1, batch_size=8,
              bucket=bucket, **quiet())
        steps[bucket] = sum(n for n, _ in model.calls)
    assert steps[True] < steps[False]
    ref = train(StubModel(), StubModel().init_params(), data, lr=0.05, epochs=30, batch_size=8,
                bucket=True, **quiet())
    assert ref.history[-1]["train_loss"] < ref.history[0]["train_loss"] / 10
    train(StubModel(), StubModel().init_params(), data, lr=0.05, epochs=15, batch_size=8,
          bucket=True, checkpoint=tmp_path / "ck.npz", **quiet())
    resumed = train(StubModel(), StubModel().init_params(), data, lr=0.05, epochs=30,
                    batch_size=8, bucket=True, checkpoint=tmp_path / "ck.npz", resume=True,
                    **quiet())
    for k in ref.params:
        np.testing.assert_array_equal(resumed.params[k], ref.params[k])
    with pytest.raises(CheckpointError, match="bucket=True, this run has bucket=False"):
        train(StubModel(), StubModel().init_params(), data, lr=0.05, epochs=31, batch_size=8,
              checkpoint=tmp_path / "ck.npz", resume=True, **quiet())
    with pytest.raises(DataError, match="bucket=True needs a mask"):
        train(StubModel(), StubModel().init_params(), linear_data()[0], bucket=True, **quiet())
