"""What every subcommand shares: its parser class and the one place errors become exit codes.

A subcommand is a module function ``add_NAME_command(subparsers)`` that adds its parser and
sets ``func`` (``args -> exit code``); :data:`graphrnn.cli.main.COMMANDS` lists them all.
Its handler raises on bad input, never prints an error itself: :func:`exit_code` turns
``SpecError``, ``DataError``, ``OSError``, ``ValueError`` (``CommandError`` among them) and
``ImportError`` (a missing optional dependency) into one line on stderr and exit code 2, and
anything else (a bug) into a traceback and exit code 1.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import NoReturn

from graphrnn import config
from graphrnn.errors import DataError, SpecError
from graphrnn.frontend.names import did_you_mean

#: Errors caused by what the user gave us (exit 2, one line, no traceback).
USER_ERRORS = (SpecError, DataError, OSError, ValueError, ImportError)
EXIT_OK, EXIT_BUG, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130

Handler = Callable[[argparse.Namespace], int]


class CommandError(ValueError):
    """Arguments that parse but do not fit together (``--resume`` without ``--checkpoint``)."""


def fail(message: str) -> NoReturn:
    """Stop the command: ``message`` becomes its one line on stderr and exit code 2."""
    raise CommandError(message)


class CommandParser(argparse.ArgumentParser):
    """An ArgumentParser for the house rules: errors are one line and exit 2, options must be
    spelled in full (no prefix matching: ``--epoch`` is not ``--epochs``), and an unknown
    option gets the closest known one as a hint."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        namespace, extras = super().parse_known_args(args, namespace)
        unknown = [a for a in extras if a.startswith("-") and a != "-"
                   and not self._negative_number_matcher.match(a)]
        if unknown:
            self.error(unknown_option(unknown[0], self.option_flags()))
        return namespace, extras

    def option_flags(self) -> list[str]:
        """Every long and short option this parser takes (``--help`` included)."""
        return [flag for action in self._actions for flag in action.option_strings]

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def unknown_option(given: str, known: list[str]) -> str:
    """``unknown option --batchsize; did you mean '--batch-size'?`` (the hint when one is close)."""
    flag = given.split("=", 1)[0]
    hint = did_you_mean(flag, [k for k in known if k.startswith("--") == flag.startswith("--")])
    return f"unknown option {flag}" + (f"; {hint}" if hint.startswith("did") else "")


def one_line(e: BaseException) -> str:
    """An exception as the one line the CLI prints (``PATH: reason`` for file errors)."""
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, OSError) and e.filename and e.strerror:
        text = f"{e.filename}: {e.strerror}"
    return re.sub(r"^\[Errno \d+\] ", "", text)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"graphrnn: warning: {' '.join(str(message).split())}", file=sys.stderr)


def exit_code(handler: Handler, args: argparse.Namespace, prefix: str = "graphrnn") -> int:
    """Run ``handler(args)`` and return its exit code: the one place errors are reported.

    Parameters
    ----------
    handler : callable
        A subcommand's function ``args -> int`` (``None`` counts as 0).
    args : argparse.Namespace
        The parsed arguments.
    prefix : str
        What starts the error line (``graphrnn: <reason>``).

    Returns
    -------
    int
        0 on success, 2 for bad input (one line on stderr; a traceback too when
        ``GRAPHRNN_DEBUG`` is set), 130 on Ctrl-C, 1 for a bug (traceback).
    """
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return int(handler(args) or EXIT_OK)
    except USER_ERRORS as e:
        if config.DEBUG:
            traceback.print_exc()
        print(f"{prefix}: {one_line(e)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:
        traceback.print_exc()
        print(f"{prefix}: internal error (a bug in graphrnn; please report it with the "
              "traceback above)", file=sys.stderr)
        return EXIT_BUG


def reports_errors(prefix: str) -> Callable[[Handler], Handler]:
    """Make a handler report its own errors through :func:`exit_code` with ``prefix``, so that
    it keeps its exit codes when called without :func:`graphrnn.cli.main.main`."""
    def wrap(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def reported(args: argparse.Namespace) -> int:
            return exit_code(handler, args, prefix)
        return reported
    return wrap
