"""``graphrnn run``: arrays in, outputs and final state out, bad input as one line."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.cli.main import main
from tests.helpers import SPECS


def test_run_writes_outputs_and_state_that_continue_a_sequence(tmp_path, capsys):
    net = gr.load_spec(SPECS / "narx.yaml")
    model = gr.compile(net)
    params = model.init_params(seed=4)
    np.savez(tmp_path / "p.npz", **params)
    x = np.random.default_rng(0).normal(size=(6, 2, net.inputs["x"])).astype(np.float32)
    np.savez(tmp_path / "a.npz", x=x[:4])
    np.savez(tmp_path / "b.npz", x=x[4:])
    args = ["run", str(SPECS / "narx.yaml"), "--params", str(tmp_path / "p.npz")]
    assert main(args + ["--inputs", str(tmp_path / "a.npz"), "-o", str(tmp_path / "o1.npz")]) == 0
    assert main(args + ["--inputs", str(tmp_path / "b.npz"), "--state", str(tmp_path / "o1.npz"),
                        "-o", str(tmp_path / "o2.npz")]) == 0
    assert "wrote" in capsys.readouterr().out
    whole, _ = model.forward(params, {"x": x})
    with np.load(tmp_path / "o1.npz") as a, np.load(tmp_path / "o2.npz") as b:
        assert {"y", "state:y", "state:y@-2", "state:x@-2"} <= set(a.files)
        joined = np.concatenate([a["y"], b["y"]])
    np.testing.assert_allclose(joined, whole["y"], rtol=1e-5, atol=1e-6)


def test_run_without_inputs_initialises_from_the_seed(tmp_path):
    out = tmp_path / "o.npz"
    assert main(["run", str(SPECS / "boltzmann.yaml"), "--steps", "3", "--seed", "1",
                 "-o", str(out)]) == 0
    with np.load(out) as z:
        assert z["s"].shape == (3, 1, 32) and set(np.unique(z["s"])) == {0.0, 1.0}


@pytest.mark.parametrize("make, message", [
    (lambda d: ["--inputs", str(d / "missing.npz")], "does not exist"),
    (lambda d: ["--inputs", str(d / "wrong.npz")], "input 'x' has shape"),
    (lambda d: ["--inputs", str(d / "nan.npz")], "contains NaN"),
])
def test_run_bad_data_is_one_line_and_exit_2(tmp_path, capsys, make, message):
    np.savez(tmp_path / "wrong.npz", x=np.zeros((3, 2, 5)))
    np.savez(tmp_path / "nan.npz", x=np.full((3, 2, 8), np.nan))
    out = tmp_path / "o.npz"
    code = main(["run", str(SPECS / "elman.yaml"), *make(tmp_path), "-o", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_a_wrong_vector_shape_prints_a_python_tuple(tmp_path, capsys):
    net = gr.load_spec(SPECS / "elman.yaml")
    params = gr.compile(net).init_params(seed=0)
    size = params["h.bias"].shape[0]
    params["h.bias"] = np.zeros(size + 1, np.float32)
    np.savez(tmp_path / "p.npz", **params)
    np.savez(tmp_path / "x.npz", x=np.zeros((2, 1, net.inputs["x"]), np.float32))
    code = main(["run", str(SPECS / "elman.yaml"), "--params", str(tmp_path / "p.npz"),
                 "--inputs", str(tmp_path / "x.npz"), "-o", str(tmp_path / "o.npz")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"parameter 'h.bias' has shape ({size + 1},), expected ({size},)" in err
