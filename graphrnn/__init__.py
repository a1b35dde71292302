"""graphrnn: compile recurrent networks declared as cyclic graphs with delays."""

from graphrnn.errors import DataError, SpecError
from graphrnn.model import Model, compile  # noqa: A004
from graphrnn.network import Edge, Network, Node, Param
from graphrnn.spec import load_spec
from graphrnn.unroll import unroll

__all__ = ["DataError", "Edge", "Model", "compile", "Network", "Node", "Param", "SpecError", "load_spec", "unroll"]
__version__ = "0.1.0"
