"""Checks on the arrays a caller hands a model: names, shapes, values; one clear line each."""

from __future__ import annotations

import math
import os

import numpy as np

from graphrnn import config
from graphrnn.errors import DataError
from graphrnn.frontend.network import Network
from graphrnn.frontend.validate import did_you_mean


def check_names(kind: str, given, expected, required: bool = True) -> None:
    """Unknown names always fail; missing ones fail when ``required``."""
    for name in given:
        if name not in expected:
            raise DataError(f"unknown {kind} {name!r}; "
                            f"{did_you_mean(name, expected) or 'expected none'}")
    missing = [n for n in expected if n not in given]
    if required and missing:
        raise DataError(f"missing {kind} {', '.join(map(repr, missing))}")


def check_array(kind: str, name: str, array, shape: tuple, finite: bool = True) -> np.ndarray:
    """``array`` as a NumPy array of ``shape`` (``None`` entries match anything)."""
    try:
        a = np.asarray(array)
    except Exception as exc:  # noqa: BLE001 - anything that is not array-like
        raise DataError(f"{kind} {name!r} is not an array: {exc}") from None
    if a.ndim != len(shape) or not _fits(a.shape, shape):
        want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + \
            ("," if len(shape) == 1 else "") + ")"  # (16,) as NumPy prints a 1-tuple
        raise DataError(f"{kind} {name!r} has shape {a.shape}, expected {want}")
    if a.dtype.kind not in "biuf":
        raise DataError(f"{kind} {name!r} has dtype {a.dtype}, expected numbers")
    if finite and not _all_finite(a):
        raise DataError(f"{kind} {name!r} contains NaN or inf")
    return a


def _fits(got: tuple, shape: tuple) -> bool:
    """Whether ``got`` (of the same length) matches ``shape`` (``None``: anything)."""
    for s, d in zip(got, shape):  # noqa: B905 - same length: checked by the caller
        if d is not None and s != d:
            return False
    return True


def _all_finite(a: np.ndarray) -> bool:
    """Whether every value of ``a`` is finite (exact; large arrays scanned in C where
    compiled kernels work: :func:`graphrnn.backends.host_rows.all_finite`)."""
    if a.size < 2**17 or not config.NATIVE:  # host_rows.SCAN_MIN
        return bool(np.isfinite(a).all())
    from graphrnn.backends import host_rows  # noqa: PLC0415 - builds C: not at import time
    return host_rows.all_finite(a)


def check_params(net: Network, params: dict) -> None:
    """Every parameter present, with its shape, finite."""
    if not isinstance(params, dict):
        raise DataError(f"params must be a dict of arrays, not {type(params).__name__}")
    check_names("parameter", params, net.params)
    for name, p in net.params.items():
        check_array("parameter", name, params[name], p.shape)


def check_inputs(net: Network, inputs: dict, steps: int | None) -> tuple[int, int | None]:
    """The inputs' (T, B); for a network without inputs, ``steps`` and no batch yet."""
    if not isinstance(inputs, dict):
        raise DataError(f"inputs must be a dict of arrays, not {type(inputs).__name__}")
    if len(inputs) != len(net.inputs) or not all(map(net.inputs.__contains__, inputs)):
        check_names("input", inputs, net.inputs)  # an unknown or missing name: its message
    if not net.inputs:
        if steps is None:
            raise DataError("this network has no inputs: pass steps= (how many steps to run)")
        t, b = steps, None
    else:
        first = next(iter(net.inputs))
        dense = first not in net.tokens  # checked whole here (the same errors, in order)
        t, b = check_array("input", first, inputs[first], _input_shape(net, first, None, None),
                           finite=dense).shape[:2]
        for name, size in net.inputs.items():
            if dense and name == first:
                continue
            if name in net.tokens:
                check_tokens(name, inputs[name], size, (t, b))
            else:
                check_array("input", name, inputs[name], (t, b, size))
        if steps is not None and steps != t:
            raise DataError(f"steps={steps} but the inputs have {t} steps")
    if not isinstance(t, int | np.integer) or t < 1:
        raise DataError(f"need at least one step, got {t}")
    if b == 0:
        raise DataError("the inputs have an empty batch (B = 0)")
    return int(t), b


def _input_shape(net: Network, name: str, t, b) -> tuple:
    return (t, b) if name in net.tokens else (t, b, net.inputs[name])


