"""MatMul: one GEMM over a window of steps, its VJP, and its weight gradient (one GEMM)."""

from __future__ import annotations

from functools import cached_property

from graphrnn.compiler.ir import MatMul


class MatMulKernel:
    """Runs one MatMul on the arrays of a run (any NumPy-like ``xp``)."""

    #: at most this many rows (steps x batch) in a window: one GEMM per block into the output's
    #: columns, reading the parameters in place; more: one GEMM on the blocks stacked (a copy
    #: per call, small beside the product)
    BLOCKWISE_ROWS = 32
    #: :meth:`param_grads` takes a window of steps (gradient checkpointing sums them)
    windowed_grads = True

    def __init__(self, op: MatMul, run):
        self.op, self.run = op, run
        self.looped = run.looped(op)
        self.src = run.window(op.src, op.delay, looped=self.looped)
        self.out = run.window(op.out, looped=self.looped)
        self._grad_windows = None
        #: each block's ``(rows, src)`` weight, scaled, C-contiguous: the parameter itself where
        #: it is one already, else a copy that :meth:`refresh` brings up to date in place
        self.parts = [_scaled(run.xp, run.params[b.param], b) for b in op.blocks]
        self.bias = None
        if any(b.bias for b in op.blocks):
            self.bias = (run.params[op.blocks[0].bias] if len(op.blocks) == 1 else
                         run.xp.concatenate([run.params[b.bias] if b.bias else
                                             run.xp.zeros(b.cols[1] - b.cols[0], run.dtype)
                                             for b in op.blocks]))
        self.grad_src = op.src in run.grads_wanted
        self._scratch = None

    def refresh(self) -> None:
        """Bring every copy made from the parameters up to date (the arrays are the caller's,
        unchanged in identity, their values maybe changed in place): same memory, new values."""
        run, xp = self.run, self.run.xp
        for part, b in zip(self.parts, self.op.blocks, strict=True):
            p = run.params[b.param]
            if part is not p:
                xp.multiply(p.T if b.transpose else p, b.scale, out=part)
        if self.bias is not None and len(self.op.blocks) > 1:
            xp.concatenate([run.params[b.bias] if b.bias else
                            xp.zeros(b.cols[1] - b.cols[0], run.dtype) for b in self.op.blocks],
                           out=self.bias)
        if "weight" in self.__dict__ and len(self.parts) > 1:
            xp.concatenate(self.parts, out=self.__dict__["weight"])
        if "weight_t" in self.__dict__:
            _transposed(xp, self.parts, run.size(self.op.src), run.size(self.op.out),
                        into=self.__dict__["weight_t"])

    @cached_property
    def weight_t(self):
        """``(src, out)``, contiguous: what a loop's per-step forward multiplies by (BLAS is
        fastest so on a few rows)."""
        run = self.run
        return _transposed(run.xp, self.parts, run.size(self.op.src), run.size(self.op.out))

    @cached_property
    def weight(self):
        """``(out, src)``: the blocks stacked (one block's own array, not copied); backward
        multiplies by it, a batched forward by its transpose (as fast as a copy over many
        rows, which then needs no transposing copy)."""
        return self.parts[0] if len(self.parts) == 1 else self.run.xp.concatenate(self.parts)

    def forward(self, lo: int, hi: int) -> None:
        src, out = self.src(lo, hi), self.out(lo, hi)
        going = self._going(lo, hi)
        if going is not None:
            self._forward_going(src, out, going, lo, hi)
            return
        matmul = self.run.xp.matmul
        a, c = src.reshape(-1, src.shape[-1]), out.reshape(-1, out.shape[-1])
        if len(self.parts) > 1 and c.shape[0] <= self.BLOCKWISE_ROWS and not self.looped:
            for part, b in zip(self.parts, self.op.blocks, strict=True):
                matmul(a, part.T, out=c[:, b.cols[0]:b.cols[1]])
        else:
            matmul(a, self.weight_t if self.looped else self.weight.T, out=c)
        if self.bias is not None:
            out += self.bias

    def _going(self, lo: int, hi: int):
        """A batched product's :func:`going_rows` (None in a loop: one step at a time)."""
        return None if self.looped else going_rows(self.run, self.op, lo, hi)

    def _forward_going(self, src, out, going, lo: int, hi: int) -> None:
        """The product of the going rows only, gathered (the rest: sequences ended, which
        nothing reads; zeroed, so that a reader of every row sees finite padding)."""
        rows = _flat(src)[going] @ self.weight.T
        if self.bias is not None:
            rows += self.bias
        _flat(out)[going] = rows
        self.run.lengths_plan.zero_steps([out], lo, hi)

    def backward(self, lo: int, hi: int) -> None:
        """``d src[t - delay] += d out[t] @ W``."""
        if not self.grad_src:
            return
        run, op = self.run, self.op
        if self._grad_windows is None:
            self._grad_windows = (run.window(op.out, grad=True, looped=self.looped),
                                  run.window(op.src, op.delay, grad=True, looped=self.looped))
        dout, dsrc = (w(lo, hi) for w in self._grad_windows)
        going = self._going(lo, hi)
        if going is not None:  # the rows past the ends have zero gradients: skipped
            _flat(dsrc)[going] += _flat(dout)[going] @ self.weight
            return
        if self._scratch is None or self._scratch.shape != dsrc.shape:
            self._scratch = run.xp.empty_like(dsrc)
        run.xp.matmul(dout.reshape(-1, dout.shape[-1]), self.weight,
                      out=self._scratch.reshape(-1, dsrc.shape[-1]))
        dsrc += self._scratch

    def param_grads(self, lo: int = 0, hi: int | None = None) -> None:
        """``dW = sum_t d out[t]^T src[t - delay]``: one GEMM over every step (or the steps
        ``[lo, hi)``, summed into what earlier windows gave), split per block."""
        run, op = self.run, self.op
        hi = run.steps if hi is None else hi
        dout = run.rows(op.out, lo, hi, grad=True)
        for b in op.blocks:
            if b.bias in run.trainable:
                run.add_param_grad(b.bias, dout[..., b.cols[0]:b.cols[1]].sum(axis=(0, 1)))
        if not any(b.param in run.trainable for b in op.blocks):
            return
        src = run.rows(op.src, lo, hi, op.delay)
        going = going_rows(run, op, lo, hi)
        if going is not None:  # the rows past the ends have zero gradients: skipped
            dw = _flat(dout)[going].T @ _flat(src)[going]
        else:
            dw = dout.reshape(-1, dout.shape[-1]).T @ src.reshape(-1, src.shape[-1])
        for b in op.blocks:
            part = b.scale * dw[b.cols[0]:b.cols[1]]
            run.add_param_grad(b.param, part.T if b.transpose else part)


