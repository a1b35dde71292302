"""The IR checker: valid Programs pass, and each invariant it enforces catches its own breakage."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

import graphrnn as gr
from graphrnn.compiler import passes
from graphrnn.compiler.checker import IRError, check_program
from graphrnn.compiler.ir import Fused, InitState, MatMul, NodeUpdate, Program, next_uid
from tests.helpers import SPEC_FILES, SPECS

#: a learned initial state two rows deep: stage 0 is [InitState h, gemm x->h], stage 1 the
#: loop [gemm h@2->h, h], stage 2 [gemm h->y, y]
LEARNED = """
name: learned_init
inputs: {x: 3}
nodes:
  h: {size: 4, activation: tanh, init_state: learned, leak: 0.5}
  y: 2
edges:
  - x -> h
  - h -> h @2
  - h -> y
outputs: [y]
"""


def program(spec) -> Program:
    """The scheduled Program of a bundled spec's name or a spec text."""
    net = gr.load_spec(SPECS / f"{spec}.yaml" if "\n" not in spec else spec)
    return passes.schedule(net)


def with_op(prog: Program, stage: int, index: int, op) -> Program:
    """``prog`` with op ``index`` of stage ``stage`` replaced by ``op``."""
    ops = list(prog.stages[stage].ops)
    ops[index] = op
    return with_ops(prog, stage, ops)


def with_ops(prog: Program, stage: int, ops) -> Program:
    stages = list(prog.stages)
    stages[stage] = replace(stages[stage], ops=tuple(ops))
    return prog.replace(stages=tuple(stages))


def find(prog: Program, kind, **fields) -> tuple[int, int]:
    """(stage, index) of the first op of type ``kind`` with the given field values."""
    for s, stage in enumerate(prog.stages):
        for i, op in enumerate(stage.ops):
            if isinstance(op, kind) and all(getattr(op, k) == v for k, v in fields.items()):
                return s, i
    raise LookupError(f"no {kind.__name__} with {fields}")


def op_at(prog: Program, where: tuple[int, int]):
    return prog.stages[where[0]].ops[where[1]]


def rejects(prog: Program, message: str) -> None:
    with pytest.raises(IRError, match=re.escape(message)):
        check_program(prog)


# -- valid Programs -----------------------------------------------------------------------

@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: p.stem)
def test_every_bundled_program_passes_unchanged(path):
    prog = passes.schedule(gr.load_spec(path))
    assert check_program(prog) is prog


def test_a_program_with_a_learned_initial_state_passes():
    prog = program(LEARNED)
    assert isinstance(prog.stages[0].ops[0], InitState)
    assert check_program(prog) is prog


def test_the_lowered_program_passes_before_any_pass():
    from graphrnn.compiler.lower import lower

    prog = lower(gr.load_spec(LEARNED))
    assert check_program(prog) is prog


# -- buffers, uids and kinds --------------------------------------------------------------

def test_a_buffer_filed_under_another_name():
    prog = program("elman")
    buffers = dict(prog.buffers)
    buffers["h:net"] = replace(buffers["h:net"], name="h:pre")
    rejects(prog.replace(buffers=buffers), "buffer 'h:pre' is filed as 'h:net'")


def test_a_buffer_of_unknown_role():
    prog = program("elman")
    buffers = dict(prog.buffers)
    buffers["h:net"] = replace(buffers["h:net"], role="scratch")
    rejects(prog.replace(buffers=buffers), "buffer 'h:net' has unknown role 'scratch'")


def test_two_ops_with_one_uid():
    prog = program("elman")
    where = find(prog, NodeUpdate, node="y")
    taken = op_at(prog, find(prog, NodeUpdate, node="h")).uid
    rejects(with_op(prog, *where, replace(op_at(prog, where), uid=taken)),
            f"uid {taken} belongs to two ops: h = tanh(")


def test_a_fused_member_sharing_a_uid_with_an_op_outside():
    prog = program("lstm")
    s, i = find(prog, Fused)
    fused = op_at(prog, (s, i))
    gemm_uid = op_at(prog, find(prog, MatMul, src="h")).uid
    members = (replace(fused.ops[0], uid=gemm_uid), *fused.ops[1:])
    rejects(with_op(prog, s, i, replace(fused, ops=members)), f"uid {gemm_uid} belongs to two")


def test_an_unknown_stage_kind():
    prog = program("elman")
    stages = (replace(prog.stages[0], kind="parallel"), *prog.stages[1:])
    rejects(prog.replace(stages=stages), "unknown stage kind 'parallel'")


def test_a_term_of_unknown_kind():
    prog = program("elman")
    where = find(prog, NodeUpdate, node="y")
    op = op_at(prog, where)
    broken = replace(op, terms=(replace(op.terms[0], kind="dense"),))
    rejects(with_op(prog, *where, broken), "has a term of unknown kind 'dense'")


def test_a_fused_op_holding_a_matmul():
    prog = program("lstm")
    s, i = find(prog, Fused)
    stage = prog.stages[s]
    gemm, fused = stage.ops[i - 1], stage.ops[i]
    assert isinstance(gemm, MatMul)
    ops = [*stage.ops[:i - 1], replace(fused, ops=(gemm, *fused.ops)), *stage.ops[i + 1:]]
    rejects(with_ops(prog, s, ops), "a fused op holds a MatMul, not only NodeUpdates")