def check_tokens(name: str, tokens, vocab: int, shape: tuple = (None, None)) -> np.ndarray:
    """A token input: integers ``(T, B)`` in ``0..vocab-1``; the first bad one is named with
    its position.

    Parameters
    ----------
    name : str
        The input's name (for the message).
    tokens : array-like
        The token ids; float arrays must hold whole numbers.
    vocab : int
        The vocabulary size V.
    shape : tuple
        The expected ``(T, B)`` (``None`` entries match anything).

    Returns
    -------
    numpy.ndarray
        The tokens as ``int64``.

    Raises
    ------
    DataError
        For a wrong shape, a non-number, a non-integer, a negative token or one >= V.
    """
    a = check_array("input", name, tokens, shape, finite=False)
    if a.dtype.kind == "b":
        raise DataError(f"input {name!r} holds booleans; a token input takes integer ids "
                        f"0..{vocab - 1}")
    if a.dtype.kind == "f":
        bad = np.argwhere(~np.isfinite(a) | (a != np.round(a)))
        if bad.size:
            t, b = (int(i) for i in bad[0])
            raise DataError(f"input {name!r} has the non-integer token {a[t, b].item()!r} at "
                            f"step {t}, sequence {b}; a token input takes integer ids "
                            f"0..{vocab - 1}")
    bad = np.argwhere((a < 0) | (a >= vocab))
    if bad.size:
        t, b = (int(i) for i in bad[0])
        value = a[t, b].item()
        value = int(value) if float(value).is_integer() else value
        raise DataError(f"input {name!r} has token {value} at step {t}, sequence {b}, outside "
                        f"the vocabulary 0..{vocab - 1}")
    return a.astype(np.int64, copy=False)


def check_state(net: Network, state: dict | None, batch: int | None) -> int:
    """Validate a passed state; return the batch size (from the state when inputs gave none)."""
    state = {} if state is None else state
    if not isinstance(state, dict):
        raise DataError(f"state must be a dict of arrays, not {type(state).__name__}")
    check_names("state key", state, net.state_keys, required=False)
    for key, value in state.items():
        name = key.split("@")[0]
        a = check_array("state", key, value, (batch, net.size(name)))
        batch = a.shape[0] if batch is None else batch
        if batch == 0:
            raise DataError(f"state {key!r} has an empty batch (B = 0)")
    return 1 if batch is None else batch


def check_targets(net: Network, targets: dict, loss: str, steps: int, batch: int) -> None:
    """Targets name outputs and fit them: (T, B, size) values, or (T, B) labels in range."""
    if not isinstance(targets, dict) or not targets:
        raise DataError("targets must be a non-empty dict: output name -> array")
    check_names("target (an output)", targets, net.outputs, required=False)
    for name, value in targets.items():
        size = net.size(name)
        if loss == "cross_entropy":
            a = check_array("target", name, value, (steps, batch))
            if a.dtype.kind == "f" and not np.all(a == np.round(a)):
                raise DataError(f"target {name!r}: cross_entropy needs integer class labels")
            if a.size and (a.min() < 0 or a.max() >= size):
                raise DataError(f"target {name!r} has labels in [{int(a.min())}, {int(a.max())}]"
                                f", but output {name!r} has {size} classes (0..{size - 1})")
        else:
            check_array("target", name, value, (steps, batch, size))


def check_mask(name: str, mask, steps: int, batch: int) -> np.ndarray:
    """A per-step weight ``(T, B)`` (e.g. 1 on the last step only), never negative."""
    a = check_array("mask", name, mask, (steps, batch))
    if a.size and a.min() < 0:
        t, b = np.unravel_index(int(np.argmin(a)), a.shape)
        raise DataError(f"mask {name!r} has a negative weight ({a[t, b]} at step {t}, sequence "
                        f"{b}); weights are >= 0 (0 skips a step)")
    return a


def first_nonfinite(a) -> tuple[int, ...] | None:
    """The index of the first NaN or inf in ``a`` (None when every value is finite)."""
    a = np.asarray(a)
    if a.dtype.kind not in "fc" or np.isfinite(a).all():
        return None
    return tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])


