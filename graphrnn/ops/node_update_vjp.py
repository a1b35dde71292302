"""NodeUpdate's vector-Jacobian product, defined once: the steps every backward interprets.

A NodeUpdate computes ``net = combine(terms) + bias``, ``v = act(net)`` and, for a leaky node,
``out = leak·v + (1 - leak)·prev``. Its VJP, given ``g = d out``, is the ordered list of steps
that :func:`vjp_steps` returns, and nothing else: the NumPy kernel
(:meth:`graphrnn.ops.node_update.NodeUpdateKernel.backward`, with ``xp`` calls on scratch
buffers) and the C/CUDA generator (:func:`graphrnn.backends.codegen.generate`, one expression
per step) both walk this list. They decide only *where* values live (registers, aliased or
overwritten gradient buffers, atomics, which sources want a gradient); *what* is computed is
here.

The steps, in order:

1. :class:`LeakSplit` (a leaky node): ``d prev += (1 - leak)·g``, then ``g = leak·g``.
2. :class:`RecomputeValue` (a leaky node whose derivative reads the value): ``v = act(net)``,
   since ``out`` holds the leaked value. Without it the derivative reads the stored ``out``.
3. :class:`LocalGrad`: ``dn = g·act'``, by the activation record's derivative, which reads
   the value, the input ``net`` or nothing (the record's ``grad_reads``).
4. :class:`NormGrad` (a layer-normalised node): ``dn`` is the gradient of the normalised
   ``γ·x̂`` (the bias's and gain's gradients read it); it becomes that of the combined terms,
   ``dn = (1/σ)·(dn·γ − mean(dn·γ) − x̂·mean(dn·γ·x̂))`` (means over the node's units).
5. One :class:`TermShare` per term, in term order: ``dn`` times the other terms' values (a
   product), times the term's factor (``scale`` for a scaled identity term, ``scale·w`` for a
   diagonal one), added to the gradient of its source at its delay (a full term: to the GEMM
   buffer's gradient columns; the GEMM's backward takes it from there).

A backward that starts from ``d net`` (an activation run elsewhere) interprets only the
:class:`TermShare` steps.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphrnn.compiler.ir import NodeUpdate
from graphrnn.ops.activations import REGISTRY


@dataclass(frozen=True)
class LeakSplit:
    """``d prev += (1 - leak)·g`` (the previous step's output gradient), then ``g = leak·g``."""

    leak: float


@dataclass(frozen=True)
class RecomputeValue:
    """``v = act(net)``: the derivative's value, recomputed (``out`` holds the leaked value)."""


@dataclass(frozen=True)
class LocalGrad:
    """``dn = g·act'(net)`` by the record of ``activation``; it reads ``reads`` besides ``g``:
    ``"value"`` (``v``: recomputed, else the stored ``out``), ``"input"`` (``net``) or
    ``"none"``."""

    activation: str
    reads: str


@dataclass(frozen=True)
class NormGrad:
    """Through the layer norm: ``dy = dn`` is kept (``d bias = Σ dy``, ``d gain = Σ dy·x̂``
    over steps and rows), then ``dn = (1/σ)·(dy·γ − mean(dy·γ) − x̂·mean(dy·γ·x̂))`` with
    ``γ`` the parameter ``gain``, ``x̂`` the normalised terms and ``σ = sqrt(var + eps)``."""

    gain: str


@dataclass(frozen=True)
class ShareTarget:
    """Where a share is added: the gradient of ``src`` at ``delay`` steps back, at columns
    ``cols`` of a GEMM buffer (``None``: the whole row)."""

    src: str
    delay: int
    cols: tuple[int, int] | None = None


@dataclass(frozen=True)
class TermShare:
    """Term ``index``'s share, ``dn · Π value(product_of) · factor``, added to ``target``.

    ``factor``: ``"one"`` (a plain identity term, or a full term: its weights are the GEMM's),
    ``"scale"`` (times the scalar ``scale``) or ``"weight"`` (times ``scale · w`` with ``w``
    the diagonal parameter ``weight``). ``product_of``: the indices of the other terms of a
    product (their forward values); empty for a sum or a lone term.
    """

    index: int
    factor: str
    scale: float
    weight: str | None
    product_of: tuple[int, ...]
    target: ShareTarget


Step = LeakSplit | RecomputeValue | LocalGrad | NormGrad | TermShare


def vjp_steps(op: NodeUpdate) -> tuple[Step, ...]:
    """THE definition of ``op``'s vector-Jacobian product (see the module).

    Parameters
    ----------
    op : NodeUpdate

    Returns
    -------
    tuple of Step
        The steps in the order they run: output part first, then one share per term.
    """
    reads = REGISTRY[op.activation].grad_reads
    steps: list[Step] = []
    if op.leak is not None:
        steps.append(LeakSplit(op.leak))
        if reads == "value":
            steps.append(RecomputeValue())
    steps.append(LocalGrad(op.activation, reads))
    if op.norm:
        steps.append(NormGrad(op.gain))
    product = op.combine == "product" and len(op.terms) > 1
    for k, term in enumerate(op.terms):
        others = tuple(j for j in range(len(op.terms)) if j != k) if product else ()
        if term.kind == "full":
            factor, cols = "one", term.cols
        else:
            factor = ("weight" if term.kind == "diagonal"
                      else "scale" if term.scale != 1 else "one")
            cols = None
        steps.append(TermShare(k, factor, term.scale,
                               term.param if term.kind == "diagonal" else None, others,
                               ShareTarget(term.src, term.delay, cols)))
    return tuple(steps)


def shares(steps: tuple[Step, ...]) -> list[TermShare]:
    """The :class:`TermShare` steps of a list, in order."""
    return [s for s in steps if isinstance(s, TermShare)]


def reads_net(steps: tuple[Step, ...]) -> bool:
    """Whether the steps read the pre-activation ``net`` (to recompute ``v``, or the
    derivative reads its input)."""
    return any(isinstance(s, RecomputeValue) or (isinstance(s, LocalGrad) and s.reads == "input")
               for s in steps)
