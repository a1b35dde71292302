"""The NumPy backend's few-row GEMMs and finite scans in C (``host_rows``): the products BLAS
gives, every NaN and inf found wherever it is, no finite value refused."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.backends import host_rows, native
from graphrnn.errors import DataError
from tests.helpers import SPECS, assert_close, random_case

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler")
DTYPES = [np.float32, np.float64]


def _gemm(a, w, bias, c, col):
    """``c[:, col:col + n] = a @ w.T + bias`` by ``gr_rows_gemm`` (``w`` of ``n`` rows)."""
    lib = host_rows._library(np.dtype(a.dtype).name)
    lib.gr_rows_gemm(a.ctypes.data, a.shape[1], a.shape[0], a.shape[1], w.ctypes.data,
                     w.shape[0], None if bias is None else bias.ctypes.data,
                     c.ctypes.data + col * c.itemsize, c.shape[1])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 7, 9])
@pytest.mark.parametrize("k,n", [(1, 1), (7, 3), (8, 4), (9, 5), (33, 9), (64, 16)])
def test_rows_gemm_equals_the_product_in_its_columns_only(dtype, rows, k, n):
    rng = np.random.default_rng(rows * 100 + k + n)
    a = rng.normal(size=(rows, k)).astype(dtype)
    w = rng.normal(size=(n, k)).astype(dtype)
    for bias in (None, rng.normal(size=n).astype(dtype)):
        c = np.full((rows, n + 5), 7.0, dtype)  # the product lands in columns 2..n+1
        _gemm(a, w, bias, c, 2)
        want = a.astype(np.float64) @ w.T.astype(np.float64) + (0 if bias is None else bias)
        tol = 1e-12 if dtype == np.float64 else 1e-5
        np.testing.assert_allclose(c[:, 2:n + 2], want, rtol=tol, atol=tol * k)
        assert (c[:, :2] == 7).all() and (c[:, n + 2:] == 7).all()


@pytest.mark.parametrize("name", ["lstm", "gru", "elman", "modern_hopfield"])
@pytest.mark.parametrize("steps,batch", [(1, 1), (1, 4), (3, 4), (12, 3), (30, 2), (40, 3)])
def test_models_on_few_rows_compute_what_blas_does(name, steps, batch):
    """Forward and gradients through the C products (3..40 rows), per-block BLAS (41..96) and
    BLAS (else) equal the NumPy-ufunc backend's (BLAS only), float64 at 1e-10."""
    net = gr.load_spec(SPECS / f"{name}.yaml")
    model = gr.compile(net, dtype="float64")
    other = gr.compile(net, backend="numpy-ufuncs", dtype="float64")
    params = model.init_params(2)
    inputs, state = random_case(net, steps=steps, batch=batch, seed=4)
    extra = {} if net.inputs else {"steps": steps}
    got = model.forward(params, inputs, state, **extra)
    kernels = [k for _, ks in model._runs[next(iter(model._runs))].kernels for k in ks]
    rows_kernels = [k for k in kernels if isinstance(k, host_rows.RowsMatMulKernel)]
    if net.inputs and host_rows.ROWS_GEMM[0] <= steps * batch <= host_rows.ROWS_GEMM[1]:
        assert any(k._tables for k in rows_kernels)  # the C products ran
    for a, b in zip(got, other.forward(params, inputs, state, **extra), strict=True):
        assert_close(a, b)  # the outputs, the final state
    if any(n.update == "asynchronous" for n in net.nodes.values()):
        return
    rng = np.random.default_rng(5)
    targets = {o: rng.normal(size=(steps, batch, net.size(o))) for o in net.outputs}
    loss, grads = model.gradients(params, inputs, targets, state=state, **extra)
    want_loss, want = other.gradients(params, inputs, targets, state=state, **extra)
    assert loss == pytest.approx(want_loss, rel=1e-10)
    assert_close(grads, want)


def _poisoned(dtype, size, where, value):
    a = np.random.default_rng(0).normal(size=size).astype(dtype)
    a[where] = value
    return a


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("size,where", [(1, 0), (17, 16), (5000, 0), (5000, 4999),
                                        (2**17 + 3, 0), (2**17 + 3, 70000), (2**17 + 3, 2**17 + 2)])
def test_the_scan_finds_every_nan_and_inf(dtype, value, size, where):
    bad = _poisoned(dtype, size, where, value)
    good = np.ones(3, dtype)
    assert not host_rows.FiniteScan([good, bad])()
    assert not host_rows.all_finite(bad)
    assert host_rows.FiniteScan([good, bad[:where], bad[where + 1:]])()


@pytest.mark.parametrize("dtype", DTYPES)
def test_the_scan_refuses_no_finite_value(dtype):
    info = np.finfo(dtype)
    edge = np.array([info.max, -info.max, info.tiny, info.tiny / 4, 0.0, -0.0] * 30000, dtype)
    assert np.isfinite(edge).all()
    assert host_rows.FiniteScan([edge])() and host_rows.all_finite(edge)
    # squares (or sums) of these overflow: a check by them would need its exact fallback
    with np.errstate(over="ignore"):
        assert not np.isfinite(np.dot(edge, edge))


def test_the_scan_takes_other_layouts_and_dtypes():
    rng = np.random.default_rng(1)
    strided = rng.normal(size=(64, 80))[:, ::2]  # not contiguous: np.isfinite's check
    fortran = np.asfortranarray(rng.normal(size=(370, 370)).astype(np.float32))
    ints, empty = np.arange(10), np.zeros((0, 3))
    scan = host_rows.FiniteScan([strided, fortran, ints, empty])
    assert scan() and all(host_rows.all_finite(a) for a in (strided, fortran, ints, empty))
    for a in (strided, fortran):
        a[-1, -1] = np.nan
        assert not scan() and not host_rows.all_finite(a)
        a[-1, -1] = 0.0
    assert scan()


def test_a_large_input_with_a_nan_in_its_last_value_is_refused():
    model = gr.compile(gr.load_spec(SPECS / "lstm.yaml"))
    params = model.init_params(0)
    x = np.zeros((300, 64, 8), np.float32)  # 153600 values: scanned in C
    model.forward(params, {"x": x})
    x[-1, -1, -1] = np.inf
    with pytest.raises(DataError, match="^input 'x' contains NaN or inf$"):
        model.forward(params, {"x": x})
