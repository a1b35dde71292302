"""The ``graphrnn accuracy`` subcommand: embedded Reber accuracy of trained parameters."""

from __future__ import annotations

import argparse

__all__ = ["add_accuracy_command", "run_accuracy"]


def add_accuracy_command(subparsers) -> argparse.ArgumentParser:
    """Add ``accuracy SPEC P.npz [--train D.npz]`` to an argparse ``subparsers``.

    Parameters
    ----------
    subparsers
        What ``ArgumentParser.add_subparsers()`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The subcommand's parser (``func`` is :func:`run_accuracy`).
    """
    p = subparsers.add_parser(
        "accuracy", help="score trained parameters on held-out embedded Reber strings",
        description="Print the fraction of held-out embedded Reber strings (Hochreiter & "
                    "Schmidhuber 1997) that SPEC with parameters P.npz predicts fully right.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("spec", metavar="SPEC", help="the network's spec file (input x, output y)")
    p.add_argument("params", metavar="P.npz", help="trained parameters (graphrnn train -o)")
    p.add_argument("--strings", type=int, default=2000, help="held-out strings to draw")
    p.add_argument("--seed", type=int, default=12345, help="seed of the held-out strings")
    p.add_argument("--train", metavar="D.npz", default=None,
                   help="the training data, to also score strings never seen in training")
    p.add_argument("--threshold", type=float, default=0.5, help="output threshold")
    p.set_defaults(func=run_accuracy)
    return p


def run_accuracy(args: argparse.Namespace) -> int:
    """Handle ``graphrnn accuracy``: one line on stdout; bad input raises (exit 2)."""
    import graphrnn as gr
    from graphrnn.training.accuracy import reber_report

    model = gr.compile(gr.load_spec(args.spec))
    print(reber_report(model, args.params, n_strings=args.strings, seed=args.seed,
                       train_data=args.train, threshold=args.threshold))
    return 0