def check_data_array(a: np.ndarray, name: str, shape: tuple, ref: str, what: str,
                     dtype=None) -> np.ndarray:
    """An array of a data set (``data[name]``): its shape, numbers, finite; cast to ``dtype``.

    Parameters
    ----------
    a : array
    name : str
        Its key in the data set.
    shape : tuple of int
        The shape it must have.
    ref : str
        The key the steps and batch ``(T, B)`` were taken from (named in the message).
    what : str
        What the array is for (``"input 'x'"``), named in the message.
    dtype : dtype, optional
        Cast to this (no copy when it already is); None keeps the dtype.
    """
    a = np.asarray(a)
    if a.shape != tuple(shape):
        want = f"({', '.join(map(str, shape))})"
        raise DataError(f"data[{name!r}] has shape {a.shape}; {what} needs {want} "
                        f"(T, B taken from data[{ref!r}])")
    if a.dtype.kind not in "biuf":
        raise DataError(f"data[{name!r}] has dtype {a.dtype}; expected numbers")
    bad = first_nonfinite(a)
    if bad is not None:
        raise DataError(f"data[{name!r}] contains NaN or inf (first at step {bad[0]}, "
                        f"sequence {bad[1]})")
    return a if dtype is None else a.astype(dtype, copy=False)


def check_outputs_finite(run, names) -> None:
    """One pass over the outputs of a run whose inputs, parameters and state were finite: a
    NaN or inf there is an overflow, reported with the first step it appears at."""
    xp = run.xp
    for name in names:
        y = run.rows(name, 0, run.steps)
        if xp is np and y.size < 4096 and math.isfinite(np.vdot(y, y)):
            continue  # a sum of squares is finite only if every value is (no temporaries)
        if bool(xp.isfinite(y).all()):  # exact: an overflowing sum of squares gets here too
            continue
        bad = ~xp.isfinite(y).reshape(run.steps, -1).all(axis=1)
        t = int(xp.argmax(bad))
        raise DataError(f"output {name!r} is NaN or inf from step {t} on, although the inputs, "
                        f"parameters and state are finite: the values overflowed "
                        f"{np.dtype(run.dtype).name}; scale the inputs or parameters down")


# -- memory -----------------------------------------------------------------------------------

def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable``; else the physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**62


def memory_limit() -> tuple[int, str]:
    """The most bytes one call may need, and where that limit comes from (for messages)."""
    if config.MAX_MEMORY is not None:
        return config.MAX_MEMORY, "GRAPHRNN_MAX_MEMORY"
    return available_memory(), "the memory available; GRAPHRNN_MAX_MEMORY sets another limit"


def format_bytes(n: int) -> str:
    """``1536`` -> ``"1.5 KiB"``; huge numbers in powers of ten of bytes."""
    if n >= 2**70:
        return f"about 10^{int((n.bit_length() - 1) * 0.30103)} bytes"
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n} bytes" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} bytes"  # pragma: no cover


def run_bytes(net: Network, program, steps: int, batch: int, dtype, backward: bool) -> int:
    """Bytes a call of ``steps`` steps on ``batch`` sequences allocates: the run's buffers
    (history rows included), their gradients for ``backward``, the random numbers of
    stochastic and asynchronous units and the copies of the outputs handed back."""
    item = np.dtype(dtype).itemsize
    rows = sum((b.pad + steps) * b.size for b in program.buffers.values())
    total = rows * batch * item * (2 if backward else 1)
    outputs = sum(net.size(o) for o in net.outputs) * steps * batch * item
    total += outputs * (2 if backward else 1)
    for node in net.nodes.values():
        if node.activation == "bernoulli":
            total += steps * batch * node.size * 8
        if node.update == "asynchronous":
            total += steps * node.size * 16
    return total


def check_run_memory(net: Network, program, steps: int, batch: int, dtype,
                     backward: bool) -> None:
    """Refuse, before allocating, a call that needs more memory than :func:`memory_limit`."""
    need = run_bytes(net, program, steps, batch, dtype, backward)
    limit, source = memory_limit()
    if need > limit:
        what = "gradients" if backward else "forward"
        raise DataError(f"{what} of {steps:,} steps on a batch of {batch:,} "
                        f"({np.dtype(dtype).name}) needs about {format_bytes(need)}, more than "
                        f"the {format_bytes(limit)} limit ({source}); use fewer steps or a "
                        "smaller batch, e.g. in chunks passing the final state on")
