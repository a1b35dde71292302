"""graphrnn.torch.Module: gradcheck, Adam against pure torch, torch.compile, DDP (gloo)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import graphrnn as gr  # noqa: E402
from graphrnn.torch import Module  # noqa: E402
from tests.helpers import ROOT, SPECS  # noqa: E402

ELMAN = textwrap.dedent("""\
    name: small_elman
    inputs: {x: 6}
    nodes:
      h: {size: 5, activation: tanh}
    edges:
      - x -> h
      - h -> h @1
    outputs: [h]
""")


@pytest.fixture
def elman_spec(tmp_path):
    path = tmp_path / "small_elman.yaml"
    path.write_text(ELMAN)
    return path


@pytest.mark.parametrize("spec", ["elman", "lstm", "gru", "narx", "jordan"])
def test_gradcheck(spec):
    """Parameters, inputs and initial states at once, float64 (lengths=: its own file)."""
    module = Module(SPECS / f"{spec}.yaml", dtype="float64", seed=1)
    net = module.net
    gen = torch.Generator().manual_seed(0)
    xs = {k: torch.randn(3, 2, s, dtype=torch.float64, generator=gen, requires_grad=True)
          for k, s in net.inputs.items()}
    state = {k: torch.randn(2, net.size(k.split("@")[0]), dtype=torch.float64, generator=gen,
                            requires_grad=True) for k in net.state_keys}
    trainable = [p for p in module.params().values() if p.requires_grad]
    leaves = [p.detach().clone().requires_grad_() for p in trainable]
    assert torch.autograd.gradcheck(
        lambda *a: _functional(module, trainable, xs, state, a),
        (*leaves, *xs.values(), *state.values()), fast_mode=True)


def _functional(module, trainable, xs, state, args):
    """The module as a function of its trainable parameters, inputs and states."""
    n_p, n_x = len(trainable), len(xs)
    saved = {name: getattr(module, name) for name in module._parameters}
    by_param = {id(p): a for p, a in zip(trainable, args[:n_p], strict=True)}
    try:
        for name, p in saved.items():
            if id(p) in by_param:
                module._parameters[name] = by_param[id(p)]
        out, final = module(dict(zip(xs, args[n_p:n_p + n_x], strict=True)),
                            state=dict(zip(state, args[n_p + n_x:], strict=True)))
    finally:
        module._parameters.update(saved)
    return (*out.values(), *final.values())


def test_params_state_dict_and_dtype(elman_spec):
    module = Module(elman_spec, dtype=torch.float32)
    assert set(module.params()) == {"x->h", "h->h@1", "h.bias"}
    assert all(p.dtype == torch.float32 for p in module.parameters())
    assert module.params()["h.bias"] is module.state_dict(keep_vars=True)["h:bias"]
    model = gr.compile(module.net, dtype="float64")
    params = model.init_params(seed=0)
    module.double()
    with torch.no_grad():
        for name, p in module.params().items():
            p.copy_(torch.from_numpy(params[name]))
    x = np.random.default_rng(0).normal(size=(4, 2, 6))
    out, final = module(torch.from_numpy(x))
    expected, expected_final = model.forward(params, {"x": x})
    np.testing.assert_allclose(out["h"].detach().numpy(), expected["h"], rtol=1e-12)
    # state carry: two chunks equal one call
    first, mid = module(torch.from_numpy(x[:2]))
    second, end = module(torch.from_numpy(x[2:]), state=mid)
    np.testing.assert_allclose(torch.cat([first["h"], second["h"]]).detach().numpy(),
                               expected["h"], rtol=1e-12)
    np.testing.assert_allclose(end["h"].detach().numpy(), expected_final["h"], rtol=1e-12)


class _GraphrnnLM(torch.nn.Module):
    def __init__(self, spec, vocab=7):
        super().__init__()
        self.emb = torch.nn.Embedding(vocab, 6)
        self.rnn = Module(spec, dtype=torch.float64)
        self.lin = torch.nn.Linear(5, vocab)

    def forward(self, tokens):
        out, _ = self.rnn(self.emb(tokens))
        return self.lin(out["h"])


class _TorchLM(torch.nn.Module):
    """The same model written in pure torch: h[t] = tanh(W x[t] + U h[t-1] + b)."""

    def __init__(self, other: _GraphrnnLM):
        super().__init__()
        self.emb = torch.nn.Embedding.from_pretrained(other.emb.weight.detach().clone(),
                                                      freeze=False)
        p = {k: torch.nn.Parameter(v.detach().clone()) for k, v in other.rnn.params().items()}
        self.w, self.u, self.b = p["x->h"], p["h->h@1"], p["h.bias"]
        self.lin = torch.nn.Linear(5, other.lin.out_features).double()
        self.lin.load_state_dict(other.lin.state_dict())

    def forward(self, tokens):
        x = self.emb(tokens)
        h, hs = x.new_zeros(x.shape[1], 5), []
        for t in range(x.shape[0]):
            h = torch.tanh(x[t] @ self.w.T + h @ self.u.T + self.b)
            hs.append(h)
        return self.lin(torch.stack(hs))


def _train(model, tokens, labels, steps=5):
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        logits = model(tokens)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                 labels.reshape(-1))
        loss.backward()
        opt.step()
    return loss.item()


def test_adam_step_for_step_equals_pure_torch(elman_spec):
    torch.manual_seed(0)
    ours = _GraphrnnLM(elman_spec).double()
    theirs = _TorchLM(ours)
    tokens, labels = torch.randint(0, 7, (6, 3)), torch.randint(0, 7, (6, 3))
    loss_ours, loss_theirs = _train(ours, tokens, labels), _train(theirs, tokens, labels)
    assert abs(loss_ours - loss_theirs) <= 1e-10 * abs(loss_theirs)
    pairs = [(ours.emb.weight, theirs.emb.weight), (ours.lin.weight, theirs.lin.weight),
             (ours.rnn.params()["x->h"], theirs.w), (ours.rnn.params()["h->h@1"], theirs.u),
             (ours.rnn.params()["h.bias"], theirs.b)]
    for a, b in pairs:
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert not torch.equal(ours.rnn.params()["x->h"], _GraphrnnLM(elman_spec).double()
                           .rnn.params()["x->h"].to(torch.float64))  # it did train


def test_torch_compile_equals_eager(elman_spec):
    torch.manual_seed(0)
    model = _GraphrnnLM(elman_spec).double()
    tokens = torch.randint(0, 7, (6, 3))
    compiled = torch.compile(model, fullgraph=True)  # one opaque op
    out = compiled(tokens)
    out.square().sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    expected = model(tokens)
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=0)
    for g, p in zip(grads, model.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad, rtol=1e-12, atol=0)


def test_train_eval_and_no_grad(elman_spec):
    module = Module(elman_spec, dtype=torch.float64)
    x = torch.randn(3, 2, 6, dtype=torch.float64)
    module.eval()
    with torch.no_grad():
        out, _ = module(x)
    assert out["h"].grad_fn is None
    module.train()
    out2, _ = module(x)
    assert out2["h"].grad_fn is not None
    torch.testing.assert_close(out["h"], out2["h"].detach())  # no noise in this net


def test_calls_without_autograd_record_no_tape(elman_spec, monkeypatch):
    import graphrnn.torch as graphrnn_torch
    recorded = []
    real = graphrnn_torch._run_forward
    monkeypatch.setattr(graphrnn_torch, "_run_forward",
                        lambda *args, **kw: recorded.extend([1] * kw["record"]) or real(*args,
                                                                                       **kw))
    module = Module(elman_spec, dtype=torch.float64)
    x = torch.randn(3, 2, 6, dtype=torch.float64)
    h0 = torch.randn(2, module.net.size("h"), dtype=torch.float64)
    with_grad = module(x, state={"h": h0})
    assert recorded == [1]
    with torch.no_grad():
        without = module(x, state={"h": h0})
    assert recorded == [1]  # no tape recorded without autograd
    for got, want in zip(without, with_grad, strict=True):
        assert got.keys() == want.keys()
        for k in want:
            torch.testing.assert_close(got[k], want[k].detach(), rtol=0, atol=0)


DDP_WORKER = """
import json, sys, torch, torch.distributed as dist
from graphrnn.torch import Module
rank, world, port, spec, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], \
    sys.argv[5]
dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                        world_size=world)
torch.manual_seed(0)
module = Module(spec, dtype=torch.float64, seed=3)
model = torch.nn.parallel.DistributedDataParallel(module)
x = torch.randn(4, 6, 6, dtype=torch.float64)
y = torch.randn(4, 6, 5, dtype=torch.float64)
share = slice(rank * 6 // world, (rank + 1) * 6 // world)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(3):
    opt.zero_grad()
    outputs, _ = model(x[:, share])
    torch.nn.functional.mse_loss(outputs["h"], y[:, share]).backward()
    opt.step()
if rank == 0:
    json.dump({k: v.tolist() for k, v in module.params().items()}, open(out, "w"))
dist.destroy_process_group()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("world", [1, 2])
def test_ddp_gloo_equals_one_process(elman_spec, tmp_path, world):
    """Two processes on halves of the batch give what one process gives on all of it."""
    script = tmp_path / "worker.py"
    script.write_text(DDP_WORKER)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    results = {}
    for n in (1, world):
        out, port = tmp_path / f"params{n}.json", str(_free_port())
        procs = [subprocess.Popen([sys.executable, str(script), str(r), str(n), port,
                                   str(elman_spec), str(out)], env=env) for r in range(n)]
        assert all(p.wait(timeout=300) == 0 for p in procs)
        results[n] = json.loads(out.read_text())
    start = Module(elman_spec, dtype=torch.float64, seed=3).params()
    for k, v in results[world].items():
        np.testing.assert_allclose(v, results[1][k], rtol=1e-12, atol=1e-14)
        assert not np.allclose(v, start[k].detach().numpy())
