"""Training progress: the per-epoch progress line (or tqdm bar) and the loss-curve plot."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from graphrnn.files import atomic_file

__all__ = ["Progress", "plot_history"]


class Progress:
    """Progress display: a tqdm bar per epoch when tqdm is installed, else one refreshed line."""

    def __init__(self, enabled: bool, epochs: int, n_batches: int, stream=None):
        self.enabled, self.epochs, self.n_batches = enabled, epochs, n_batches
        self.stream = stream or sys.stderr
        self.bar, self.tqdm, self.last, self.width, self.epoch = None, None, 0.0, 0, 0
        if enabled:
            try:
                from tqdm import tqdm
                self.tqdm = tqdm
            except ImportError:
                pass

    def start(self, epoch: int, step: int) -> None:
        """A new epoch (1-based), resuming at ``step`` finished mini-batches."""
        self.epoch = epoch
        if self.tqdm is not None:
            self.bar = self.tqdm(total=self.n_batches, initial=step, unit="batch",
                                 desc=f"epoch {epoch}/{self.epochs}", file=self.stream,
                                 dynamic_ncols=True)

    def update(self, step: int, loss: float, rate: float) -> None:
        """``step`` mini-batches done; the running training loss and sequences per second."""
        if self.bar is not None:
            self.bar.update(step - self.bar.n)
            self.bar.set_postfix_str(f"loss {loss:.4g}, {rate:.0f} seq/s", refresh=False)
        elif self.enabled and time.monotonic() - self.last > 0.2:
            self._line(f"epoch {self.epoch}/{self.epochs} batch {step}/{self.n_batches}"
                       f"  loss {loss:.4g}  {rate:.0f} seq/s")

    def end(self, h: Mapping[str, Any]) -> None:
        """The epoch's history entry is known."""
        text = f"train {h['train_loss']:.4g}"
        if h.get("val_loss") is not None:
            text += f", val {h['val_loss']:.4g}"
        if h.get("seqs_per_s"):
            text += f", {h['seqs_per_s']:.0f} seq/s"
        if self.bar is not None:
            self.bar.set_postfix_str(text)
            self.bar.close()
            self.bar = None
        elif self.enabled:
            self._line(f"epoch {h['epoch']}/{self.epochs}  {text}")

    def _line(self, text: str) -> None:
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width, self.last = len(text), time.monotonic()

    def close(self) -> None:
        """Finish the display (idempotent)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.width:
            self.stream.write("\n")
            self.stream.flush()
            self.width = 0


def plot_history(history: list[Mapping[str, Any]], path: str | os.PathLike,
                 title: str | None = None) -> Path:
    """Write the training (and validation) loss per epoch as a PNG, atomically.

    Parameters
    ----------
    history : list of dict
        :attr:`TrainResult.history`.
    path : str or path
    title : str, optional

    Returns
    -------
    Path

    Raises
    ------
    ImportError
        Without matplotlib (``pip install 'graphrnn[plot]'``).
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("plotting the loss curve needs matplotlib: "
                          "pip install 'graphrnn[plot]'") from None
    if not history:
        raise ValueError("the history is empty: nothing to plot")
    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    epochs = [h["epoch"] for h in history]
    values = []
    for key, label in (("train_loss", "training"), ("val_loss", "validation")):
        pts = [(e, h[key]) for e, h in zip(epochs, history, strict=True)
               if h.get(key) is not None and np.isfinite(h[key])]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o" if len(pts) < 30 else None, label=label)
            values += [v for _, v in pts]
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title or "loss per epoch")
    ax.grid(True, alpha=0.3)
    ax.legend()
    with atomic_file(path) as f:
        fig.savefig(f, format="png")
    return Path(path)
