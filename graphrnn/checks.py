"""Checks on the arrays a caller hands a model: names, shapes, values; one clear line each."""

from __future__ import annotations

import numpy as np

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
    if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape,
                                                                              strict=True)):
        want = "(" + ", ".join("?" if s is None else str(s) for s in shape) + \
            ("," if len(shape) == 1 else "") + ")"  # (16,) as NumPy prints a 1-tuple
        raise DataError(f"{kind} {name!r} has shape {a.shape}, expected {want}")
    if a.dtype.kind not in "biuf":
        raise DataError(f"{kind} {name!r} has dtype {a.dtype}, expected numbers")
    if finite and not np.isfinite(a).all():
        raise DataError(f"{kind} {name!r} contains NaN or inf")
    return a


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
    check_names("input", inputs, net.inputs)
    if not net.inputs:
        if steps is None:
            raise DataError("this network has no inputs: pass steps= (how many steps to run)")
        t, b = steps, None
    else:
        first = next(iter(net.inputs))
        t, b = check_array("input", first, inputs[first], (None, None, net.inputs[first])).shape[:2]
        for name, size in net.inputs.items():
            check_array("input", name, inputs[name], (t, b, size))
        if steps is not None and steps != t:
            raise DataError(f"steps={steps} but the inputs have {t} steps")
    if not isinstance(t, int | np.integer) or t < 1:
        raise DataError(f"need at least one step, got {t}")
    if b == 0:
        raise DataError("the inputs have an empty batch (B = 0)")
    return int(t), b


def check_state(net: Network, state: dict | None, batch: int | None) -> int:
    """Validate a passed state; return the batch size (from the state when inputs gave none)."""
    state = state or {}
    if not isinstance(state, dict):
        raise DataError(f"state must be a dict of arrays, not {type(state).__name__}")
    check_names("state key", state, net.state_keys, required=False)
    for key, value in state.items():
        name = key.split("@")[0]
        a = check_array("state", key, value, (batch, net.size(name)))
        batch = a.shape[0] if batch is None else batch
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
    """A per-step weight ``(T, B)`` (e.g. 1 on the last step only)."""
    return check_array("mask", name, mask, (steps, batch))
