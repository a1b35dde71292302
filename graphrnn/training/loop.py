"""The training loop: a TrainState advanced one epoch at a time by run_epoch, driven by train."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from graphrnn.errors import DivergenceError
from graphrnn.training.checkpoints import (
    CheckpointError,
    CheckpointLock,
    clean_stale_temps,
    load_checkpoint,
    save_checkpoint,
)
from graphrnn.training.data import NpzData
from graphrnn.training.distributed import (
    FAILED,
    Distributed,
    DistributedError,
    adopt,
    host_copy,
    shard_batch,
    shard_rows,
)
from graphrnn.training.optim import Optimizer
from graphrnn.training.progress import Progress
from graphrnn.training.setup import Plan, check_training, prepare
from graphrnn.training.signals import terminate_as_interrupt
from graphrnn.training.state import TrainResult, TrainState
from graphrnn.training.steps import parse_tbptt

__all__ = ["CheckpointError", "DivergenceError", "NonFiniteLossError", "Plan", "TrainResult",
           "TrainState", "check_training", "parse_tbptt", "prepare", "run_epoch", "train"]

#: The former name of :class:`graphrnn.errors.DivergenceError` (same class).
NonFiniteLossError = DivergenceError
#: What a diverged run suggests (the CLI words it with its flags).
ADVICE = "Try a lower learning rate or clip="


def run_epoch(state: TrainState, plan: Plan, bar: Progress) -> None:
    """Finish the current epoch: its remaining mini-batches, validation, bookkeeping.

    Raises
    ------
    DivergenceError
        Naming the 1-based epoch and mini-batch; ``state`` is as after the last good one.
    """
    epoch = state.epoch
    order = plan.epoch_batches(epoch)
    dist = plan.stepper.dist
    bar.start(epoch + 1, state.step)
    while state.step < plan.n_batches:
        idx = order[state.step]
        plan.stepper.start_batch(plan.seed, epoch, state.step)
        t0 = time.perf_counter()
        try:
            if dist is None:
                masks = plan.batch(plan.masks, idx)
                total, weight = plan.stepper.batch(
                    state.params, plan.batch(plan.inputs, idx), plan.batch(plan.targets, idx),
                    masks.get("mask"), lengths=_lengths(masks))
            else:  # this rank's shard; the whole mini-batch's size and mask for the weights
                mine = shard_rows(idx, dist.rank, dist.size)
                masks = shard_batch(plan, plan.masks, idx, mine)
                total, weight = plan.stepper.batch(
                    state.params, shard_batch(plan, plan.inputs, idx, mine),
                    shard_batch(plan, plan.targets, idx, mine), masks.get("mask"),
                    whole=(len(idx), plan.batch(plan.masks, idx).get("mask")),
                    lengths=_lengths(masks))
        except DivergenceError as exc:
            raise DivergenceError(f"training stopped at epoch {epoch + 1}, step "
                                  f"{state.step + 1}: {exc.reason}", epoch + 1,
                                  state.step + 1) from None
        except DistributedError as exc:
            raise DistributedError(f"training stopped at epoch {epoch + 1}, step "
                                   f"{state.step + 1}: {exc}") from None
        sums = state.sums
        sums[0] += total
        sums[1] += weight
        sums[2] += len(idx)
        sums[3] += time.perf_counter() - t0
        state.step += 1
        bar.update(state.step, sums[0] / max(sums[1], 1e-300), sums[2] / max(sums[3], 1e-9))
    _end_epoch(state, plan)
    if state.best_epoch == epoch + 1 and plan.keep_best:
        state.best = _copy_into(state.best, state.params)
    bar.end(state.history[-1])


def batch_to_time_major(data) -> dict:
    """A batch-major data set ``(B, T, ...)`` (a mapping or an .npz path) time-major: views
    with the first two axes swapped (one-dimensional arrays, ``lengths``, as they are)."""
    if isinstance(data, str | os.PathLike):
        data = NpzData(data)
    return {k: (v.swapaxes(0, 1) if v.ndim >= 2 else v)
            for k, v in ((k, np.asarray(data[k])) for k in data)}


def _lengths(masks: dict):
    """A mini-batch's lengths ``(B,)`` (kept ``(1, B)`` beside its masks), or None."""
    lengths = masks.get("lengths")
    return None if lengths is None else lengths[0]


