"""Packed runs of sequences of different lengths: fewer rows as sequences end (the saving of
``torch.nn.utils.rnn.pack_padded_sequence``) for causal networks.

The batch is sorted by decreasing length once per call and time is cut into a few chunks at
quantiles of the lengths (rounded to a grid, the rows to a multiple of 4, so other batches give
the same shapes and reuse the kept Runs); chunk j runs only the ``n_j`` sequences still going
at its start (and a few ended ones, their results dropped),
continuing each from its state at the end of the chunk before (a causal network's chunks
continue exactly: the final state with ``lengths`` is each sequence's value at its own end).
Sequences ending inside a chunk are finished by the ``lengths`` machinery of
:mod:`graphrnn.lengths`. Backward, the chunks' tapes run in reverse, each seeded with its
outputs' gradients and the state gradients the chunk after it returned.
"""

from __future__ import annotations

import numpy as np

from graphrnn import checks, config
from graphrnn.compiler.ir import StageKind
from graphrnn.errors import DataError, DivergenceError
from graphrnn.lengths import valid_mask
from graphrnn.noise import draw_noise
from graphrnn.training.losses import loss_and_grad

#: time is cut into at most this many chunks (each a Run: a few hundred microseconds of setup)
CHUNKS = 6
#: below this many row-steps of saving, a plain masked run is used
MIN_SAVED_ROW_STEPS = 256
#: a chunk runs a multiple of this many rows (the extra rows: sequences already ended, their
#: results dropped) and its cuts fall on multiples of 1/STEP_GRID of the longest length, so
#: batches of other lengths give chunks of the same shapes, whose Runs the model keeps
ROW_QUANTUM = 4
STEP_GRID = 12
#: whether a model whose loops all run compiled (:func:`one_call`) packs a call into one Run
#: whose loops shrink the rows step by step (False: chunks, as other backends)
ONE_CALL = True


#: where OpenBLAS's idle threads spin (``config.LOOP_MAX_MACS`` set), a packed call whose loops
#: compute at most this share of the row-steps (going / all) runs them compiled whatever the
#: size of their steps: stepped from Python, BLAS's threads speed the full products by less
#: than the rows a compiled loop skips (measured on 2 CPUs, the bidirectional LSTM at (100, 32,
#: 512, 256): compiled on one thread 1.18x stepped on two at every row; packed at a share of
#: 0.53, 0.71x the unpacked call)
UNCAPPED_SHARE = 0.75


def one_call(model, batch: int, share: float = 1.0) -> bool:
    """Whether ``model``'s calls with lengths run packed in one call: the backend runs every
    loop as a compiled C loop (:mod:`graphrnn.backends.host_loop`), which computes only the
    going rows of each step of a batch sorted by length (read-ahead networks included), under
    ``config.LOOP_MAX_MACS`` or (``share`` of the row-steps going at most
    :data:`UNCAPPED_SHARE`) whatever its steps' size."""
    from graphrnn.backends import host_loop
    from graphrnn.backends.numpy_backend import NumpyBackend

    backend = model.backend
    if not (ONE_CALL and isinstance(backend, NumpyBackend) and getattr(backend, "compiled", False)
            and config.LOOP_THREADS > 0 and host_loop.available(model.dtype)):
        return False
    return _loops_compile(model, batch, None if share <= UNCAPPED_SHARE else
                          config.LOOP_MAX_MACS)


def loop_cap(model, batch: int) -> int | None:
    """The ``config.LOOP_MAX_MACS`` a packed call of :func:`one_call` runs under: the knob's,
    or None where a loop's steps exceed it (the call's share of rows lifted it)."""
    cap = config.LOOP_MAX_MACS
    return cap if cap is None or _loops_compile(model, batch, cap) else None


def _loops_compile(model, batch: int, max_macs: int | None) -> bool:
    """Whether every loop of ``model``'s program compiles, each step at most ``max_macs``."""
    from graphrnn.backends import host_loop

    prog = model.program
    for stage in prog.stages:
        if stage.kind != StageKind.LOOP:
            continue
        plan = host_loop.plan_loop(stage, prog, config.LOOP_THREADS, batch)
        if plan is None or (max_macs is not None and plan.macs > max_macs):
            return False
    return True


