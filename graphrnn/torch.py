"""graphrnn inside PyTorch: a network as an ``nn.Module``, forward and BPTT as custom ops.

Importing :mod:`graphrnn` never imports this module (nor torch): ``import graphrnn.torch``.
The forward pass and its backward are ``torch.library.custom_op`` s with fake implementations,
so ``torch.compile`` keeps each one opaque op; eager calls run the same two implementations
through one ``torch.autograd.Function`` (no op dispatch on the hot path). On the CPU tensors
and NumPy arrays share memory (no copies in either direction); on CUDA they are exchanged by
DLPack with CuPy, the CuPy work ordered on torch's current stream.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import weakref
from pathlib import Path

import numpy as np
import torch

from graphrnn.frontend.network import Network
from graphrnn.frontend.spec import load_spec
from graphrnn.lengths import check_lengths
from graphrnn.model import Model
from graphrnn.model import compile as compile_model

__all__ = ["Module"]

#: compiled models by id, for the custom ops (which take no Python objects)
_MODELS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
#: tapes of recorded calls by the value of their handle tensor; each lives as long as it
_TAPES: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
_HANDLES = itertools.count(1)
_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64"}
#: whether ``Model.forward`` takes ``train=`` (training-time noise); flip once merged
_TAKES_TRAIN = "train" in inspect.signature(Model.forward).parameters


class _Handle(np.ndarray):
    """A 0-d int64 array holding a tape: the handle tensor made from it keeps the tape alive,
    so the tape lives exactly as long as autograd keeps the handle saved for backward."""


class _Entry:
    """A compiled model the ops find by id, with stable NumPy views of the parameters (so the
    model's kept Run sees the very same arrays call after call)."""

    def __init__(self, model: Model):
        self.model, self.views = model, {}
        self._key: list | None = None  # the parameters' (data pointer, shape) of the last call
        self._params: dict = {}

    def params(self, tensors) -> dict:
        """Name -> an array view of each parameter tensor: the very dict of the last call where
        no tensor's memory moved (``.data =``, ``.to()``), the arrays the same either way."""
        # a tensor's dtype or device cannot change under the same data pointer and shape
        # while the cached view (which holds that memory) lives
        key = [(t.data_ptr(), t.shape) for t in tensors]
        if key != self._key:
            self._params = {name: self.array(name, t)
                            for name, t in zip(self.model.net.params, tensors, strict=True)}
            self._key = key
        return self._params

    def array(self, name, tensor: torch.Tensor):
        key = (tensor.data_ptr(), tensor.shape)
        hit = self.views.get(name)
        if hit is None or hit[0] != key:
            hit = self.views[name] = (key, _to_array(tensor))
        return hit[1]


def _to_array(tensor: torch.Tensor):
    """The tensor's memory as a NumPy (CPU) or CuPy (CUDA) array, not copied."""
    if not tensor.is_cuda:
        return (tensor.detach() if tensor.requires_grad else tensor).numpy()
    tensor = tensor.detach()
    from graphrnn.backends.cupy_interop import from_dlpack  # noqa: PLC0415 - CUDA only

    return from_dlpack(tensor)


def _to_tensor(array, like: torch.Tensor) -> torch.Tensor:
    """An array the caller owns as a tensor on ``like``'s device, not copied."""
    if isinstance(array, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(array))
    return torch.from_dlpack(array)


def _stream(device: torch.device):
    """CuPy work on torch's current stream (a no-op context on the CPU)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from graphrnn.backends.cupy_interop import external_stream  # noqa: PLC0415

    return external_stream(torch.cuda.current_stream(device).cuda_stream)


def _call_shape(model: Model, inputs, state, steps: int):
    t = inputs[0].shape[0] if inputs else steps
    b = inputs[0].shape[1] if inputs else (state[0].shape[0] if state else 1)
    return t, b


def _run_forward(entry: _Entry, params, inputs, state, state_keys: str, steps: int,
                 train: bool, lengths: str, record: bool, input_grads: bool = False):
    """``Model.forward`` on the tensors' memory: the output and final-state tensors (in the
    order of the net's outputs and boundaries), and the tape where ``record``."""
    model, net = entry.model, entry.model.net
    like = params[0] if params else inputs[0]
    p = entry.params(params)
    x = {name: _to_array(t) for name, t in zip(net.inputs, inputs, strict=True)}
    s = {k: _to_array(t) for k, t in zip(state_keys.split("\n") if state_keys else (), state,
                                        strict=True)} or None
    kw = {"train": train} if _TAKES_TRAIN else {}
    call = {"state": s, "steps": None if x else steps, "record": record,
            "input_grads": input_grads, "lengths": _lengths(lengths) if lengths else None}
    if not like.is_cuda:  # the model's arrays are its exports: the caller's, contiguous
        outputs, final, *tape = model.forward(p, x, **call, **kw)
        tensors = ([torch.from_numpy(outputs[o]) for o in net.outputs]
                   + [torch.from_numpy(final[k]) for k in net.state_keys])
    else:
        with _stream(like.device):
            outputs, final, *tape = model.forward(p, x, **call, **kw)
        tensors = ([_to_tensor(outputs[o], like) for o in net.outputs]
                   + [_to_tensor(final[k], like) for k in net.state_keys])
    return tensors, (tape[0] if tape else None)


def _forward_impl(model_id: int, params: list[torch.Tensor], inputs: list[torch.Tensor],
                  state: list[torch.Tensor], state_keys: str, steps: int, input_grads: bool,
                  train: bool, lengths: str) -> list[torch.Tensor]:
    """The forward pass, recorded: the outputs, the final states and the tape's handle."""
    tensors, tape = _run_forward(_MODELS[model_id], params, inputs, state, state_keys, steps,
                                 train, lengths, record=True, input_grads=input_grads)
    key = next(_HANDLES)
    holder = np.array(key, dtype=np.int64).view(_Handle)
    holder.tape = tape
    _TAPES[key] = tape
    return tensors + [torch.from_numpy(holder)]


def _lengths(text: str):
    """The lengths the op carries as text (``"3,1,2"``; ``""``: None)."""
    return np.array([int(n) for n in text.split(",")]) if text else None


_forward_op = torch.library.custom_op("graphrnn::forward", _forward_impl, mutates_args=())


@_forward_op.register_fake
def _forward_fake(model_id, params, inputs, state, state_keys, steps, input_grads, train,
                  lengths):
    model = _MODELS[model_id].model
    net = model.net
    like = params[0] if params else inputs[0]
    t, b = _call_shape(model, inputs, state, steps)
    keys = list(net.state_keys)  # as tape.final_state_keys: NODE@+k included
    return ([like.new_empty((t, b, net.size(o))) for o in net.outputs]
            + [like.new_empty((b, net.size(k.split("@")[0]))) for k in keys]
            + [torch.empty((), dtype=torch.int64)])


def _backward_impl(handle: torch.Tensor, grads: list[torch.Tensor], params: list[torch.Tensor],
                   inputs: list[torch.Tensor], state: list[torch.Tensor],
                   input_grads: bool) -> list[torch.Tensor]:
    """BPTT on the handle's tape: gradients of the params, inputs (empty where not asked) and
    initial states."""
    like = params[0] if params else inputs[0]
    g_p, g_x, g_s = _tape_backward(_TAPES[int(handle)], grads, like, state)
    return g_p + [x.new_empty(0) if gx is None else gx
                  for x, gx in zip(inputs, g_x, strict=True)] + g_s


def _tape_backward(tape, grads, like: torch.Tensor,
                   state) -> tuple[list, list, list]:
    """BPTT on ``tape`` from the gradients of its outputs and final states (in the order of
    the net's outputs and boundaries; None: zero): the gradients of the params, the inputs
    (None where not computed) and the initial states ``state``, as tensors on ``like``'s
    device."""
    net = tape.model.net
    n = len(net.outputs)
    outs = {k: _to_array(v) for k, v in zip(net.outputs, grads, strict=False) if v is not None}
    finals = {k: _to_array(v) for k, v in zip(net.state_keys, grads[n:], strict=True)
              if v is not None}  # net.state_keys: tape.final_state_keys, not built per call
    if not like.is_cuda:
        g = tape.backward(outs, finals)
        g_p = [torch.from_numpy(np.ascontiguousarray(g[name])) for name in net.params]
    else:
        with _stream(like.device):
            g = tape.backward(outs, finals)
        g_p = [_to_tensor(g[name], like) for name in net.params]
    g_x = [None if (gx := g[f"input:{name}"]) is None else _to_tensor(gx, like)
           for name in net.inputs]
    g_s = [torch.zeros_like(s) if (gs := g[f"state:{key}"]) is None else _to_tensor(gs, like)
           for key, s in zip(tape.state, state, strict=True)]
    return g_p, g_x, g_s


_backward_op = torch.library.custom_op("graphrnn::backward", _backward_impl, mutates_args=())


@_backward_op.register_fake
def _backward_fake(handle, grads, params, inputs, state, input_grads):
    return ([torch.empty_like(p) for p in params]
            + [torch.empty_like(x) if input_grads else x.new_empty(0) for x in inputs]
            + [torch.empty_like(s) for s in state])


def _setup_context(ctx, inputs, output):
    _, params, xs, state, _, _, input_grads, _, _ = inputs
    ctx.sizes = (len(params), len(xs), len(state))
    ctx.input_grads = input_grads
    ctx.save_for_backward(output[-1], *params, *xs, *state)


def _autograd_backward(ctx, grads):
    handle, *saved = ctx.saved_tensors
    n_p, n_x, _ = ctx.sizes
    params, xs, state = saved[:n_p], saved[n_p:n_p + n_x], saved[n_p + n_x:]
    out = torch.ops.graphrnn.backward(handle, list(grads[:-1]), params, xs, state,
                                      ctx.input_grads)
    g_x = list(out[n_p:n_p + n_x]) if ctx.input_grads else [None] * n_x
    return None, list(out[:n_p]), g_x, list(out[n_p + n_x:]), None, None, None, None, None


_forward_op.register_autograd(_autograd_backward, setup_context=_setup_context)


class _EagerCall(torch.autograd.Function):
    """The two ops' implementations under autograd without the op dispatcher: what eager calls
    run (the custom ops' Python dispatch costs ~0.1-1 ms a call; ``torch.compile`` traces the
    custom ops instead). Tensors come flat: params, inputs, then states.

    The tape is held by a handle tensor saved for backward, so it goes (its Run back to the
    model) once backward has run, without ``retain_graph``, even while the outputs live on;
    ``ctx`` only refers to it weakly. The parameters are kept on ``ctx`` with their version
    counters rather than saved (saving wraps and unwraps each one, dear after a long call left
    the caches cold): backward raises, as a saved tensor would, where one was modified in
    place since the forward (BPTT reads them; inputs and states it copied)."""

    @staticmethod
    def forward(ctx, entry, call, *tensors):
        sizes, state_keys, steps, input_grads, train, lengths = call
        n_p, n_x, _ = sizes
        out, tape = _run_forward(entry, tensors[:n_p], tensors[n_p:n_p + n_x],
                                 tensors[n_p + n_x:], state_keys, steps, train, lengths,
                                 record=True, input_grads=input_grads)
        holder = np.zeros((), dtype=np.int64).view(_Handle)
        holder.tape = tape
        ctx.save_for_backward(torch.from_numpy(holder))
        ctx.tape = weakref.ref(tape)
        ctx.like, ctx.params, ctx.states = tensors[0], tensors[:n_p], tensors[n_p + n_x:]
        ctx.versions = [t._version for t in ctx.params]
        ctx.set_materialize_grads(False)  # an unused output's gradient: None, not zeros
        return tuple(out)

    @staticmethod
    def backward(ctx, *grads):
        if [t._version for t in ctx.params] != ctx.versions:
            t, version = next((t, v) for t, v in zip(ctx.params, ctx.versions, strict=True)
                              if t._version != v)
            raise RuntimeError(
                "one of the variables needed for gradient computation has been modified by "
                f"an inplace operation: a {tuple(t.shape)} parameter of graphrnn.torch.Module "
                f"is at version {t._version}; expected version {version} instead")
        tape = ctx.tape()
        if tape is None:  # as torch says for a freed graph
            raise RuntimeError("Trying to backward through the graph a second time: specify "
                               "retain_graph=True the first time")
        g_p, g_x, g_s = _tape_backward(tape, grads, ctx.like, ctx.states)
        return (None, None, *g_p, *g_x, *g_s)


#: ``_EagerCall``'s apply without ``Function.apply``'s Python wrapper (which only adds, for a
#: Function without ``setup_context``, the functorch path below): ~30 µs a call after a long
#: call left the caches cold
_SINGLE_LEVEL = getattr(torch.autograd.function, "_SingleLevelFunction", None)
_FUNCTORCH_ACTIVE = getattr(torch._C, "_are_functorch_transforms_active", None)
_APPLY = (super(_SINGLE_LEVEL, _EagerCall).apply  # private: where this torch lacks it, apply
          if _SINGLE_LEVEL is not None and _FUNCTORCH_ACTIVE is not None else None)


class Module(torch.nn.Module):
    """A graphrnn network as a ``torch.nn.Module``.

    Parameters
    ----------
    spec_or_network : str, Path or Network
        A spec file (as :func:`graphrnn.load_spec` takes) or a loaded network.
    dtype : {"float32", "float64"} or torch.dtype
        Of the parameters (``.to(torch.float64)`` later works too).
    backend : {"numpy", "numpy-ufuncs"}
        What runs CPU tensors; CUDA tensors run on CuPy.
    seed : int
        Of the initial parameters (:meth:`graphrnn.Model.init_params`).
    """

    def __init__(self, spec_or_network, dtype="float32", backend: str = "numpy", seed: int = 0):
        super().__init__()
        net = (spec_or_network if isinstance(spec_or_network, Network)
               else load_spec(Path(spec_or_network)))
        dtype = {torch.float32: "float32", torch.float64: "float64"}.get(dtype, dtype)
        self.net, self.backend = net, backend
        self._models: dict = {}
        self._entries: dict = {}  # (torch dtype, is_cuda) -> the entry of _models
        self._finals = list(net.state_keys)  # as tape.final_state_keys: NODE@+k included
        init = self._model(np.dtype(dtype).name, "cpu").model.init_params(seed)
        #: graphrnn name -> the attribute it is registered under ("." is not allowed there)
        self._attrs = {name: name.replace(".", ":") for name in net.params}
        for name, attr in self._attrs.items():
            self.register_parameter(attr, torch.nn.Parameter(
                torch.from_numpy(init[name]), requires_grad=net.params[name].trainable))

    def _model(self, dtype: str, device: str) -> _Entry:
        entry = self._models.get((dtype, device))
        if entry is None:
            backend = "cupy" if device == "cuda" else self.backend
            entry = self._models[(dtype, device)] = _Entry(compile_model(self.net, backend,
                                                                         dtype))
            _MODELS[id(entry)] = entry
        return entry

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the parameters' gradients, as :meth:`torch.nn.Module.zero_grad`.

        Parameters
        ----------
        set_to_none : bool
            Set them to None (else zeros, detached).
        """
        if self._modules or not set_to_none or getattr(self, "_is_replica", False):
            super().zero_grad(set_to_none)
            return
        for p in self._parameters.values():
            if p is not None and p.grad is not None:
                p.grad = None

    def params(self) -> dict[str, torch.nn.Parameter]:
        """The parameters by graphrnn name (the very ``nn.Parameter`` s of the module)."""
        return {name: getattr(self, attr) for name, attr in self._attrs.items()}

    def forward(self, inputs, state: dict | None = None, lengths=None, steps: int | None = None):
        """Run the network.

        Parameters
        ----------
        inputs : Tensor or dict
            Input name -> ``(T, B, size)`` tensor, time-major; one tensor for a one-input net.
        state : dict, optional
            Initial states by key (as :meth:`graphrnn.Model.forward`), ``(B, size)`` tensors;
            gradients flow into them.
        lengths : Tensor, array or list of int ``(B,)``, optional
            Sequence b exists for steps ``0..lengths[b]-1`` (as
            :meth:`graphrnn.Model.forward`): outputs past the end are zeros, the final state
            of b is its value at its own last step.
        steps : int, optional
            Steps of a network without inputs.

        Returns
        -------
        outputs, state : dict
            Output name -> ``(T, B, size)``; final-state key -> ``(B, size)``.
        """
        net = self.net
        if isinstance(inputs, torch.Tensor):
            if len(net.inputs) != 1:
                raise ValueError(f"{net.name} has {len(net.inputs)} inputs: pass a dict")
            inputs = {next(iter(net.inputs)): inputs}
        registered = self._parameters  # as getattr, without nn.Module.__getattr__ per name
        params = [registered[attr] for attr in self._attrs.values()]
        dtype = params[0].dtype
        entry = self._entries.get((dtype, params[0].is_cuda))
        if entry is None:
            entry = self._entries[(dtype, params[0].is_cuda)] = self._model(
                _DTYPE_NAMES[dtype], params[0].device.type)
        xs = [x if (x := inputs[name]).dtype == dtype else x.to(dtype) for name in net.inputs]
        if lengths is not None:
            lengths = np.asarray(lengths.cpu() if isinstance(lengths, torch.Tensor) else lengths)
            t, b = _call_shape(entry.model, xs, list((state or {}).values()), int(steps or 0))
            lengths = ",".join(str(n) for n in check_lengths(lengths, t, b))
        state = state or {}
        keys, states = list(state), list(state.values())
        grad = torch.is_grad_enabled()
        input_grads = grad and any(x.requires_grad for x in xs)
        keys, steps, lengths = "\n".join(keys), int(steps or 0), lengths or ""
        if torch.compiler.is_compiling():
            out = torch.ops.graphrnn.forward(id(entry), params, xs, states, keys, steps,
                                             input_grads, self.training, lengths)[:-1]
        elif not grad:  # nothing to record a tape for
            out = _run_forward(entry, params, xs, states, keys, steps, self.training, lengths,
                               record=False)[0]
        else:
            apply = _EagerCall.apply if _APPLY is None or _FUNCTORCH_ACTIVE() else _APPLY
            out = apply(entry, ((len(params), len(xs), len(states)), keys, steps, input_grads,
                                self.training, lengths), *params, *xs, *states)
        n = len(net.outputs)
        return (dict(zip(net.outputs, out[:n], strict=True)),
                dict(zip(self._finals, out[n:], strict=True)))
