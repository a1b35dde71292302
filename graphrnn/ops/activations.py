"""The activations: one record each (NumPy, C/CUDA, reference, derivative), read by every layer.

Each :class:`Activation` holds everything any part of graphrnn needs to know about one
activation: its in-place NumPy forward and derivative (any NumPy-like ``xp``), its float64
reference (the oracle of :mod:`graphrnn.frontend.reference`), its C forward and derivative (one
text, compiled for the host by :mod:`graphrnn.backends.codegen` and for CUDA alike: see
:mod:`graphrnn.backends.activation_c`), what its derivative reads (the value, the input or
nothing: both the NumPy kernels and the generated ones follow it), its node keys (``alpha``,
``beta``, with ONNX's defaults) and its code for the hand-written kernels. Adding an
activation is adding one record to :data:`REGISTRY`.

C text is an expression (or a body with ``return``) over ``x`` (the input), ``g`` (the
gradient of the value), ``v`` or ``x`` (what the derivative reads), ``u`` (a stochastic unit's
uniform draw), ``alpha``, ``beta``, ``inv_t`` and ``t`` (``1/temperature``, ``temperature``),
all of type ``T``; it may call the math primitives both targets define: ``gr_exp``,
``gr_expm1``, ``gr_log1p``, ``gr_abs``, ``gr_tanh`` and ``gr_sigmoid``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np


class ActParams(NamedTuple):
    """The scalars an activation may read: node keys, temperature, a run's uniforms."""

    alpha: float = 0.0
    beta: float = 0.0
    temperature: float = 1.0
    uniforms: object = None


@dataclass(frozen=True)
class Activation:
    """One activation, all of it.

    Attributes
    ----------
    name : str
        As a spec names it.
    forward : callable
        ``forward(xp, x, out, p)``: ``out[...] = act(x)`` (``out`` may be ``x``).
    grad : callable
        ``grad(xp, g, value, net, dnet, p)``: ``dnet[...] = g * act'(net)``; it may read only
        what ``grad_reads`` says (``net`` is not kept otherwise).
    reference : callable
        ``reference(x, p)``: the float64 oracle, written plainly.
    c_forward, c_grad : str or None
        C text (see the module); ``None`` for an activation that is not element-wise.
    grad_reads : {"value", "input", "none"}
        What the derivative needs besides ``g``: ``v = act(x)``, ``x`` itself, or nothing.
    keys : dict[str, float]
        The node keys it takes (``alpha``, ``beta``) and their defaults (ONNX's).
    code : int or None
        ``GR_ACT_<NAME>`` of the hand-written kernels (stable; ``None``: none).
    noise : bool
        Reads a uniform draw ``u`` per unit and step (stochastic units).
    temperature : bool
        Reads the node's ``temperature`` (as ``inv_t`` and ``t`` in C).
    straight_through : bool
        Its derivative is the straight-through estimator (used also for initialisation).
    """

    name: str
    forward: Callable
    grad: Callable
    reference: Callable
    c_forward: str | None
    c_grad: str | None
    grad_reads: str = "value"
    keys: dict = field(default_factory=dict)
    code: int | None = None
    noise: bool = False
    temperature: bool = False
    straight_through: bool = False

    @property
    def elementwise(self) -> bool:
        """Whether each unit depends on its own input only (a generated kernel can run it)."""
        return self.c_forward is not None

    def params(self, alpha: float | None = None, beta: float | None = None,
               temperature: float = 1.0, uniforms=None) -> ActParams:
        """The scalars for a node: its ``alpha``/``beta``, or the defaults where ``None``."""
        a = self.keys.get("alpha", 0.0) if alpha is None else alpha
        b = self.keys.get("beta", 0.0) if beta is None else beta
        return ActParams(float(a), float(b), temperature, uniforms)

    def c_args(self, grad: bool = False) -> tuple[str, ...]:
        """The scalar parameters of its C function, after ``x`` (forward) or ``g, v|x``."""
        noise = ("u",) if self.noise and not grad else ()
        temp = (("inv_t", "t") if grad else ("inv_t",)) if self.temperature else ()
        return noise + tuple(k for k in ("alpha", "beta") if k in self.keys) + temp


# -- NumPy pieces shared by several records ---------------------------------------------------

def _sigmoid(xp, x, out) -> None:
    """``1 / (1 + exp(-x))``: one ``exp`` (cheaper than ``tanh`` on CPUs); exp overflowing
    to inf for very negative x gives exactly 0, so the caller silences overflow warnings."""
    xp.negative(x, out=out)
    xp.exp(out, out=out)
    out += 1
    xp.reciprocal(out, out=out)


def _copy(xp, x, out, p) -> None:
    xp.copyto(out, x)


def _pass(xp, g, value, net, dnet, p) -> None:
    xp.copyto(dnet, g)


def _sign(xp, x, out, p) -> None:
    xp.copyto(out, x >= 0)
    out *= 2
    out -= 1


def _tanh_grad(xp, g, value, net, dnet, p) -> None:
    xp.multiply(value, value, out=dnet)
    xp.subtract(1, dnet, out=dnet)
    dnet *= g


