"""What a training run is: TrainState (advanced by the loop, saved in checkpoints) and
TrainResult (what ``train`` returns)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphrnn.training.optim import Optimizer


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


@dataclass
class TrainState:
    """Where a run stands: what :func:`run_epoch` advances and a checkpoint records.

    ``params`` and the optimizer's buffers are updated in place; the other fields change only
    in :func:`run_epoch` (and when a checkpoint is loaded).

    Attributes
    ----------
    params : dict
        The parameters being trained.
    opt : Optimizer
    epoch : int
        Epochs finished.
    step : int
        Mini-batches of the current epoch finished (a Ctrl-C checkpoint resumes there).
    sums : list
        The current epoch so far: loss x weight, weight, sequences, seconds.
    history : list of dict
        One entry per finished epoch (:attr:`TrainResult.history`).
    best : dict or None
        A copy of the best epoch's parameters (when kept).
    best_epoch, best_loss, stale, stopped_reason
        Early-stopping bookkeeping; ``stopped_reason`` None while running.
    """

    params: dict
    opt: Optimizer
    epoch: int = 0
    step: int = 0
    sums: list = field(default_factory=lambda: [0.0, 0.0, 0, 0.0])
    history: list = field(default_factory=list)
    best: dict | None = None
    best_epoch: int | None = None
    best_loss: float | None = None
    stale: int = 0
    stopped_reason: str | None = None

    PROGRESS = ("epoch", "step", "sums", "history", "best_epoch", "best_loss", "stale",
                "stopped_reason")

    def progress(self) -> dict[str, Any]:
        """The JSON-able fields a checkpoint's ``meta["run"]`` holds."""
        return {k: getattr(self, k) for k in self.PROGRESS}

    def restore(self, progress: Mapping[str, Any], best: dict | None) -> None:
        """Take the fields of a checkpoint's ``meta["run"]`` and its best parameters."""
        for k in self.PROGRESS:
            setattr(self, k, progress[k])
        self.best = best
