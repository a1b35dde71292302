"""graphrnn inside JAX: a network as a function with a ``custom_vjp`` over ``pure_callback``.

Importing :mod:`graphrnn` never imports this module (nor JAX): ``import graphrnn.jax``.
What it costs: each call leaves XLA for the host (``jax.pure_callback``), so inputs and
parameters are copied to NumPy and the results back (on the CPU a copy each way, no device
transfer); XLA cannot fuse across the call, and under ``jax.vmap`` the batch runs one call per
element (``vmap_method="sequential"``). The forward pass of ``jax.grad``/``jax.vjp`` records a
tape, which the backward pass uses once; a backward called again (or after more than
:data:`TAPES_KEPT` other forward passes) first runs the forward pass again.
"""

from __future__ import annotations

import functools
import itertools
from collections import OrderedDict
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from graphrnn.frontend.network import Network
from graphrnn.frontend.spec import load_spec
from graphrnn.model import compile as compile_model

__all__ = ["Function", "function"]

#: tapes recorded by forward passes under differentiation, waiting for their backward pass
TAPES_KEPT = 8


class Function:
    """A compiled network as a JAX-differentiable function: ``f(params, inputs, state=None)``
    returns ``(outputs, final_state)`` (dicts of arrays, as :meth:`graphrnn.Model.forward`).
    Usable under ``jax.jit``, ``jax.grad`` and ``jax.vjp``; from :func:`function`."""

    def __init__(self, model):
        self.model, self.net = model, model.net
        self.dtype = np.dtype(model.dtype)
        self._tapes: OrderedDict = OrderedDict()
        self._ids = itertools.count(1)
        self._call = _make_call(self)

    def init_params(self, seed: int = 0) -> dict:
        """Fresh parameters as JAX arrays (see :meth:`graphrnn.Model.init_params`)."""
        return {k: jnp.asarray(v) for k, v in self.model.init_params(seed).items()}

    def __call__(self, params: dict, inputs: dict, state: dict | None = None):
        if not self.net.inputs:
            raise ValueError(f"{self.net.name} has no inputs: graphrnn.jax needs input arrays")
        return self._call(dict(params), dict(inputs), dict(state or {}))

    # -- host side ----------------------------------------------------------------------------

    def _shapes(self, inputs: dict, state: dict):
        t, b = next(iter(inputs.values())).shape[:2]
        outs = {o: jax.ShapeDtypeStruct((t, b, self.net.size(o)), self.dtype)
                for o in self.net.outputs}
        finals = {k: jax.ShapeDtypeStruct((b, self.net.size(k.split("@")[0])), self.dtype)
                  for k in self.net.state_keys}
        return outs, finals

    def _host_forward(self, params, inputs, state, record: bool):
        p = {k: np.asarray(v, self.dtype) for k, v in params.items()}
        x = {k: np.asarray(v, self.dtype) for k, v in inputs.items()}
        s = {k: np.asarray(v, self.dtype) for k, v in state.items()} or None
        if not record:
            return self.model.forward(p, x, state=s)
        outputs, final, tape = self.model.forward(p, x, state=s, record=True)
        key = next(self._ids)
        self._tapes[key] = tape
        while len(self._tapes) > TAPES_KEPT:
            self._tapes.popitem(last=False)
        return outputs, final, np.int32(key)

    def _host_backward(self, key, params, inputs, state, out_cot, state_cot):
        tape = self._tapes.pop(int(key), None)
        if tape is None:
            _, _, key = self._host_forward(params, inputs, state, record=True)
            tape = self._tapes.pop(int(key))
        g = tape.backward({k: np.asarray(v) for k, v in out_cot.items()},
                          {k: np.asarray(v) for k, v in state_cot.items()})
        cast = functools.partial(np.asarray, dtype=self.dtype)
        return ({k: cast(g[k]) for k in params}, {k: cast(g[f"input:{k}"]) for k in inputs},
                {k: cast(g[f"state:{k}"]) for k in state})


def _make_call(fn: Function):
    """The ``custom_vjp`` function of ``fn`` over dict pytrees (params, inputs, state)."""

    def callback(f, shapes, *args):
        return jax.pure_callback(f, shapes, *args, vmap_method="sequential")

    @jax.custom_vjp
    def call(params, inputs, state):
        shapes = fn._shapes(inputs, state)
        return callback(lambda p, x, s: fn._host_forward(p, x, s, False), shapes,
                        params, inputs, state)

    def call_fwd(params, inputs, state):
        shapes = (*fn._shapes(inputs, state), jax.ShapeDtypeStruct((), np.int32))
        outs, final, key = callback(lambda p, x, s: fn._host_forward(p, x, s, True), shapes,
                                    params, inputs, state)
        return (outs, final), (key, params, inputs, state)

    def call_bwd(residuals, cotangents):
        key, params, inputs, state = residuals
        out_cot, state_cot = cotangents
        like = ({k: jax.ShapeDtypeStruct(v.shape, fn.dtype) for k, v in params.items()},
                {k: jax.ShapeDtypeStruct(v.shape, fn.dtype) for k, v in inputs.items()},
                {k: jax.ShapeDtypeStruct(v.shape, fn.dtype) for k, v in state.items()})
        return callback(fn._host_backward, like, key, params, inputs, state, out_cot,
                        state_cot)

    call.defvjp(call_fwd, call_bwd)
    return call


def function(spec_or_network, dtype: str | None = None, backend: str = "numpy") -> Function:
    """A network as a JAX function with a ``custom_vjp``.

    Parameters
    ----------
    spec_or_network : str, Path or Network
    dtype : {"float32", "float64"}, optional
        Default: float64 where ``jax_enable_x64`` is on, else float32.
    backend : {"numpy", "numpy-ufuncs"}
        The graphrnn backend the host callbacks run.

    Returns
    -------
    Function
    """
    net = (spec_or_network if isinstance(spec_or_network, Network)
           else load_spec(Path(spec_or_network)))
    if dtype is None:
        dtype = "float64" if jax.config.jax_enable_x64 else "float32"
    return Function(compile_model(net, backend, dtype))