def _sigmoid_grad(xp, g, value, net, dnet, p) -> None:
    xp.subtract(1, value, out=dnet)
    dnet *= value
    dnet *= g


def _softmax(xp, x, out, p) -> None:
    xp.subtract(x, x.max(axis=-1, keepdims=True), out=out)
    xp.exp(out, out=out)
    out /= out.sum(axis=-1, keepdims=True)


def _softmax_grad(xp, g, value, net, dnet, p) -> None:
    xp.multiply(g, value, out=dnet)
    dnet -= value * dnet.sum(axis=-1, keepdims=True)


def _bernoulli(xp, x, out, p) -> None:
    xp.multiply(x, 1.0 / p.temperature, out=out)
    _sigmoid(xp, out, out)
    xp.copyto(out, p.uniforms < out)


def _bernoulli_grad(xp, g, value, net, dnet, p) -> None:
    xp.multiply(net, 1.0 / p.temperature, out=dnet)
    _sigmoid(xp, dnet, dnet)
    dnet *= 1 - dnet
    dnet *= g / p.temperature


def _stable_sigmoid(xp, x):
    """``sigmoid(x)`` without overflow: ``e = exp(-|x|)``, then ``1/(1+e)`` or ``e/(1+e)``."""
    e = xp.exp(-xp.abs(x))
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _ref_softmax(x, p):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


#: Every activation by name, in the order messages list them.
REGISTRY: dict[str, Activation] = {a.name: a for a in (
    Activation("identity", _copy, _pass, lambda x, p: x, "x", "g", grad_reads="none", code=0),
    Activation("tanh", lambda xp, x, out, p: xp.tanh(x, out=out), _tanh_grad,
            lambda x, p: np.tanh(x), "gr_tanh(x)", "((T)1 - v * v) * g", code=1),
    Activation("sigmoid", lambda xp, x, out, p: _sigmoid(xp, x, out), _sigmoid_grad,
            lambda x, p: 1 / (1 + np.exp(-x)), "gr_sigmoid(x)", "((T)1 - v) * v * g", code=2),
    Activation("relu", lambda xp, x, out, p: xp.maximum(x, 0, out=out),
            lambda xp, g, value, net, dnet, p: xp.multiply(g, value > 0, out=dnet),
            lambda x, p: np.maximum(x, 0), "x > (T)0 ? x : (T)0", "v > (T)0 ? g : (T)0",
            code=3),
    Activation("softmax", _softmax, _softmax_grad, _ref_softmax, None, None),
    Activation("sign", _sign, _pass, lambda x, p: np.where(x >= 0, 1.0, -1.0),
            "x >= (T)0 ? (T)1 : (T)-1", "g", grad_reads="none", code=4, straight_through=True),
    Activation("step", lambda xp, x, out, p: xp.copyto(out, x >= 0), _pass,
            lambda x, p: np.where(x >= 0, 1.0, 0.0), "x >= (T)0 ? (T)1 : (T)0", "g",
            grad_reads="none", code=5, straight_through=True),
    Activation("bernoulli", _bernoulli, _bernoulli_grad,
            lambda x, p: (p.uniforms < 1 / (1 + np.exp(-x / p.temperature))).astype(float),
            "u < gr_sigmoid(x * inv_t) ? (T)1 : (T)0",
            "T s = gr_sigmoid(x * inv_t); return s * ((T)1 - s) * (g / t);",
            grad_reads="input", code=6, noise=True, temperature=True, straight_through=True),
    # ONNX's remaining RNN activations (operator RNN/GRU/LSTM, ``activation_alpha``/``_beta``)
    Activation("leaky_relu",
            lambda xp, x, out, p: xp.copyto(out, xp.where(x >= 0, x, p.alpha * x)),
            lambda xp, g, value, net, dnet, p: xp.copyto(dnet, xp.where(net >= 0, g,
                                                                        p.alpha * g)),
            lambda x, p: np.where(x >= 0, x, p.alpha * x),
            "x >= (T)0 ? x : alpha * x", "x >= (T)0 ? g : alpha * g", grad_reads="input",
            keys={"alpha": 0.01}, code=7),
    Activation("thresholded_relu",
            lambda xp, x, out, p: xp.copyto(out, xp.where(x > p.alpha, x, 0)),
            lambda xp, g, value, net, dnet, p: xp.copyto(dnet, xp.where(net > p.alpha, g, 0)),
            lambda x, p: x * (x > p.alpha), "x > alpha ? x : (T)0", "x > alpha ? g : (T)0",
            grad_reads="input", keys={"alpha": 1.0}, code=8),
    Activation("scaled_tanh",
            lambda xp, x, out, p: xp.copyto(out, p.alpha * xp.tanh(p.beta * x)),
            lambda xp, g, value, net, dnet, p: xp.copyto(
                dnet, p.alpha * p.beta * (1 - xp.tanh(p.beta * net) ** 2) * g),
            lambda x, p: p.alpha * np.tanh(p.beta * x), "alpha * gr_tanh(beta * x)",
            "T s = gr_tanh(beta * x); return alpha * beta * ((T)1 - s * s) * g;",
            grad_reads="input", keys={"alpha": 1.0, "beta": 1.0}, code=9),
    Activation("hard_sigmoid",
            lambda xp, x, out, p: xp.copyto(out, xp.clip(p.alpha * x + p.beta, 0, 1)),
            lambda xp, g, value, net, dnet, p: xp.copyto(
                dnet, xp.where((value > 0) & (value < 1), p.alpha * g, 0)),
            lambda x, p: np.minimum(np.maximum(p.alpha * x + p.beta, 0), 1),
            "T y = alpha * x + beta; return y > (T)0 ? (y < (T)1 ? y : (T)1) : (T)0;",
            "v > (T)0 && v < (T)1 ? alpha * g : (T)0",
            keys={"alpha": 0.2, "beta": 0.5}, code=10),
    Activation("elu",
            lambda xp, x, out, p: xp.copyto(out, xp.where(
                x >= 0, x, p.alpha * xp.expm1(xp.minimum(x, 0)))),
            lambda xp, g, value, net, dnet, p: xp.copyto(dnet, xp.where(
                net >= 0, g, p.alpha * xp.exp(xp.minimum(net, 0)) * g)),
            lambda x, p: np.where(x >= 0, x, p.alpha * (np.exp(np.minimum(x, 0)) - 1)),
            "x >= (T)0 ? x : alpha * gr_expm1(x)", "x >= (T)0 ? g : alpha * gr_exp(x) * g",
            grad_reads="input", keys={"alpha": 1.0}, code=11),
    Activation("softsign",
            lambda xp, x, out, p: xp.copyto(out, x / (1 + xp.abs(x))),
            lambda xp, g, value, net, dnet, p: xp.copyto(dnet, g / (1 + xp.abs(net)) ** 2),
            lambda x, p: x / (1 + np.abs(x)), "x / ((T)1 + gr_abs(x))",
            "T d = (T)1 + gr_abs(x); return g / (d * d);", grad_reads="input", code=12),
    Activation("softplus",
            lambda xp, x, out, p: xp.copyto(out, xp.maximum(x, 0)
                                            + xp.log1p(xp.exp(-xp.abs(x)))),
            lambda xp, g, value, net, dnet, p: xp.copyto(dnet, _stable_sigmoid(xp, net) * g),
            lambda x, p: np.logaddexp(0, x),
            "(x > (T)0 ? x : (T)0) + gr_log1p(gr_exp(-gr_abs(x)))", "gr_sigmoid(x) * g",
            grad_reads="input", code=13),
    Activation("affine",
            lambda xp, x, out, p: xp.copyto(out, p.alpha * x + p.beta),
            lambda xp, g, value, net, dnet, p: xp.multiply(g, p.alpha, out=dnet),
            lambda x, p: p.alpha * x + p.beta, "alpha * x + beta", "alpha * g",
            grad_reads="none", keys={"alpha": 1.0, "beta": 0.0}, code=14),
)}

