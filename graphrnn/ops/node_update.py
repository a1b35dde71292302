"""NodeUpdate: combine a node's terms, add its bias, activate, leak; and the same backwards."""

from __future__ import annotations

from graphrnn.compiler.ir import NodeUpdate, Term
from graphrnn.frontend.network import NORM_EPS
from graphrnn.ops import node_update_vjp
from graphrnn.ops.activations import REGISTRY
from graphrnn.ops.node_update_vjp import LeakSplit, NormGrad, RecomputeValue, TermShare


class NodeUpdateKernel:
    """Runs one NodeUpdate on the arrays of a run (any NumPy-like ``xp``)."""

    def __init__(self, op: NodeUpdate, run):
        self.op, self.run, xp = op, run, run.xp
        #: in a loop, windows are 2-D step views; elsewhere 3-D ``(n, B, size)`` slabs
        self.looped = run.looped(op)
        self.out, self.net = self.window(op.out), self.window(op.net)
        reads_past = op.leak is not None or bool(op.own)
        self.prev = self.window(op.out, 1) if reads_past else None
        self.sources = [self.window(t.src, t.delay) for t in op.terms]
        self._grad_windows = None
        #: per-term weight vector (diagonal) or scalar (identity); full terms read a GEMM buffer
        self.factors = [xp.asarray(t.scale * run.params[t.param]) if t.kind == "diagonal"
                        else t.scale for t in op.terms]
        self.bias = run.params[op.bias] if op.bias else None
        #: the activation's record and scalars (``alpha``, ``beta``, temperature)
        self.act = REGISTRY[op.activation]
        self.act_params = self.act.params(op.alpha, op.beta, op.temperature)
        #: BPTT reads the pre-activation only to recompute a leaky node's activation or where
        #: the derivative reads its input (the record's ``grad_reads``); other nodes work in
        #: ``out`` and skip the net buffer.
        self.keeps_net = (op.leak is not None or self.act.grad_reads == "input"
                          or bool(op.own) or bool(op.norm))
        if op.norm:  # x̂ and 1/σ per step and row (the backward's), d(γ·x̂) for the gain's
            shape = (run.steps, run.batch, run.size(op.out))
            self.norm_arrays = tuple(xp.empty(s, dtype=run.dtype)
                                     for s in (shape, shape[:2] + (1,), shape))
            self.xhat, self.rstd, self.dy = map(self._own_window, self.norm_arrays)
        self._scratch: dict = {}
        if op.own:
            self.own = sum(_own_matrix(xp, run.params, t, run.size(op.node)) for t in op.own)

    def _own_window(self, array):
        """A getter over an array of this kernel's, ``(T, ...)``, shaped like a window."""
        return (lambda lo, hi: array[lo]) if self.looped else (lambda lo, hi: array[lo:hi])

    def window(self, name: str, delay: int = 0, grad: bool = False):
        return self.run.window(name, delay, grad, self.looped)

    def scratch(self, key, like):
        """A reusable temporary shaped like ``like`` (allocated once per window size)."""
        buf = self._scratch.get((key, like.shape))
        if buf is None:
            buf = self._scratch[(key, like.shape)] = self.run.xp.empty_like(like)
        return buf

    def value(self, k: int, term: Term, lo: int, hi: int, sources=None):
        """The k-th term's value over the window (a view where possible)."""
        src = (sources or self.sources)[k](lo, hi)
        if term.kind == "full":
            return src[..., term.cols[0]:term.cols[1]]
        if term.kind == "identity" and term.scale == 1:
            return src
        return self.run.xp.multiply(src, self.factors[k], out=self.scratch(("term", k), src))

    def uniforms(self, lo: int, hi: int):
        """The run's uniforms for a ``bernoulli`` node over the window, shaped like it."""
        u = self.run.uniforms.get(self.op.node)
        return None if u is None else (u[lo] if self.looped else u[lo:hi])

    def forward(self, lo: int, hi: int) -> None:
        op, xp = self.op, self.run.xp
        out = self.out(lo, hi)
        net = self._combine(self.net(lo, hi) if self.keeps_net else out, lo, hi)
        if op.own:
            return self._asynchronous(net, out, lo)
        if net is not out or op.activation != "identity":
            self.activate(net, out, self.uniforms(lo, hi))
        if op.leak is not None:
            prev = self.prev(lo, hi)
            out *= op.leak
            out += xp.multiply(prev, 1 - op.leak, out=self.scratch("leak", prev))

    def activate(self, net, out, uniforms) -> None:
        """``out[...] = act(net)`` by the record (the run's ``uniforms`` for stochastic units)."""
        self.act.forward(self.run.xp, net, out, self.act_params._replace(uniforms=uniforms))

    def _combine(self, target, lo, hi):
        """The combined terms plus bias: in ``target``, or the lone term's own view."""
        terms, xp = self.op.terms, self.run.xp
        if not terms:
            target.fill(0)
        elif len(terms) == 1:
            first = self.value(0, terms[0], lo, hi)
            if self.bias is None and not self.keeps_net:
                return first
            xp.copyto(target, first)
        else:
            combine = xp.multiply if self.op.combine == "product" else xp.add
            combine(self.value(0, terms[0], lo, hi), self.value(1, terms[1], lo, hi), out=target)
            for k in range(2, len(terms)):
                combine(target, self.value(k, terms[k], lo, hi), out=target)
        if self.op.norm:
            self._normalise(target, lo, hi)
        if self.bias is not None:
            target += self.bias
        return target

    def _normalise(self, x, lo: int, hi: int) -> None:
        """``x <- γ·x̂`` in place, ``x̂ = (x - mean)/σ`` over the units (kept, with 1/σ)."""
        xp = self.run.xp
        xhat, rstd = self.xhat(lo, hi), self.rstd(lo, hi)
        xp.subtract(x, x.mean(axis=-1, keepdims=True), out=xhat)
        xp.multiply(xhat, xhat, out=x)
        xp.mean(x, axis=-1, keepdims=True, out=rstd)
        rstd += NORM_EPS
        xp.sqrt(rstd, out=rstd)
        xp.divide(1, rstd, out=rstd)
        xhat *= rstd
        xp.multiply(xhat, self.run.params[self.op.gain], out=x)

    def _asynchronous(self, net, s, t: int) -> None:
        """Neurons one at a time in the run's order, each seeing the newest values.

        Every neuron's input starts from the step's first state (one GEMM) and is kept
        current: when neuron i changes by d in some rows, the inputs of those rows move by
        ``d * own[:, i]``, so a sweep in which few neurons flip costs little.
        """
        op, xp = self.op, self.run.xp
        xp.copyto(s, self.prev(t, t + 1))
        net += s @ self.own.T
        uniforms = self.uniforms(t, t + 1)
        old = self.scratch("old", s[:, :1])
        for i in self.run.order_at(op.node, t):
            s_i = s[:, i:i + 1]
            xp.copyto(old, s_i)
            u = None if uniforms is None else uniforms[:, i:i + 1]
            self.activate(net[:, i:i + 1], s_i, u)
            if op.leak is not None:
                s_i *= op.leak
                s_i += (1 - op.leak) * old
            change = s_i - old
            rows = xp.flatnonzero(change)
            if rows.size:
                net[rows] += change[rows] * self.own[:, i]

    # -- backward -------------------------------------------------------------------------

    def backward(self, lo: int, hi: int) -> None:
        """Turn ``d out`` into ``d net`` and add each term's share to its source's gradient:
        the steps of :func:`~graphrnn.ops.node_update_vjp.vjp_steps`, with ``xp`` calls."""
        op, xp = self.op, self.run.xp
        if self._grad_windows is None:
            steps = node_update_vjp.vjp_steps(op)
            shares = node_update_vjp.shares(steps)
            self._send_factors = {s.index: s.scale if s.factor == "scale" else
                                  xp.asarray(s.scale * self.run.params[s.weight])
                                  for s in shares if s.factor != "one"}
            dsources = {s.index: self.window(s.target.src, s.target.delay, grad=True)
                        for s in shares if s.target.cols is not None
                        or s.target.src in self.run.grads_wanted}
            #: the steps, each with its target's gradient window (shares nobody reads: none)
            self._vjp = tuple((step, dsources.get(step.index) if type(step) is TermShare
                               else None) for step in steps
                              if type(step) is not TermShare or step.index in dsources)
            self._grad_windows = (self.window(op.out, grad=True), self.window(op.net, grad=True),
                                  self.window(op.out, 1, grad=True) if self.prev else None)
        dout, dnet_w, dprev = self._grad_windows
        g, net, dnet, value = dout(lo, hi), self.net(lo, hi), dnet_w(lo, hi), self.out(lo, hi)
        for step, dsrc in self._vjp:
            kind = type(step)
            if kind is TermShare:
                self._send(step, dsrc(lo, hi), self.term_grad(step, dnet, lo, hi))
            elif kind is LeakSplit:
                gprev = dprev(lo, hi)
                gprev += xp.multiply(g, 1 - step.leak, out=self.scratch("gprev", g))
                g = xp.multiply(g, step.leak, out=self.scratch("gleak", g))
            elif kind is NormGrad:
                self._norm_grad(step, dnet, lo, hi)
            elif kind is RecomputeValue:
                value = self.scratch("act", net)
                self.activate(net, value, self.uniforms(lo, hi))
            else:  # LocalGrad
                REGISTRY[step.activation].grad(xp, g, value, net, dnet, self.act_params)

    def _norm_grad(self, step: NormGrad, dn, lo: int, hi: int) -> None:
        """``dn`` (of ``γ·x̂``, kept as ``dy``) becomes the gradient of the combined terms."""
        xp = self.run.xp
        dy, xhat, rstd = self.dy(lo, hi), self.xhat(lo, hi), self.rstd(lo, hi)
        xp.copyto(dy, dn)
        dn *= self.run.params[step.gain]  # dy·γ
        m1 = dn.mean(axis=-1, keepdims=True)
        m2 = (dn * xhat).mean(axis=-1, keepdims=True)
        dn -= m1
        dn -= xhat * m2
        dn *= rstd

    def term_grad(self, share: TermShare, dnet, lo: int, hi: int, sources=None):
        """``d term``: ``d net`` times the values of the share's ``product_of`` terms."""
        if not share.product_of:
            return dnet
        d = self.scratch(("dterm", share.index), dnet)
        self.run.xp.copyto(d, dnet)
        for j in share.product_of:
            d *= self.value(j, self.op.terms[j], lo, hi, sources)
        return d

    def _send(self, share: TermShare, dsrc, d) -> None:
        """Add ``d`` times the share's factor to its target's gradient window ``dsrc``."""
        if share.target.cols is not None:
            dsrc = dsrc[..., share.target.cols[0]:share.target.cols[1]]
        if share.factor == "one":
            dsrc += d
        else:
            k = share.index
            dsrc += self.run.xp.multiply(d, self._send_factors[k],
                                         out=self.scratch(("send", k), d))

    @property
    def windowed_grads(self) -> bool:
        """Whether :meth:`param_grads` takes a window of steps (not with a norm: its arrays
        are the whole run's)."""
        return not self.op.norm

    def param_grads(self, lo: int = 0, hi: int | None = None) -> None:
        """Bias and diagonal-weight gradients: one reduction over every step at once (or over
        the steps ``[lo, hi)``, summed into what other windows gave)."""
        op, run = self.op, self.run
        steps = run.steps if hi is None else hi
        dnet = run.rows(op.net, lo, steps, grad=True)
        dy = self.norm_arrays[2] if op.norm else dnet  # the gradient of γ·x̂ + bias
        if op.bias in run.trainable:
            run.add_param_grad(op.bias, dy.sum(axis=(0, 1)))
        if op.norm and op.gain in run.trainable:
            run.add_param_grad(op.gain, (dy * self.norm_arrays[0]).sum(axis=(0, 1)))
        slabs = [run.window(t.src, t.delay) for t in op.terms]
        for share in node_update_vjp.shares(node_update_vjp.vjp_steps(op)):
            if share.factor == "weight" and share.weight in run.trainable:
                d = self.term_grad(share, dnet, lo, steps, slabs)
                src = slabs[share.index](lo, steps)
                run.add_param_grad(share.weight, share.scale * (d * src).sum(axis=(0, 1)))


def _own_matrix(xp, params, term: Term, size: int):
    """An asynchronous node's self-connection as a matrix whose row i feeds neuron i."""
    if term.kind == "full":
        p = params[term.param]
        return term.scale * (p.T if term.transpose else p)
    eye = xp.eye(size, dtype=params[term.param].dtype if term.param else None)
    return term.scale * (eye * params[term.param] if term.kind == "diagonal" else eye)
