"""Training checkpoints: written atomically, checked on resume, locked against a second run."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from graphrnn.backends import to_numpy
from graphrnn.errors import DataError
from graphrnn.files import save_npz

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, no lock taken
    fcntl = None

__all__ = ["CheckpointError", "CheckpointLock", "assign", "clean_stale_temps", "load_checkpoint",
           "save_checkpoint"]

CHECKPOINT_FORMAT = "graphrnn-checkpoint"
#: Settings a resumed run must share with the run that wrote the checkpoint (with the
#: optimizer's name and hyper-parameters: lr, momentum, weight_decay, betas...). What may
#: change: epochs, patience, restore_best, progress (when to stop, what to return, display).
RESUME_KEYS = ("seed", "batch_size", "n_train", "n_val", "tbptt", "loss", "bucket", "clip",
               "targets", "dtype")
#: what a checkpoint written before a setting existed ran with
RESUME_DEFAULTS = {"bucket": False}
#: settings recorded only since the lock and lr checks: a checkpoint without them is accepted
UNRECORDED_BEFORE = ("clip", "targets", "dtype")


class CheckpointError(DataError):
    """A checkpoint that cannot be read, is in use, or does not fit this model or run."""


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
    """Load a checkpoint into ``params`` (in place) and ``opt``; return ``(run, best)``.

    Raises
    ------
    CheckpointError
        Unreadable, another network's, or written with other settings (:data:`RESUME_KEYS`,
        the optimizer and its hyper-parameters): one line naming the first difference.
    """
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
    _check_settings(path, meta, opt, config)
    for k, v in saved.items():
        assign(params[k], v)
    best = None
    if any(k.startswith("best:") for k in arrays):
        best = {k: params[k].copy() for k in params}
        for k in best:
            assign(best[k], arrays[f"best:{k}"])
    buffers: dict[str, dict[str, np.ndarray]] = {}
    for k, v in arrays.items():
        if k.startswith("opt:"):
            _, slot, name = k.split(":", 2)
            buffers.setdefault(slot, {})[name] = v
    opt.load_state_dict({"name": opt.name, "t": meta["optimizer"]["t"], "buffers": buffers})
    return meta["run"], best


def _check_settings(path: Path, meta: Mapping[str, Any], opt, config: Mapping[str, Any]):
    def refuse(key, old, new):
        raise CheckpointError(f"checkpoint {path} was written with {key}={old!r}, this run "
                              f"has {key}={new!r}; resume needs the same setting "
                              "(or remove the checkpoint)")

    written = meta["config"]
    for key in RESUME_KEYS:
        if key in UNRECORDED_BEFORE and key not in written:
            continue
        old, new = written.get(key, RESUME_DEFAULTS.get(key)), config.get(key)
        if old != new:
            refuse(key, old, new)
    if meta["optimizer"]["name"] != opt.name:
        raise CheckpointError(f"checkpoint {path} was written by the {meta['optimizer']['name']}"
                              f" optimizer, this run uses {opt.name}")
    new_hyper = json.loads(json.dumps(opt.hyper()))  # lists for tuples, as written
    for key, old in meta["optimizer"].get("hyper", {}).items():
        if new_hyper.get(key) != old:
            refuse(key, old, new_hyper.get(key))


def assign(dst, src: np.ndarray) -> None:
    """Copy host array ``src`` into ``dst`` (a NumPy or CuPy array) in place."""
    if isinstance(dst, np.ndarray):
        dst[...] = src
    else:  # pragma: no cover - CuPy
        dst.set(np.ascontiguousarray(src, dtype=dst.dtype))


def temp_pattern(path: Path) -> re.Pattern:
    """The names :func:`graphrnn.files.atomic_file` gives temp files of ``path``."""
    return re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.tmp")


def clean_stale_temps(path: Path) -> list[Path]:
    """Remove temp files a killed writer of checkpoint ``path`` left (call with its lock held).

    Only files named as :func:`graphrnn.files.atomic_file` names this checkpoint's temp files
    (``.NAME.XXXXXXXX.tmp`` beside it) are removed: every writer of the checkpoint holds its
    lock while writing, so with the lock held none of them belongs to a live writer.

    Returns
    -------
    list of Path
        The files removed.
    """
    pattern, removed = temp_pattern(path), []
    folder = path.parent if str(path.parent) else Path(".")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if pattern.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
            try:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            except OSError:
                pass
    return removed


class CheckpointLock:
    """An exclusive ``flock`` on ``CK.npz.lock`` beside checkpoint ``CK.npz``, for one run.

    A second run on the same checkpoint gets a :class:`CheckpointError` at once (no waiting).
    The lock file is removed on release; a run that finds the file it locked already replaced
    (removed by the previous holder) locks again, so two runs never both hold it. A killed
    run's lock is released by the kernel with its process.
    """

    def __init__(self, checkpoint: str | os.PathLike):
        self.checkpoint = Path(checkpoint)
        self.path = self.checkpoint.with_name(self.checkpoint.name + ".lock")
        self.fd: int | None = None

    def acquire(self) -> CheckpointLock:
        """Take the lock, or raise :class:`CheckpointError` when another run holds it."""
        if fcntl is None:  # pragma: no cover
            return self
        while self.fd is None:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise CheckpointError(f"checkpoint {self.checkpoint} is in use by another "
                                      f"training run (it holds {self.path}); wait for it to "
                                      "end or use another checkpoint") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self.fd = fd
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            else:  # the previous holder removed the file we opened: lock the new one
                os.close(fd)
        return self

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self.fd is None:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> CheckpointLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
