"""The ``graphrnn`` command line: the subcommands' list, and :func:`main`.

A subcommand is one function ``add_NAME_command(subparsers)`` that adds its parser (its
arguments and help) and sets ``func``, the handler ``args -> exit code``; list it in
:data:`COMMANDS`. For example::

    def add_check_command(subparsers) -> argparse.ArgumentParser:
        p = subparsers.add_parser("check", help="validate a spec")
        p.add_argument("spec")
        p.set_defaults(func=check)
        return p

Handlers raise on bad input; :func:`graphrnn.cli.base.exit_code` (the one place) turns
``SpecError``, ``DataError``, ``OSError``, ``ValueError`` and ``ImportError`` into one line on
stderr and exit code 2; anything else is a bug: traceback and exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from graphrnn.backends import BACKENDS
from graphrnn.cli.base import CommandParser, exit_code, fail
from graphrnn.files import write_atomic

#: Every subcommand as ``"module:add_NAME_command"``, in the order ``--help`` lists them.
COMMANDS: list[str] = [
    "graphrnn.cli.main:add_check_command", "graphrnn.cli.main:add_inspect_command",
    "graphrnn.cli.main:add_hopfield_command", "graphrnn.cli.main:add_bench_command",
    "graphrnn.cli.run:add_run_command", "graphrnn.cli.train:add_train_command",
    "graphrnn.cli.train:add_task_command", "graphrnn.cli.accuracy:add_accuracy_command",
    "graphrnn.cli.export:add_export_command"]



def build_parser() -> argparse.ArgumentParser:
    """The ``graphrnn`` parser with every subcommand of :data:`COMMANDS`."""
    parser = CommandParser(prog="graphrnn", description="Compile, check and inspect recurrent "
                           "networks declared as cyclic graphs with delays.")
    from graphrnn import __version__
    parser.add_argument("--version", action="version", version=f"graphrnn {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=CommandParser)
    subs.required = True
    for spec in COMMANDS:
        module, _, function = spec.partition(":")
        getattr(importlib.import_module(module), function)(subs)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``graphrnn`` with ``argv`` (default ``sys.argv[1:]``) and return the exit code.

    Returns
    -------
    int
        0 on success, 2 for bad input (spec, arguments, data, files), 1 for a bug.
    """
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    try:
        if argv[:1] == ["bench"]:  # its options belong to benchmarks/bench.py
            args = argparse.Namespace(func=bench, bench_args=argv[1:])
        else:
            args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, --version, or a bad argument (already printed)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    return exit_code(args.func, args)


# -- subcommands ------------------------------------------------------------------------------

def add_check_command(subparsers) -> argparse.ArgumentParser:
    """Add ``check SPEC``; handler :func:`check`."""
    p = subparsers.add_parser("check", help="validate a spec and print a summary of the network",
                              description="validate a spec and print a summary of the network")
    p.add_argument("spec", help="the spec file (YAML)")
    p.set_defaults(func=check)
    return p


def check(args: argparse.Namespace) -> int:
    """``graphrnn check SPEC``: the summary of :func:`graphrnn.frontend.render.summarize`."""
    from graphrnn.frontend.render import summarize
    from graphrnn.frontend.spec import load_spec

    sys.stdout.write(summarize(load_spec(Path(args.spec))))
    return 0


def add_inspect_command(subparsers) -> argparse.ArgumentParser:
    """Add ``inspect SPEC [--steps T] [--format F] [--layout L] [-o FILE] [--schedule]``."""
    what = "unroll a spec over T steps and show the acyclic graph"
    p = subparsers.add_parser("inspect", help=what, description=what)
    p.add_argument("spec", help="the spec file (YAML)")
    p.add_argument("--steps", "-T", type=int, default=3, metavar="T",
                   help="number of time steps (default 3)")
    p.add_argument("--format", "-f", choices=("text", "json", "dot", "svg", "png", "html"),
                   default=None, help="output format (default: from the -o suffix, else text); "
                   "html: an interactive page (folded, unrolled, schedule)")
    p.add_argument("--layout", choices=("own", "dot"), default="own",
                   help="svg/png layout: graphrnn's own (default) or Graphviz's dot")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)")
    p.add_argument("--schedule", action="store_true",
                   help="print the compiled Program (stages and ops) instead of the unrolled "
                        "graph")
    p.set_defaults(func=inspect)
    return p


