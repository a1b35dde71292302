"""Tests of graphrnn.cli."""