def _validation_loss(state: TrainState, plan: Plan) -> float | None:
    dist = plan.stepper.dist
    total = weight = 0.0
    failure = None
    for lo in range(0, len(plan.val_idx), plan.batch_size):
        idx = plan.val_idx[lo:lo + plan.batch_size]
        if dist is None:
            masks = plan.batch(plan.masks, idx)
            t, w = plan.scorer.batch(state.params, plan.batch(plan.inputs, idx),
                                     plan.batch(plan.targets, idx), masks.get("mask"),
                                     lengths=_lengths(masks))
            total, weight = total + t, weight + w
            continue
        mine = shard_rows(idx, dist.rank, dist.size)
        if failure is not None or not len(mine):
            continue
        try:
            masks = shard_batch(plan, plan.masks, idx, mine)
            t, w = plan.scorer.batch(state.params, shard_batch(plan, plan.inputs, idx, mine),
                                     shard_batch(plan, plan.targets, idx, mine),
                                     masks.get("mask"), lengths=_lengths(masks))
            total, weight = total + t, weight + w
        except Exception as exc:  # noqa: BLE001 - raised on every rank after the sum
            failure = exc
    if dist is not None:
        sums = dist.sum_host(np.array([total, weight, float(failure is not None), 0.0]),
                             "the validation loss sum")
        dist.raise_failures(failure, sums[FAILED], " in validation")
        total, weight = float(sums[0]), float(sums[1])
    return total / weight if weight else None


def _end_epoch(state: TrainState, plan: Plan) -> None:
    sums = state.sums
    val = _validation_loss(state, plan) if len(plan.val_idx) else None
    epoch = state.epoch + 1
    train_loss = sums[0] / sums[1] if sums[1] else float("nan")
    state.history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val,
                          "seqs_per_s": sums[2] / sums[3] if sums[3] else None,
                          "seconds": sums[3]})
    monitor = val if val is not None else train_loss
    if state.best_loss is None or monitor < state.best_loss:
        state.best_loss, state.best_epoch, state.stale = monitor, epoch, 0
    else:
        state.stale += 1
        if plan.patience is not None and state.stale >= plan.patience:
            state.stopped_reason = "early_stopping"
    state.epoch, state.step, state.sums = epoch, 0, [0.0, 0.0, 0, 0.0]


