"""Setting up a training run: every check before the first epoch, and the run's fixed Plan."""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from graphrnn.errors import DataError
from graphrnn.lengths import valid_mask
from graphrnn.training.data import (
    NpzData,
    batches,
    check_data,
    data_lengths,
    initial_params,
    model_io,
    sequence_ends,
    take,
)
from graphrnn.training.optim import Optimizer, make_optimizer
from graphrnn.training.steps import Stepper, parse_tbptt

__all__ = ["Plan", "check_training", "prepare"]


@dataclass(frozen=True)
class Plan:
    """What stays fixed during a run: the data, its split, the steppers and the settings.

    ``params`` is the copy of the initial parameters that training updates in place.
    """

    params: dict
    inputs: dict
    targets: dict
    masks: dict
    ends: np.ndarray | None
    train_idx: np.ndarray
    val_idx: np.ndarray
    stepper: Stepper
    scorer: Stepper
    batch_size: int
    seed: int
    bucket: bool
    patience: int | None
    keep_best: bool

    @property
    def n_batches(self) -> int:
        """Mini-batches per epoch."""
        return math.ceil(len(self.train_idx) / self.batch_size)

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The mini-batches of 0-based ``epoch`` (its rng is seeded by ``[seed, epoch]``)."""
        return batches(self.train_idx, self.batch_size,
                       np.random.default_rng([self.seed, epoch]),
                       self.ends if self.bucket else None)

    def batch(self, arrays: dict, idx: np.ndarray) -> dict:
        """The sequences ``idx`` of ``arrays``, up to the end of the longest."""
        return take(arrays, idx, self.ends)


def prepare(model, params: Mapping[str, Any], data, *, targets: list[str] | None = None,
            loss: str = "mse", optimizer: str | Optimizer = "adam", lr: float = 1e-3,
            optimizer_kw: Mapping[str, Any] | None = None, batch_size: int = 32,
            clip: float | None = None, val_fraction: float = 0.1, patience: int | None = None,
            seed: int = 0, tbptt=None, mask_key: str = "mask", bucket: bool = False,
            keep_best: bool = True) -> tuple[Plan, dict[str, Any]]:
    """Check data and settings as :func:`graphrnn.train` takes them; build the run's plan.

    Parameters
    ----------
    model, params, data, targets, loss, optimizer, lr, optimizer_kw, batch_size, clip, \
val_fraction, patience, seed, tbptt, mask_key, bucket
        As for :func:`graphrnn.training.loop.train`.
    keep_best : bool
        Keep a copy of the best epoch's parameters.

    Returns
    -------
    (Plan, dict)
        The plan, and the settings a checkpoint records (a resume must match them).

    Raises
    ------
    DataError, ValueError
        One line, as :func:`train` raises them.
    """
    if isinstance(data, str | os.PathLike):
        data = NpzData(data)  # reads only the arrays check_data asks for
    inputs, tgts, mask, n_steps, n_seq = check_data(model, data, loss, targets, mask_key)
    lengths = data_lengths(data, n_steps, n_seq)
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
    if lengths is not None:  # the loss skips the steps past each end; buckets go by lengths
        valid = valid_mask(lengths, n_steps).astype(mask.dtype if mask is not None
                                                     else np.float64)
        mask = valid if mask is None else mask * valid
        if k is not None and any(k_ < 0 for _, _, k_ in getattr(model, "net", model).boundaries):
            raise DataError("lengths with tbptt on a network that reads ahead (negative "
                            "delays) is not supported: train it without tbptt")
    ends = lengths if lengths is not None else None if mask is None else sequence_ends(mask)
    if bucket and ends is None:
        raise DataError(f"bucket=True needs a mask ({mask_key!r}) saying where each "
                        "sequence ends")
    params = initial_params(params)
    _, _, trainable = model_io(model)
    keys = frozenset(params) if trainable is None else trainable
    opt = optimizer if isinstance(optimizer, Optimizer) else make_optimizer(
        optimizer, lr, trainable=keys, **dict(optimizer_kw or {}))
    split = np.random.default_rng(seed).permutation(n_seq)
    val_idx, train_idx = np.sort(split[:n_val]), split[n_val:]
    masks = {} if mask is None else {"mask": mask}
    if lengths is not None:  # (1, B): sliced and sharded like the (T, B) arrays
        masks["lengths"] = lengths[None, :]
    plan = Plan(params, inputs, tgts, masks, ends, train_idx,
                val_idx, Stepper(model, loss, k, opt, clip, keys),
                Stepper(model, loss, k, None, clip, keys), batch_size, seed, bool(bucket),
                patience, keep_best)
    config = {"seed": seed, "batch_size": batch_size, "n_train": len(train_idx),
              "n_val": n_val, "tbptt": list(k) if k else None, "loss": loss,
              "bucket": bool(bucket), "clip": clip, "targets": sorted(tgts),
              "dtype": str(np.dtype(getattr(model, "dtype", np.float64)))}
    return plan, config


def check_training(model, params: Mapping[str, Any], data, **settings: Any) -> None:
    """Raise what ``train(model, params, data, **settings)`` would raise before training.

    For a caller that wants to say something once the run is known to start (the CLI's
    notice that no ``-o`` was given). Keywords :func:`prepare` does not take (``epochs``,
    ``checkpoint``, ``progress``...) are ignored.
    """
    taken = inspect.signature(prepare).parameters
    prepare(model, params, data, **{k: v for k, v in settings.items() if k in taken})
