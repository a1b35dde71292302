"""Tests of graphrnn.compiler."""
