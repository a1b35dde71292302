"""Training I/O: data files and their checks, checkpoints, the progress line, loss-curve plots."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from graphrnn.backends import to_numpy
from graphrnn.errors import DataError
from graphrnn.files import atomic_file, save_npz

__all__ = ["CheckpointError", "Progress", "check_data", "load_checkpoint", "load_data",
           "model_io", "plot_history", "save_checkpoint"]

CHECKPOINT_FORMAT = "graphrnn-checkpoint"
#: Settings a resumed run must share with the run that wrote the checkpoint.
RESUME_KEYS = ("seed", "batch_size", "n_train", "n_val", "tbptt", "loss", "bucket")
#: what a checkpoint written before a setting existed ran with
RESUME_DEFAULTS = {"bucket": False}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read, or that does not fit this model or run."""


def load_data(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an ``.npz`` data file into a dict of arrays (:class:`DataError` on failure)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError(f"data file {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - a bad zip, a pickled array, a directory...
        raise DataError(f"cannot read data file {path} as .npz: {exc}") from None


def model_io(model) -> tuple[dict[str, int], dict[str, int], frozenset[str] | None]:
    """The model's input sizes, output sizes and trainable parameter names (from ``model.net``)."""
    net = getattr(model, "net", None) or getattr(model, "network", None)
    if net is None:
        raise TypeError("train() needs a compiled model with a .net (graphrnn.compile)")
    params = getattr(net, "params", None)
    trainable = None if params is None else frozenset(k for k, p in params.items() if p.trainable)
    return dict(net.inputs), {o: net.size(o) for o in net.outputs}, trainable


def check_data(model, data: Mapping[str, Any], loss: str = "mse",
               targets: list[str] | None = None, mask_key: str = "mask"):
    """Check a data set against a model; one clear :class:`DataError` line per problem.

    Parameters
    ----------
    model : Model
    data : dict of str to array
        Inputs named after the spec's inputs ``(T, B, size)``; targets named after outputs,
        ``(T, B, size)`` for ``mse`` or integer labels ``(T, B)`` for ``cross_entropy``; an
        optional ``mask`` ``(T, B)``. Other keys are ignored.
    loss : {"mse", "cross_entropy"}
    targets : list of str, optional
        The outputs to train (default: every output that has an array in ``data``).
    mask_key : str, optional

    Returns
    -------
    (inputs, targets, mask, T, B)
        Arrays cast to the model's dtype (labels as int64), the mask or None, and the shape.
    """
    if loss not in ("mse", "cross_entropy"):
        raise DataError(f"unknown loss {loss!r}; choose 'mse' or 'cross_entropy'")
    in_sizes, out_sizes, _ = model_io(model)
    dtype = np.dtype(getattr(model, "dtype", np.float64))
    have = ", ".join(sorted(data)) or "nothing"
    for name in in_sizes:
        if name not in data:
            raise DataError(f"data has no array {name!r} for input {name!r} (data has: {have})")
    names = list(targets) if targets else [o for o in out_sizes if o in data]
    for name in names:
        if name not in out_sizes:
            raise DataError(f"target {name!r} is not an output of the network "
                            f"(outputs: {', '.join(out_sizes)})")
        if name not in data:
            raise DataError(f"data has no array {name!r} for target {name!r} (data has: {have})")
    if not names:
        raise DataError(f"data has no target: name an array after an output "
                        f"({', '.join(out_sizes)}); data has: {have}")
    arrays = {k: np.asarray(data[k]) for k in (*in_sizes, *names)}
    ref = next(iter(arrays))
    tb = arrays[ref].shape[:2]
    if arrays[ref].ndim < 2 or 0 in tb:
        raise DataError(f"data[{ref!r}] has shape {arrays[ref].shape}; expected (T, B, ...) "
                        "with T, B >= 1")
    inputs, tgts = {}, {}
    for name in in_sizes:
        inputs[name] = _checked(arrays[name], name, (*tb, in_sizes[name]), ref,
                                f"input {name!r}", dtype)
    for name in names:
        a, size = arrays[name], out_sizes[name]
        if loss == "mse":
            tgts[name] = _checked(a, name, (*tb, size), ref, f"output {name!r} with mse", dtype)
            continue
        if a.ndim == 3 and a.shape[2] == size:
            raise DataError(f"data[{name!r}] has shape {a.shape}: cross_entropy takes integer "
                            f"class labels (T, B), not one-hot vectors; use argmax or mse")
        a = _checked(a, name, tb, ref, f"output {name!r} with cross_entropy labels", None)
        if a.dtype.kind == "f" and not np.all(a == np.round(a)):
            raise DataError(f"data[{name!r}] holds non-integer labels; cross_entropy needs "
                            "integer class labels")
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi >= size:
            bad = lo if lo < 0 else hi
            raise DataError(f"data[{name!r}] has label {bad} out of range: output {name!r} has "
                            f"{size} classes (labels 0..{size - 1})")
        tgts[name] = a.astype(np.int64)
    mask = None
    if mask_key and mask_key in data:
        mask = _checked(np.asarray(data[mask_key]), mask_key, tb, ref, "the per-step mask",
                        dtype)
        if (mask < 0).any():
            raise DataError(f"data[{mask_key!r}] has negative weights")
        if not mask.any():
            raise DataError(f"data[{mask_key!r}] is all zero: no step would be trained")
    return inputs, tgts, mask, int(tb[0]), int(tb[1])


def _checked(a: np.ndarray, name: str, shape: tuple, ref: str, what: str,
             dtype) -> np.ndarray:
    if a.shape != tuple(shape):
        want = f"({', '.join(map(str, shape))})"
        raise DataError(f"data[{name!r}] has shape {a.shape}; {what} needs {want} "
                        f"(T, B taken from data[{ref!r}])")
    if a.dtype.kind not in "biuf":
        raise DataError(f"data[{name!r}] has dtype {a.dtype}; expected numbers")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        t, b = np.argwhere(~np.isfinite(a))[0][:2]
        raise DataError(f"data[{name!r}] contains NaN or inf (first at step {t}, sequence {b})")
    return a if dtype is None else a.astype(dtype, copy=False)


def save_checkpoint(path: Path, params: Mapping[str, Any], opt, run: Mapping[str, Any],
                    best: Mapping[str, Any] | None, config: Mapping[str, Any]) -> None:
    """Write params, best params, optimizer state and the run's progress atomically.

    Layout (``.npz``): ``param:NAME``, ``best:NAME``, ``opt:SLOT:NAME`` arrays and ``meta``, a
    JSON string ``{"format", "version", "run": {epoch, step, history, ...}, "optimizer":
    {"name", "t", "hyper"}, "config": {...}}``.
    """
    state = opt.state_dict()
    arrays = {f"param:{k}": to_numpy(v) for k, v in params.items()}
    arrays.update({f"best:{k}": to_numpy(v) for k, v in (best or {}).items()})
    for slot, bufs in state["buffers"].items():
        arrays.update({f"opt:{slot}:{k}": v for k, v in bufs.items()})
    meta = {"format": CHECKPOINT_FORMAT, "version": 1, "run": dict(run),
            "optimizer": {"name": state["name"], "t": state["t"], "hyper": state["hyper"]},
            "config": dict(config)}
    arrays["meta"] = np.array(json.dumps(meta))
    save_npz(path, arrays)


def load_checkpoint(path: Path, params: dict, opt, config: Mapping[str, Any]):
    """Load a checkpoint into ``params`` (in place) and ``opt``; return ``(run, best)``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(str(arrays.pop("meta")))
    except Exception as exc:  # noqa: BLE001 - any unreadable file
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from None
    if meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a graphrnn checkpoint")
    saved = {k[6:]: v for k, v in arrays.items() if k.startswith("param:")}
    if set(saved) != set(params):
        raise CheckpointError(f"checkpoint {path} holds parameters {', '.join(sorted(saved))}; "
                              f"the model has {', '.join(sorted(params))} (another network?)")
    for k, v in saved.items():
        if v.shape != params[k].shape:
            raise CheckpointError(f"checkpoint {path}: parameter {k!r} has shape {v.shape}, "
                                  f"the model's has {params[k].shape}")
    for key in RESUME_KEYS:
        old, new = meta["config"].get(key, RESUME_DEFAULTS.get(key)), config.get(key)
        if old != new:
            raise CheckpointError(f"checkpoint {path} was written with {key}={old!r}, this run "
                                  f"has {key}={new!r}; resume needs the same setting "
                                  "(or remove the checkpoint)")
    if meta["optimizer"]["name"] != opt.name:
        raise CheckpointError(f"checkpoint {path} was written by the {meta['optimizer']['name']}"
                              f" optimizer, this run uses {opt.name}")
    for k, v in saved.items():
        _assign(params[k], v)
    best = None
    if any(k.startswith("best:") for k in arrays):
        best = {k: params[k].copy() for k in params}
        for k in best:
            _assign(best[k], arrays[f"best:{k}"])
    buffers: dict[str, dict[str, np.ndarray]] = {}
    for k, v in arrays.items():
        if k.startswith("opt:"):
            _, slot, name = k.split(":", 2)
            buffers.setdefault(slot, {})[name] = v
    opt.load_state_dict({"name": opt.name, "t": meta["optimizer"]["t"], "buffers": buffers})
    return meta["run"], best


def _assign(dst, src: np.ndarray) -> None:
    if isinstance(dst, np.ndarray):
        dst[...] = src
    else:  # pragma: no cover - CuPy
        dst.set(np.ascontiguousarray(src, dtype=dst.dtype))


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
