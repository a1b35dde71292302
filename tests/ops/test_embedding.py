"""Token inputs and the embedding edge: torch parity, the reference, finite differences, errors."""

from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.compiler.ir import Gather, format_program
from graphrnn.frontend.init import init_params
from graphrnn.frontend.reference import reference_forward
from graphrnn.ops.gather import scatter_add_rows
from graphrnn.training.losses import _cross_entropy, loss_and_grad
from tests.helpers import SPECS, assert_close

BACKENDS = ["numpy", "numpy-ufuncs"]

TIED = """
inputs: {tok: {vocab: 7}}
nodes:
  h: {size: 5, activation: tanh}
  y: 7
edges:
  - {from: tok, to: h, weight: embedding, name: emb}
  - h -> h @1
  - {from: h, to: y, name: emb, transpose: true}
outputs: [y]
"""

PLAIN = """
inputs: {tok: {vocab: 6}, x: 2}
nodes:
  e: {size: 4, bias: false}
  h: {size: 3, activation: tanh}
  y: 6
edges:
  - {from: tok, to: e, weight: embedding, scale: 0.5}
  - e -> h
  - x -> h
  - h -> h @1
  - h -> y
outputs: [y, e]
"""


def _tokens(vocab, steps=6, batch=3, seed=0):
    tok = np.random.default_rng(seed).integers(0, vocab, (steps, batch))
    tok[1, :] = tok[0, 0]  # repeated tokens, within a step and across steps
    return tok


def test_embedding_and_cross_entropy_match_torch():
    torch = pytest.importorskip("torch")
    net = gr.load_spec("""
inputs: {tok: {vocab: 9}}
nodes:
  e: {size: 4, bias: false}
edges:
  - tok -> e embedding
outputs: [e]
""")
    assert net.params["tok->e"].shape == (9, 4)
    params = init_params(net, seed=3)
    tok = _tokens(9, steps=5, batch=4)
    labels = _tokens(4, steps=5, batch=4, seed=1)
    model = gr.compile(net, dtype="float64")
    out, _ = model.forward(params, {"tok": tok})
    loss, grads = model.gradients(params, {"tok": tok}, {"e": labels}, loss="cross_entropy")
    emb = torch.nn.Embedding(9, 4).double()
    with torch.no_grad():
        emb.weight.copy_(torch.from_numpy(params["tok->e"]))
    rows = emb(torch.from_numpy(tok))
    ref = torch.nn.functional.cross_entropy(rows.reshape(-1, 4),
                                            torch.from_numpy(labels).reshape(-1))
    ref.backward()
    assert_close({"e": out["e"]}, {"e": rows.detach().numpy()})
    assert abs(loss - ref.item()) <= 1e-12
    assert_close({"g": grads["tok->e"]}, {"g": emb.weight.grad.numpy()})


def test_tied_read_out_matches_torch_lm():
    torch = pytest.importorskip("torch")
    net = gr.load_spec(TIED)
    assert set(net.params) == {"emb", "h->h@1", "h.bias", "y.bias"}
    assert net.params["emb"].shape == (7, 5)
    params = init_params(net, seed=2)
    tok = _tokens(7)
    model = gr.compile(net, dtype="float64")
    loss, grads = model.gradients(params, {"tok": tok}, {"y": tok}, loss="cross_entropy")
    emb = torch.tensor(params["emb"], requires_grad=True)
    w = torch.tensor(params["h->h@1"])
    bh, by = torch.tensor(params["h.bias"]), torch.tensor(params["y.bias"])
    h, logits = torch.zeros(3, 5, dtype=torch.float64), []
    for t in range(tok.shape[0]):
        h = torch.tanh(emb[torch.from_numpy(tok[t])] + h @ w.T + bh)
        logits.append(h @ emb.T + by)  # decoder.weight = encoder.weight
    ref = torch.nn.functional.cross_entropy(torch.stack(logits).reshape(-1, 7),
                                            torch.from_numpy(tok).reshape(-1))
    ref.backward()
    assert abs(loss - ref.item()) <= 1e-12
    assert_close({"emb": grads["emb"]}, {"emb": emb.grad.numpy()})


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", [TIED, PLAIN, SPECS / "lstm_lm.yaml"], ids=["tied", "plain",
                                                                            "lstm_lm"])
def test_backends_match_reference(spec, backend):
    net = gr.load_spec(spec)
    params = init_params(net, seed=4)
    inputs = {"tok": _tokens(net.inputs["tok"])}
    if "x" in net.inputs:
        inputs["x"] = np.random.default_rng(5).normal(size=(6, 3, 2))
    out, final = gr.compile(net, backend=backend, dtype="float64").forward(params, inputs)
    ref_out, ref_final = reference_forward(net, params, inputs)
    assert_close(out, ref_out)
    assert_close(final, ref_final)


