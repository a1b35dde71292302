"""Hopfield nets and stochastic units: energies, recall, sampling, the demo (storage rules in
:mod:`graphrnn.hopfield.rules`, re-exported by :mod:`graphrnn.hopfield`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from graphrnn.frontend import png
from graphrnn.hopfield import bitmaps
from graphrnn.hopfield.reference import (
    ACTIVATIONS,
    boltzmann_distribution,
    modern_energy,
    modern_retrieve,
    relax,
    state_index,
)
from graphrnn.hopfield.rules import check_patterns, hebbian, pseudo_inverse, storkey

if TYPE_CHECKING:
    from graphrnn.frontend.network import Network

__all__ = ["RecallResult", "boltzmann_distribution", "continuous_energy", "corrupt", "demo",
           "energy", "hebbian", "modern_energy", "modern_retrieve", "network", "overlap",
           "pseudo_inverse", "recall", "relax", "spec_text", "state_index", "storkey"]


# --- energies --------------------------------------------------------------------------------

def _field_args(w: np.ndarray, s: np.ndarray, b: np.ndarray | None):
    w, s = np.asarray(w, dtype=float), np.asarray(s, dtype=float)
    n = s.shape[-1] if s.ndim else 0
    if w.ndim != 2 or w.shape != (n, n):
        raise ValueError(f"W must be (N, N) for states of size N={n}; got W {w.shape}, "
                         f"states {s.shape}")
    b = np.zeros(n) if b is None else np.asarray(b, dtype=float)
    if b.shape != (n,):
        raise ValueError(f"b must have shape ({n},); got {b.shape}")
    return w, s, b


def energy(W: np.ndarray, s: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """Hopfield energy ``E(s) = -1/2 s^T W s - b^T s``, batched over leading axes of ``s``.

    Asynchronous sign updates with symmetric zero-diagonal ``W`` never increase it; with 0/1
    units it is the Boltzmann-machine energy (``p(s) ∝ exp(-E(s)/T)``).

    Parameters
    ----------
    W : numpy.ndarray
        ``(N, N)`` weights.
    s : numpy.ndarray
        ``(..., N)`` states.
    b : numpy.ndarray, optional
        ``(N,)`` biases (zero when omitted).

    Returns
    -------
    numpy.ndarray
        Shape ``s.shape[:-1]`` (a 0-d array for one state).
    """
    w, s, b = _field_args(W, s, b)
    return -0.5 * np.sum((s @ w.T) * s, axis=-1) - s @ b


def continuous_energy(W: np.ndarray, v: np.ndarray, b: np.ndarray | None = None,
                      gain: float = 1.0) -> np.ndarray:
    """Hopfield's (1984) Lyapunov function for tanh units ``v = tanh(gain * (W v + b))``.

    ``E(v) = -1/2 v^T W v - b^T v + (1/gain) sum_i ∫_0^{v_i} atanh(x) dx``, the integral in
    closed form ``v atanh(v) + 1/2 log(1 - v^2) = ((1+v) log(1+v) + (1-v) log(1-v)) / 2``.
    For symmetric ``W`` it never increases along ``dv/dt = -v + tanh(gain (W v + b))``, nor along
    its Euler step, a spec node with ``leak: a``, ``v <- (1-a) v + a tanh(gain (W v + b))``,
    whenever ``lambda_min(W) >= -2 (1 - a) / (a gain)`` (any ``a`` if ``W`` is positive
    semi-definite; from ``E(v') - E(v) <= -((1-a)/(a gain) + lambda_min/2) |v' - v|^2``), and
    for any ``a`` when the updates are asynchronous and ``W`` has a zero diagonal.

    Parameters
    ----------
    W : numpy.ndarray
        ``(N, N)`` symmetric weights.
    v : numpy.ndarray
        ``(..., N)`` states in ``[-1, 1]``.
    b : numpy.ndarray, optional
        ``(N,)`` biases.
    gain : float
        Slope of the unit's tanh (1 for the spec's ``tanh`` activation).

    Returns
    -------
    numpy.ndarray
        Shape ``v.shape[:-1]``.
    """
    w, v, b = _field_args(W, v, b)
    if np.any(np.abs(v) > 1) or not gain > 0:
        raise ValueError("continuous_energy needs states in [-1, 1] and gain > 0")
    p, m = 1.0 + v, 1.0 - v
    integral = 0.5 * (p * np.log(np.where(p > 0, p, 1.0)) + m * np.log(np.where(m > 0, m, 1.0)))
    return -0.5 * np.sum((v @ w.T) * v, axis=-1) - v @ b + integral.sum(axis=-1) / gain


# --- the network, and recall through the compiled backend -------------------------------------

def spec_text(n: int, *, update: str = "asynchronous", activation: str = "sign",
              leak: float | None = None, temperature: float = 1.0, bias: bool = False) -> str:
    """The YAML spec of a fully connected Hopfield-style net of ``n`` units (see ``network``)."""
    if not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"a Hopfield network needs a positive integer size; got {n!r}")
    if activation not in ACTIVATIONS or update not in ("synchronous", "asynchronous"):
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)} and update "
                         f"synchronous or asynchronous; got {activation!r}, {update!r}")
    opts = [f"size: {int(n)}", f"activation: {activation}", f"update: {update}",
            f"bias: {'true' if bias else 'false'}"]
    opts += [f"leak: {float(leak)!r}"] if leak is not None else []
    opts += [f"temperature: {float(temperature)!r}"] if activation == "bernoulli" else []
    return (f"name: hopfield{int(n)}  # generated by graphrnn.hopfield.network\n"
            f"nodes:\n  s: {{{', '.join(opts)}}}\n"
            "edges:\n  - {from: s, to: s, delay: 1, name: W, init: symmetric}\n"
            "outputs: [s]\n")


def network(n: int, *, update: str = "asynchronous", activation: str = "sign",
            leak: float | None = None, temperature: float = 1.0, bias: bool = False) -> Network:
    """A Hopfield-style net of ``n`` units: node ``s``, full self-edge ``s -> s @1`` named ``W``.

    Parameters
    ----------
    n : int
        Number of units.
    update : {"asynchronous", "synchronous"}
        Asynchronous: one unit at a time in a seeded random order per step.
    activation : str
        ``sign`` (discrete Hopfield), ``tanh`` (continuous, with ``leak``), ``bernoulli``
        (stochastic 0/1 units: Gibbs sampling of a Boltzmann machine when asynchronous), ``step``.
    leak : float, optional
        Leaky integration ``v <- (1-leak) v + leak act(...)`` (continuous Hopfield).
    temperature : float
        Temperature of ``bernoulli`` units.
    bias : bool
        Add the bias parameter ``s.bias``.

    Returns
    -------
    graphrnn.Network
        Loaded from :func:`spec_text` by ``gr.load_spec``; parameters ``W`` (and ``s.bias``).
    """
    from graphrnn.frontend.spec import load_spec

    return load_spec(spec_text(n, update=update, activation=activation, leak=leak,
                               temperature=temperature, bias=bias))


@dataclass(frozen=True)
class RecallResult:
    """What :func:`recall` returns.

    Attributes
    ----------
    states : numpy.ndarray
        ``(B, N)`` final states (the fixed point where converged).
    converged : numpy.ndarray
        ``(B,)`` bool: a full step left the state unchanged.
    steps : numpy.ndarray
        ``(B,)`` int: update steps that changed the state (0 for a probe already at a fixed
        point); ``max_steps`` where not converged.
    """

    states: np.ndarray
    converged: np.ndarray
    steps: np.ndarray


_MODELS: dict[tuple, object] = {}


def _compiled(n: int, update: str, activation: str, leak: float | None, bias: bool,
              backend: str):
    key = (n, update, activation, leak, bias, backend)
    if key not in _MODELS:
        import graphrnn as gr

        if len(_MODELS) > 32:
            _MODELS.clear()
        net = network(n, update=update, activation=activation, leak=leak, bias=bias)
        _MODELS[key] = gr.compile(net, backend=backend, dtype="float64")
    return _MODELS[key]


def recall(W: np.ndarray, probes: np.ndarray, *, b: np.ndarray | None = None,
           update: str = "asynchronous", max_steps: int = 100, seed: int = 0,
           backend: str = "numpy", activation: str = "sign", leak: float | None = None,
           tol: float = 0.0, max_chunk: int = 8) -> RecallResult:
    """Relax each probe to its first fixed point (or ``max_steps``) through the compiled net.

    Compiles :func:`network` once (cached) and runs ``model.forward(params, {}, state=...,
    steps=k, seed=...)`` chunk by chunk (1, 2, 4, ... up to ``max_chunk`` steps), passing each
    call's final state to the next and dropping probes that reached a fixed point.

    Parameters
    ----------
    W : numpy.ndarray
        ``(N, N)`` weights (the spec's parameter ``W``).
    probes : numpy.ndarray
        ``(B, N)`` initial states (or one ``(N,)`` probe).
    b : numpy.ndarray, optional
        ``(N,)`` bias, passed as ``s.bias``.
    update : {"asynchronous", "synchronous"}
    max_steps : int
        Step limit per probe.
    seed : int
        Seeds the asynchronous orders (one per chunk, drawn from this seed).
    backend : str
        ``"numpy"``, ``"cupy"``, ``"auto"``, or ``"reference"`` for the pure-NumPy
        :func:`relax` (an independent check; no compiler involved).
    activation, leak : str, float
        As in :func:`network` (``tanh`` with ``leak`` for continuous nets; then set ``tol``).
    tol : float
        A step changing no unit by more than ``tol`` counts as a fixed point.
    max_chunk : int
        Most steps per forward call.

    Returns
    -------
    RecallResult
    """
    w = np.asarray(W, dtype=float)
    s = np.array(probes, dtype=float)
    single = s.ndim == 1
    s = s[None] if single else s
    _field_args(w, s, b)
    if s.ndim != 2 or s.shape[0] == 0 or not np.all(np.isfinite(s)):
        raise ValueError(f"probes must be a non-empty finite (B, N) array; got {s.shape}")
    if not isinstance(max_steps, int | np.integer) or max_steps < 0:
        raise ValueError(f"max_steps must be a non-negative integer; got {max_steps!r}")
    rng = np.random.default_rng(seed)
    if backend == "reference":
        def advance(cur: np.ndarray, k: int, chunk_seed: int) -> np.ndarray:
            return relax(w, cur, b=b, steps=k, update=update, activation=activation, leak=leak,
                         seed=chunk_seed)
    else:
        model = _compiled(s.shape[1], update, activation, leak, b is not None, backend)
        params = {"W": w} | ({} if b is None else {"s.bias": np.asarray(b, dtype=float)})
        carry: dict = {}

        def advance(cur: np.ndarray, k: int, chunk_seed: int) -> np.ndarray:
            state = carry.pop("state", None) or {"s": cur}
            outputs, carry["state"] = model.forward(params, {}, state=state, steps=k,
                                                    seed=chunk_seed)
            return np.asarray(outputs["s"], dtype=float)

    final, steps = s.copy(), np.full(len(s), max_steps)
    converged = np.zeros(len(s), dtype=bool)
    active, cur, done, chunk = np.arange(len(s)), s, 0, 1
    while active.size and done < max_steps:
        k = min(chunk, max_steps - done, max_chunk)
        traj = advance(cur, k, int(rng.integers(2**31)))
        prev = np.concatenate([cur[None], traj[:-1]])
        same = np.all(np.abs(traj - prev) <= tol, axis=-1)  # (k, A)
        hit, first = same.any(axis=0), same.argmax(axis=0)
        final[active[hit]] = traj[first[hit], hit]
        steps[active[hit]] = done + first[hit]
        converged[active[hit]] = True
        active, cur, done, chunk = active[~hit], traj[-1][~hit], done + k, chunk * 2
        if backend != "reference" and "state" in carry:
            carry["state"] = {key: np.asarray(v)[~hit] for key, v in carry["state"].items()}
    final[active] = cur
    if single:
        return RecallResult(final[0], converged[0], steps[0])
    return RecallResult(final, converged, steps)


def corrupt(patterns: np.ndarray, noise: float, seed: int = 0) -> np.ndarray:
    """Copies of ±1 ``patterns`` with exactly ``round(noise * N)`` random bits flipped in each."""
    x = np.array(check_patterns(patterns))
    if not 0 <= noise <= 1:
        raise ValueError(f"noise must be a fraction in [0, 1]; got {noise!r}")
    rng = np.random.default_rng(seed)
    k = int(round(noise * x.shape[1]))
    for row in x:
        row[rng.choice(x.shape[1], size=k, replace=False)] *= -1
    return x


def overlap(states: np.ndarray, patterns: np.ndarray) -> np.ndarray:
    """Overlap ``m = s . xi / N`` of each state with its pattern (row by row); 1 is perfect."""
    s, x = np.asarray(states, dtype=float), np.asarray(patterns, dtype=float)
    return np.sum(s * x, axis=-1) / s.shape[-1]


# --- the demo ---------------------------------------------------------------------------------

def demo(out_dir: str | os.PathLike, seed: int = 0, noise: float = 0.15,
         rule: str = "pseudo_inverse", backend: str = "numpy") -> str:
    """Store the bundled letters A..J, corrupt, recall; write a PNG grid; return a text picture.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder for ``hopfield_recall.png`` (rows: stored, corrupted, recalled).
    seed : int
        Seeds the corruption and the asynchronous orders.
    noise : float
        Fraction of bits flipped in each probe.
    rule : {"pseudo_inverse", "storkey", "hebbian"}
        Storage rule (the letters are correlated: Hebb's rule mixes them up).
    backend : str
        Passed to :func:`recall`.

    Returns
    -------
    str
        The three rows drawn with ``█`` and ``·``, and a summary line.
    """
    rules = {"hebbian": hebbian, "storkey": storkey, "pseudo_inverse": pseudo_inverse}
    if rule not in rules:
        raise ValueError(f"unknown storage rule {rule!r}; choose one of {', '.join(rules)}")
    stored = bitmaps.letters()
    probes = corrupt(stored, noise, seed=seed)
    result = recall(rules[rule](stored), probes, seed=seed, backend=backend)
    exact = np.all(result.states == stored, axis=1)
    images, side = (stored, probes, result.states), (bitmaps.SIZE, bitmaps.SIZE)
    rows = [[img.reshape(side) for img in block] for block in images]
    picture = png.image_grid(rows, labels=("stored", "corrupted", "recalled"))
    path = png.write_png(Path(out_dir) / "hopfield_recall.png", picture)
    text = [f"{title} ({rule}, {int(round(noise * 100))}% noise):" if i == 1 else f"{title}:"
            for i, title in enumerate(("stored", "corrupted", "recalled"))]
    blocks = [f"{t}\n{bitmaps.render(b, per_line=5)}" for t, b in zip(text, images, strict=True)]
    summary = (f"recalled {int(exact.sum())}/{len(stored)} letters exactly "
               f"(mean overlap {overlap(result.states, stored).mean():.3f}); wrote {path}")
    return "\n\n".join(blocks + [summary])