#: a product over the going rows only needs both its sides this wide at least (gathering the
#: rows costs a pass over them: on a thin product, more than the rows it saves)
GOING_MIN_WIDTH = 32


def going_rows(run, op: MatMul, lo: int, hi: int):
    """Over a batch sorted by length, the going rows of steps ``[lo, hi)``
    (:meth:`~graphrnn.lengths.LengthPlan.going`: indices into the steps' rows flattened), which
    a product over them gathers; None where every row is computed (no sorted batch,
    ``remat``, every row going, a thin product)."""
    plan = run.lengths_plan
    if plan is None or plan.rows is None or run.remat is not None or min(
            run.size(op.src), run.size(op.out)) < GOING_MIN_WIDTH:
        return None
    return plan.going(lo, hi)


def _flat(a):
    """A window ``(steps, B, size)`` as its ``(steps * B, size)`` rows (a view)."""
    return a.reshape(-1, a.shape[-1])


def _scaled(xp, p, block):
    """A block's weight as a C-contiguous ``(rows, src)``: ``scale * (P.T if transpose else
    P)``; ``P`` itself where that is it."""
    w = p.T if block.transpose else p
    if block.scale == 1 and w.flags.c_contiguous:
        return w
    return xp.ascontiguousarray(w if block.scale == 1 else block.scale * w)


def _transposed(xp, parts, src: int, width: int, rows: int = 64, into=None):
    """The blocks side by side as one contiguous ``(src, width)`` array (into ``into`` where
    given), copied a band of ``rows`` at a time (a band's transpose stays in cache: twice as
    fast as one big copy)."""
    dtype = parts[0].dtype
    weight_t = xp.empty((src, width), dtype=dtype) if into is None else into
    col = 0
    for part in parts:
        for i in range(0, part.shape[0], rows):
            band = part[i:i + rows]
            weight_t[:, col + i:col + i + band.shape[0]] = band.T
        col += part.shape[0]
    return weight_t
