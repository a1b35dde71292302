"""graphrnn: compile recurrent networks declared as cyclic graphs with delays."""

# config first: before NumPy loads OpenBLAS, it asks for short idle spins (see config.py)
from graphrnn import config, hopfield  # noqa: F401
from graphrnn.errors import DataError, SpecError
from graphrnn.exchange import from_onnx, to_onnx
from graphrnn.exchange.torch_convert import from_torch, to_torch  # imports torch on use
from graphrnn.frontend.bundled import spec_path
from graphrnn.frontend.network import Edge, Network, Node, Param
from graphrnn.frontend.spec import load_spec
from graphrnn.frontend.unroll import unroll
from graphrnn.model import Model, compile  # noqa: A004
from graphrnn.training.loop import TrainResult, train

__all__ = ["DataError", "Edge", "Model", "Network", "Node", "Param", "SpecError", "TrainResult",
           "compile", "from_onnx", "from_torch", "hopfield", "load_spec", "spec_path", "to_onnx",
           "to_torch", "train", "unroll"]
__version__ = "0.1.0"
