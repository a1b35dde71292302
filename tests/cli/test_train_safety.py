"""``graphrnn train`` saying what it does: defaults in --help, no -o, divergence in the CLI's
words, a locked or changed checkpoint; and ``graphrnn accuracy``."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.cli.main import main
from graphrnn.training.checkpoints import CheckpointLock
from tests.helpers import SPECS

ELMAN = ("name: elman\ninputs:\n  x: 1\nnodes:\n  h: {size: 6, activation: tanh}\n  y: 1\n"
         "edges:\n  - x -> h\n  - h -> h @1\n  - h -> y\noutputs: [y]\n")
NO_O = "graphrnn train: no -o given: trained parameters will not be saved\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "elman.yaml").write_text(ELMAN)
    assert main(["task", "xor", "-o", str(tmp_path / "xor.npz"), "--batch", "24",
                 "--steps", "9"]) == 0
    return tmp_path


def train(files, *extra) -> int:
    return main(["train", str(files / "elman.yaml"), "--data", str(files / "xor.npz"),
                 "--epochs", "1", "--no-progress", *map(str, extra)])


def test_train_help_shows_the_defaults(capsys):
    assert main(["train", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for flag, default in [("--val-fraction", "0.1"), ("--epochs", "10"),
                          ("--batch-size", "32"), ("--optimizer", "adam"),
                          ("--dtype", "float32"), ("--weight-decay", "0.0")]:
        assert flag in text and f"(default: {default})" in text.split(flag, 2)[-1]


def test_without_o_it_says_the_parameters_will_not_be_saved(files, capsys):
    assert train(files) == 0
    err = capsys.readouterr().err
    assert err == NO_O
    assert train(files, "-o", files / "p.npz") == 0
    assert capsys.readouterr().err == ""
    assert train(files, "--bucket") == 2  # bad settings: only the error, no notice
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bucket=True needs a mask" in err


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_from_the_cli_names_the_flags(files, capsys):
    assert train(files, "--lr", "1e30", "--epochs", "3", "-o", files / "p.npz") == 2
    line = capsys.readouterr().err.splitlines()[-1]
    assert line.startswith("graphrnn train: error: training stopped at epoch")
    assert line.endswith("Try a lower --lr or --clip MAX_NORM") and "clip=" not in line
    assert not (files / "p.npz").exists()


def test_a_second_run_on_the_same_checkpoint_is_one_line_and_exit_2(files, capsys):
    ck = files / "ck.npz"
    with CheckpointLock(ck):
        assert train(files, "--checkpoint", ck, "-o", files / "p.npz") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is in use by another training run" in err
    assert not (files / "p.npz").exists()


def test_resume_with_another_lr_is_refused(files, capsys):
    ck = files / "ck.npz"
    assert train(files, "--checkpoint", ck, "-o", files / "p.npz") == 0
    assert train(files, "--checkpoint", ck, "--resume", "--epochs", 2, "--lr", "0.01",
                 "-o", files / "p.npz") == 2
    err = capsys.readouterr().err
    assert "written with lr=0.001, this run has lr=0.01" in err and err.count("\n") == 1


def test_accuracy_subcommand_scores_held_out_reber_strings(tmp_path, capsys):
    spec = SPECS / "reber_lstm.yaml"
    params = gr.compile(gr.load_spec(spec)).init_params(seed=0)
    np.savez(tmp_path / "p.npz", **params)
    assert main(["task", "reber", "--batch", "30", "-o", str(tmp_path / "r.npz")]) == 0
    capsys.readouterr()
    assert main(["accuracy", str(spec), str(tmp_path / "p.npz"), "--strings", "25",
                 "--train", str(tmp_path / "r.npz")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("embedded Reber, 25 held-out strings: ") and "never seen" in out
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in list(params.items())[1:]})
    assert main(["accuracy", str(spec), str(tmp_path / "bad.npz")]) == 2
    assert "lacks parameters" in capsys.readouterr().err
