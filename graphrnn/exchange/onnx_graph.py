"""Building an ONNX graph: fresh tensor names, ops, shared constants, activations as ops."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from graphrnn.errors import SpecError

#: graphrnn activation -> (ONNX op, {attribute: node key}) where one op computes it
_PLAIN_OPS = {"tanh": ("Tanh", {}), "sigmoid": ("Sigmoid", {}), "relu": ("Relu", {}),
              "identity": ("Identity", {}), "softsign": ("Softsign", {}),
              "softplus": ("Softplus", {}), "leaky_relu": ("LeakyRelu", {"alpha": "alpha"}),
              "thresholded_relu": ("ThresholdedRelu", {"alpha": "alpha"}),
              "elu": ("Elu", {"alpha": "alpha"}),
              "hard_sigmoid": ("HardSigmoid", {"alpha": "alpha", "beta": "beta"})}


class Graph:
    """Nodes and constants of one ONNX graph under construction, with fresh tensor names."""

    def __init__(self, counter: list[int], consts: dict):
        self.nodes: list[onnx.NodeProto] = []
        self.counter, self.consts = counter, consts

    def fresh(self, hint: str) -> str:
        self.counter[0] += 1
        return f"{hint}:{self.counter[0]}"

    def op(self, op_type: str, inputs: list[str], hint: str = "t", outputs=None, **attrs):
        outs = outputs or [self.fresh(hint)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, **attrs))
        return outs[0] if len(outs) == 1 else outs

    def const(self, value, hint: str = "c", dtype=np.float32) -> str:
        array = np.asarray(value, dtype=dtype)
        key = (hint, array.dtype.str, array.shape, array.tobytes())
        if key not in self.consts:
            name = f"{hint}#{len(self.consts)}"
            self.consts[key] = numpy_helper.from_array(array, name)
        return self.consts[key].name


def activate(g: Graph, node, x: str) -> str:
    """The ONNX ops computing ``node``'s activation of ``x`` in ``g``; their output."""
    act, alpha, beta = node.activation, node.alpha, node.beta
    from graphrnn.ops.activations import REGISTRY
    p = REGISTRY[act].params(alpha, beta)
    if act in _PLAIN_OPS:
        op_type, keys = _PLAIN_OPS[act]
        return g.op(op_type, [x], act, **{k: getattr(p, v) for k, v in keys.items()})
    if act == "softmax":
        return g.op("Softmax", [x], act, axis=-1)
    if act in ("sign", "step"):
        low = -1.0 if act == "sign" else 0.0
        ge = g.op("GreaterOrEqual", [x, g.const(0.0)], "ge")
        return g.op("Where", [ge, g.const(1.0), g.const(low)], act)
    if act == "scaled_tanh":
        inner = g.op("Tanh", [g.op("Mul", [x, g.const(p.beta)])])
        return g.op("Mul", [inner, g.const(p.alpha)], act)
    if act == "affine":
        return g.op("Add", [g.op("Mul", [x, g.const(p.alpha)]), g.const(p.beta)], act)
    raise SpecError(f"{node.name}: activation {act} cannot be exported to ONNX")
