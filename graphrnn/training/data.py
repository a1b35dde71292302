"""Training data: data files read lazily by key, checked against a model, cut into mini-batches."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from graphrnn.backends import to_numpy
from graphrnn.checks import check_data_array, check_tokens, first_nonfinite
from graphrnn.errors import DataError
from graphrnn.lengths import check_lengths

__all__ = ["NpzData", "batches", "check_data", "initial_params", "load_data",
           "model_io", "run_inputs", "sequence_ends", "take"]

class NpzData(Mapping):
    """An ``.npz`` data file as a read-only mapping that reads each array when first asked for.

    ``np.load`` reads a member only when it is indexed, so a file holding arrays a spec does
    not use costs nothing for them. Errors are one :class:`DataError` line.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = path
        self._cache: dict[str, np.ndarray] = {}
        with self._open() as z:
            self._names = list(z.files)

    def _open(self):
        try:
            return np.load(self.path, allow_pickle=False)
        except FileNotFoundError:
            raise DataError(f"data file {self.path} does not exist") from None
        except Exception as exc:  # noqa: BLE001 - a bad zip, a directory...
            raise DataError(f"cannot read data file {self.path} as .npz: {exc}") from None

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._cache:
            if key not in self._names:
                raise KeyError(key)
            with self._open() as z:
                try:
                    self._cache[key] = z[key]
                except Exception as exc:  # noqa: BLE001 - a pickled array, a damaged member
                    raise DataError(f"cannot read array {key!r} of data file {self.path}: "
                                    f"{exc}") from None
        return self._cache[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)


def load_data(path: str | os.PathLike, keys: Iterable[str] | None = None
              ) -> dict[str, np.ndarray]:
    """Read an ``.npz`` file into a dict of arrays (:class:`DataError` on failure).

    Parameters
    ----------
    path : str or path
    keys : iterable of str, optional
        Read only these (those the file has); default every array. Others are never read.
    """
    data = NpzData(path)
    wanted = list(data) if keys is None else [k for k in keys if k in data]
    return {k: data[k] for k in wanted}


def model_io(model) -> tuple[dict[str, int], dict[str, int], frozenset[str] | None]:
    """The model's input sizes, output sizes and trainable parameter names (from ``model.net``)."""
    net = getattr(model, "net", None) or getattr(model, "network", None)
    if net is None:
        raise TypeError("train() needs a compiled model with a .net (graphrnn.compile)")
    params = getattr(net, "params", None)
    trainable = None if params is None else frozenset(k for k, p in params.items() if p.trainable)
    return dict(net.inputs), {o: net.size(o) for o in net.outputs}, trainable


def _check_mapping(data) -> None:
    if not isinstance(data, Mapping):
        raise DataError(f"data must be a dict of arrays named after the network's inputs and "
                        f"outputs (e.g. {{'x': X, 'y': Y}}), or an .npz file's path; got "
                        f"{type(data).__name__}")


