"""Exchanging networks with other frameworks: ONNX export and import (needs ``graphrnn[onnx]``).

Importing this package (and graphrnn) never imports ``onnx``: the functions below load it on
first use and say in one line how to install it when it is missing.
"""

from __future__ import annotations

import importlib

#: what to run when onnx or onnxruntime is missing
INSTALL_HINT = "pip install 'graphrnn[onnx]'"


def _module(name: str):
    try:
        return importlib.import_module(f"graphrnn.exchange.{name}")
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("onnx", "onnxruntime"):
            raise ImportError(f"ONNX exchange needs the onnx package: {INSTALL_HINT}") from None
        raise


def to_onnx(model, params: dict, path=None, *, unrolled: bool = False, steps: int | None = None):
    """Write a network as ONNX: see :func:`graphrnn.exchange.onnx_export.to_onnx`."""
    return _module("onnx_export").to_onnx(model, params, path, unrolled=unrolled, steps=steps)


def from_onnx(path_or_model):
    """An ONNX RNN/GRU/LSTM as ``(Network, params)``: see
    :func:`graphrnn.exchange.onnx_import.from_onnx`."""
    return _module("onnx_import").from_onnx(path_or_model)
