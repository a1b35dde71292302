"""graphrnn: compile recurrent networks declared as cyclic graphs with delays."""

from graphrnn import hopfield
from graphrnn.errors import DataError, SpecError
from graphrnn.model import Model, compile  # noqa: A004
from graphrnn.network import Edge, Network, Node, Param
from graphrnn.spec import load_spec
from graphrnn.training import TrainResult, train
from graphrnn.unroll import unroll

__all__ = ["DataError", "Edge", "Model", "Network", "Node", "Param", "SpecError", "TrainResult",
           "compile", "hopfield", "load_spec", "train", "unroll"]
__version__ = "0.1.0"
