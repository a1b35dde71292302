"""Pure-NumPy reference dynamics and exact distributions: the independent check on the compiler."""

from __future__ import annotations

import numpy as np

from graphrnn.ops.activations import REGISTRY

#: Unit types of Hopfield nets that the reference (and :func:`graphrnn.hopfield.network`)
#: offers: a choice among the activation records (whose references ``_act`` uses), not a
#: second list of activations.
ACTIVATIONS = ("sign", "step", "tanh", "bernoulli")
assert set(ACTIVATIONS) <= set(REGISTRY)


def _act(h: np.ndarray, activation: str, temperature: float,
         rng: np.random.Generator) -> np.ndarray:
    if activation == "bernoulli":  # draws from this reference's own generator
        p = 0.5 * (1.0 + np.tanh(0.5 * h / temperature))  # sigmoid(h / T), overflow-free
        return (rng.random(h.shape) < p).astype(float)
    record = REGISTRY[activation]
    return record.reference(h, record.params(temperature=temperature))


def relax(W: np.ndarray, s0: np.ndarray, *, b: np.ndarray | None = None, steps: int = 1,
          update: str = "asynchronous", activation: str = "sign", leak: float | None = None,
          temperature: float = 1.0, seed: int = 0) -> np.ndarray:
    """Run ``steps`` update steps of ``s <- act(W s + b)`` and return every step.

    Synchronous: all units at once from the previous step's state. Asynchronous: one unit at a
    time, in an order drawn per step from ``numpy.random.default_rng(seed)`` and shared by the
    batch, each unit seeing the newest values (its field is kept up to date incrementally, so a
    step costs ``O(N^2)`` per changed probe, not ``O(N^2)`` per unit). With ``leak=a`` a unit
    becomes ``(1-a) s_i + a act(h_i)``. ``bernoulli`` units fire with ``p = sigmoid(h / T)``.

    Parameters
    ----------
    W : numpy.ndarray
        ``(N, N)`` weights; unit ``i`` reads row ``i``.
    s0 : numpy.ndarray
        ``(B, N)`` initial states.
    b : numpy.ndarray, optional
        ``(N,)`` biases.
    steps : int
        Full update steps to run.
    update : {"asynchronous", "synchronous"}
    activation : {"sign", "step", "tanh", "bernoulli"}
    leak : float, optional
        Leaky integration rate ``a`` in ``(0, 1]``.
    temperature : float
        Temperature of ``bernoulli`` units.
    seed : int
        Seeds the update orders and the stochastic units.

    Returns
    -------
    numpy.ndarray
        ``(steps, B, N)`` float64: the state after each step (``s0`` not included).
    """
    w = np.asarray(W, dtype=float)
    s = np.array(s0, dtype=float, ndmin=2)
    n = s.shape[1]
    bias = np.zeros(n) if b is None else np.asarray(b, dtype=float)
    if w.shape != (n, n) or bias.shape != (n,) or s.ndim != 2:
        raise ValueError(f"relax: W must be (N, N), s0 (B, N) and b (N,); got W {w.shape}, "
                         f"s0 {np.shape(s0)}, b {bias.shape}")
    if activation not in ACTIVATIONS or update not in ("synchronous", "asynchronous"):
        raise ValueError(f"relax: activation must be one of {', '.join(ACTIVATIONS)} and update "
                         f"synchronous or asynchronous; got {activation!r}, {update!r}")
    if leak is not None and not 0 < leak <= 1:
        raise ValueError(f"relax: leak must be in (0, 1]; got {leak!r}")
    rng = np.random.default_rng(seed)
    a = 1.0 if leak is None else float(leak)
    out = np.empty((steps, *s.shape))
    for t in range(steps):
        if update == "synchronous":
            new = _act(s @ w.T + bias, activation, temperature, rng)
            s = new if leak is None else (1 - a) * s + a * new
        else:
            field = s @ w.T + bias  # field[:, i] = sum_j W_ij s_j + b_i, kept current
            for i in rng.permutation(n):
                new = _act(field[:, i], activation, temperature, rng)
                new = new if leak is None else (1 - a) * s[:, i] + a * new
                delta = new - s[:, i]
                moved = np.flatnonzero(delta)
                if moved.size:
                    s[moved, i] = new[moved]
                    field[moved] += delta[moved, None] * w[:, i]
        out[t] = s
    return out


