"""Compiled CPU loops: which stages run whole in C, how they split over threads, and that any
split computes what the step-by-step NumPy run computes."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

import graphrnn as gr
from benchmarks.common import resized_spec
from graphrnn import config
from graphrnn.backends import host_loop, native
from graphrnn.backends.codegen import expand_includes
from graphrnn.backends.host_loop import CompiledLoopKernel, plan_loop
from tests.helpers import ROOT, SPECS, assert_close, random_case

needs_cc = pytest.mark.skipif(not native.available(), reason=f"no compiled kernels here: "
                              f"{native.why_not()}")

#: two recurrent GEMMs (delays 1 and 2), a leak and a learned initial state in one chain
DELAYS = """
name: delays
inputs: {x: 5}
nodes:
  h: {size: 37, activation: tanh, leak: 0.7, init_state: learned}
  g: {size: 37, combine: product}
  y: 3
edges:
  - x -> h
  - h -> h @1
  - h -> h @2
  - x -> g
  - h -> g @1
  - h -> g identity
  - g -> y
outputs: [y]
"""


def loop_stages(prog):
    return [s for s in prog.stages if s.kind == "loop"]


def test_an_lstm_splits_its_units_and_computes_all_four_gates_of_them():
    prog = gr.compile(gr.load_spec(resized_spec("lstm", 512, 256))).program
    (stage,) = loop_stages(prog)
    plan = plan_loop(stage, prog, threads=2, batch=32)
    assert plan.threads == 2 and plan.bounds == ((0, 256, 512),)
    (gemm,) = [op for op in stage.ops if hasattr(op, "blocks")]
    assert prog.buffers[gemm.out].size == 2048
    for thread, lo in ((0, 0), (1, 256)):
        mine = sorted((col, count) for t, _, col, count in plan.forward if t == thread)
        assert mine == [(gate * 512 + lo, 256) for gate in range(4)]
    # backward: each thread computes a half of d h[t - 1]
    assert sorted((t, col, count) for t, _, col, count in plan.backward) == [
        (0, 0, 256), (1, 256, 256)]


@pytest.mark.parametrize("threads", [1, 2, 3, 7])
@pytest.mark.parametrize("spec", ["delays", "jordan", "narx", "mlp_loops"])
def test_any_split_covers_every_column_once(spec, threads):
    net = gr.load_spec(DELAYS) if spec == "delays" else gr.load_spec(SPECS / f"{spec}.yaml")
    prog = gr.compile(net).program
    (stage,) = loop_stages(prog)
    plan = plan_loop(stage, prog, threads, batch=64)
    assert plan is not None and len(plan.bounds) == sum(c for c, _ in plan.ops)
    for bounds in plan.bounds:
        assert len(bounds) == plan.threads + 1 and list(bounds) == sorted(bounds)
    gemms = [op for op in stage.ops if hasattr(op, "blocks")]
    for ranges, width in ((plan.forward, lambda g: prog.buffers[g.out].size),
                          (plan.backward, lambda g: prog.buffers[g.src].size)):
        for i, g in enumerate(gemms):
            cols = [c for _, gi, col, count in ranges if gi == i for c in range(col, col + count)]
            assert sorted(cols) == list(range(width(g)))  # each once (here every column is read)


@pytest.mark.parametrize("spec", ["hopfield", "boltzmann", "modern_hopfield"])
def test_loops_with_asynchronous_or_softmax_units_run_step_by_step(spec):
    prog = gr.compile(gr.load_spec(SPECS / f"{spec}.yaml")).program
    assert all(plan_loop(s, prog, 2, 32) is None for s in loop_stages(prog))


def test_a_loop_without_gemms_is_one_compiled_chain():
    prog = gr.compile(gr.load_spec(SPECS / "locally_recurrent.yaml")).program
    (stage,) = loop_stages(prog)
    plan = plan_loop(stage, prog, 2, 32)
    assert plan.ops == ((True, 0),) and plan.forward == plan.backward == () and plan.macs == 0


def test_a_gemm_with_a_folded_bias_is_not_a_compiled_loop():
    # numpy-ufuncs folds biases into the input projections; a loop GEMM never carries one here,
    # so build the case by hand: the same stage with a bias on the recurrent GEMM's block
    prog = gr.compile(gr.load_spec(SPECS / "elman.yaml")).program
    (stage,) = loop_stages(prog)
    gemm = stage.ops[0]
    biased = replace(gemm, blocks=tuple(replace(b, bias="h.bias") for b in gemm.blocks))
    changed = replace(stage, ops=(biased, *stage.ops[1:]))
    assert plan_loop(stage, prog, 2, 32) is not None
    assert plan_loop(changed, prog, 2, 32) is None


def test_small_steps_get_fewer_threads(monkeypatch):
    monkeypatch.setattr(host_loop, "MIN_COLUMNS", 32)
    monkeypatch.setattr(host_loop, "MIN_MACS", 2**17)
    prog = gr.compile(gr.load_spec(resized_spec("lstm", 512, 256))).program
    (stage,) = loop_stages(prog)
    assert plan_loop(stage, prog, 8, batch=32).threads == 8
    assert plan_loop(stage, prog, 8, batch=1).threads == 8  # 1 MMAC a step: still worth it
    small = gr.compile(gr.load_spec(resized_spec("elman", 64, 32))).program
    (stage,) = loop_stages(small)
    assert plan_loop(stage, small, 8, batch=1).threads == 1
    assert plan_loop(stage, small, 8, batch=64).threads == 2  # 64 columns, 32 a thread


def run_both(net, dtype, threads, monkeypatch, steps=7, batch=5):
    """Forward and gradients on the compiled loop (``threads``) and on numpy-ufuncs."""
    monkeypatch.setattr(config, "LOOP_THREADS", threads)
    fast = gr.compile(net, dtype=dtype)
    slow = gr.compile(net, backend="numpy-ufuncs", dtype=dtype)
    params = fast.init_params(seed=3)
    inputs, state = random_case(net, steps=steps, batch=batch, seed=4)
    targets = {o: np.random.default_rng(5).normal(size=(steps, batch, net.size(o)))
               for o in net.outputs}
    kinds = {type(k) for _, ks in fast._run(params, inputs, state, None, 0).kernels for k in ks}
    assert CompiledLoopKernel in kinds
    return [(m.forward(params, inputs, state), m.gradients(params, inputs, targets, state=state))
            for m in (fast, slow)]


@needs_cc
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("spec", ["lstm", "gru", "elman", "jordan", "narx", "locally_recurrent",
                                  "delays"])
def test_every_split_matches_the_step_by_step_run_in_float64(spec, threads, monkeypatch):
    net = gr.load_spec(DELAYS if spec == "delays" else resized_spec(spec, 40, 3))
    (fwd_a, grad_a), (fwd_b, grad_b) = run_both(net, "float64", threads, monkeypatch)
    for a, b in zip(fwd_a, fwd_b, strict=True):
        assert_close(a, b, rtol=1e-12)
    assert abs(grad_a[0] - grad_b[0]) <= 1e-12 * abs(grad_b[0])
    assert_close(grad_a[1], grad_b[1], rtol=1e-11)


@needs_cc
def test_float32_and_a_batch_of_one(monkeypatch):
    net = gr.load_spec(resized_spec("lstm", 72, 9))
    (fwd_a, grad_a), (fwd_b, grad_b) = run_both(net, "float32", 2, monkeypatch, batch=1)
    assert_close(fwd_a[0], fwd_b[0], rtol=2e-6)
    assert_close(grad_a[1], grad_b[1], rtol=2e-5)


@needs_cc
def test_threads_refused_run_the_loop_step_by_step(monkeypatch):
    net = gr.load_spec(resized_spec("lstm", 24, 3))
    (fwd_a, grad_a), _ = run_both(net, "float64", 2, monkeypatch)
    monkeypatch.setattr(host_loop, "_library", lambda dtype: lambda *args: -1)
    (fwd_c, grad_c), _ = run_both(net, "float64", 2, monkeypatch)
    assert_close(fwd_c[0], fwd_a[0], rtol=1e-12)
    assert_close(grad_c[1], grad_a[1], rtol=1e-11)


@needs_cc
def test_a_compiler_that_rejects_the_loop_library_leaves_loops_step_by_step(monkeypatch):
    build = native.build

    def no_threads(source, flags=()):
        if "host_loop.c" in source:
            raise RuntimeError("cc could not compile a generated kernel: no pthread.h")
        return build(source, flags)

    monkeypatch.setattr(native, "build", no_threads)
    for name in ("_loop_library", "_library"):  # built anew, not the process's cached one
        monkeypatch.setattr(host_loop, name, getattr(host_loop, name).__wrapped__)
    net = gr.load_spec(resized_spec("lstm", 24, 3))
    fast, slow = gr.compile(net, dtype="float64"), gr.compile(net, backend="numpy-ufuncs",
                                                                dtype="float64")
    params = fast.init_params(seed=3)
    inputs, _ = random_case(net)
    kernels = [k for _, ks in fast._run(params, inputs, None, None, 0).kernels for k in ks]
    assert not any(isinstance(k, CompiledLoopKernel) for k in kernels)
    assert_close(fast.forward(params, inputs)[0], slow.forward(params, inputs)[0], rtol=1e-12)


@needs_cc
@pytest.mark.parametrize("ctype,lanes", [("float", 8), ("double", 4)])
def test_the_loop_library_compiles_without_warnings(ctype, lanes, tmp_path):
    path = tmp_path / "loop.c"
    path.write_text(expand_includes(f'#define GR_T {ctype}\n#define GR_LANES {lanes}\n'
                                    '#include "host_loop.c"\n'))
    done = subprocess.run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread",
                           "-fsyntax-only", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def loop_settings_in_a_fresh_process(code: str, stderr: str = "", **env) -> list[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("OPENBLAS_THREAD_TIMEOUT", "GRAPHRNN_THREADS")}
    done = subprocess.run([sys.executable, "-c", code + "\nfrom graphrnn import config\n"
                           "import os\nprint(config.LOOP_THREADS, config.LOOP_MAX_MACS, "
                           "os.environ.get('OPENBLAS_THREAD_TIMEOUT'))"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120,
                          env={**clean, "PYTHONPATH": str(ROOT), **env})
    assert done.returncode == 0 and done.stderr == stderr, done.stderr
    return done.stdout.split()


def test_imported_before_numpy_graphrnn_shortens_openblas_idle_spins():
    threads, most, timeout = loop_settings_in_a_fresh_process("import graphrnn")
    assert (int(threads), most, timeout) == (config._cpus(), "None", "20")


@pytest.mark.skipif(config._cpus() < 2, reason="one CPU: no BLAS threads to compete with")
def test_imported_after_numpy_loops_take_one_thread_and_small_steps_only():
    settings = loop_settings_in_a_fresh_process("import numpy, graphrnn")
    assert settings == ["1", str(2**22), "None"]
    settings = loop_settings_in_a_fresh_process("import numpy, graphrnn", GRAPHRNN_THREADS="3")
    assert settings == ["3", "None", "None"]
    settings = loop_settings_in_a_fresh_process("import numpy, graphrnn",
                                                OPENBLAS_THREAD_TIMEOUT="16")
    assert settings == [str(config._cpus()), "None", "16"]


@needs_cc
def test_big_steps_run_step_by_step_where_blas_threads_spin(monkeypatch):
    monkeypatch.setattr(config, "LOOP_MAX_MACS", 1000)
    small = gr.compile(gr.load_spec(resized_spec("elman", 8, 3)))
    big = gr.compile(gr.load_spec(resized_spec("elman", 32, 3)))
    for model, compiled in ((small, True), (big, False)):  # 8 x 8 x 5 and 32 x 32 x 5 a step
        params = model.init_params(0)
        inputs, _ = random_case(model.net, steps=3, batch=5)
        kernels = [k for _, ks in model._run(params, inputs, None, None, 0).kernels for k in ks]
        assert any(isinstance(k, CompiledLoopKernel) for k in kernels) == compiled


def test_a_knob_that_is_not_a_number_is_ignored_with_one_line():
    settings = loop_settings_in_a_fresh_process(
        "import graphrnn", GRAPHRNN_THREADS="many",
        stderr="[graphrnn] ignoring GRAPHRNN_THREADS='many': not a number\n")
    assert settings == [str(config._cpus()), "None", "20"]