def plan_chunks(net, lengths: np.ndarray, steps: int, whole: bool = False):
    """``(order, chunks)`` for a packed run, or None where it does not apply or pays: the
    network draws no noise, reads no step ahead (unless ``whole``), and cutting saves enough
    row-steps. ``order``: the rows by decreasing length; ``chunks``: ``(lo, hi, n, m)``, steps
    ``[lo, hi)`` run on the first ``m`` rows of ``order``, of which the first ``n`` go on
    (``m``: ``n`` rounded up to a multiple of :data:`ROW_QUANTUM`). ``whole``
    (:func:`one_call`): one chunk of every step and row, the compiled loops shrinking the
    rows step by step."""
    noise = draw_noise(net, 1, 1, 0)
    if noise.uniforms or noise.orders:
        return None
    order = np.argsort(-lengths, kind="stable")
    batch = len(lengths)
    if whole:
        return (None if np.all(lengths == steps) else (order, [(0, steps, batch, batch)]))
    if any(k < 0 for _, _, k in net.boundaries):
        return None
    ascending = np.sort(lengths)
    longest = int(ascending[-1])
    grid = -(-longest // STEP_GRID)
    cuts = sorted({0, *(grid * (int(ascending[(j * batch) // CHUNKS]) // grid)
                        for j in range(1, CHUNKS))} - {longest})
    cuts = [c for c in cuts if c < longest] + [longest]
    chunks = []
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        n = int((lengths > lo).sum())
        chunks.append((lo, hi, n, min(batch, -(-n // ROW_QUANTUM) * ROW_QUANTUM)))
    cost = sum((hi - lo) * m for lo, hi, _, m in chunks)
    if len(chunks) < 2 and ascending[-1] == steps or steps * batch - cost < MIN_SAVED_ROW_STEPS:
        return None
    return order, chunks


def _pieces(model, params, inputs, state, lengths, plan, steps: int, record: bool,
            input_grads: bool = False):
    """Run the chunks: per chunk ``(lo, hi, n, outputs, final, tape)`` (tape None unless
    ``record``) in sorted row order; the state each chunk starts from is the last's final."""
    order, chunks = plan
    sorted_len = lengths[order]
    carried = None if state is None else {k: np.asarray(v)[order] for k, v in state.items()}
    pieces = []
    for lo, hi, n, m in chunks:
        rows = order[:m]
        x = {k: np.asarray(v)[lo:hi][:, rows] for k, v in inputs.items()}
        s = None if carried is None else {k: v[:m] for k, v in carried.items()}
        own = np.clip(sorted_len[:m] - lo, 1, hi - lo)  # rows past n: one step, dropped
        with config.loop_max_macs(loop_cap(model, m) if chunks == [(0, steps, m, m)]
                                  else config.LOOP_MAX_MACS):  # one call (one_call)
            result = model.forward(params, x, s, lengths=own, record=record,
                                   input_grads=input_grads, layout="time")
        outputs, final = result[:2]
        pieces.append((lo, hi, n, outputs, final, result[2] if record else None, s, m))
        carried = {k: final[k][:n] if carried is None or k not in carried
                   else np.concatenate([final[k][:n], carried[k][n:]]) for k in final}
    return pieces, carried


def packed_forward(model, params, inputs, state, lengths, plan, steps: int):
    """``Model.forward(..., lengths=)`` by packed chunks: outputs and final state in the
    caller's row order (outputs past each end zeros)."""
    pieces, carried = _pieces(model, params, inputs, state, lengths, plan, steps, record=False)
    return _assemble(model, pieces, plan[0], steps, len(lengths)), _unsort(carried, plan[0])


def _assemble(model, pieces, order, steps: int, batch: int) -> dict:
    outputs = {o: np.zeros((steps, batch, model.net.size(o)), dtype=model.dtype)
               for o in model.net.outputs}
    for lo, hi, n, out, *_ in pieces:
        for o, y in out.items():
            outputs[o][lo:hi, order[:n]] = y[:, :n]
    return outputs


def _unsort(arrays: dict, order: np.ndarray) -> dict:
    out = {}
    for k, v in arrays.items():
        a = np.empty_like(v)
        a[order] = v
        out[k] = a
    return out


def packed_gradients(model, params, inputs, state, lengths, plan, steps: int, loss_grad):
    """``Model.gradients(..., lengths=)`` by packed chunks. ``loss_grad(outputs)`` gives
    ``(loss, {output: dy (T, B, size)})`` of the assembled outputs; returns
    ``(loss, grads, final state)``."""
    order = plan[0]
    pieces, carried = _pieces(model, params, inputs, state, lengths, plan, steps, record=True)
    total, dys = loss_grad(_assemble(model, pieces, order, steps, len(lengths)))
    grads: dict = {}
    state_grads = None
    after = None
    for lo, hi, n, _, _, tape, given, m in reversed(pieces):
        seeds = {o: _seed_rows(dy, lo, hi, order, n, m) for o, dy in dys.items()}
        g = tape.backward(seeds, None if state_grads is None else {
            k: _zero_rows(v[:after], m) for k, v in state_grads.items()})
        tape.release()
        for name in model.net.params:
            grads[name] = grads.get(name, 0) + g[name]
        state_grads = None if given is None else {k: g[f"state:{k}"] for k in given
                                                  if g.get(f"state:{k}") is not None}
        after = n
    for name in model.net.params:
        grads[name] = np.asarray(grads[name], dtype=model.dtype)
    if state is not None:
        for k, v in _unsort(state_grads, order).items():
            grads[f"state:{k}"] = v
    return total, grads, _unsort(carried, order)


def _seed_rows(dy, lo: int, hi: int, order, n: int, m: int):
    """A chunk's output gradients: its ``n`` going rows' of ``dy``, zeros for its ``m - n``
    dropped rows."""
    seeds = np.zeros((hi - lo, m, *np.shape(dy)[2:]), dtype=np.asarray(dy).dtype)
    seeds[:, :n] = np.asarray(dy)[lo:hi][:, order[:n]]
    return seeds


def _zero_rows(g, n: int):
    """A state gradient of the chunk after (its going rows, fewer) for this chunk's ``n``
    rows: the sequences that end here have no gradient from later steps."""
    if len(g) == n:
        return g
    return np.concatenate([g, np.zeros((n - len(g), *g.shape[1:]), dtype=g.dtype)])


def packed_record(model, params, inputs, state, lengths, plan, steps: int, input_grads: bool,
                  layout: str):
    """``Model.forward(..., lengths=, record=True)`` by packed chunks: outputs, final state
    and a :class:`PackedTape`."""
    pieces, carried = _pieces(model, params, inputs, state, lengths, plan, steps, record=True,
                              input_grads=input_grads)
    tape = PackedTape(model, pieces, plan[0], steps, dict(state or {}), input_grads, layout)
    return (_assemble(model, pieces, plan[0], steps, len(lengths)), _unsort(carried, plan[0]),
            tape)


class PackedTape:
    """The tape of a packed call (the chunks' tapes): :meth:`backward` as
    :meth:`graphrnn.tape.Tape.backward`, chaining the chunks from the last to the first."""

    def __init__(self, model, pieces, order, steps: int, state: dict, input_grads: bool,
                 layout: str):
        self.model, self.pieces, self.order, self.steps = model, pieces, order, steps
        self.state, self.input_grads, self.layout = state, input_grads, layout

    @property
    def final_state_keys(self) -> list[str]:
        """The keys a final-state gradient may have (those of the returned final state)."""
        return [key for key, _, _ in self.model.net.boundaries]

    def release(self) -> None:
        """Give the chunks' Runs back to the model now."""
        for piece in self.pieces or ():
            piece[5].release()
        self.pieces = None

    def backward(self, output_grads: dict, state_grads: dict | None = None) -> dict:
        """See :meth:`graphrnn.tape.Tape.backward` (same arguments and results)."""

        if self.pieces is None:
            raise DataError("this tape was released: record another forward pass")
        net, order, batch = self.model.net, self.order, len(self.order)
        output_grads = {k: np.asarray(v) for k, v in (output_grads or {}).items()
                        if v is not None}
        state_grads = {k: np.asarray(v) for k, v in (state_grads or {}).items()
                       if v is not None}
        checks.check_names("output gradient (an output)", output_grads, net.outputs,
                           required=False)
        checks.check_names("state gradient (a final-state key)", state_grads,
                           self.final_state_keys, required=False)
        if self.layout == "batch":
            output_grads = {k: v.swapaxes(0, 1) for k, v in output_grads.items()}
        for name, g in output_grads.items():
            checks.check_array("output gradient", name, g, (self.steps, batch, net.size(name)))
        sizes = {key: net.size(name) for key, name, _ in net.boundaries}
        for key, g in state_grads.items():
            checks.check_array("state gradient", key, g, (batch, sizes[key]))
        final_seeds = {k: v[order] for k, v in state_grads.items()}
        grads: dict = {}
        inputs = {name: np.zeros((self.steps, batch, net.inputs[name]), dtype=self.model.dtype)
                  for name in net.inputs if name not in net.tokens} if self.input_grads else {}
        carried, after = None, 0
        for lo, hi, n, _, _, tape, given, m in reversed(self.pieces):
            rows = order[:n]
            seeds = {o: _seed_rows(g, lo, hi, order, n, m) for o, g in output_grads.items()}
            chunk_state = {}
            for key in self.final_state_keys:  # rows going on: from the chunk after; the rest
                c = carried.get(key) if carried else None  # end here: the caller's seeds
                mine = final_seeds.get(key)
                if c is None and mine is None:
                    continue
                shape = (c if c is not None else mine).shape[1:]
                top = c[:after] if c is not None else np.zeros((after, *shape))
                bottom = mine[after:n] if mine is not None else np.zeros((n - after, *shape))
                chunk_state[key] = _zero_rows(np.concatenate([top, bottom]), m)
            g = tape.backward(seeds, chunk_state or None)
            for name in net.params:
                grads[name] = grads.get(name, 0) + g[name]
            for name, gx in inputs.items():
                gx[lo:hi, rows] = g[f"input:{name}"][:, :n]
            carried = None if given is None else {k: g[f"state:{k}"] for k in given
                                                  if g.get(f"state:{k}") is not None}
            after = n
        for name in net.params:
            grads[name] = np.asarray(grads[name], dtype=self.model.dtype)
        for name in net.inputs:
            gx = inputs.get(name)
            grads[f"input:{name}"] = (None if gx is None else
                                      gx.swapaxes(0, 1) if self.layout == "batch" else gx)
        for key in self.state:
            g = (carried or {}).get(key)
            grads[f"state:{key}"] = None if g is None else _unsort({key: g}, order)[key]
        return grads


def packed_loss_gradients(model, params, inputs, targets, loss, state, masks, plan):
    """``Model.gradients(..., lengths=)`` of a packed call: ``masks`` by output (time-major,
    None: every step), ``plan`` from ``Model._packing``; returns (loss, grads, final)."""

    lengths, order, chunks, t = plan
    batch = len(lengths)
    checks.check_targets(model.net, targets, loss, t, batch)
    checks.check_names("mask (an output)", masks, list(targets), required=False)
    valid = valid_mask(lengths, t)
    weights = {n: valid if masks.get(n) is None
               else valid * checks.check_mask(n, masks[n], t, batch) for n in targets}

    def loss_grad(outputs):
        total, dys = 0.0, {}
        for name, target in targets.items():
            value, dys[name] = loss_and_grad(
                loss, outputs[name], np.asarray(target, model.dtype if loss == "mse"
                                                else np.int64), weights[name].astype(model.dtype))
            total += value
        if not np.isfinite(total):
            raise DivergenceError(f"the loss is {total}: the forward pass overflowed")
        return total, dys

    return packed_gradients(model, params, inputs, state, lengths, (order, chunks), t,
                            loss_grad)
