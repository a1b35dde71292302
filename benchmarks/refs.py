"""The same networks in PyTorch (torch.nn fused modules, Python loops of nn.Linear) and JAX.

Every builder takes graphrnn's parameter dict (so all implementations compute the same
function, which the benchmark checks) and returns an :class:`Impl`: a forward pass, a
forward+backward step (MSE loss on the output ``y``, gradients for every weight) and the
output, for the check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: The gate nodes in the order torch stacks their weights.
GATES = {"elman": ["h"], "lstm": ["i", "f", "g", "o"], "gru": ["r", "z", "n"]}
FUSED = {"elman": "RNN", "lstm": "LSTM", "gru": "GRU"}


@dataclass
class Impl:
    """One implementation of a benchmark case, ready to time."""

    name: str
    lib: str
    forward: Callable[[], object]
    train_step: Callable[[], object]
    output: Callable[[], np.ndarray]


def stacked(kind: str, params: dict) -> dict[str, np.ndarray]:
    """Our parameters as torch lays them out: gate weights and biases stacked in its order.

    ``bx`` is torch's ``b_ih`` and ``bh`` its ``b_hh``; our single gate bias goes to ``bx``,
    and GRU's ``hn.bias`` (inside ``r * (...)``) to ``bh``'s n rows.
    """
    if kind == "jordan":
        return {"wx": params["x->h"], "bx": params["h.bias"], "wy": params["y->h@1"],
                "wo": params["h->y"], "bo": params["y.bias"]}
    gates = GATES[kind]
    rec = ["h->hn@1" if (kind, g) == ("gru", "n") else f"h->{g}@1" for g in gates]
    bh = [params["hn.bias"] if (kind, g) == ("gru", "n") else np.zeros_like(params[f"{g}.bias"])
          for g in gates]
    return {"wx": np.concatenate([params[f"x->{g}"] for g in gates]),
            "wh": np.concatenate([params[r] for r in rec]),
            "bx": np.concatenate([params[f"{g}.bias"] for g in gates]),
            "bh": np.concatenate(bh), "wo": params["h->y"], "bo": params["y.bias"]}


def _linear(torch, weight, bias=None):
    lin = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
        if bias is not None:
            lin.bias.copy_(torch.from_numpy(bias))
    return lin


def _torch_impl(torch, name, model_fn, modules, x, y) -> Impl:
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    weights = [p for m in modules for p in m.parameters()]
    mse = torch.nn.functional.mse_loss

    def forward():
        with torch.inference_mode():
            return model_fn(xt)

    def train_step():
        for p in weights:
            p.grad = None
        loss = mse(model_fn(xt), yt)
        loss.backward()
        return loss

    return Impl(name, "torch", forward, train_step, lambda: forward().numpy())


def torch_nn(torch, kind: str, params: dict, x: np.ndarray, y: np.ndarray) -> Impl:
    """``torch.nn.RNN/LSTM/GRU`` (oneDNN/MKL kernels) followed by ``nn.Linear`` for ``y``."""
    w = stacked(kind, params)
    hidden = w["wh"].shape[1]
    kw = {"nonlinearity": "tanh"} if kind == "elman" else {}
    rnn = getattr(torch.nn, FUSED[kind])(x.shape[-1], hidden, **kw)
    with torch.no_grad():
        for ours, theirs in (("wx", "weight_ih_l0"), ("wh", "weight_hh_l0"),
                             ("bx", "bias_ih_l0"), ("bh", "bias_hh_l0")):
            getattr(rnn, theirs).copy_(torch.from_numpy(w[ours]))
    out = _linear(torch, w["wo"], w["bo"])
    return _torch_impl(torch, "torch.nn", lambda xt: out(rnn(xt)[0]), [rnn, out], x, y)


def torch_loop(torch, kind: str, params: dict, x: np.ndarray, y: np.ndarray) -> Impl:
    """The cell as users write a custom topology: a Python loop over steps of ``nn.Linear``."""
    w = stacked(kind, params)
    batch = x.shape[1]
    wx, out = _linear(torch, w["wx"], w["bx"]), _linear(torch, w["wo"], w["bo"])
    if kind == "jordan":
        wy = _linear(torch, w["wy"])

        def run(xt):
            prev, ys = torch.zeros(batch, w["wo"].shape[0]), []
            for t in range(xt.shape[0]):
                prev = out(torch.tanh(wx(xt[t]) + wy(prev)))
                ys.append(prev)
            return torch.stack(ys)
        return _torch_impl(torch, "torch loop", run, [wx, wy, out], x, y)
    wh = _linear(torch, w["wh"], w["bh"] if kind == "gru" else None)
    hidden = w["wh"].shape[1]
    step = _torch_cells(torch, kind, wx, wh, hidden)

    def run(xt):
        state = (torch.zeros(batch, hidden),) * (2 if kind == "lstm" else 1)
        hs = []
        for t in range(xt.shape[0]):
            state = step(xt[t], *state)
            hs.append(state[0])
        return out(torch.stack(hs))
    return _torch_impl(torch, "torch loop", run, [wx, wh, out], x, y)


def _torch_cells(torch, kind, wx, wh, hidden):
    sig, tanh = torch.sigmoid, torch.tanh

    def elman(xt, h):
        return (tanh(wx(xt) + wh(h)),)

    def lstm(xt, h, c):
        i, f, g, o = (wx(xt) + wh(h)).chunk(4, 1)
        c = sig(f) * c + sig(i) * tanh(g)
        return sig(o) * tanh(c), c

    def gru(xt, h):
        gx, gh = wx(xt), wh(h)
        r = sig(gx[:, :hidden] + gh[:, :hidden])
        z = sig(gx[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
        n = tanh(gx[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
        return (n + z * (h - n),)
    return {"elman": elman, "lstm": lstm, "gru": gru}[kind]


def jax_scan(jax, kind: str, params: dict, x: np.ndarray, y: np.ndarray) -> Impl:
    """The cell under ``jax.lax.scan``, jitted (forward, and ``value_and_grad`` of the MSE)."""
    jnp = jax.numpy
    p = {k: jnp.asarray(v) for k, v in stacked(kind, params).items()}
    xj, yj, batch = jnp.asarray(x), jnp.asarray(y), x.shape[1]
    sig, tanh = jax.nn.sigmoid, jnp.tanh

    def forward(p, xs):
        if kind == "jordan":
            def step(prev, xt):
                out = tanh(xt @ p["wx"].T + p["bx"] + prev @ p["wy"].T) @ p["wo"].T + p["bo"]
                return out, out
            return jax.lax.scan(step, jnp.zeros((batch, p["wo"].shape[0])), xs)[1]
        hidden = p["wh"].shape[1]
        zeros = jnp.zeros((batch, hidden))

        def step(carry, xt):
            h, c = carry
            gx, gh = xt @ p["wx"].T + p["bx"], h @ p["wh"].T + p["bh"]
            if kind == "elman":
                h = tanh(gx + gh)
            elif kind == "lstm":
                i, f, g, o = jnp.split(gx + gh, 4, axis=1)
                c = sig(f) * c + sig(i) * tanh(g)
                h = sig(o) * tanh(c)
            else:
                r = sig(gx[:, :hidden] + gh[:, :hidden])
                z = sig(gx[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
                n = tanh(gx[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
                h = n + z * (h - n)
            return (h, c), h
        hs = jax.lax.scan(step, (zeros, zeros), xs)[1]
        return hs @ p["wo"].T + p["bo"]

    def loss(p, xs, ys):
        return jnp.mean((forward(p, xs) - ys) ** 2)

    fwd = jax.jit(forward)
    grad = jax.jit(jax.value_and_grad(loss))
    return Impl("jax", "jax", lambda: fwd(p, xj).block_until_ready(),
                lambda: jax.block_until_ready(grad(p, xj, yj)),
                lambda: np.asarray(fwd(p, xj)))
