"""Tests of graphrnn.frontend."""
