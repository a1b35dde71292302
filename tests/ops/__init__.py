"""Tests of graphrnn.ops."""
