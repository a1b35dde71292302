"""Tests of graphrnn.hopfield."""