def modern_retrieve(X: np.ndarray, xi: np.ndarray, beta: float, steps: int = 1,
                    trajectory: bool = False) -> np.ndarray:
    """Modern Hopfield retrieval (Ramsauer et al. 2020): ``xi <- X softmax(beta X^T xi)``.

    Parameters
    ----------
    X : numpy.ndarray
        ``(d, P)`` stored patterns as columns (the spec's tied parameter ``X``).
    xi : numpy.ndarray
        ``(..., d)`` state patterns (queries).
    beta : float
        Inverse temperature.
    steps : int
        Number of updates.
    trajectory : bool
        Return every step, ``(steps, ..., d)``, as a compiled ``forward`` would.

    Returns
    -------
    numpy.ndarray
        The final ``(..., d)`` state, or the trajectory.
    """
    x, q = np.asarray(X, dtype=float), np.asarray(xi, dtype=float)
    if x.ndim != 2 or q.shape[-1:] != x.shape[:1]:
        raise ValueError(f"X must be (d, P) and xi (..., d); got X {x.shape}, xi {q.shape}")
    out = []
    for _ in range(steps):
        z = beta * (q @ x)
        p = np.exp(z - z.max(axis=-1, keepdims=True))
        q = (p / p.sum(axis=-1, keepdims=True)) @ x.T
        out.append(q)
    return np.stack(out) if trajectory else q


def modern_energy(X: np.ndarray, xi: np.ndarray, beta: float) -> np.ndarray:
    """Ramsauer et al.'s energy ``-lse(beta, X^T xi) + xi^T xi / 2 + log(P)/beta + M^2/2``.

    ``M`` is the largest stored-pattern norm; :func:`modern_retrieve` never increases it.

    Parameters
    ----------
    X : numpy.ndarray
        ``(d, P)`` stored patterns as columns.
    xi : numpy.ndarray
        ``(..., d)`` states.
    beta : float
        Inverse temperature.

    Returns
    -------
    numpy.ndarray
        Shape ``xi.shape[:-1]``.
    """
    x, q = np.asarray(X, dtype=float), np.asarray(xi, dtype=float)
    z = beta * (q @ x)
    zmax = z.max(axis=-1)
    lse = (zmax + np.log(np.exp(z - zmax[..., None]).sum(axis=-1))) / beta
    m = np.linalg.norm(x, axis=0).max()
    return -lse + 0.5 * np.sum(q * q, axis=-1) + np.log(x.shape[1]) / beta + 0.5 * m * m


def boltzmann_distribution(W: np.ndarray, b: np.ndarray | None = None,
                           T: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Exact Boltzmann distribution ``exp(-E(s)/T) / Z`` over all ``2^n`` 0/1 states.

    Parameters
    ----------
    W : numpy.ndarray
        ``(n, n)`` symmetric zero-diagonal weights, ``n <= 20``.
    b : numpy.ndarray, optional
        ``(n,)`` biases.
    T : float
        Temperature.

    Returns
    -------
    states : numpy.ndarray
        ``(2^n, n)`` of 0/1; row ``k`` has unit ``i`` equal to bit ``i`` of ``k``
        (see :func:`state_index`).
    probs : numpy.ndarray
        ``(2^n,)``, summing to 1.
    """
    shape = np.shape(W)
    n = shape[0] if len(shape) == 2 and shape[0] == shape[1] else 0
    if not 1 <= n <= 20 or not T > 0 or (b is not None and np.shape(b) != (n,)):
        raise ValueError(f"boltzmann_distribution needs W (n, n) with 1 <= n <= 20, b (n,) and "
                         f"T > 0; got W {shape}, b {np.shape(b)}, T={T}")
    states = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(float)
    w = np.asarray(W, dtype=float)
    bias = np.zeros(n) if b is None else np.asarray(b, dtype=float)
    z = (0.5 * np.sum((states @ w.T) * states, axis=1) + states @ bias) / T  # -E(s) / T
    p = np.exp(z - z.max())
    return states, p / p.sum()


def state_index(states: np.ndarray) -> np.ndarray:
    """Index of each 0/1 state ``(..., n)`` in :func:`boltzmann_distribution`'s ordering."""
    s = np.asarray(states) > 0.5
    return (s.astype(np.int64) << np.arange(s.shape[-1])).sum(axis=-1)
