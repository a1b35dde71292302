"""One mini-batch of training: a full-sequence update or truncated-BPTT windows; scoring."""

from __future__ import annotations

import math

import numpy as np

from graphrnn.errors import DivergenceError
from graphrnn.training.data import model_io
from graphrnn.training.losses import loss_and_grad
from graphrnn.training.optim import Optimizer, clip_global_norm, global_norm

__all__ = ["Stepper", "parse_tbptt"]


def parse_tbptt(tbptt) -> tuple[int, int] | None:
    """``None``, ``k`` or ``(k1, k2)`` with ``1 <= k1 <= k2`` -> ``(k1, k2)`` or None."""
    if tbptt is None:
        return None
    k1, k2 = (tbptt, tbptt) if isinstance(tbptt, int | np.integer) else tuple(tbptt)
    if not (int(k1) == k1 and int(k2) == k2 and 1 <= k1 <= k2):
        raise ValueError(f"tbptt={tbptt!r}: need 1 <= k1 <= k2 (updates every k1 steps, "
                         "backpropagating k2 steps; k1 > k2 is not supported)")
    return int(k1), int(k2)


class Stepper:
    """Runs one mini-batch: a full-sequence update, or truncated-BPTT windows."""

    def __init__(self, model, loss: str, tbptt, opt: Optimizer | None, clip, keys):
        self.model, self.loss, self.tbptt, self.opt, self.clip = model, loss, tbptt, opt, clip
        self.keys = keys  # trainable parameter names
        self.no_inputs = not model_io(model)[0]
        #: training-time noise: each gradient call draws its masks from the next seed
        self.noisy = bool(getattr(getattr(model, "net", None), "has_training_noise", False))
        self.noise_calls = 0

    def _noise_seed(self) -> dict:
        """``seed=`` for a gradient call of a network with dropout or zoneout (fresh masks
        every mini-batch and window, the same sequence in every run), else nothing."""
        if not self.noisy:
            return {}
        self.noise_calls += 1
        return {"seed": self.noise_calls}

    def _steps(self, steps: int) -> dict:
        """``steps=`` for a network without inputs (a Hopfield net), else nothing."""
        return {"steps": steps} if self.no_inputs else {}

    def _fwd(self, params, inputs, state, lo, hi):
        win = {k: v[lo:hi] for k, v in inputs.items()}
        return self.model.forward(params, win, state=state, **self._steps(hi - lo))

    def batch(self, params, inputs, targets, mask) -> tuple[float, float]:
        """Update ``params`` in place (or just score, without ``opt``): (loss sum, weight)."""
        t = next(iter(targets.values())).shape[0]
        b = next(iter(targets.values())).shape[1]
        if self.opt is None:
            return self._score(params, inputs, targets, mask, t)
        if self.tbptt is None:
            w = float(mask.sum()) if mask is not None else float(t * b)
            if w == 0:  # nothing to learn from this mini-batch: no step at all
                return 0.0, 0.0
            loss, grads = self.model.gradients(params, inputs, targets, loss=self.loss,
                                               mask=mask, **self._steps(t),
                                               **self._noise_seed())
            self._apply(params, loss, grads, "")
            return loss * w, w
        k1, k2 = self.tbptt
        state, total, weight, prev_end = None, 0.0, 0.0, 0
        ends = list(range(k1, t, k1)) + [t]
        lo = 0
        for j, end in enumerate(ends):
            need_mask = mask is not None or lo < prev_end
            win_mask = None
            if need_mask:
                win_mask = np.ones((end - lo, b)) if mask is None else mask[lo:end].astype(float)
                win_mask[:prev_end - lo] = 0
            nxt_lo = max(0, end - (k2 - k1))
            w = float(win_mask.sum()) if need_mask else float((end - lo) * b)
            final = None
            if w > 0:
                win_in = {k: v[lo:end] for k, v in inputs.items()}
                win_t = {k: v[lo:end] for k, v in targets.items()}
                loss, grads, final = self.model.gradients(
                    params, win_in, win_t, loss=self.loss, state=state, mask=win_mask,
                    return_state=True, **self._steps(end - lo), **self._noise_seed())
                total, weight = total + loss * w, weight + w
            if j + 1 < len(ends):  # the state at the next window's start, before this update
                if nxt_lo == end and final is not None:
                    state = final
                elif nxt_lo > lo:
                    state = self._fwd(params, inputs, state, lo, nxt_lo)[1]
            if w > 0:
                self._apply(params, loss, grads, f" (window of steps {lo}..{end - 1})")
            prev_end, lo = end, nxt_lo
        return total, weight

    def _apply(self, params, loss, grads, where: str) -> None:
        if not math.isfinite(loss):
            raise DivergenceError(f"the loss is {loss}{where}")
        g = {k: v for k, v in grads.items() if k in params and k in self.keys}
        norm = clip_global_norm(g, self.clip) if self.clip else global_norm(g)
        if not math.isfinite(norm):
            raise DivergenceError(f"the gradient norm is {norm}{where}")
        self.opt.step(params, g)
        for k in g:  # an update can overflow with a finite gradient (a huge learning rate)
            if not bool(np.isfinite(params[k]).all()):
                raise DivergenceError(f"the update made parameter {k!r} NaN or inf{where}")

    def _score(self, params, inputs, targets, mask, t) -> tuple[float, float]:
        k = self.tbptt[0] if self.tbptt else t
        state, total = None, 0.0
        b = next(iter(targets.values())).shape[1]
        weight = float(mask.sum()) if mask is not None else float(t * b)
        for lo in range(0, t, k):
            hi = min(t, lo + k)
            outputs, state = self._fwd(params, inputs, state, lo, hi)
            m = None if mask is None else mask[lo:hi]
            w = float(m.sum()) if m is not None else float((hi - lo) * b)
            if w == 0:
                continue
            for name, target in targets.items():
                y = np.asarray(outputs[name], dtype=np.float64)
                total += loss_and_grad(self.loss, y, target[lo:hi], m)[0] * w
        return total, weight
