"""The ``graphrnn`` command line: one function per subcommand, registered with ``@subcommand``.

To add a subcommand, write one function taking the parsed arguments and returning an exit
code, and declare its arguments in the decorator::

    @subcommand("run", "run a spec on data", arg("spec"), arg("--steps", type=int))
    def run(args: argparse.Namespace) -> int:
        ...
        return 0

A module may instead define an argparse-style ``add_X_command(subparsers)`` that adds its
parser and sets ``handler`` (a function ``args -> int``); list it in ``ADDERS``.

Errors from user input (``SpecError``, ``DataError``, ``OSError``, ``ValueError``) become one
line on stderr and exit code 2; anything else is a bug: traceback and exit code 1.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path

from graphrnn import config
from graphrnn.backends import BACKENDS
from graphrnn.errors import DataError, SpecError
from graphrnn.files import write_atomic

#: Errors caused by what the user gave us (exit 2, one line, no traceback).
USER_ERRORS = (SpecError, DataError, OSError, ValueError)

_COMMANDS: dict[str, tuple[str, tuple, Callable[[argparse.Namespace], int]]] = {}

#: ``"module:function"`` adders called with the subparsers (argparse style, ``handler=``).
ADDERS: list[str] = ["graphrnn.cli.run:add_run_command", "graphrnn.cli.train:add_train_command",
                     "graphrnn.cli.train:add_task_command",
                     "graphrnn.cli.accuracy:add_accuracy_command",
                     "graphrnn.cli.export:add_export_command"]


def arg(*flags: str, **kwargs) -> tuple[tuple[str, ...], dict]:
    """An argument of a subcommand: the arguments of ``ArgumentParser.add_argument``."""
    return flags, kwargs


def subcommand(name: str, help: str, *arguments: tuple[tuple[str, ...], dict]):  # noqa: A002
    """Register the decorated function as ``graphrnn NAME`` with the given arguments."""
    def register(func: Callable[[argparse.Namespace], int]):
        _COMMANDS[name] = (help, arguments, func)
        return func
    return register


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (and exit 2), as the house rules ask."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``graphrnn`` parser with every registered subcommand."""
    parser = _Parser(prog="graphrnn", description="Compile, check and inspect recurrent "
                     "networks declared as cyclic graphs with delays.")
    from graphrnn import __version__
    parser.add_argument("--version", action="version", version=f"graphrnn {__version__}")
    subs = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subs.required = True
    for name, (help_text, arguments, func) in _COMMANDS.items():
        sub = subs.add_parser(name, help=help_text, description=help_text)
        for flags, kwargs in arguments:
            sub.add_argument(*flags, **kwargs)
        sub.set_defaults(func=func)
    for spec in ADDERS:
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
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            handler = getattr(args, "func", None) or args.handler
            return int(handler(args) or 0)
    except USER_ERRORS as e:
        if config.DEBUG:
            traceback.print_exc()
        print(f"graphrnn: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("graphrnn: interrupted", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("graphrnn: internal error (a bug in graphrnn; please report it with the "
              "traceback above)", file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, OSError) and not isinstance(e, SpecError) and e.filename and e.strerror:
        text = f"{e.filename}: {e.strerror}"
    return text


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"graphrnn: warning: {' '.join(str(message).split())}", file=sys.stderr)


# -- subcommands ------------------------------------------------------------------------------

_SPEC = arg("spec", help="the spec file (YAML)")


@subcommand("check", "validate a spec and print a summary of the network", _SPEC)
def check(args: argparse.Namespace) -> int:
    """``graphrnn check SPEC``: the summary of :func:`graphrnn.frontend.render.summarize`."""
    from graphrnn.frontend.render import summarize
    from graphrnn.frontend.spec import load_spec

    sys.stdout.write(summarize(load_spec(Path(args.spec))))
    return 0


@subcommand("inspect", "unroll a spec over T steps and show the acyclic graph", _SPEC,
            arg("--steps", "-T", type=int, default=3, metavar="T",
                help="number of time steps (default 3)"),
            arg("--format", "-f", choices=("text", "json", "dot", "svg", "png"), default=None,
                help="output format (default: from the -o suffix, else text); svg and png "
                     "need Graphviz's dot"),
            arg("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)"),
            arg("--schedule", action="store_true",
                help="print the compiled Program (stages and ops) instead of the unrolled graph"))
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
        fmt = {"txt": "text", "gv": "dot"}.get(suffix, suffix)
        fmt = fmt if fmt in render.FORMATS else "text"
    if fmt == "png" and not args.output:
        raise ValueError("--format png writes binary data; give -o FILE.png")
    dag = unroll(load_spec(Path(args.spec)), steps=args.steps)
    if fmt == "text":
        data: str | bytes = render.to_text(dag)
    elif fmt == "json":
        data = render.to_json(dag)
    else:
        data = render.to_dot(dag)
        if fmt in ("svg", "png"):
            data = render.render_image(data, fmt)
    if args.output:
        write_atomic(args.output, data)
    elif isinstance(data, bytes):
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
    else:
        sys.stdout.write(data)
    return 0


@subcommand("hopfield", "store the bundled letters in a Hopfield net, corrupt and recall them",
            arg("--out", default="out", help="folder for hopfield_recall.png (default out)"),
            arg("--noise", type=float, default=0.15, help="fraction of pixels flipped"),
            arg("--rule", default="pseudo_inverse", choices=("hebbian", "storkey",
                                                              "pseudo_inverse")),
            arg("--seed", type=int, default=0),
            arg("--backend", default="numpy", choices=BACKENDS))
def hopfield(args: argparse.Namespace) -> int:
    """``graphrnn hopfield``: the recall demo of :func:`graphrnn.hopfield.demo`."""
    from graphrnn.hopfield import demo

    Path(args.out).mkdir(parents=True, exist_ok=True)
    print(demo(args.out, seed=args.seed, noise=args.noise, rule=args.rule,
               backend=args.backend))
    return 0


@subcommand("bench", "time graphrnn against PyTorch (and JAX) on this machine",
            arg("bench_args", nargs=argparse.REMAINDER,
                help="the options of benchmarks/bench.py (graphrnn bench --help lists them)"))
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
