"""Training loop: mini-batches, validation, early stopping, truncated BPTT, checkpoints."""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from graphrnn.errors import DataError
from graphrnn.training.io import (
    CheckpointError,
    Progress,
    check_data,
    load_checkpoint,
    load_data,
    model_io,
    plot_history,
    save_checkpoint,
)
from graphrnn.training.losses import loss_and_grad
from graphrnn.training.optim import Optimizer, clip_global_norm, global_norm, make_optimizer

__all__ = ["CheckpointError", "NonFiniteLossError", "TrainResult", "check_data", "load_data",
           "model_io", "parse_tbptt", "plot_history", "train"]


_NONFINITE = re.compile(r"\b(nan|inf|-inf)\b", re.IGNORECASE)


class NonFiniteLossError(ValueError):
    """The loss (or the gradient norm) became NaN or infinite; names the epoch and step."""

    def __init__(self, message: str, epoch: int, step: int):
        self.epoch, self.step = epoch, step
        super().__init__(message)


@dataclass
class TrainResult:
    """What :func:`train` returns.

    Attributes
    ----------
    params : dict
        The trained parameters (the best epoch's when ``restore_best`` and a metric improved).
    history : list of dict
        Per epoch: ``epoch``, ``train_loss``, ``val_loss`` (None without validation),
        ``seqs_per_s``, ``seconds``.
    best_epoch : int or None
        1-based epoch with the lowest monitored loss (validation loss, else training loss).
    stopped_reason : str
        ``"completed"``, ``"early_stopping"`` or ``"interrupted"``.
    checkpoint : Path or None
    """

    params: dict
    history: list = field(default_factory=list)
    best_epoch: int | None = None
    stopped_reason: str = "completed"
    checkpoint: Path | None = None


def parse_tbptt(tbptt) -> tuple[int, int] | None:
    """``None``, ``k`` or ``(k1, k2)`` with ``1 <= k1 <= k2`` -> ``(k1, k2)`` or None."""
    if tbptt is None:
        return None
    k1, k2 = (tbptt, tbptt) if isinstance(tbptt, int | np.integer) else tuple(tbptt)
    if not (int(k1) == k1 and int(k2) == k2 and 1 <= k1 <= k2):
        raise ValueError(f"tbptt={tbptt!r}: need 1 <= k1 <= k2 (updates every k1 steps, "
                         "backpropagating k2 steps; k1 > k2 is not supported)")
    return int(k1), int(k2)


class _Stepper:
    """Runs one mini-batch: a full-sequence update, or truncated-BPTT windows."""

    def __init__(self, model, loss: str, tbptt, opt: Optimizer | None, clip, keys):
        self.model, self.loss, self.tbptt, self.opt, self.clip = model, loss, tbptt, opt, clip
        self.keys = keys  # trainable parameter names
        self.no_inputs = not model_io(model)[0]

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
                                               mask=mask, **self._steps(t))
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
                    return_state=True, **self._steps(end - lo))
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
            raise NonFiniteLossError(f"the loss is {loss}{where}", 0, 0)
        g = {k: v for k, v in grads.items() if k in params and k in self.keys}
        norm = clip_global_norm(g, self.clip) if self.clip else global_norm(g)
        if not math.isfinite(norm):
            raise NonFiniteLossError(f"the gradient norm is {norm}{where}", 0, 0)
        self.opt.step(params, g)

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


