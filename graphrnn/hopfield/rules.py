"""Hopfield storage rules: patterns of ±1 to the symmetric zero-diagonal weights ``W``."""

from __future__ import annotations

import numpy as np


def check_patterns(patterns: np.ndarray) -> np.ndarray:
    """``patterns`` as a float ``(P, N)`` array of ±1 (one ``(N,)`` pattern becomes one row)."""
    x = np.asarray(patterns, dtype=float)
    x = x[None] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 2 or not np.all(np.abs(x) == 1):
        raise ValueError(f"patterns must be a (P, N) array of +1/-1 values with N >= 2; got "
                         f"shape {np.shape(patterns)}" + ("" if x.ndim != 2 or np.all(
                             np.abs(x) == 1) else " with values other than +1/-1"))
    return x


def hebbian(patterns: np.ndarray) -> np.ndarray:
    """Hebb's rule: ``W = (1/N) sum_mu xi_mu xi_mu^T`` with a zero diagonal.

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(P, N)`` array of ±1, one pattern a row (a single ``(N,)`` pattern is accepted).

    Returns
    -------
    numpy.ndarray
        ``(N, N)`` float64, symmetric, zero diagonal: the spec's parameter ``W``.
    """
    x = check_patterns(patterns)
    w = x.T @ x / x.shape[1]
    np.fill_diagonal(w, 0.0)
    return w


def storkey(patterns: np.ndarray) -> np.ndarray:
    """Storkey's (1997) incremental rule, one vectorised update per pattern.

    ``w_ij += (xi_i xi_j - xi_i h_ji - h_ij xi_j) / N`` with the local field
    ``h_ij = sum_{k != i, j} w_ik xi_k``; the diagonal stays zero. It stores more patterns than
    Hebb's rule (about ``N / sqrt(2 ln N)``) and copes better with correlated ones.

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(P, N)`` array of ±1.

    Returns
    -------
    numpy.ndarray
        ``(N, N)`` float64, symmetric, zero diagonal.
    """
    x = check_patterns(patterns)
    n = x.shape[1]
    w = np.zeros((n, n))
    for xi in x:
        h = w @ xi  # h_i = sum_k w_ik xi_k (w_ii = 0), so h_ij = h_i - w_ij xi_j
        hij = h[:, None] - w * xi[None, :]
        w = w + (np.outer(xi, xi) - xi[:, None] * hij.T - hij * xi[None, :]) / n
        np.fill_diagonal(w, 0.0)
    return (w + w.T) / 2  # exact symmetry against rounding


def pseudo_inverse(patterns: np.ndarray) -> np.ndarray:
    """The projection (pseudo-inverse) rule: ``W = X (X^T X)^+ X^T`` with a zero diagonal.

    ``X`` is ``(N, P)`` with the patterns as columns, so ``X X^+`` projects onto their span and
    every linearly independent pattern satisfies ``W xi = xi``. Zeroing the diagonal scales
    unit ``i``'s field by ``1 - w_ii`` (``w_ii`` averages ``P/N``), which keeps the sign, so
    every pattern stays a fixed point while ``P < N`` and all ``w_ii < 1``, correlated or not.

    Parameters
    ----------
    patterns : numpy.ndarray
        ``(P, N)`` array of ±1.

    Returns
    -------
    numpy.ndarray
        ``(N, N)`` float64, symmetric, zero diagonal.
    """
    x = check_patterns(patterns).T
    w = x @ np.linalg.pinv(x.T @ x, hermitian=True) @ x.T
    w = (w + w.T) / 2
    np.fill_diagonal(w, 0.0)
    return w
