"""Training data and initial parameters: what data must be, lazy data files, divergence by type."""

from __future__ import annotations

import tracemalloc
import zipfile

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.cli.main import main
from graphrnn.errors import DataError, DivergenceError
from graphrnn.frontend.network import Edge, Network, Node
from graphrnn.training.tasks import save_task, temporal_xor


def elman(size: int = 4):
    net = Network("elman", {"x": 1}, {"h": Node("h", size, "tanh"), "y": Node("y", 1)},
                  (Edge("x", "h", param="x->h"), Edge("h", "h", 1, param="h->h@1"),
                   Edge("h", "y", param="h->y")), ("y",))
    return gr.compile(net, dtype="float64")


def test_data_as_a_list_is_one_clear_data_error():
    model = elman()
    d = temporal_xor(batch=8, steps=6)
    with pytest.raises(DataError, match=r"data must be a dict of arrays named after the "
                                        r"network's inputs and outputs .* got list"):
        gr.train(model, model.init_params(), [d["x"], d["y"]], progress=False)


def test_nan_in_the_initial_parameters_is_named_not_called_divergence():
    model = elman()
    params = model.init_params()
    params["h->h@1"] = params["h->h@1"].copy()
    params["h->h@1"][1, 2] = np.nan
    with pytest.raises(DataError) as info:
        gr.train(model, params, temporal_xor(batch=8, steps=6), progress=False)
    msg = str(info.value)
    assert not isinstance(info.value, DivergenceError)
    assert "the initial parameters contain NaN or inf: parameter 'h->h@1'" in msg
    assert "(1, 2)" in msg and "learning rate" not in msg


def test_a_data_error_mentioning_nan_is_not_taken_for_divergence(monkeypatch):
    model = elman()

    def gradients(*args, **kw):
        raise DataError("target 'y' holds nan labels")  # bad data, not a diverged run

    monkeypatch.setattr(model, "gradients", gradients)
    with pytest.raises(DataError) as info:
        gr.train(model, model.init_params(), temporal_xor(batch=8, steps=6), progress=False)
    assert type(info.value) is DataError and str(info.value) == "target 'y' holds nan labels"


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_an_update_that_overflows_a_parameter_is_divergence_naming_it():
    model = elman()
    with pytest.raises(DivergenceError) as info:
        gr.train(model, model.init_params(), temporal_xor(batch=8, steps=6), optimizer="sgd",
                 lr=1e308, val_fraction=0, progress=False)
    assert (info.value.epoch, info.value.step) == (1, 1)
    assert "epoch 1, step 1: the update made parameter" in str(info.value)


def write_with_unused_array(path, data: dict, rows: int, cols: int) -> None:
    """An .npz of ``data`` plus a float64 zeros array ``unused`` (rows, cols), compressed,
    written in chunks so that this test never holds it in memory."""
    np.savez(path, **data)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as z:
        with z.open("unused.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_2_0(
                f, {"descr": "<f8", "fortran_order": False, "shape": (rows, cols)})
            chunk = bytes(8 * cols * 256)
            for _ in range(rows // 256):
                f.write(chunk)


def test_a_data_file_is_read_only_for_the_arrays_the_spec_needs(tmp_path):
    path = tmp_path / "d.npz"
    rows, cols = 16384, 2048  # 256 MiB of float64 zeros, ~0.3 MiB compressed
    write_with_unused_array(path, temporal_xor(batch=8, steps=6), rows, cols)
    with np.load(path) as z:
        assert z["unused"].shape == (rows, cols)  # the file really holds it
    model = elman()
    params = model.init_params()
    tracemalloc.start()
    try:
        out = gr.train(model, params, path, epochs=1, val_fraction=0, progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(out.history) == 1
    assert peak < 32 * 2**20  # reading 'unused' alone would allocate 256 MiB


def test_run_takes_a_task_file_with_targets_and_other_arrays(tmp_path, capsys):
    spec = tmp_path / "elman.yaml"
    spec.write_text("name: elman\ninputs:\n  x: 1\nnodes:\n  h: {size: 3, activation: tanh}\n"
                    "  y: 1\nedges:\n  - x -> h\n  - h -> h @1\n  - h -> y\noutputs: [y]\n")
    save_task("xor", tmp_path / "xor.npz", batch=4, steps=5)  # x, y and 'predictable'
    out = tmp_path / "o.npz"
    assert main(["run", str(spec), "--inputs", str(tmp_path / "xor.npz"), "-o", str(out)]) == 0
    with np.load(out) as z:
        assert z["y"].shape == (5, 4, 1)
    np.savez(tmp_path / "typo.npz", xx=np.zeros((5, 4, 1)))
    assert main(["run", str(spec), "--inputs", str(tmp_path / "typo.npz"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "data has no array 'x' for input 'x' (data has: xx)" in err and err.count("\n") == 1
