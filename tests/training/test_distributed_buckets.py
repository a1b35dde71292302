"""Gradient buckets of data-parallel training: which stage completes which gradients."""

from __future__ import annotations

import types

import numpy as np

import graphrnn as gr
from graphrnn.training.buckets import BucketedSum, plan_buckets, stage_params
from graphrnn.training.distributed import N_SLOTS
from tests.helpers import SPECS


def _program_keys(spec: str):
    model = gr.compile(gr.load_spec(SPECS / spec), dtype="float64")
    keys = [k for k, p in model.net.params.items() if p.trainable]
    sizes = [int(np.prod(model.net.params[k].shape)) for k in keys]
    return model, keys, sizes


def test_a_bucket_per_stage_closes_where_backward_order_last_names_its_params():
    model, keys, sizes = _program_keys("lstm.yaml")
    stages = model.program.stages
    buckets = plan_buckets(stages, keys, sizes, bucket_bytes=0)
    assert sorted(k for b in buckets for k in b.keys) == sorted(keys)  # each exactly once
    assert buckets[-1].after is None and len(buckets) > 1
    names = frozenset(keys)
    for b in buckets[:-1]:  # no stage that BPTT runs later names a parameter of the bucket
        later = set().union(*(stage_params(s, names) for s in stages[:b.after]))
        assert not later & set(b.keys)
        assert set(b.keys) <= stage_params(stages[b.after], names)
    spans = [(b.lo, b.hi) for b in buckets]  # contiguous, slots at the end
    assert spans[0][0] == 0 and all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
    assert spans[-1][1] == sum(sizes) + N_SLOTS


def test_a_large_bucket_size_gives_one_bucket_summed_after_the_call():
    model, keys, sizes = _program_keys("lstm.yaml")
    (only,) = plan_buckets(model.program.stages, keys, sizes, bucket_bytes=1 << 30)
    assert only.after is None and set(only.keys) == set(keys)


class _Comm:  # one rank: an all-reduce is a copy
    def Iallreduce(self, send, recv, op):
        recv[...] = send
        return types.SimpleNamespace(Test=lambda: True)


def _dist():
    mpi = types.SimpleNamespace(SUM="sum", Request=types.SimpleNamespace(Testall=lambda r: True))
    d = types.SimpleNamespace(comm=_Comm(), MPI=mpi, early_bytes=0, reduce_seconds=0.0,
                              reduce_bytes=0, reduces=0, wait=lambda r, what: None)
    return d


def test_gradients_changed_after_their_bucket_started_are_reported_not_summed():
    model, keys, sizes = _program_keys("elman.yaml")
    buckets = plan_buckets(model.program.stages, keys, sizes, bucket_bytes=0)
    summer = BucketedSum(_dist(), model.program, buckets, dict(zip(keys, sizes, strict=True)),
                         0.5, "the gradient all-reduce")
    rng = np.random.default_rng(0)
    grads = {k: rng.normal(size=model.net.params[k].shape) for k in keys}
    run = types.SimpleNamespace(prog=model.program, param_grads=grads)
    for i in range(len(model.program.stages) - 1, -1, -1):
        summer.stage_done(run, i)
    assert summer.early and summer.check_early(grads) is None
    flat = summer.finish(grads, [1.0, 2.0, 0.0, 0.0])
    for k, (lo, hi) in summer.offsets().items():
        assert np.array_equal(flat[lo:hi], np.ravel(grads[k]) * 0.5)
    changed = {**grads, summer.early[0].keys[0]: grads[summer.early[0].keys[0]] + 1}
    error = summer.check_early(changed)
    assert error is not None and "summed during the backward pass" in str(error)
