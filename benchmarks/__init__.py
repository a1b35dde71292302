"""Benchmarks of graphrnn against PyTorch and JAX (``python -m benchmarks.bench --help``)."""

# before NumPy loads OpenBLAS: graphrnn asks it for short idle spins (see graphrnn/config.py)
import graphrnn  # noqa: F401
