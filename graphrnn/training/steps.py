"""One mini-batch of training: a full-sequence update or truncated-BPTT windows; scoring."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from graphrnn.backends import array_module
from graphrnn.errors import DivergenceError
from graphrnn.executor import Run
from graphrnn.training.buckets import BucketedSum, plan_buckets
from graphrnn.training.data import model_io
from graphrnn.training.distributed import FAILED, INTERRUPTED, LOSS, N_SLOTS
from graphrnn.training.losses import loss_and_grad
from graphrnn.training.optim import Optimizer, clip_global_norm, global_norm

__all__ = ["Stepper", "parse_tbptt"]


def _weight(mask, lo: int, hi: int, b: int, dtype=None) -> float:
    """The loss weight of steps ``lo..hi-1`` of ``b`` sequences (the mask's sum there)."""
    if mask is None:
        return float((hi - lo) * b)
    return float(mask[lo:hi].sum(dtype=dtype))


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

    def __init__(self, model, loss: str, tbptt, opt: Optimizer | None, clip, keys, dist=None):
        self.model, self.loss, self.tbptt, self.opt, self.clip = model, loss, tbptt, opt, clip
        self.dist = dist  # a graphrnn.training.distributed.Distributed, or None
        self.keys = keys  # trainable parameter names
        self.no_inputs = not model_io(model)[0]
        #: training-time noise: each gradient call draws its masks from its own seed
        self.noisy = bool(getattr(getattr(model, "net", None), "has_training_noise", False))
        self.noise_key, self.noise_calls = (0, 0, 0), 0
        self.rows = None  # (first row, size) of this rank's shard in the whole mini-batch
        self.packs = False  # this call passes lengths= (a packed call may sum several Runs)
        self._plan = None  # (program, keys, bucket bytes) -> its gradient buckets

    def start_batch(self, seed: int, epoch: int, step: int) -> None:
        """The next mini-batch's masks come from ``(seed, epoch, step)``: a run resumed from a
        checkpoint draws the same masks as one that never stopped."""
        self.noise_key, self.noise_calls = (seed, epoch, step), 0

    def _noise_seed(self) -> dict:
        """``seed=`` for a gradient call of a network with dropout or zoneout (fresh masks
        every mini-batch and window, from the training seed, epoch and step), else nothing."""
        if not self.noisy:
            return {}
        self.noise_calls += 1
        key = np.random.SeedSequence([*self.noise_key, self.noise_calls])
        return {"seed": int(key.generate_state(1)[0])}

    def _steps(self, steps: int) -> dict:
        """``steps=`` for a network without inputs (a Hopfield net), else nothing."""
        return {"steps": steps} if self.no_inputs else {}

    def _fwd(self, params, inputs, state, lo, hi, lengths=None):
        win = {k: v[lo:hi] for k, v in inputs.items()}
        kw = {} if lengths is None else {"lengths": lengths}
        return self.model.forward(params, win, state=state, **self._steps(hi - lo), **kw)

    def batch(self, params, inputs, targets, mask, whole=None,
              lengths=None) -> tuple[float, float]:
        """Update ``params`` in place (or just score, without ``opt``): (loss sum, weight).

        With ``dist`` (data-parallel), ``inputs``/``targets``/``mask`` are this rank's shard
        of a mini-batch and ``whole`` is ``(B, mask)`` of the whole mini-batch: each rank's
        gradient is its share of the mean over the whole one, summed over the ranks, and the
        returned sums are the whole mini-batch's. ``lengths`` ``(B,)``: each sequence's steps
        (the mask already skips the rest; whole-sequence passes also run by them, so
        anti-causal loops start at each sequence's end; truncated-BPTT windows of a causal
        network need only the mask).
        """
        kw = {} if lengths is None or self.tbptt is not None else {"lengths": lengths}
        t = next(iter(targets.values())).shape[0]
        b = next(iter(targets.values())).shape[1]
        if self.opt is None:
            return self._score(params, inputs, targets, mask, t, kw.get("lengths"))
        whole_b, whole_mask = whole if whole is not None else (b, mask)
        if self.dist is not None:  # this shard's rows of the whole mini-batch's noise masks
            self.rows = (self.dist.shard_offset(whole_b), whole_b)
            self.packs = "lengths" in kw
        if self.tbptt is None:
            w_all = _weight(whole_mask, 0, t, whole_b)
            if w_all == 0:  # nothing to learn from this mini-batch: no step at all
                return 0.0, 0.0
            if self.dist is None:
                loss, grads = self.model.gradients(params, inputs, targets, loss=self.loss,
                                                   mask=mask, **self._steps(t), **kw,
                                                   **self._noise_seed())
                self._apply(params, loss, grads, "")
                return loss * w_all, w_all
            w = _weight(mask, 0, t, b)
            noise = self._noise_seed()
            loss, grads, _ = self._sum(params, w, w_all, "", lambda: self.model.gradients(
                params, inputs, targets, loss=self.loss, mask=mask, **self._steps(t), **kw,
                **noise))
            self._apply(params, loss, grads, "")
            return loss * w_all, w_all
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
            w_all = w if self.dist is None else _weight(whole_mask, prev_end, end, whole_b, float)
            final = None
            where = f" (window of steps {lo}..{end - 1})"

            noise = self._noise_seed()

            def window(lo=lo, end=end, win_mask=win_mask, state=state, noise=noise):
                win_in = {k: v[lo:end] for k, v in inputs.items()}
                win_t = {k: v[lo:end] for k, v in targets.items()}
                return self.model.gradients(
                    params, win_in, win_t, loss=self.loss, state=state, mask=win_mask,
                    return_state=True, **self._steps(end - lo), **noise)
            if self.dist is None and w > 0:
                loss, grads, final = window()
                total, weight = total + loss * w, weight + w
            elif self.dist is not None and w_all > 0:
                loss, grads, final = self._sum(params, w, w_all, where, window)
                total, weight = total + loss * w_all, weight + w_all
            if j + 1 < len(ends):  # the state at the next window's start, before this update
                if nxt_lo == end and final is not None:
                    state = _causal(final)
                elif nxt_lo > lo and b > 0:
                    state = _causal(self._fwd(params, inputs, state, lo, nxt_lo)[1])
            if w_all > 0:
                self._apply(params, loss, grads, where)
            prev_end, lo = end, nxt_lo
        return total, weight

    def _sum(self, params, w: float, w_all: float, where: str, compute: Callable):
        """This rank's ``compute()`` (loss, grads[, final]) over a shard of weight ``w``,
        summed over the ranks as shares of a mean over weight ``w_all``: the whole batch's
        (loss, grads[, this rank's final state]). A rank that raised makes every rank raise."""
        keys = [k for k in params if k in self.keys]
        failure, interrupted, loss_w, local, final = None, 0.0, 0.0, None, None
        scale = w / w_all
        xp = array_module(params[keys[0]]) if keys else np
        sizes = [int(np.prod(params[k].shape)) for k in keys]
        summer = self._buckets(keys, sizes, scale, where) if xp is np else None
        if w > 0:
            try:
                if self.noisy:
                    self.model.mask_rows = self.rows
                if summer is not None and self._overlaps:
                    Run.stage_grads_done = summer.stage_done
                out = compute()
                local, loss_w = out[1], out[0] * w
                final = out[2] if len(out) > 2 else None
            except KeyboardInterrupt:
                interrupted = 1.0
            except Exception as exc:  # noqa: BLE001 - raised on every rank after the sum
                failure = exc
            finally:
                Run.stage_grads_done = None
                if self.noisy:
                    self.model.mask_rows = None
        slots = [loss_w, w, float(failure is not None), interrupted]
        if summer is not None:  # buckets started during BPTT where it could, the rest now
            if local is not None and failure is None:
                failure = summer.check_early(local)
                slots[FAILED] = float(failure is not None)
            flat = summer.finish(local, slots)
            spans, sums = summer.offsets(), flat[-N_SLOTS:]
        else:  # pragma: no cover - CuPy: gradients stay on the device (NCCL)
            flat = xp.zeros(sum(sizes), dtype=params[keys[0]].dtype)
            if local is not None:
                flat[...] = xp.concatenate([xp.ravel(local[k]) * scale for k in keys])
            flat = self.dist.sum_gradients(flat, f"the gradient all-reduce{where}")
            sums = self.dist.sum_host(np.array(slots), f"the loss all-reduce{where}")
            ends = np.cumsum([0, *sizes])
            spans = {k: (int(ends[i]), int(ends[i + 1])) for i, k in enumerate(keys)}
        sums = [float(v) for v in sums]
        self.dist.raise_failures(failure, sums[FAILED], where)
        if sums[INTERRUPTED] > 0:
            raise KeyboardInterrupt
        grads = {k: flat[slice(*spans[k])].reshape(params[k].shape).astype(params[k].dtype,
                                                                           copy=False)
                 for k in keys}
        return sums[LOSS] / w_all, grads, final

    @property
    def _overlaps(self) -> bool:
        """Whether this call's BPTT may start the buckets: one Run of the model's program
        gives the gradients as they are (not a packed call's chunks summed, nor a training
        network's renamed, weight-dropped ones)."""
        return not self.noisy and not self.packs and hasattr(self.model, "program")

    def _buckets(self, keys, sizes, scale: float, where: str):
        """This step's :class:`~graphrnn.training.buckets.BucketedSum` (NumPy gradients)."""
        program = getattr(self.model, "program", None)
        plan_key = (id(program), tuple(keys), self.dist.bucket_bytes)
        if self._plan is None or self._plan[0] != plan_key:
            stages = program.stages if program is not None and self._overlaps else []
            self._plan = plan_key, plan_buckets(stages, keys, sizes, self.dist.bucket_bytes)
        return BucketedSum(self.dist, program, self._plan[1], dict(zip(keys, sizes, strict=True)),
                           scale, f"the gradient all-reduce{where}")

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

    def _score(self, params, inputs, targets, mask, t, lengths=None) -> tuple[float, float]:
        k = self.tbptt[0] if self.tbptt else t
        state, total = None, 0.0
        b = next(iter(targets.values())).shape[1]
        weight = float(mask.sum()) if mask is not None else float(t * b)
        for lo in range(0, t, k):
            hi = min(t, lo + k)
            outputs, state = self._fwd(params, inputs, state, lo, hi, lengths)
            m = None if mask is None else mask[lo:hi]
            w = float(m.sum()) if m is not None else float((hi - lo) * b)
            if w == 0:
                continue
            for name, target in targets.items():
                y = np.asarray(outputs[name], dtype=np.float64)
                total += loss_and_grad(self.loss, y, target[lo:hi], m)[0] * w
        return total, weight


def _causal(state: dict) -> dict:
    """The keys that carry forward in time: a window's boundary after its end (``NODE@+k``,
    read through negative delays) is the next window's start, not carried (zeros)."""
    return {k: v for k, v in state.items() if "@+" not in k}
