"""Loops computing only each step's going rows (a batch sorted by length): what they leave
alone past each sequence's end, zeroed after the call (see :mod:`graphrnn.lengths`)."""

from __future__ import annotations

import ctypes


class Pad(ctypes.Structure):
    """An array's rows past each end, zeroed by ``gr_loop_zero`` (``kernels/host_loop.c``)."""

    _fields_ = [("base", ctypes.c_void_p), ("step", ctypes.c_long), ("width", ctypes.c_int)]


class GoingRows:
    """Mixin of :class:`~graphrnn.backends.host_loop.CompiledLoopKernel`: the per-step row
    counts of its run (:attr:`graphrnn.lengths.LengthPlan.rows`) and the zeros past the ends
    (in C where the loop library has ``gr_loop_zero``, else in NumPy)."""

    def _rows(self):
        """The run's per-step row counts (sequences sorted by length), or None: all rows
        (also under ``remat``, whose windows recompute and release rows of their own)."""
        plan = self.run.lengths_plan
        return None if plan is None or self.run.remat is not None else plan.rows

    def _pads(self, backward: bool):
        """What :meth:`_zero` zeroes in C past each end: forward, what is read after the loop
        (:meth:`_read_after`; not its GEMMs' products, which only its chains read); backward,
        the gradients it touches (but of buffers read ahead: their boundary gradients are
        taken first, in Python); both, the layer-normalised chains' scratch."""
        run = self.run
        if backward:
            names = [n for n in sorted(self.touched) if n in run.grads and n not in self._ahead]
            arrays = [(run.grads[n], n) for n in names]
        else:
            self.zeroed = self._read_after()
            arrays = [(run.arrays[n], n) for n in sorted(self.zeroed - {g.out for g in self.gemms})]
        entries = [Pad(self._base(a, n), run.batch * a.shape[-1], a.shape[-1])
                   for a, n in arrays]
        entries += [Pad(a.ctypes.data, run.batch * (a[0, 0].size), a[0, 0].size)
                    for a in self._scratch(0, run.steps)]
        return (Pad * max(len(entries), 1))(*entries)

    def _read_after(self) -> set:
        """What the stage writes that is read after its loop: by other stages or the caller,
        by the weight gradients (GEMM and diagonal-term sources), a normalised member's net
        (x̂, its gain's gradient reads it); not the rest (read only by the loop's own rows)."""
        prog, ids = self.run.prog, {id(k.op) for k in self.kernels}
        later = {name for _, op in prog.ops() if id(op) not in ids for name, _ in op.reads}
        members = [m for k in self.chains for m in getattr(k.op, "ops", (k.op,))]
        later |= set(prog.outputs) | {g.src for g in self.gemms}
        later |= {t.src for m in members for t in m.terms if t.kind == "diagonal"}
        later |= {m.net for m in members if getattr(m, "norm", None)}
        return self.writes & later | (later - self.writes) & {m.net for m in members}

    @property
    def _ahead(self) -> set:
        """The touched buffers that something reads ahead (rows after the last step)."""
        return {n for n in self.touched if self.run.prog.buffers[n].tail > 0}

    def _zero(self, lo: int, hi: int, backward: bool, in_c: bool) -> None:
        """Zeros past each sequence's end (what the loop left alone), steps ``[lo, hi)``;
        backward, the boundary gradients taken out first (they lie past the ends)."""
        plan = self.run.lengths_plan
        if backward:
            plan.take(self.touched)
        if in_c and self.loop_zero is not None:
            self.loop_zero(ctypes.byref(self.backward_loop if backward else self.forward_loop),
                           lo, hi - lo)
            if backward:
                plan.zero_padding(self._ahead, lo, hi, grad=True)
            return
        plan.zero_padding(self.touched if backward else self.zeroed, lo, hi, grad=backward)
        plan.zero_steps(self._scratch(lo, hi), lo, hi)

    def _scratch(self, lo: int, hi: int) -> list:
        """Steps ``[lo, hi)`` of the layer-normalised chains' ``1/σ`` (``(T, B)``, read by
        their backward kernels; their ``dy`` is one row per sequence, not per step)."""
        return [array[lo:hi] for k in self.chains for (kind, _), array in
                getattr(k, "store", {}).items() if kind == "rstd"]
