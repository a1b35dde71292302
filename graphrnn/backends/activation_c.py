"""The activation records as C: the generated headers of the CUDA and host targets.

``kernels/activations.cuh`` and ``kernels/host.h`` define each target's math primitives
(``gr_exp``, ``gr_tanh``, ``gr_sigmoid``, ...) and then include a header that exists on no disk:
:func:`header` writes it from :data:`graphrnn.ops.activations.REGISTRY` when
:func:`graphrnn.backends.codegen.expand_includes` meets its name. For every element-wise record
it defines ``gr_act_NAME(x, ...)`` and ``gr_dact_NAME(g, v|x, ...)`` from the record's C text
(a template over ``T`` for CUDA; a ``float`` and a ``double`` function behind ``_Generic`` for
the host), and for CUDA the codes ``GR_ACT_NAME`` and ``gr_activate(code, ...)`` of the
hand-written kernels. So the C is the record's, with nothing to keep equal by hand.
"""

from __future__ import annotations

import re

from graphrnn.ops.activations import REGISTRY, Activation

#: the generated headers' names, as ``#include``d by the hand-written ones
CUDA_HEADER, HOST_HEADER = "activation_table.cuh", "activation_table.h"


def _body(text: str, args: list[str]) -> str:
    """The function body: the record's text, with ``(void)a;`` for each argument it leaves
    unused (a derivative that needs ``alpha`` but not ``beta``), so ``-Wextra`` stays quiet."""
    unused = "".join(f"(void){a}; " for a in args if not re.search(rf"\b{a}\b", text))
    return unused + (text if "return" in text else f"return {text};")


def _signatures(act: Activation) -> list[tuple[str, list[str], str]]:
    """``(function name, argument names, C text)`` of the forward and the derivative."""
    reads = {"value": ["v"], "input": ["x"], "none": []}[act.grad_reads]
    return [(f"gr_act_{act.name}", ["x", *act.c_args()], act.c_forward),
            (f"gr_dact_{act.name}", ["g", *reads, *act.c_args(grad=True)], act.c_grad)]


def cuda_header() -> str:
    """The CUDA table: the codes, ``gr_act_*``/``gr_dact_*`` templates and ``gr_activate``."""
    records = [a for a in REGISTRY.values() if a.elementwise]
    lines = ["// generated from graphrnn/ops/activations.py (graphrnn/backends/activation_c.py)",
             "#ifndef GRAPHRNN_ACTIVATION_TABLE_CUH", "#define GRAPHRNN_ACTIVATION_TABLE_CUH"]
    lines += [f"#define GR_ACT_{a.name.upper()} {a.code}" for a in records]
    for act in records:
        for name, args, text in _signatures(act):
            params = ", ".join(f"T {a}" for a in args)
            lines.append(f"template <typename T> GR_DEVICE T {name}({params}) "
                         f"{{ {_body(text, args)} }}")
    lines.append("// act(x) by code, for kernels that take the activation as an argument")
    lines.append("template <typename T> GR_DEVICE T gr_activate(int code, T x, T u, T alpha, "
                 "T beta, T inv_t) {")
    lines.append("    switch (code) {")
    for act in records:
        if act.name != "identity":
            lines.append(f"        case GR_ACT_{act.name.upper()}: "
                         f"return gr_act_{act.name}({', '.join(['x', *act.c_args()])});")
    lines += ["        default: return x;", "    }", "}", "#endif"]
    return "\n".join(lines) + "\n"


def host_header() -> str:
    """The host table: ``float`` and ``double`` functions per record, chosen by ``_Generic``."""
    lines = ["// generated from graphrnn/ops/activations.py (graphrnn/backends/activation_c.py)",
             "#ifndef GRAPHRNN_ACTIVATION_TABLE_H", "#define GRAPHRNN_ACTIVATION_TABLE_H"]
    for act in (a for a in REGISTRY.values() if a.elementwise):
        for name, args, text in _signatures(act):
            for ctype, sfx in (("float", "f32"), ("double", "f64")):
                params = ", ".join(f"T {a}" for a in args)
                lines += [f"#define T {ctype}",
                          f"static inline T {name}_{sfx}({params}) {{ {_body(text, args)} }}",
                          "#undef T"]
            call = ", ".join(args)
            lines.append(f"#define {name}({call}) _Generic(({args[0]}), float: {name}_f32, "
                         f"default: {name}_f64)({call})")
    lines.append("#endif")
    return "\n".join(lines) + "\n"


#: header name -> its generator
GENERATED = {CUDA_HEADER: cuda_header, HOST_HEADER: host_header}


def header(name: str) -> str | None:
    """The text of generated header ``name`` (``None`` for a header that is on disk)."""
    make = GENERATED.get(name)
    return make() if make else None


def codes() -> dict[str, int]:
    """``GR_ACT_*`` of the hand-written kernels by activation name (from the records)."""
    return {n: a.code for n, a in REGISTRY.items() if a.code is not None}
