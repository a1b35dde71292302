"""Optimizers over dicts of arrays (SGD with momentum, Adam) and global-norm gradient clipping."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any

import numpy as np

from graphrnn.backends import array_module, to_numpy

__all__ = ["SGD", "Adam", "Optimizer", "clip_global_norm", "global_norm", "make_optimizer"]


def global_norm(grads: Mapping[str, Any]) -> float:
    """The L2 norm of all arrays in ``grads`` taken together (``inf``/``nan`` propagate)."""
    total = 0.0
    for g in grads.values():
        flat = np.ravel(g)
        total += float(np.vdot(flat, flat).real)
    return math.sqrt(total)


def clip_global_norm(grads: MutableMapping[str, Any], max_norm: float) -> float:
    """Scale ``grads`` in place so that their global L2 norm is at most ``max_norm``.

    Parameters
    ----------
    grads : dict of str to array
        Gradients, modified in place (every array is multiplied by the same factor).
    max_norm : float
        The largest allowed global norm (> 0).

    Returns
    -------
    float
        The global norm *before* clipping. A non-finite norm leaves ``grads`` untouched, so the
        caller can report it.
    """
    if not max_norm > 0:
        raise ValueError(f"max_norm must be > 0, got {max_norm}")
    norm = global_norm(grads)
    if math.isfinite(norm) and norm > max_norm:
        scale = max_norm / (norm + 1e-12)
        for g in grads.values():
            g *= scale
    return norm


class Optimizer:
    """Base class: in-place updates of ``params[name]`` from ``grads[name]``.

    Buffers are allocated per parameter on its first step; later steps allocate nothing.
    Only names present in ``grads`` *and* ``params`` (and, when ``trainable`` is given, in
    ``trainable``) are updated; keys such as ``state:h`` (gradients for a passed-in state) are
    ignored because they are not parameters.
    """

    name = "base"
    slots: tuple[str, ...] = ()

    def __init__(self, lr: float, weight_decay: float = 0.0,
                 trainable: Iterable[str] | None = None):
        if not lr >= 0:
            raise ValueError(f"learning rate must be >= 0, got {lr}")
        if not weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.trainable = None if trainable is None else frozenset(trainable)
        self.t = 0
        self.buffers: dict[str, dict[str, np.ndarray]] = {s: {} for s in (*self.slots, "tmp")}

    def keys(self, params: Mapping[str, Any], grads: Mapping[str, Any]) -> list[str]:
        """The names this step updates, in ``grads`` order."""
        return [k for k in grads if k in params
                and (self.trainable is None or k in self.trainable)]

    def _buf(self, slot: str, name: str, like: np.ndarray) -> np.ndarray:
        buf = self.buffers[slot].get(name)
        if buf is None or buf.shape != like.shape:
            buf = self.buffers[slot][name] = array_module(like).zeros_like(like)
        elif type(buf) is not type(like) or buf.dtype != like.dtype:  # restored from a file
            buf = self.buffers[slot][name] = array_module(like).asarray(buf, dtype=like.dtype)
        return buf

    def step(self, params: MutableMapping[str, Any], grads: Mapping[str, Any]) -> None:
        """Apply one update to ``params`` in place.

        Parameters
        ----------
        params : dict of str to array
            Updated in place.
        grads : dict of str to array
            Not modified.
        """
        self.t += 1
        for k in self.keys(params, grads):
            p = params[k]
            if p.shape != np.shape(grads[k]):
                raise ValueError(f"gradient {k!r} has shape {np.shape(grads[k])}, "
                                 f"parameter has {p.shape}")
            self._update(k, p, grads[k])

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError

    def hyper(self) -> dict[str, Any]:
        """The hyper-parameters (JSON-able)."""
        return {"lr": self.lr, "weight_decay": self.weight_decay}

    def state_dict(self) -> dict[str, Any]:
        """``{"name", "t", "hyper", "buffers": {slot: {param: array}}}`` (copies)."""
        return {"name": self.name, "t": self.t, "hyper": self.hyper(),
                "buffers": {s: {k: np.array(to_numpy(v), copy=True) for k, v in b.items()}
                            for s, b in self.buffers.items() if s != "tmp"}}

    def load_state_dict(self, state: Mapping[str, Any], restore_hyper: bool = False) -> None:
        """Restore what :meth:`state_dict` returned.

        Parameters
        ----------
        state : dict
        restore_hyper : bool, optional
            Also restore the hyper-parameters (by default the constructor's values win, so a
            resumed run may change, say, the learning rate).
        """
        if state.get("name", self.name) != self.name:
            raise ValueError(f"optimizer state is for {state['name']!r}, not {self.name!r}")
        self.t = int(state["t"])
        if restore_hyper:
            for key, value in state.get("hyper", {}).items():
                setattr(self, key, tuple(value) if isinstance(value, list) else value)
        for slot in self.slots:
            self.buffers[slot] = {k: np.array(v, copy=True)
                                  for k, v in state.get("buffers", {}).get(slot, {}).items()}


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, as ``torch.optim.SGD``.

    ``b = momentum * b + (1 - dampening) * g`` (``b = g`` on the first step), then
    ``p -= lr * (g + momentum * b)`` with ``nesterov`` or ``p -= lr * b`` without. Weight decay
    is L2: ``g + weight_decay * p`` replaces ``g``.

    Parameters
    ----------
    lr : float
    momentum : float, optional
    dampening : float, optional
    nesterov : bool, optional
        Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
    weight_decay : float, optional
    trainable : iterable of str, optional
        Restrict updates to these names.
    """

    name = "sgd"
    slots = ("momentum",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0,
                 trainable: Iterable[str] | None = None):
        super().__init__(lr, weight_decay, trainable)
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if not 0 <= dampening < 1:
            raise ValueError(f"dampening must be in [0, 1), got {dampening}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")
        self.momentum, self.dampening, self.nesterov = float(momentum), float(dampening), nesterov

    def hyper(self) -> dict[str, Any]:
        """The hyper-parameters (JSON-able)."""
        return {**super().hyper(), "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov}

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        tmp = self._buf("tmp", name, p)
        d = g
        if self.weight_decay:
            np.multiply(p, self.weight_decay, out=tmp)
            tmp += g
            d = tmp
        if self.momentum:
            fresh = name not in self.buffers["momentum"]
            b = self._buf("momentum", name, p)
            if fresh:
                b[...] = d
            else:  # b = momentum * b + (1 - dampening) * d, without temporaries
                keep = 1.0 - self.dampening
                b *= self.momentum / keep
                b += d
                b *= keep
            if self.nesterov:  # p -= lr * (d + momentum * b)
                np.multiply(d, self.lr, out=tmp)
                p -= tmp
                np.multiply(b, self.lr * self.momentum, out=tmp)
            else:
                np.multiply(b, self.lr, out=tmp)
        else:
            np.multiply(d, self.lr, out=tmp)
        p -= tmp


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015), bias-corrected, as ``torch.optim.Adam``/``AdamW``.

    ``m = b1 m + (1-b1) g``, ``v = b2 v + (1-b2) g^2``,
    ``p -= lr / (1-b1^t) * m / (sqrt(v) / sqrt(1-b2^t) + eps)``.

    Parameters
    ----------
    lr : float
    betas : tuple of float, optional
    eps : float, optional
    weight_decay : float, optional
        L2 added to the gradient (Adam) or, with ``decoupled``, ``p *= 1 - lr * wd`` (AdamW).
    decoupled : bool, optional
    trainable : iterable of str, optional
    """

    name = "adam"
    slots = ("m", "v")

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = False,
                 trainable: Iterable[str] | None = None):
        super().__init__(lr, weight_decay, trainable)
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.betas, self.eps, self.decoupled = (float(b1), float(b2)), float(eps), decoupled

    def hyper(self) -> dict[str, Any]:
        """The hyper-parameters (JSON-able)."""
        return {**super().hyper(), "betas": list(self.betas), "eps": self.eps,
                "decoupled": self.decoupled}

    def _update(self, name: str, p: np.ndarray, g: np.ndarray) -> None:
        b1, b2 = self.betas
        m, v, tmp = (self._buf(s, name, p) for s in ("m", "v", "tmp"))
        if self.weight_decay and self.decoupled:
            p *= 1.0 - self.lr * self.weight_decay
        elif self.weight_decay:
            np.multiply(p, self.weight_decay, out=tmp)
            tmp += g
            g = tmp
        m -= g  # m = b1 m + (1 - b1) g, without temporaries
        m *= b1
        m += g
        v *= b2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - b2
        v += tmp
        bc1, bc2 = 1.0 - b1 ** self.t, 1.0 - b2 ** self.t
        np.sqrt(v, out=tmp)
        tmp *= 1.0 / math.sqrt(bc2)
        tmp += self.eps
        np.divide(m, tmp, out=tmp)
        tmp *= self.lr / bc1
        p -= tmp


OPTIMIZERS: dict[str, type[Optimizer]] = {"sgd": SGD, "adam": Adam}


def make_optimizer(name: str, lr: float, **kw: Any) -> Optimizer:
    """An optimizer by name (``"sgd"`` or ``"adam"``) with keyword hyper-parameters.

    Raises
    ------
    ValueError
        An unknown name or an option the optimizer does not take, in one line.
    """
    cls = OPTIMIZERS.get(name)
    if cls is None:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    try:
        return cls(lr=lr, **kw)
    except TypeError as exc:
        raise ValueError(f"optimizer {name!r}: {exc}") from None
