"""``graphrnn train`` / ``graphrnn task`` handlers, and training the compiled model end to end."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.cli.train import add_task_command, add_train_command
from graphrnn.frontend.network import Edge, Network, Node
from graphrnn.training import loop as train_module
from graphrnn.training.loop import TrainResult, train
from graphrnn.training.tasks import temporal_xor

ELMAN = """\
name: elman
inputs:
  x: 1
nodes:
  h: {size: 6, activation: tanh}
  y: 1
edges:
  - x -> h
  - h -> h @1
  - h -> y
outputs: [y]
"""


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="graphrnn")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_command(sub)
    add_task_command(sub)
    args = parser.parse_args([str(a) for a in argv])
    return args.func(args)


@pytest.fixture
def files(tmp_path):
    (tmp_path / "elman.yaml").write_text(ELMAN)
    assert cli("task", "xor", "-o", tmp_path / "xor.npz", "--batch", 24, "--steps", 9) == 0
    return tmp_path


def test_task_command_writes_the_data_file(tmp_path, capsys):
    assert cli("task", "adding", "-o", tmp_path / "a.npz", "--batch", 5, "--steps", 7,
               "--input-name", "u") == 0
    assert "wrote" in capsys.readouterr().out
    with np.load(tmp_path / "a.npz") as z:
        assert set(z.files) == {"u", "y", "mask"} and z["u"].shape == (7, 5, 2)


def test_task_command_rejects_options_the_task_does_not_take(tmp_path, capsys):
    assert cli("task", "reber", "-o", tmp_path / "r.npz", "--steps", 5) == 2
    err = capsys.readouterr().err
    assert err == "graphrnn task: error: task 'reber' does not take --steps\n"
    assert cli("task", "xor", "-o", tmp_path / "no" / "x.npz") == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_train_command_end_to_end(files, capsys):
    argv = ["train", files / "elman.yaml", "--data", files / "xor.npz", "--batch-size", 8,
            "--lr", 0.01, "--no-progress", "-o", files / "p.npz",
            "--checkpoint", files / "ck.npz", "--tbptt", "3"]
    assert cli(*argv, "--epochs", 2) == 0
    out = capsys.readouterr().out
    assert "elman: 2 epoch(s), completed" in out and "parameters written to" in out
    with np.load(files / "p.npz") as z:
        assert set(z.files) == {"x->h", "h->h@1", "h->y", "h.bias", "y.bias"}
    assert cli(*argv, "--epochs", 3, "--resume") == 0  # continues from the checkpoint
    assert "3 epoch(s)" in capsys.readouterr().out


def test_train_command_buckets_by_length(tmp_path, capsys):
    (tmp_path / "elman.yaml").write_text(ELMAN.replace("x: 1", "x: 2"))
    assert cli("task", "adding", "-o", tmp_path / "a.npz", "--batch", 24, "--steps", 6) == 0
    with np.load(tmp_path / "a.npz") as z:  # a mask on the last step only: every end is T
        data = {k: z[k] for k in z.files}
    data["mask"][:, ::2] = 0
    data["mask"][2, ::2] = 1  # half the sequences end early
    np.savez(tmp_path / "b.npz", **data)
    assert cli("train", tmp_path / "elman.yaml", "--data", tmp_path / "b.npz", "--bucket",
               "--epochs", 2, "--batch-size", 4, "--no-progress") == 0
    assert "2 epoch(s), completed" in capsys.readouterr().out


def test_train_command_plot(files):
    pytest.importorskip("matplotlib")
    assert cli("train", files / "elman.yaml", "--data", files / "xor.npz", "--epochs", 1,
               "--no-progress", "--plot", files / "loss.png") == 0
    assert (files / "loss.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("extra, message", [
    (["--loss", "cross_entropy"], "cross_entropy takes integer class labels (T, B)"),
    (["--target", "h"], "target 'h' is not an output of the network"),
    (["--resume"], "--resume needs --checkpoint"),
    (["--momentum", "0.9"], "--momentum/--nesterov apply to --optimizer sgd only"),
    (["--tbptt", "4,2"], "need 1 <= k1 <= k2"),
    (["--val-fraction", "0.99"], "too few for a validation split"),
    (["--bucket"], "bucket=True needs a mask ('mask')"),
])
def test_train_command_bad_input_is_one_line_and_exit_2(files, capsys, extra, message):
    code = cli("train", files / "elman.yaml", "--data", files / "xor.npz", "--no-progress",
               *extra)
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1
    assert err.startswith("graphrnn train: error: ")


def test_train_command_missing_files(files, capsys):
    assert cli("train", files / "elman.yaml", "--data", files / "none.npz") == 2
    assert "data file" in capsys.readouterr().err
    assert cli("train", files / "missing.yaml", "--data", files / "xor.npz") == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_train_command_interrupted_exits_130(files, capsys, monkeypatch):
    def interrupted(model, params, data, **kw):
        return TrainResult(params, [], None, "interrupted", kw["checkpoint"])

    monkeypatch.setattr(train_module, "train", interrupted)
    assert cli("train", files / "elman.yaml", "--data", files / "xor.npz",
               "--checkpoint", files / "ck.npz") == 130
    assert "interrupted; checkpoint saved to" in capsys.readouterr().err


def test_the_compiled_model_trains_with_and_without_truncation():
    net = Network("elman", {"x": 1}, {"h": Node("h", 4, "tanh"), "y": Node("y", 1)},
                  (Edge("x", "h", param="x->h"), Edge("h", "h", 1, param="h->h@1"),
                   Edge("h", "y", param="h->y")), ("y",))
    model = gr.compile(net, dtype="float64")
    data = temporal_xor(batch=16, steps=12, seed=0)
    for tbptt in (None, 4, (3, 6)):
        out = train(model, model.init_params(seed=0), data, lr=0.02, epochs=4, batch_size=8,
                    tbptt=tbptt, progress=False)
        assert out.history[-1]["train_loss"] < out.history[0]["train_loss"]