def train(model, params: Mapping[str, Any], data, *, targets: list[str] | None = None,
          loss: str = "mse", optimizer: str | Optimizer = "adam", lr: float = 1e-3,
          optimizer_kw: Mapping[str, Any] | None = None, epochs: int = 10,
          batch_size: int = 32, clip: float | None = None, val_fraction: float = 0.1,
          patience: int | None = None, checkpoint: str | os.PathLike | None = None,
          resume: bool = False, progress: bool = True, seed: int = 0, tbptt=None,
          mask_key: str = "mask", restore_best: bool = True, bucket: bool = False
          ) -> TrainResult:
    """Train ``params`` of a compiled model on time-major sequences.

    Parameters
    ----------
    model : Model
        From :func:`graphrnn.compile`.
    params : dict
        Initial parameters (not modified; training works on a copy).
    data : dict of str to array, or path to an ``.npz`` file
        See :func:`check_data`. Mini-batches are drawn along the batch axis (axis 1).
    targets : list of str, optional
        Outputs to train; default every output with an array in ``data``.
    loss : {"mse", "cross_entropy"}
    optimizer : {"adam", "sgd"} or Optimizer
        An instance is used as is (``lr``/``optimizer_kw`` are then ignored).
    lr : float
    optimizer_kw : dict, optional
        E.g. ``{"momentum": 0.9, "nesterov": True}``, ``{"weight_decay": 1e-4}``.
    epochs : int
        Total number of epochs (a resumed run counts the epochs already done).
    batch_size : int
    clip : float, optional
        Clip the global gradient norm to this.
    val_fraction : float
        Fraction of sequences (chosen with ``seed``) held out for validation; 0 for none.
    patience : int, optional
        Stop after this many epochs without a lower validation (else training) loss.
    checkpoint : path, optional
        Written atomically after every epoch and on Ctrl-C (KeyboardInterrupt).
    resume : bool
        Continue from ``checkpoint`` when it exists (same data, seed, batch size). An epoch-end
        checkpoint resumes exactly, and so does a Ctrl-C one: it records the finished
        mini-batches of the epoch, and the interrupted one is redone (with ``tbptt``, the
        windows of that mini-batch already applied stay applied, so that case is not exact).
    progress : bool
        A tqdm bar when tqdm is installed, else one refreshed line on stderr.
    seed : int
        Seeds the validation split and the per-epoch shuffles.
    tbptt : int or (int, int), optional
        Truncated BPTT(k2; k1) (Williams & Peng 1990): every ``k1`` steps, backpropagate the
        last ``k2`` steps, carrying the state across windows; the loss of each step counts
        once. ``k`` means ``(k, k)`` (disjoint chunks). Supported: ``1 <= k1 <= k2``; for
        ``k1 < k2`` windows overlap and each costs an extra forward of ``k1`` steps.
    mask_key : str
        Name of the optional per-step mask ``(T, B)`` in ``data``.
    restore_best : bool
        Return the best epoch's parameters rather than the last.
    bucket : bool
        Mini-batches of sequences of similar length (by the mask: a sequence ends at its last
        step with a non-zero mask): sorted by length, ties broken at random each epoch, cut into
        mini-batches that run in shuffled order. Needs a mask. Every mini-batch, bucketed or
        not, runs only up to its longest sequence's end (exact: steps after it carry no loss),
        so bucketing saves the padding's time.

    Returns
    -------
    TrainResult

    Raises
    ------
    DataError
        Data that does not fit the model (one line).
    NonFiniteLossError
        The loss or gradient became NaN/inf; the epoch and step are named and the last
        checkpoint is left as it was.
    CheckpointError
        A checkpoint that does not fit this model or run.
    """
    if isinstance(data, str | os.PathLike):
        data = load_data(data)
    inputs, tgts, mask, _, n_seq = check_data(model, data, loss, targets, mask_key)
    if not (isinstance(batch_size, int) and batch_size >= 1):
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if clip is not None and not clip > 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    k = parse_tbptt(tbptt)
    n_val = int(round(n_seq * val_fraction))
    if val_fraction > 0:
        n_val = max(1, n_val)
        if n_val >= n_seq:
            raise DataError(f"{n_seq} sequence(s) are too few for a validation split of "
                            f"{val_fraction}; use more data or val_fraction=0")
    ends = None if mask is None else _sequence_ends(mask)
    if bucket and ends is None:
        raise DataError(f"bucket=True needs a mask ({mask_key!r}) saying where each "
                        "sequence ends")
    _, _, trainable = model_io(model)
    params = {k_: v.copy() for k_, v in params.items()}
    keys = frozenset(params) if trainable is None else trainable
    opt = optimizer if isinstance(optimizer, Optimizer) else make_optimizer(
        optimizer, lr, trainable=keys, **dict(optimizer_kw or {}))
    split = np.random.default_rng(seed).permutation(n_seq)
    val_idx, train_idx = np.sort(split[:n_val]), split[n_val:]
    stepper = _Stepper(model, loss, k, opt, clip, keys)
    scorer = _Stepper(model, loss, k, None, clip, keys)
    config = {"seed": seed, "batch_size": batch_size, "n_train": len(train_idx),
              "n_val": n_val, "tbptt": list(k) if k else None, "loss": loss,
              "bucket": bool(bucket)}
    run = {"epoch": 0, "step": 0, "sums": [0.0, 0.0, 0, 0.0], "history": [],
           "best_epoch": None, "best_loss": None, "stale": 0, "stopped_reason": None}
    best: dict | None = None
    path = Path(checkpoint) if checkpoint is not None else None
    if resume and path is not None and path.exists():
        run, best = load_checkpoint(path, params, opt, config)
    n_batches = math.ceil(len(train_idx) / batch_size)
    bar = Progress(progress, epochs, n_batches)

    def take(arrays, idx):
        """The sequences ``idx``, up to the end of the longest (the rest carries no loss)."""
        t = arrays_steps if ends is None else max(1, int(ends[idx].max()))
        return {k_: v[:t, idx] for k_, v in arrays.items()}

    arrays_steps = next(iter(tgts.values())).shape[0]
    masks = {} if mask is None else {"mask": mask}

    def save():
        if path is not None:
            save_checkpoint(path, params, opt, run, best, config)

    try:
        while run["stopped_reason"] is None and run["epoch"] < epochs:
            epoch = run["epoch"]
            batches = _batches(train_idx, batch_size, np.random.default_rng([seed, epoch]),
                               ends if bucket else None)
            bar.start(epoch + 1, run["step"])
            while run["step"] < n_batches:
                s = run["step"]
                idx = batches[s]
                t0 = time.perf_counter()
                try:
                    total, weight = stepper.batch(params, take(inputs, idx), take(tgts, idx),
                                                  take(masks, idx).get("mask"))
                except NonFiniteLossError as exc:
                    raise _diverged(exc, epoch + 1, s + 1, path) from None
                except DataError as exc:
                    if _NONFINITE.search(str(exc)):
                        raise _diverged(exc, epoch + 1, s + 1, path) from None
                    raise
                sums = run["sums"]
                sums[0] += total
                sums[1] += weight
                sums[2] += len(idx)
                sums[3] += time.perf_counter() - t0
                run["step"] = s + 1
                bar.update(run["step"], sums[0] / max(sums[1], 1e-300),
                           sums[2] / max(sums[3], 1e-9))
            _end_epoch(run, scorer, params, inputs, tgts, masks, val_idx, batch_size, take,
                       patience)
            if run["best_epoch"] == epoch + 1 and (restore_best or path is not None):
                best = _copy_into(best, params)
            bar.end(run["history"][-1])
            save()
    except KeyboardInterrupt:
        bar.close()
        save()
        run["stopped_reason"] = "interrupted"
    finally:
        bar.close()
    result = best if restore_best and best is not None else params
    return TrainResult(result, run["history"], run["best_epoch"],
                       run["stopped_reason"] or "completed", path)


