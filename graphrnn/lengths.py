"""Sequences of different lengths in one batch: steps past each sequence's end, exactly.

A Run with ``lengths`` computes every step of every row (padding included) and makes the
padding invisible: outputs past the end are zeroed, causal final states are read at each row's
own last step, and a future read (``NODE@+k``) of sequence b at its last steps finds the
boundary state ``NODE@+k`` of b: before step ``lengths[b] - 1`` is computed, row
``lengths[b] + k - 1`` of the buffer (for b only) is overwritten with that boundary value
(:meth:`LengthPlan.place`). An anti-causal loop therefore runs in segments between distinct
lengths, placing the boundaries of the rows whose sequence starts there. Backward, the
gradient arriving at a placed row is the boundary's gradient: it is taken out (and the row's
gradient zeroed) before the padding step behind it is backpropagated (:meth:`LengthPlan.take`),
so no gradient leaks through steps past the end.

A batch sorted by decreasing length (as :mod:`graphrnn.packed` runs it) has, at step t, the
sequences still going in its first ``rows[t]`` rows (:attr:`LengthPlan.rows`): a compiled
loop then computes just those (``graphrnn/backends/host_loop.py``), in one call whatever the
direction: the rows past each end are never written, so each boundary is placed once before
the call and taken once after it, and the padding the loop left alone is zeroed
(:meth:`LengthPlan.zero_padding`) so that what reads it sees zeros.
"""

from __future__ import annotations

import numpy as np

from graphrnn.errors import DataError


def check_lengths(lengths, steps: int, batch: int) -> np.ndarray:
    """``lengths`` as an integer array ``(B,)`` with values in ``1..T``, or one clear error."""
    a = np.asarray(lengths)
    if a.shape != (batch,):
        raise DataError(f"lengths has shape {a.shape}, expected ({batch},): one length per "
                        "sequence of the batch")
    if a.size and not np.issubdtype(a.dtype, np.integer):
        if not (np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a))
                and np.all(a == np.round(a))):
            raise DataError(f"lengths must be integers, got dtype {a.dtype}")
    a = a.astype(np.intp)
    bad = np.flatnonzero((a < 1) | (a > steps))
    if bad.size:
        b = int(bad[0])
        raise DataError(f"lengths[{b}] = {a[b]} is outside 1..{steps} (the number of steps)")
    return a


def valid_mask(lengths: np.ndarray, steps: int) -> np.ndarray:
    """``(T, B)``: 1.0 where step t exists for sequence b (``t < lengths[b]``), else 0.0."""
    return (np.arange(steps)[:, None] < lengths[None, :]).astype(np.float64)


class LengthPlan:
    """What a Run with ``lengths`` does beyond the plain steps (see the module docstring).

    ``future``: buffer name -> the steps it is read ahead (the ``NODE@+k`` boundaries it has);
    ``values``: ``(name, k)`` -> the boundary value ``(B, size)`` placed at row
    ``lengths[b] + k - 1`` of row b; ``grads``: the same keys -> the boundary gradients taken.
    """

    def __init__(self, run, lengths: np.ndarray, future: dict[str, int]):
        self.run, self.lengths = run, lengths
        self.future = {name: k for name, k in future.items() if k > 0}
        #: length -> the rows of the sequences of that length (an index array of the backend)
        self.groups = {int(n): run.xp.asarray(np.flatnonzero(lengths == n))
                       for n in np.unique(lengths)}
        self.values: dict[tuple[str, int], object] = {}
        self.grads: dict[tuple[str, int], object] = {}
        steps = run.steps
        #: per step, how many rows are going (``(T,)`` C ints) where the rows are sorted by
        #: decreasing length, so that those are rows ``[0, rows[t])``; else None
        self.rows = None
        if steps and np.all(lengths[:-1] >= lengths[1:]):
            self.rows = np.ascontiguousarray(
                (lengths[None, :] > np.arange(steps)[:, None]).sum(axis=1), dtype=np.intc)
        self._padding = None
        self._going = None

    def set_values(self) -> None:
        """Keep the boundary rows the caller filled (rows ``T + k - 1``), before a pass
        overwrites the rows where they go."""
        run = self.run
        for name, depth in self.future.items():
            for k in range(1, depth + 1):
                self.values[(name, k)] = run.rows(name, run.steps + k - 1, run.steps + k).copy()[0]

    def place(self, names, length: int | None = None) -> None:
        """Write the boundary values of buffers ``names`` at each row's end (of the rows of
        sequences of ``length`` only, or of all)."""
        run = self.run
        for name in names:
            for k in range(1, self.future.get(name, 0) + 1):
                for n, rows in self._groups(length):
                    run.rows(name, n + k - 1, n + k)[0][rows] = self.values[(name, k)][rows]

    def take(self, names, length: int | None = None) -> None:
        """Take the gradients at the placed rows of ``names`` as the boundaries' gradients
        (summed into :attr:`grads`) and zero them there."""
        run, xp = self.run, self.run.xp
        for name in names:
            if name not in run.grads_wanted:
                continue
            for k in range(1, self.future.get(name, 0) + 1):
                g = self.grads.get((name, k))
                if g is None:
                    g = self.grads[(name, k)] = xp.zeros((run.batch, run.size(name)),
                                                         dtype=run.dtype)
                for n, rows in self._groups(length):
                    row = run.rows(name, n + k - 1, n + k, grad=True)[0]
                    g[rows] += row[rows]
                    row[rows] = 0

    def zero_padding(self, names, lo: int, hi: int, grad: bool = False) -> None:
        """Zero steps ``[lo, hi)`` of buffers ``names`` (or of their gradients) past each
        row's end: what a loop computing only the going rows (:attr:`rows`) left alone."""
        table = self.run.grads if grad else self.run.arrays
        self.zero_steps([self.run.rows(name, lo, hi, grad=grad) for name in names
                         if name in table], lo, hi)

    def zero_steps(self, arrays, lo: int, hi: int) -> None:
        """Zero the rows past each end of ``arrays``, steps ``[lo, hi)`` each
        (``(hi - lo, B, ...)``)."""
        if self._padding is None:
            self._padding = self.run.xp.asarray(
                np.arange(self.run.steps)[:, None] >= self.lengths[None, :])
        pad = self._padding[lo:hi]
        for a in arrays:
            a[pad] = 0

    def going(self, lo: int, hi: int):
        """The going rows of steps ``[lo, hi)`` as indices into their ``(hi - lo) * B`` rows
        flattened time-major (what a packed sequence holds, in its order); None where every
        row goes. Those of all steps are kept."""
        if (lo, hi) == (0, self.run.steps) and self._going is not None:
            return self._going[0]
        flat = np.flatnonzero(np.arange(lo, hi)[:, None] < self.lengths[None, :])
        index = None if flat.size == (hi - lo) * self.lengths.size else self.run.xp.asarray(flat)
        if (lo, hi) == (0, self.run.steps):
            self._going = (index,)
        return index

    def _groups(self, length):
        return self.groups.items() if length is None else [(length, self.groups[length])]

    def segments(self, steps: int, reverse: bool):
        """``(lo, hi, length)`` ranges of an anti-causal loop between distinct lengths: run
        ``[lo, hi)`` (forward: from ``hi - 1`` down; backward: up), then (forward) or before
        (backward) place / take the boundaries of the sequences of ``length`` (None: none)."""
        cuts = sorted(self.groups, reverse=True)
        out, hi = [], steps
        for n in cuts:
            out.append((n, hi, n))
            hi = n
        out.append((0, hi, None))
        return out if reverse else out[::-1]
