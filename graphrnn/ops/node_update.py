"""NodeUpdate: combine a node's terms, add its bias, activate, leak; and the same backwards."""

from __future__ import annotations

from graphrnn.ir import NodeUpdate, Term
from graphrnn.ops.activations import activate, local_grad


class NodeUpdateKernel:
    """Runs one :class:`~graphrnn.ir.NodeUpdate` on the arrays of a run (any NumPy-like ``xp``)."""

    def __init__(self, op: NodeUpdate, run):
        self.op, self.run, xp = op, run, run.xp
        #: windows as 2-D step views inside a loop, 3-D ``(n, B, size)`` slabs elsewhere
        self.at = run.fetcher(op)
        self.looped = self.at == run.step_rows
        #: per-term weight vector (diagonal) or scalar (identity); full terms read a GEMM buffer
        self.factors = [xp.asarray(t.scale * run.params[t.param]) if t.kind == "diagonal"
                        else t.scale for t in op.terms]
        self.bias = run.params[op.bias] if op.bias else None
        #: BPTT reads the pre-activation only to recompute a leaky node's activation or a
        #: bernoulli unit's probability; other nodes work in ``out`` and skip the net buffer.
        self.keeps_net = op.leak is not None or op.activation == "bernoulli" or bool(op.own)
        self._scratch: dict = {}
        if op.own:
            self.own = sum(_own_matrix(xp, run.params, t, run.size(op.node)) for t in op.own)

    def scratch(self, key, like):
        """A reusable temporary shaped like ``like`` (allocated once per window size)."""
        buf = self._scratch.get((key, like.shape))
        if buf is None:
            buf = self._scratch[(key, like.shape)] = self.run.xp.empty_like(like)
        return buf

    def value(self, k: int, term: Term, lo: int, hi: int, at=None):
        """The k-th term's value over the window (a view where possible)."""
        at = at or self.at
        if term.kind == "full":
            return at(term.src, lo, hi)[..., term.cols[0]:term.cols[1]]
        src = at(term.src, lo, hi, term.delay)
        if term.kind == "identity" and term.scale == 1:
            return src
        return self.run.xp.multiply(src, self.factors[k], out=self.scratch(("term", k), src))

    def uniforms(self, lo: int, hi: int):
        """The run's uniforms for a ``bernoulli`` node over the window, shaped like it."""
        u = self.run.uniforms.get(self.op.node)
        return None if u is None else (u[lo] if self.looped else u[lo:hi])

    def forward(self, lo: int, hi: int) -> None:
        op, xp, at = self.op, self.run.xp, self.at
        out = at(op.out, lo, hi)
        net = self._combine(at(op.net, lo, hi) if self.keeps_net else out, lo, hi)
        if op.own:
            return self._asynchronous(net, out, lo)
        if net is not out or op.activation != "identity":
            activate(xp, op.activation, net, out, op.temperature, self.uniforms(lo, hi))
        if op.leak is not None:
            prev = at(op.out, lo, hi, 1)
            out *= op.leak
            out += xp.multiply(prev, 1 - op.leak, out=self.scratch("leak", prev))

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
        if self.bias is not None:
            target += self.bias
        return target

    def _asynchronous(self, net, s, t: int) -> None:
        """Neurons one at a time in the run's order, each seeing the newest values.

        Every neuron's input starts from the step's first state (one GEMM) and is kept
        current: when neuron i changes by d in some rows, the inputs of those rows move by
        ``d * own[:, i]``, so a sweep in which few neurons flip costs little.
        """
        op, xp = self.op, self.run.xp
        xp.copyto(s, self.at(op.out, t, t + 1, 1))
        net += s @ self.own.T
        uniforms = self.uniforms(t, t + 1)
        old = self.scratch("old", s[:, :1])
        for i in self.run.order_at(op.node, t):
            s_i = s[:, i:i + 1]
            xp.copyto(old, s_i)
            u = None if uniforms is None else uniforms[:, i:i + 1]
            activate(xp, op.activation, net[:, i:i + 1], s_i, op.temperature, u)
            if op.leak is not None:
                s_i *= op.leak
                s_i += (1 - op.leak) * old
            change = s_i - old
            rows = xp.flatnonzero(change)
            if rows.size:
                net[rows] += change[rows] * self.own[:, i]

    # -- backward -------------------------------------------------------------------------

    def backward(self, lo: int, hi: int) -> None:
        """Turn ``d out`` into ``d net`` and add each term's share to its source's gradient."""
        op, run, xp, at = self.op, self.run, self.run.xp, self.at
        g = at(op.out, lo, hi, grad=True)
        net, dnet = at(op.net, lo, hi), at(op.net, lo, hi, grad=True)
        value = at(op.out, lo, hi)
        if op.leak is not None:
            gprev = at(op.out, lo, hi, 1, grad=True)
            gprev += xp.multiply(g, 1 - op.leak, out=self.scratch("gprev", g))
            g = xp.multiply(g, op.leak, out=self.scratch("gleak", g))
            value = self.scratch("act", net)
            activate(xp, op.activation, net, value, op.temperature, self.uniforms(lo, hi))
        local_grad(xp, op.activation, g, value, net, dnet, op.temperature)
        for k, term in enumerate(op.terms):
            if term.kind == "full" or term.src in run.grads_wanted:
                self._send(k, term, self.term_grad(k, lo, hi), lo, hi)

    def term_grad(self, k: int, lo: int, hi: int, at=None):
        """``d term_k``: ``d net`` for a sum, ``d net`` times the other factors for a product."""
        at = at or self.at
        dnet = at(self.op.net, lo, hi, grad=True)
        if self.op.combine == "sum" or len(self.op.terms) == 1:
            return dnet
        d = self.scratch(("dterm", k), dnet)
        self.run.xp.copyto(d, dnet)
        for j, term in enumerate(self.op.terms):
            if j != k:
                d *= self.value(j, term, lo, hi, at)
        return d

    def _send(self, k: int, term: Term, d, lo: int, hi: int) -> None:
        at = self.at
        if term.kind == "full":
            dgemm = at(term.src, lo, hi, grad=True)[..., term.cols[0]:term.cols[1]]
            dgemm += d
            return
        dsrc = at(term.src, lo, hi, term.delay, grad=True)
        if term.kind == "identity" and term.scale == 1:
            dsrc += d
        else:
            dsrc += self.run.xp.multiply(d, self.factors[k], out=self.scratch(("send", k), d))

    def param_grads(self) -> None:
        """Bias and diagonal-weight gradients: one reduction over every step at once."""
        op, run = self.op, self.run
        steps = run.steps
        if op.bias in run.trainable:
            run.add_param_grad(op.bias, run.rows(op.net, 0, steps, grad=True).sum(axis=(0, 1)))
        for k, term in enumerate(op.terms):
            if term.kind == "diagonal" and term.param in run.trainable:
                src = run.rows(term.src, 0, steps, term.delay)
                d = self.term_grad(k, 0, steps, run.rows)
                run.add_param_grad(term.param, term.scale * (d * src).sum(axis=(0, 1)))


def _own_matrix(xp, params, term: Term, size: int):
    """An asynchronous node's self-connection as a matrix whose row i feeds neuron i."""
    if term.kind == "full":
        p = params[term.param]
        return term.scale * (p.T if term.transpose else p)
    eye = xp.eye(size, dtype=params[term.param].dtype if term.param else None)
    return term.scale * (eye * params[term.param] if term.kind == "diagonal" else eye)
