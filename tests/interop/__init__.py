"""Tests of graphrnn inside other frameworks (PyTorch, JAX)."""