def _end_epoch(run, scorer, params, inputs, tgts, masks, val_idx, batch_size, take, patience):
    sums = run["sums"]
    val = None
    if len(val_idx):
        total = weight = 0.0
        for lo in range(0, len(val_idx), batch_size):
            idx = val_idx[lo:lo + batch_size]
            t, w = scorer.batch(params, take(inputs, idx), take(tgts, idx),
                                take(masks, idx).get("mask"))
            total, weight = total + t, weight + w
        val = total / weight if weight else None
    epoch = run["epoch"] + 1
    train_loss = sums[0] / sums[1] if sums[1] else float("nan")
    run["history"].append({"epoch": epoch, "train_loss": train_loss, "val_loss": val,
                           "seqs_per_s": sums[2] / sums[3] if sums[3] else None,
                           "seconds": sums[3]})
    monitor = val if val is not None else train_loss
    if run["best_loss"] is None or monitor < run["best_loss"]:
        run["best_loss"], run["best_epoch"], run["stale"] = monitor, epoch, 0
    else:
        run["stale"] += 1
        if patience is not None and run["stale"] >= patience:
            run["stopped_reason"] = "early_stopping"
    run["epoch"], run["step"], run["sums"] = epoch, 0, [0.0, 0.0, 0, 0.0]


def _sequence_ends(mask: np.ndarray) -> np.ndarray:
    """Per sequence (axis 1), one past its last step with a non-zero mask (0: none)."""
    live = np.asarray(mask) != 0
    last = live.shape[0] - np.argmax(live[::-1], axis=0)
    return np.where(live.any(axis=0), last, 0)


def _batches(train_idx, batch_size: int, rng, ends) -> list:
    """An epoch's mini-batches: a random permutation cut in pieces, or (with ``ends``) the
    sequences sorted by length, ties at random, cut in pieces that run in random order."""
    if ends is None:
        order = train_idx[rng.permutation(len(train_idx))]
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    order = train_idx[np.argsort(ends[train_idx] + rng.random(len(train_idx)), kind="stable")]
    pieces = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [pieces[j] for j in rng.permutation(len(pieces))]


def _copy_into(best: dict | None, params: dict) -> dict:
    if best is None:
        return {k: v.copy() for k, v in params.items()}
    for k, v in params.items():
        best[k][...] = v
    return best


def _diverged(exc: Exception, epoch: int, step: int, path: Path | None) -> NonFiniteLossError:
    kept = (f"the last good checkpoint {path} was left as it was" if path is not None
            and path.exists() else "no checkpoint was written")
    return NonFiniteLossError(f"training stopped at epoch {epoch}, step {step}: {exc}; {kept}."
                              " Try a lower learning rate or clip=", epoch, step)
