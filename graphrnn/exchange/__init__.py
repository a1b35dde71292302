"""Exchanging networks with other frameworks: ONNX export and import (needs graphrnn[onnx])."""