#: The activations a spec may name.
NAMES = tuple(REGISTRY)
#: Those whose derivative is the straight-through estimator.
STRAIGHT_THROUGH = tuple(n for n, a in REGISTRY.items() if a.straight_through)
#: Those a generated element-wise kernel computes (all but ``softmax``).
ELEMENTWISE = tuple(n for n, a in REGISTRY.items() if a.elementwise)


def _check_registry() -> None:
    codes = [a.code for a in REGISTRY.values() if a.code is not None]
    assert len(codes) == len(set(codes)), "two activations share a kernel code"
    for a in REGISTRY.values():
        assert a.grad_reads in ("value", "input", "none"), a.name
        assert set(a.keys) <= {"alpha", "beta"}, a.name
        assert (a.code is None) == (not a.elementwise), a.name


_check_registry()


def activate(xp, name: str, net, out, temperature: float = 1.0, uniforms=None,
             alpha: float | None = None, beta: float | None = None) -> None:
    """``out[...] = act(net)``; ``uniforms`` are the run's draws for ``bernoulli`` units;
    ``alpha``/``beta`` the node's keys (``None``: the activation's default)."""
    act = REGISTRY[name]
    act.forward(xp, net, out, act.params(alpha, beta, temperature, uniforms))


def local_grad(xp, name: str, g, value, net, dnet, temperature: float = 1.0,
               alpha: float | None = None, beta: float | None = None) -> None:
    """``dnet[...] = g * act'(net)``, given ``value = act(net)``; reads ``value`` or ``net``
    as the record's ``grad_reads`` says.

    ``sign``, ``step`` and ``bernoulli`` have no useful derivative: they use the
    straight-through estimator, passing ``g`` through as if the unit were the identity
    (``sign``/``step``) or its firing probability ``sigmoid(net / T)`` (``bernoulli``).
    """
    act = REGISTRY[name]
    act.grad(xp, g, value, net, dnet, act.params(alpha, beta, temperature))


def reference(name: str, x, uniforms=None, temperature: float = 1.0,
              alpha: float | None = None, beta: float | None = None):
    """The float64 oracle ``act(x)`` of the reference interpreters."""
    act = REGISTRY[name]
    return act.reference(x, act.params(alpha, beta, temperature, uniforms))
