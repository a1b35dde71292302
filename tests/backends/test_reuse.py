"""Models keep their Runs between calls: reused results equal fresh ones after every change."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.errors import DataError
from tests.helpers import SPECS, assert_close, random_case

#: compiled loops packed (T x B >= 16 rows) and read in place (fewer); a scaled and transposed
#: shared weight (modern_hopfield: copies the kernels must refresh); a GRU (scaled identity)
CASES = [("lstm", 1, 1), ("lstm", 2, 3), ("lstm", 9, 4), ("gru", 1, 2), ("elman", 6, 3),
         ("modern_hopfield", 3, 2)]
BACKENDS = ["numpy", "numpy-ufuncs"]


def load(name: str):
    return gr.load_spec(SPECS / f"{name}.yaml")


def case(net, steps, batch, seed=0):
    inputs, state = random_case(net, steps=steps, batch=batch, seed=seed)
    extra = {} if net.inputs else {"steps": steps}
    return inputs, state, extra


def fresh(net, backend, params, inputs, state, extra, dtype="float64"):
    """The same call on a model compiled anew (nothing kept from earlier calls)."""
    return gr.compile(net, backend=backend, dtype=dtype).forward(params, inputs, state, **extra)


def targets_for(net, steps, batch):
    rng = np.random.default_rng(7)
    return {o: rng.normal(size=(steps, batch, net.size(o))) for o in net.outputs}


def test_a_second_call_of_the_same_shapes_keeps_the_run_and_its_kernels():
    net = load("lstm")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(1)
    inputs, state, _ = case(net, 3, 2)
    first = model._run(params, inputs, state, None, None)
    kernels = [k for _, ks in first.kernels for k in ks]
    second = model._run(params, inputs, state, None, None)
    assert second is first
    assert [k for _, ks in second.kernels for k in ks] == kernels
    other = model._run(params, *case(net, 4, 2)[:2], None, None)  # new shapes: a new Run
    assert other is not first


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,steps,batch", CASES)
def test_in_place_updates_between_calls_are_seen(name, steps, batch, backend):
    net = load(name)
    model = gr.compile(net, backend=backend, dtype="float64")
    params = model.init_params(1)
    inputs, state, extra = case(net, steps, batch)
    model.forward(params, inputs, state, **extra)
    rng = np.random.default_rng(2)
    for k in params:  # both kinds of in-place update, on every parameter
        if rng.random() < 0.5:
            params[k][...] = rng.normal(size=params[k].shape)
        else:
            params[k] -= 0.3 * rng.normal(size=params[k].shape)
    got = model.forward(params, inputs, state, **extra)
    want = fresh(net, backend, params, inputs, state, extra)
    for a, b in zip(got, want, strict=True):
        assert_close(a, b)


@pytest.mark.parametrize("name,steps,batch", CASES)
def test_gradients_after_an_optimizer_step_equal_fresh_gradients(name, steps, batch):
    net = load(name)
    if any(n.update == "asynchronous" for n in net.nodes.values()):
        pytest.skip("no gradients through asynchronous updates")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(1)
    inputs, state, extra = case(net, steps, batch)
    targets = targets_for(net, steps, batch)
    _, grads = model.gradients(params, inputs, targets, state=state, **extra)
    for k in params:
        params[k] -= 0.05 * grads[k]
    loss, grads = model.gradients(params, inputs, targets, state=state, **extra)
    want_loss, want = gr.compile(net, dtype="float64").gradients(params, inputs, targets,
                                                                 state=state, **extra)
    assert abs(loss - want_loss) <= 1e-12 * abs(want_loss)
    assert_close(grads, want)


def test_new_parameter_arrays_new_shapes_and_back_equal_fresh_results():
    net = load("lstm")
    model = gr.compile(net, dtype="float64")
    for seed, (steps, batch) in enumerate([(3, 2), (3, 2), (1, 1), (5, 4), (3, 2)]):
        params = model.init_params(seed % 2)  # new arrays; twice the same values
        inputs, state, extra = case(net, steps, batch, seed)
        got = model.forward(params, inputs, state if seed % 2 else None)
        want = fresh(net, "numpy", params, inputs, state if seed % 2 else None, extra)
        for a, b in zip(got, want, strict=True):
            assert_close(a, b)


def test_parameters_of_another_dtype_or_layout_updated_in_place_are_seen():
    net = load("lstm")
    model = gr.compile(net, dtype="float32")
    params = {k: np.asfortranarray(v.astype(np.float64)) for k, v in
              model.init_params(1).items()}  # converted and made contiguous each call
    inputs, _, _ = case(net, 2, 3)
    model.forward(params, inputs)
    for k in params:
        params[k] *= 0.5
    got = model.forward(params, inputs)
    want = gr.compile(net, dtype="float32").forward(params, inputs)
    for a, b in zip(got, want, strict=True):
        assert_close(a, b, rtol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", ["lstm", "gru", "elman"])
def test_streaming_one_step_a_call_equals_one_call_over_the_sequence(name, backend):
    net = load(name)
    model = gr.compile(net, backend=backend, dtype="float64")
    params = model.init_params(3)
    inputs, state, _ = case(net, 20, 2)
    whole, final = model.forward(params, inputs, state)
    steps, carried = [], state
    for t in range(20):
        out, carried = model.forward(params, {k: v[t:t + 1] for k, v in inputs.items()},
                                     state=carried)
        steps.append(out)
    assert_close({k: np.concatenate([o[k] for o in steps]) for k in whole}, whole)
    assert_close(carried, final)


def test_the_output_of_a_kept_run_is_the_callers_own():
    net = load("lstm")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(1)
    inputs, state, _ = case(net, 3, 2)
    first = model.forward(params, inputs, state)
    kept = {k: v.copy() for k, v in first[0].items()}
    model.forward(params, *case(net, 3, 2, seed=5)[:2])
    assert_close(first[0], kept, rtol=0)


def test_a_value_made_nan_in_place_is_still_refused():
    net = load("lstm")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(1)
    inputs, _, _ = case(net, 3, 2)
    model.forward(params, inputs)
    params["h->i@1"][0, 0] = np.nan
    with pytest.raises(DataError, match="'h->i@1' contains NaN or inf"):
        model.forward(params, inputs)
    params["h->i@1"][0, 0] = 0.0
    params["x->i"].shape = (params["x->i"].size,)  # reshaped in place
    with pytest.raises(DataError, match="'x->i' has shape"):
        model.forward(params, inputs)


def test_only_a_call_on_a_kept_run_skips_the_memory_check(monkeypatch):
    from graphrnn import checks
    seen = []
    real = checks.check_run_memory

    def counting(net, prog, steps, batch, *rest):
        seen.append((steps, batch))
        return real(net, prog, steps, batch, *rest)
    monkeypatch.setattr(checks, "check_run_memory", counting)
    net = load("lstm")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(1)
    inputs, state, _ = case(net, 3, 2)
    model.forward(params, inputs)
    model.forward(params, inputs)  # the kept Run: its buffers exist already
    assert seen == [(3, 2)]
    model.forward(params, inputs, state)  # given state rows: another Run, checked
    model.forward(params, case(net, 4, 2)[0])  # new shapes: checked
    model.gradients(params, inputs, targets_for(net, 3, 2))  # its first backward: checked
    model.gradients(params, inputs, targets_for(net, 3, 2))
    assert seen == [(3, 2), (3, 2), (4, 2), (3, 2)]


def test_a_kept_run_is_refused_when_memory_would_not_hold_a_new_one(monkeypatch):
    from graphrnn import checks
    net = load("lstm")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(1)
    inputs, _, _ = case(net, 3, 2)
    model.forward(params, inputs)
    monkeypatch.setattr(checks, "memory_limit", lambda: (1, "a test's limit"))
    model.forward(params, inputs)  # kept: no new buffers needed
    with pytest.raises(DataError, match="a test's limit"):
        model.gradients(params, inputs, targets_for(net, 3, 2))  # gradients: buffers to come
    with pytest.raises(DataError, match="a test's limit"):
        model.forward(params, case(net, 5, 2)[0])


def test_recorded_calls_too_large_to_keep_reuse_warm_buffers_never_a_live_tapes(monkeypatch):
    """A tape's Run too large to keep gives its buffer pool to the next recorded call (warm
    memory, not fresh pages), never while that tape lives; results equal fresh ones."""
    from graphrnn.backends import kept_runs
    monkeypatch.setattr(kept_runs, "RUN_KEPT_BYTES", 0)  # no Run is kept
    net = load("lstm")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(seed=0)
    first, state, _ = case(net, 5, 3, seed=1)
    second, _, _ = case(net, 5, 3, seed=2)
    gy = {"y": np.ones((5, 3, net.size("y")))}
    out1, _, tape1 = model.forward(params, first, state, record=True)
    out2, _, tape2 = model.forward(params, second, state, record=True)
    pool2, h2 = tape2.run.backend.pool, tape2.run.arrays["h"].ctypes.data
    assert pool2 is not tape1.run.backend.pool  # tape1 still lives: its pool is its own
    grads1 = tape1.backward(gy)
    del tape1, tape2  # both pools idle; the last one given back is kept
    out3, _, tape3 = model.forward(params, first, state, record=True)
    assert tape3.run.backend.pool is pool2 and tape3.run.arrays["h"].ctypes.data == h2
    expected = fresh(net, "numpy", params, first, state, {})[0]
    assert_close(out3, expected, 1e-12)
    assert_close(out1, expected, 1e-12)  # the caller's copy, not pool memory
    assert not np.allclose(out2["y"], out3["y"])  # other inputs: the copy survived the reuse
    grads3 = tape3.backward(gy)
    assert_close({k: g for k, g in grads3.items() if g is not None},
                 {k: g for k, g in grads1.items() if g is not None}, 1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["lstm", "gru", "elman"])
def test_every_parameter_made_nan_or_inf_in_place_is_refused_by_name(name, dtype):
    """A kept call checks only that the values are finite (one scan over the arrays kept from
    the last call): each parameter in turn, each kind of non-finite value, is still named."""
    net = load(name)
    model = gr.compile(net, dtype=dtype)
    params = model.init_params(1)
    inputs, _, _ = case(net, 3, 2)
    want = model.forward(params, inputs)
    for i, key in enumerate(params):
        value = (np.nan, np.inf, -np.inf)[i % 3]
        flat = params[key].reshape(-1)
        keep = flat[-1].copy()
        flat[-1] = value
        with pytest.raises(DataError, match=f"^parameter {key!r} contains NaN or inf$"):
            model.forward(params, inputs)
        flat[-1] = keep
    for a, b in zip(model.forward(params, inputs), want, strict=True):
        assert_close(a, b, rtol=0)


def test_finite_parameters_whose_squares_overflow_are_not_refused():
    """The check is exact: values near the dtype's largest (their sum of squares overflows)
    are finite and pass, on a kept call as on a fresh one."""
    net = load("lstm")
    model = gr.compile(net, dtype="float32")
    params = model.init_params(1)
    inputs, _, _ = case(net, 3, 2)
    model.forward(params, inputs)
    params["f.bias"][:] = 3e38  # the forget gate saturates at 1: outputs stay finite
    got = model.forward(params, inputs)
    want = gr.compile(net, dtype="float32").forward(params, inputs)
    for a, b in zip(got, want, strict=True):
        assert_close(a, b, rtol=0)


def test_parameters_replaced_by_views_of_other_strides_are_checked_again():
    """The kept check holds the arrays' memory layout: a parameter passed as another array
    (a strided view of the same values, say) is checked whole again, its NaN found."""
    net = load("elman")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(1)
    inputs, _, _ = case(net, 3, 2)
    want = model.forward(params, inputs)
    wide = np.zeros((32, 64))
    wide[:, ::2] = params["h->h@1"]
    params["h->h@1"] = wide[:, ::2]
    for a, b in zip(model.forward(params, inputs), want, strict=True):
        assert_close(a, b, rtol=0)
    wide[-1, -2] = np.nan
    with pytest.raises(DataError, match="'h->h@1' contains NaN or inf"):
        model.forward(params, inputs)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_weight_checked_by_its_product_is_named_even_times_zero_inputs(value):
    """A kept call leaves the finite check of the input weights to their C products (a NaN or
    inf weight makes its product NaN or inf, even times zeros): the error is the same."""
    net = load("lstm")
    model = gr.compile(net, dtype="float32")
    params = model.init_params(1)
    x = {"x": np.zeros((3, 2, 8), np.float32)}
    model.forward(params, x)
    if not model._vouched:
        pytest.skip("no compiled few-row products here")
    assert "x->f" in model._vouched
    params["x->f"][3, 5] = value
    with pytest.raises(DataError, match="^parameter 'x->f' contains NaN or inf$"):
        model.forward(params, x)
    with pytest.raises(DataError, match="^parameter 'x->f' contains NaN or inf$"):
        model.gradients(params, x, {"y": np.zeros((3, 2, 4), np.float32)})
    params["x->f"][3, 5] = 0.0
    model.forward(params, x)


def test_a_weight_whose_product_overflows_is_not_refused():
    """A product that overflows (finite weights) runs the exact check, which passes."""
    net = load("lstm")
    model = gr.compile(net, dtype="float32")
    params = model.init_params(1)
    inputs = {"x": 1 + np.abs(case(net, 3, 2)[0]["x"])}  # positive: the products +inf
    model.forward(params, inputs)
    params["x->f"][...] = 3e38  # the forget gate saturates at 1: outputs stay finite
    got = model.forward(params, inputs)
    want = gr.compile(net, dtype="float32").forward(params, inputs)
    for a, b in zip(got, want, strict=True):
        assert_close(a, b, rtol=0)


def test_a_call_of_other_shapes_scans_what_its_run_does_not_check():
    """The weights the last Run checked by its products are scanned where this call's Run
    does not check them (many rows: BLAS products): a NaN put there in between is named."""
    net = load("lstm")
    model = gr.compile(net, dtype="float64")
    params = model.init_params(1)
    model.forward(params, case(net, 3, 2)[0])
    params["x->o"][0, 0] = np.nan
    with pytest.raises(DataError, match="^parameter 'x->o' contains NaN or inf$"):
        model.forward(params, case(net, 100, 2)[0])
    params["x->o"][0, 0] = 0.5
    big = case(net, 100, 2)[0]
    for a, b in zip(model.forward(params, big), fresh(net, "numpy", params, big, None, {}),
                    strict=True):
        assert_close(a, b)