def inspect(args: argparse.Namespace) -> int:
    """``graphrnn inspect SPEC --steps T --format F [-o FILE]`` or ``--schedule``."""
    from graphrnn.frontend import render
    from graphrnn.frontend.spec import load_spec
    from graphrnn.frontend.unroll import unroll

    if args.schedule:
        from graphrnn.model import compile as compile_net
        text = compile_net(load_spec(Path(args.spec))).schedule() + "\n"
        if args.output:
            write_atomic(args.output, text)
        else:
            sys.stdout.write(text)
        return 0
    fmt = args.format
    if fmt is None:
        suffix = Path(args.output).suffix.lstrip(".").lower() if args.output else ""
        fmt = {"txt": "text", "gv": "dot", "htm": "html"}.get(suffix, suffix)
        fmt = fmt if fmt in render.FORMATS else "text"
    if fmt == "png" and not args.output:
        fail("--format png writes binary data; give -o FILE.png")
    net = load_spec(Path(args.spec))
    data = render.render(unroll(net, steps=args.steps), fmt, net=net, layout=args.layout)
    if args.output:
        write_atomic(args.output, data)
    elif isinstance(data, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
    else:
        sys.stdout.write(data)
    return 0


def add_hopfield_command(subparsers) -> argparse.ArgumentParser:
    """Add ``hopfield [--out DIR] [--noise F] [--rule R] [--seed S] [--backend B]``."""
    what = "store the bundled letters in a Hopfield net, corrupt and recall them"
    p = subparsers.add_parser("hopfield", help=what, description=what)
    p.add_argument("--out", default="out", help="folder for hopfield_recall.png (default out)")
    p.add_argument("--noise", type=float, default=0.15, help="fraction of pixels flipped")
    p.add_argument("--rule", default="pseudo_inverse",
                   choices=("hebbian", "storkey", "pseudo_inverse"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="numpy", choices=BACKENDS)
    p.set_defaults(func=hopfield)
    return p


def hopfield(args: argparse.Namespace) -> int:
    """``graphrnn hopfield``: the recall demo of :func:`graphrnn.hopfield.demo`."""
    from graphrnn.hopfield import demo

    Path(args.out).mkdir(parents=True, exist_ok=True)
    print(demo(args.out, seed=args.seed, noise=args.noise, rule=args.rule,
               backend=args.backend))
    return 0


def add_bench_command(subparsers) -> argparse.ArgumentParser:
    """Add ``bench ...`` (for ``--help``: :func:`main` hands its options to benchmarks/bench.py)."""
    what = "time graphrnn against PyTorch (and JAX) on this machine"
    p = subparsers.add_parser("bench", help=what, description=what)
    p.add_argument("bench_args", nargs=argparse.REMAINDER,
                   help="the options of benchmarks/bench.py (graphrnn bench --help lists them)")
    p.set_defaults(func=bench)
    return p


def bench(args: argparse.Namespace) -> int:
    """``graphrnn bench ...``: runs ``benchmarks/bench.py`` of a source checkout."""
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench.py"
    if not script.exists():
        raise OSError(f"graphrnn bench needs a source checkout: {script} does not exist")
    sys.path.insert(0, str(script.parent.parent))
    module = importlib.import_module("benchmarks.bench")
    try:
        return int(module.main(args.bench_args) or 0)
    except SystemExit as e:  # its argparse: --help, or a bad option (already printed)
        return e.code if isinstance(e.code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
