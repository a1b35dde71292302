"""Benchmarks of graphrnn against PyTorch and JAX (``python -m benchmarks.bench --help``)."""