def train(model, params: Mapping[str, Any], data, *, targets: list[str] | None = None,
          loss: str = "mse", optimizer: str | Optimizer = "adam", lr: float = 1e-3,
          optimizer_kw: Mapping[str, Any] | None = None, epochs: int = 10,
          batch_size: int = 32, clip: float | None = None, val_fraction: float = 0.1,
          patience: int | None = None, checkpoint: str | os.PathLike | None = None,
          resume: bool = False, progress: bool = True, seed: int = 0, tbptt=None,
          mask_key: str = "mask", restore_best: bool = True, bucket: bool = False,
          comm=None, layout: str = "time") -> TrainResult:
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
        Written atomically after every epoch and on Ctrl-C (KeyboardInterrupt) or SIGTERM.
        The run holds an exclusive lock on ``CHECKPOINT.lock`` beside it (a second run on
        the same checkpoint is refused) and first removes temp files a killed writer of this
        checkpoint left.
    resume : bool
        Continue from ``checkpoint`` when it exists. Every setting that changes the results
        must be the same (data split, seed, batch size, loss, tbptt, bucket, clip, targets,
        dtype, the optimizer and its hyper-parameters such as ``lr``); ``epochs``,
        ``patience`` and ``restore_best`` may differ. An epoch-end
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
    comm : mpi4py communicator, optional
        Data-parallel training (call on every rank with the same arguments): each rank takes
        its shard of every mini-batch (``batch_size`` is the global size; the rank count must
        divide it), its gradient is its share of the global mean loss, an all-reduce sums
        them, so N ranks give what one process gives. Parameters are checked equal on every
        rank at the start and after every epoch; only rank 0 shows progress and writes the
        checkpoint (it alone reads one to resume, under any dividing rank count). Every rank
        returns the same parameters. A rank that raises makes every rank raise
        :class:`~graphrnn.training.distributed.DistributedError` at the same step; one that
        dies or hangs makes the others abort the job after ``GRAPHRNN_MPI_TIMEOUT`` seconds
        (default 300) at most.
    layout : {"time", "batch"}
        ``"batch"``: the data's arrays are batch-major ``(B, T, ...)`` (torch's
        ``batch_first``); ``lengths`` ``(B,)`` either way.

    Returns
    -------
    TrainResult

    Raises
    ------
    DataError
        Data that does not fit the model, or initial parameters with NaN/inf (one line).
    DivergenceError
        (a DataError; ``NonFiniteLossError`` is its former name) The loss, the gradient
        norm or an updated parameter became NaN/inf; the epoch and step are named and the
        last checkpoint is left as it was.
    CheckpointError
        (a DataError) A checkpoint that does not fit this model or run, or is in use.

    Notes
    -----
    While training, SIGTERM (in the main thread, when no handler is installed) acts as
    Ctrl-C: the checkpoint is saved and ``stopped_reason`` is ``"interrupted"``.
    """
    if layout == "batch":
        data = batch_to_time_major(data)
    elif layout != "time":
        raise ValueError(f"unknown layout {layout!r}; choose 'time' or 'batch'")
    path = Path(checkpoint) if checkpoint is not None else None
    dist = Distributed(comm) if comm is not None and comm.Get_size() > 1 else None
    if dist is not None:
        dist.check_shardable(batch_size, getattr(model, "net", None))
    plan, config = prepare(model, params, data, targets=targets, loss=loss, optimizer=optimizer,
                           lr=lr, optimizer_kw=optimizer_kw, batch_size=batch_size, clip=clip,
                           val_fraction=val_fraction, patience=patience, seed=seed,
                           tbptt=tbptt, mask_key=mask_key, bucket=bucket,
                           keep_best=restore_best or path is not None)
    state = TrainState(plan.params, plan.stepper.opt)
    if dist is not None:
        plan.stepper.dist = plan.scorer.dist = dist
        dist.check_same(state.params, "at the start")
    held: dict[str, CheckpointLock] = {}

    def take_lock() -> None:
        held["lock"] = CheckpointLock(path).acquire()
        clean_stale_temps(path)

    def load():
        if not (resume and path.exists()):
            return None
        run, best = load_checkpoint(path, state.params, state.opt, config)
        return run, best, state.params, state.opt.state_dict()

    try:
        if path is not None:
            if dist is None:
                take_lock()
                loaded = load()
            else:  # rank 0 locks and reads; the others take what it read
                dist.from_root(take_lock, "taking the checkpoint lock")
                loaded = dist.from_root(lambda: host_copy(load()), "reading the checkpoint")
                if loaded is not None and not dist.is_root:
                    adopt(state, *loaded)
            if loaded is not None:
                state.restore(*loaded[:2])
        shown = progress and (dist is None or dist.is_root)
        _run(state, plan, epochs, Progress(shown, epochs, plan.n_batches), path, config, dist)
    finally:
        if "lock" in held:
            held["lock"].release()
    result = state.best if restore_best and state.best is not None else state.params
    return TrainResult(result, state.history, state.best_epoch,
                       state.stopped_reason or "completed", path)


def _run(state: TrainState, plan: Plan, epochs: int, bar: Progress, path: Path | None,
         config: Mapping[str, Any], dist: Distributed | None = None) -> None:
    """Epochs until done or stopped, a checkpoint after each; Ctrl-C or SIGTERM: save, stop."""
    def save():
        if dist is not None:
            dist.check_same(state.params, f"after epoch {state.epoch}, step {state.step}")
        if path is None:
            return
        if dist is None:
            save_checkpoint(path, state.params, state.opt, state.progress(), state.best, config)
        else:
            dist.from_root(lambda: save_checkpoint(path, state.params, state.opt,
                                                   state.progress(), state.best, config),
                           "writing the checkpoint")

    try:
        with terminate_as_interrupt():
            while state.stopped_reason is None and state.epoch < epochs:
                try:
                    run_epoch(state, plan, bar)
                except DivergenceError as exc:
                    kept = (f"the last good checkpoint {path} was left as it was"
                            if path is not None and path.exists() else "no checkpoint was written")
                    raise DivergenceError(f"{exc.reason}; {kept}", exc.epoch, exc.step,
                                          ADVICE) from None
                save()
    except KeyboardInterrupt:
        bar.close()
        save()
        state.stopped_reason = "interrupted"
    finally:
        bar.close()


def _copy_into(best: dict | None, params: dict) -> dict:
    if best is None:
        return {k: v.copy() for k, v in params.items()}
    for k, v in params.items():
        best[k][...] = v
    return best
