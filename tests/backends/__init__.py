"""Tests of graphrnn.backends."""