@pytest.mark.parametrize("spec", [TIED, PLAIN], ids=["tied", "plain"])
def test_gradients_match_finite_differences(spec):
    net = gr.load_spec(spec)
    params = init_params(net, seed=6)
    inputs = {"tok": _tokens(net.inputs["tok"])}
    if "x" in net.inputs:
        inputs["x"] = np.random.default_rng(7).normal(size=(6, 3, 2))
    labels = {"y": _tokens(net.size("y"), seed=8)}
    model = gr.compile(net, dtype="float64")
    _, grads = model.gradients(params, inputs, labels, loss="cross_entropy")
    name = "emb" if "emb" in params else "tok->e"
    eps, rng = 1e-6, np.random.default_rng(9)
    for idx in [tuple(rng.integers(0, s) for s in params[name].shape) for _ in range(6)]:
        up = {k: v.copy() for k, v in params.items()}
        down = {k: v.copy() for k, v in params.items()}
        up[name][idx] += eps
        down[name][idx] -= eps
        fd = (model.gradients(up, inputs, labels, loss="cross_entropy")[0]
              - model.gradients(down, inputs, labels, loss="cross_entropy")[0]) / (2 * eps)
        assert abs(fd - grads[name][idx]) <= 1e-7 * max(1.0, abs(fd))


def test_lowered_as_a_gather_in_a_first_batched_stage():
    model = gr.compile(gr.load_spec(TIED))
    first = model.program.stages[0]
    assert first.kind == "batched"
    assert [type(op) for op in first.ops] == [Gather]
    assert model.program.buffers["tok"].size == 1
    assert "gather(emb[tok])" in format_program(model.program)


def test_scatter_add_is_exact_and_deterministic():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 5, 200)
    rows = rng.normal(size=(200, 3))
    expected = np.zeros((6, 3))
    for i, r in zip(ids, rows, strict=True):
        expected[i] += r
    got = scatter_add_rows(np, (6, 3), ids, rows, np.float64)
    assert np.abs(got - expected).max() <= 1e-12
    assert np.array_equal(got, scatter_add_rows(np, (6, 3), ids, rows, np.float64))
    assert not got[5].any()


def test_chunked_cross_entropy_equals_one_block():
    rng = np.random.default_rng(1)
    y = rng.normal(size=(4, 3, 50)) * 3
    labels = rng.integers(0, 50, (4, 3))
    mask = rng.integers(0, 2, (4, 3)).astype(float)
    mask[0, 0] = 1
    loss, grad = loss_and_grad("cross_entropy", y, labels, mask)
    small, small_grad = _cross_entropy(np, y, labels, mask, mask.sum(), chunk_elements=60)
    shifted = y - y.max(-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    picked = np.take_along_axis(logp, labels[..., None], -1)[..., 0]
    assert abs(loss + (mask * picked).sum() / mask.sum()) <= 1e-12
    assert abs(small - loss) <= 1e-12
    assert np.abs(small_grad - grad).max() <= 1e-15


@pytest.mark.parametrize(("value", "message"), [
    (-1, "has token -1 at step 2, sequence 1, outside the vocabulary 0..6"),
    (7, "has token 7 at step 2, sequence 1, outside the vocabulary 0..6"),
    (2.5, "non-integer token 2.5 at step 2, sequence 1"),
])
def test_bad_tokens_are_one_clear_line(value, message):
    net = gr.load_spec(TIED)
    tok = _tokens(7).astype(float)
    tok[2, 1] = value
    with pytest.raises(gr.DataError, match=message) as err:
        gr.compile(net).forward(init_params(net), {"tok": tok})
    assert "\n" not in str(err.value) and "'tok'" in str(err.value)


@pytest.mark.parametrize(("edit", "message"), [
    (("- {from: h, to: y, name: emb, transpose: true}", "- {from: h, to: y, name: emb}"),
     "add 'transpose: true'"),
    (("  y: 7", "  y: 8"), "tied to tok -> h"),
    (("- h -> h @1", "- tok -> h @1 embedding"), "same step"),
    (("- h -> h @1", "- tok -> y"), "is a token input"),
    (("{vocab: 7}", "{vocab: 0}"), "positive integer vocab"),
    (("{vocab: 7}", "{size: 7}"), "unknown key 'size'"),
    (("- h -> h @1", "- h -> h @1 embedding"), "not one; use weight: full"),
])
def test_bad_token_specs(edit, message):
    with pytest.raises(gr.SpecError, match=message):
        gr.load_spec(TIED.replace(*edit))