# -- reads --------------------------------------------------------------------------------

def test_a_read_of_an_unknown_buffer():
    prog = program("elman")
    where = find(prog, NodeUpdate, node="y")
    op = op_at(prog, where)
    broken = replace(op, terms=(replace(op.terms[0], src="nowhere"),))
    rejects(with_op(prog, *where, broken), "reads unknown buffer 'nowhere'")


def test_a_read_beyond_the_history():
    prog = program("elman")
    assert prog.buffers["h"].pad == 1
    where = find(prog, MatMul, src="h", delay=1)
    rejects(with_op(prog, *where, replace(op_at(prog, where), delay=2)),
            "reads h@-2 beyond its history")


def test_a_same_step_read_before_the_write():
    prog = program("elman")
    s, i = find(prog, MatMul, src="h", delay=0)
    ops = list(prog.stages[s].ops)
    ops[i], ops[i + 1] = ops[i + 1], ops[i]  # y before the GEMM it reads
    rejects(with_ops(prog, s, ops), "reads h->y before it is written")


def test_a_delayed_read_before_the_write_outside_a_loop():
    prog = program("elman")
    s, _ = find(prog, MatMul, src="h", delay=1)
    assert prog.stages[s].kind == "loop"
    stages = list(prog.stages)
    stages[s] = replace(stages[s], kind="batched")
    rejects(prog.replace(stages=tuple(stages)), "reads h@-1 before it is written")


# -- writes -------------------------------------------------------------------------------

def test_a_write_to_an_unknown_buffer():
    prog = program("elman")
    where = find(prog, NodeUpdate, node="y")
    rejects(with_op(prog, *where, replace(op_at(prog, where), net="y:nowhere")),
            "writes unknown buffer 'y:nowhere'")


def test_a_write_to_an_input():
    prog = program("elman")
    where = find(prog, NodeUpdate, node="y")
    rejects(with_op(prog, *where, replace(op_at(prog, where), net="x")),
            "writes the input 'x'")


def test_a_buffer_written_twice():
    prog = program("elman")
    s, i = find(prog, NodeUpdate, node="y")
    again = replace(op_at(prog, (s, i)), uid=next_uid(prog))
    rejects(with_ops(prog, s, [*prog.stages[s].ops, again]), "buffer 'y' is written twice")


def test_an_output_never_written():
    prog = program("elman")
    buffers = {**prog.buffers, "z": replace(prog.buffers["y"], name="z")}
    rejects(prog.replace(buffers=buffers, outputs=("y", "z")), "outputs never written: ['z']")


# -- columns ------------------------------------------------------------------------------

def test_matmul_blocks_that_do_not_tile_the_output():
    prog = program("lstm")
    where = find(prog, MatMul, src="x")
    op = op_at(prog, where)
    blocks = (replace(op.blocks[0], cols=(0, 15)), *op.blocks[1:])
    rejects(with_op(prog, *where, replace(op, blocks=blocks)), "do not tile x@0->i+f+g+o")


def test_a_term_reading_columns_outside_its_buffer():
    prog = program("elman")
    where = find(prog, NodeUpdate, node="y")
    op = op_at(prog, where)
    size = prog.buffers[op.terms[0].src].size
    broken = replace(op, terms=(replace(op.terms[0], cols=(1, size + 1)),))
    rejects(with_op(prog, *where, broken), f"reads columns (1, {size + 1}) outside h->y")


# -- initial states -----------------------------------------------------------------------

def test_an_initial_state_in_a_loop_stage():
    prog = program(LEARNED)
    init, loop = prog.stages[0].ops[0], prog.stages[1]
    assert loop.kind == "loop"
    moved = with_ops(with_ops(prog, 1, [init, *loop.ops]), 0, prog.stages[0].ops[1:])
    rejects(moved, "h@-2..-1 = init(h.init) is in a loop stage, not a batched one")


@pytest.mark.parametrize("rows", [0, 3])
def test_an_initial_state_outside_the_history(rows):
    prog = program(LEARNED)
    assert prog.buffers["h"].pad == 2
    rejects(with_op(prog, 0, 0, replace(prog.stages[0].ops[0], rows=rows)),
            f"writes {rows} rows of h's history of 2")


def test_an_initial_state_of_an_unknown_buffer():
    prog = program(LEARNED)
    rejects(with_op(prog, 0, 0, replace(prog.stages[0].ops[0], out="g")),
            "writes unknown buffer 'g'")


def test_an_initial_state_written_twice():
    prog = program(LEARNED)
    init = prog.stages[0].ops[0]
    again = replace(init, uid=next_uid(prog))
    rejects(with_ops(prog, 0, [init, again, *prog.stages[0].ops[1:]]),
            "the initial state of 'h' is written twice")


def test_an_initial_state_after_a_reader_of_the_history():
    prog = program(LEARNED)
    init, last = prog.stages[0].ops[0], len(prog.stages) - 1
    assert prog.stages[last].kind == "batched"
    moved = with_ops(with_ops(prog, last, [init, *prog.stages[last].ops]), 0,
                     prog.stages[0].ops[1:])
    rejects(moved, "init(h.init) comes after an op that reads h's history")