def check_data(model, data: Mapping[str, Any], loss: str = "mse",
               targets: list[str] | None = None, mask_key: str = "mask"):
    """Check a data set against a model; one clear :class:`DataError` line per problem.

    Parameters
    ----------
    model : Model
    data : dict of str to array
        Inputs named after the spec's inputs ``(T, B, size)``; targets named after outputs,
        ``(T, B, size)`` for ``mse`` or integer labels ``(T, B)`` for ``cross_entropy``; an
        optional ``mask`` ``(T, B)``. Other keys are ignored (and, from a lazy mapping such
        as :class:`NpzData`, never read), as ``graphrnn run`` ignores all but the inputs.
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
    _check_mapping(data)
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
    tokens = getattr(getattr(model, "net", None), "tokens", ())
    inputs = {name: check_tokens(name, arrays[name], size, tb) if name in tokens else
              check_data_array(arrays[name], name, (*tb, size), ref, f"input {name!r}", dtype)
              for name, size in in_sizes.items()}
    tgts = {name: _target(arrays[name], name, out_sizes[name], tb, ref, loss, dtype)
            for name in names}
    mask = None
    if mask_key and mask_key in data:
        mask = check_data_array(data[mask_key], mask_key, tb, ref, "the per-step mask", dtype)
        if (mask < 0).any():
            raise DataError(f"data[{mask_key!r}] has negative weights")
        if not mask.any():
            raise DataError(f"data[{mask_key!r}] is all zero: no step would be trained")
    return inputs, tgts, mask, int(tb[0]), int(tb[1])


def data_lengths(data: Mapping[str, Any], steps: int, batch: int,
                 key: str = "lengths") -> np.ndarray | None:
    """The data set's ``lengths`` ``(B,)`` (sequence b has steps ``0..lengths[b]-1``) checked
    against its ``(T, B)``, or None where it has none; one clear :class:`DataError` line."""
    if key not in data:
        return None
    try:
        return check_lengths(data[key], steps, batch)
    except DataError as exc:
        raise DataError(f"data[{key!r}]: {exc}") from None


def _target(a: np.ndarray, name: str, size: int, tb: tuple, ref: str, loss: str, dtype
            ) -> np.ndarray:
    if loss == "mse":
        return check_data_array(a, name, (*tb, size), ref, f"output {name!r} with mse", dtype)
    if a.ndim == 3 and a.shape[2] == size:
        raise DataError(f"data[{name!r}] has shape {a.shape}: cross_entropy takes integer "
                        f"class labels (T, B), not one-hot vectors; use argmax or mse")
    a = check_data_array(a, name, tb, ref, f"output {name!r} with cross_entropy labels")
    if a.dtype.kind == "f" and not np.all(a == np.round(a)):
        raise DataError(f"data[{name!r}] holds non-integer labels; cross_entropy needs "
                        "integer class labels")
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= size:
        bad = lo if lo < 0 else hi
        raise DataError(f"data[{name!r}] has label {bad} out of range: output {name!r} has "
                        f"{size} classes (labels 0..{size - 1})")
    return a.astype(np.int64)


def initial_params(params) -> dict:
    """A copy of the initial parameters; NaN or inf in them is named (not a divergence)."""
    if not isinstance(params, Mapping):
        raise DataError(f"params must be a dict of arrays (model.init_params()), not "
                        f"{type(params).__name__}")
    for name, value in params.items():
        bad = first_nonfinite(to_numpy(value))
        if bad is not None:
            raise DataError(f"the initial parameters contain NaN or inf: parameter {name!r} "
                            f"(first at index {bad}); training needs finite values")
    return {name: value.copy() for name, value in params.items()}


def run_inputs(net, data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The spec's inputs from a data set, for a forward run; other keys are ignored.

    A task or training file also holds targets, a mask, lengths or other arrays: they are not
    read (as :func:`check_data` skips what training does not use), so one file serves
    ``graphrnn train`` and ``graphrnn run``.
    """
    _check_mapping(data)
    have = ", ".join(sorted(data)) or "nothing"
    for name in net.inputs:
        if name not in data:
            raise DataError(f"data has no array {name!r} for input {name!r} (data has: {have})")
    return {name: data[name] for name in net.inputs}


def sequence_ends(mask: np.ndarray) -> np.ndarray:
    """Per sequence (axis 1), one past its last step with a non-zero mask (0: none)."""
    live = np.asarray(mask) != 0
    last = live.shape[0] - np.argmax(live[::-1], axis=0)
    return np.where(live.any(axis=0), last, 0)


def batches(train_idx: np.ndarray, batch_size: int, rng: np.random.Generator,
            ends: np.ndarray | None) -> list[np.ndarray]:
    """An epoch's mini-batches: a random permutation cut in pieces, or (with ``ends``) the
    sequences sorted by length, ties at random, cut in pieces that run in random order."""
    if ends is None:
        order = train_idx[rng.permutation(len(train_idx))]
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    order = train_idx[np.argsort(ends[train_idx] + rng.random(len(train_idx)), kind="stable")]
    pieces = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [pieces[j] for j in rng.permutation(len(pieces))]


def take(arrays: Mapping[str, np.ndarray], idx: np.ndarray, ends: np.ndarray | None
         ) -> dict[str, np.ndarray]:
    """The sequences ``idx``, up to the end of the longest (the rest carries no loss)."""
    out = {}
    for k, v in arrays.items():
        t = v.shape[0] if ends is None else max(1, int(ends[idx].max()))
        out[k] = v[:t, idx]
    return out
