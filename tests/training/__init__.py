"""Tests of graphrnn.training."""
