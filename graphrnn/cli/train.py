"""The ``graphrnn train`` and ``graphrnn task`` subcommands (registered by graphrnn.cli.main)."""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import sys

import numpy as np

from graphrnn.backends import BACKENDS
from graphrnn.cli.base import fail, reports_errors
from graphrnn.files import is_stream, save_npz
from graphrnn.training.tasks import TASKS, save_task

__all__ = ["add_task_command", "add_train_command", "run_task", "run_train"]

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _fail(command: str, message: str) -> int:
    fail(message)  # reported by @reports_errors (graphrnn.cli.base): one line, exit 2


def _tbptt(text: str):
    try:
        parts = [int(p) for p in text.replace(":", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected K or K1,K2 (integers), got {text!r}") from None
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected K or K1,K2, got {text!r}")
    return parts[0] if len(parts) == 1 else tuple(parts)


class _DefaultsHelp(argparse.HelpFormatter):
    """Help that shows each option's default (unless it is None or False, or already said)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        quiet = action.default is None or action.default is False
        if (action.option_strings and not quiet and action.default != argparse.SUPPRESS
                and "default" not in text):
            text += " (default: %(default)s)"
        return text


def add_train_command(subparsers) -> argparse.ArgumentParser:
    """Add ``train SPEC --data D.npz ...`` to an argparse ``subparsers``; handler in ``func``.

    Parameters
    ----------
    subparsers
        What ``ArgumentParser.add_subparsers()`` returned.

    Returns
    -------
    argparse.ArgumentParser
        The subcommand's parser (``func`` is :func:`run_train`, returning an exit code).
    """
    p = subparsers.add_parser(
        "train", help="train a network on a data file",
        description="Train a network declared in SPEC on time-major sequences in an .npz file "
                    "(inputs named after the spec's inputs, targets after its outputs, "
                    "optional mask).", formatter_class=_DefaultsHelp)
    p.add_argument("spec", metavar="SPEC", help="the network's spec file (YAML)")
    p.add_argument("--data", required=True, metavar="D.npz", help="training data file")
    p.add_argument("--backend", default="numpy", choices=BACKENDS, help="array backend")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"),
                   help="floating-point type")
    p.add_argument("--layout", default="time", choices=("time", "batch"),
                   help="the data's arrays: time-major (T, B, ...) or batch-major (B, T, ...), "
                        "torch's batch_first; lengths (B,) either way")
    p.add_argument("--loss", default="mse", choices=("mse", "cross_entropy"), help="the loss")
    p.add_argument("--target", action="append", metavar="OUTPUT",
                   help="an output to train (repeatable; default every output in the data)")
    p.add_argument("--mask-key", default="mask", metavar="NAME",
                   help="name of the per-step mask array")
    p.add_argument("--optimizer", default="adam", choices=("adam", "sgd"), help="optimizer")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default 1e-3 for adam, 1e-2 for sgd)")
    p.add_argument("--momentum", type=float, default=None, help="sgd momentum")
    p.add_argument("--nesterov", action="store_true", help="sgd: Nesterov momentum")
    p.add_argument("--weight-decay", type=float, default=0.0, help="L2 weight decay")
    p.add_argument("--epochs", type=int, default=10, help="epochs (a resumed run counts "
                   "those already done)")
    p.add_argument("--batch-size", type=int, default=32, help="sequences per mini-batch")
    p.add_argument("--clip", type=float, default=None, metavar="MAX_NORM",
                   help="clip the global gradient norm")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="fraction of the sequences held out for validation (0: none)")
    p.add_argument("--patience", type=int, default=None,
                   help="early stopping: epochs without improvement before stopping")
    p.add_argument("--tbptt", type=_tbptt, default=None, metavar="K|K1,K2",
                   help="truncated BPTT: update every K1 steps, backpropagate K2 (K1 <= K2)")
    p.add_argument("--bucket", action="store_true",
                   help="mini-batches of sequences of similar length (needs a mask)")
    p.add_argument("--checkpoint", default=None, metavar="CK.npz",
                   help="checkpoint written every epoch and on Ctrl-C or SIGTERM")
    p.add_argument("--resume", action="store_true", help="continue from --checkpoint")
    p.add_argument("--seed", type=int, default=0, help="seeds init, split and shuffles")
    p.add_argument("--init", default=None, metavar="P.npz",
                   help="start from these parameters instead of a fresh initialisation")
    p.add_argument("-o", "--output", default=None, metavar="P.npz",
                   help="write the trained parameters here")
    p.add_argument("--plot", default=None, metavar="LOSS.png", help="write the loss curve")
    p.add_argument("--last", action="store_true",
                   help="keep the last epoch's parameters, not the best epoch's")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)
    return p


@reports_errors("graphrnn train: error")
def run_train(args: argparse.Namespace) -> int:
    """Handle ``graphrnn train``; returns the exit code (2: bad input, one line on stderr)."""
    import graphrnn as gr
    from graphrnn.errors import DivergenceError
    from graphrnn.training.data import NpzData, load_data
    from graphrnn.training.distributed import (
        DistributedError,
        use_local_device,
        world_from_launcher,
    )
    from graphrnn.training.loop import batch_to_time_major, check_training, train
    from graphrnn.training.progress import plot_history

    try:  # mpirun/mpiexec/srun with several ranks: data-parallel, rank 0 prints and writes
        comm = world_from_launcher()
    except ImportError as exc:
        return _fail("train", str(exc))
    quiet = comm is not None and comm.Get_rank() != 0  # the same error on every rank: say once
    if comm is not None and args.backend == "cupy":
        use_local_device()

    if args.plot and importlib.util.find_spec("matplotlib") is None:
        return _fail("train", "--plot needs matplotlib: pip install 'graphrnn[plot]'")
    if args.resume and not args.checkpoint:
        return _fail("train", "--resume needs --checkpoint")
    opt_kw = {"weight_decay": args.weight_decay}
    if args.optimizer == "sgd":
        opt_kw.update(momentum=args.momentum or 0.0, nesterov=args.nesterov)
    elif args.momentum is not None or args.nesterov:
        return _fail("train", "--momentum/--nesterov apply to --optimizer sgd only")
    lr = args.lr if args.lr is not None else (1e-3 if args.optimizer == "adam" else 1e-2)
    try:
        net = gr.load_spec(args.spec)
        model = gr.compile(net, backend=args.backend, dtype=args.dtype)
        params = model.init_params(seed=args.seed)
        if args.init:
            loaded = load_data(args.init, params)
            missing = sorted(set(params) - set(loaded))
            if missing:
                return _fail("train", f"{args.init} lacks parameters {', '.join(missing)}")
            params = {k: np.asarray(loaded[k], dtype=params[k].dtype) for k in params}
        settings = dict(targets=args.target, loss=args.loss, optimizer=args.optimizer, lr=lr,
                        optimizer_kw=opt_kw, epochs=args.epochs, batch_size=args.batch_size,
                        clip=args.clip, val_fraction=args.val_fraction,
                        patience=args.patience, checkpoint=args.checkpoint,
                        resume=args.resume, progress=not args.no_progress, seed=args.seed,
                        tbptt=args.tbptt, mask_key=args.mask_key, restore_best=not args.last,
                        bucket=args.bucket, comm=comm)
        data = NpzData(args.data)  # read once, checked here and trained on
        if args.layout == "batch":  # as train(layout="batch"): views, time-major
            data = batch_to_time_major(data)
        if not args.output:
            check_training(model, params, data,
                           **{k: v for k, v in settings.items() if k != "comm"})
            if not quiet:
                print("graphrnn train: no -o given: trained parameters will not be saved",
                      file=sys.stderr)
        result = train(model, params, data, **settings)
    except DivergenceError as exc:  # the advice in the CLI's words
        return EXIT_BAD_INPUT if quiet else _fail(
            "train", f"{exc.reason}. Try a lower --lr or --clip MAX_NORM")
    except DistributedError as exc:  # a rank failed: every rank stops at the same step
        if not quiet:
            print(f"graphrnn train: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    except (ValueError, ImportError, OSError):  # SpecError, DataError...: said once, by rank 0
        if quiet:
            return EXIT_BAD_INPUT
        raise
    if quiet:  # rank 0 writes the files and prints the summary
        return EXIT_INTERRUPTED if result.stopped_reason == "interrupted" else 0
    if args.output:
        save_npz(args.output, {k: np.asarray(v) for k, v in result.params.items()})
    if args.plot and result.history:
        plot_history(result.history, args.plot, title=f"{net.name}: loss per epoch")
    h = result.history[-1] if result.history else None
    summary = f"{net.name}: {len(result.history)} epoch(s), {result.stopped_reason}"
    if h is not None:
        summary += f"; last train loss {h['train_loss']:.6g}"
        if h.get("val_loss") is not None:
            summary += f", val loss {h['val_loss']:.6g}"
        summary += f"; best epoch {result.best_epoch}"
    print(summary)
    for flag, path in (("parameters", args.output), ("loss curve", args.plot)):
        if path and result.history:
            print(f"{flag} written to {path}")
    if result.stopped_reason == "interrupted":
        where = (f"checkpoint saved to {args.checkpoint}; continue with --resume"
                 if args.checkpoint else "no checkpoint (use --checkpoint)")
        print(f"graphrnn train: interrupted; {where}", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def add_task_command(subparsers) -> argparse.ArgumentParser:
    """Add ``task NAME -o D.npz`` (generate a classic task's data file); handler in ``func``."""
    p = subparsers.add_parser(
        "task", help="generate a classic task's data file",
        description="Generate a task's data as an .npz file for graphrnn train: "
                    "xor (Elman 1990 temporal XOR), letters (Elman 1990 ba/dii/guuu), "
                    "reber (embedded Reber grammar), adding (the adding problem), "
                    "text (a character- or word-level language model of --file).")
    p.add_argument("name", metavar="NAME", choices=sorted(TASKS),
                   help=f"one of {', '.join(TASKS)}")
    p.add_argument("-o", "--output", required=True, metavar="D.npz")
    p.add_argument("--batch", type=int, default=None, help="number of sequences B")
    p.add_argument("--steps", type=int, default=None, help="sequence length T")
    p.add_argument("--max-length", type=int, default=None, help="reber: longest string")
    p.add_argument("--file", default=None, metavar="TEXT", help="text: the UTF-8 text file")
    p.add_argument("--level", default=None, choices=("char", "word"),
                   help="text: characters (default) or whitespace-separated words")
    p.add_argument("--vocab", type=int, default=None,
                   help="text: vocabulary size V (the rarest symbols share <unk>)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--input-name", default="x", help="name of the inputs array (default x)")
    p.add_argument("--output-name", default="y", help="name of the targets array (default y)")
    p.set_defaults(func=run_task)
    return p


@reports_errors("graphrnn task: error")
def run_task(args: argparse.Namespace) -> int:
    """Handle ``graphrnn task``; returns the exit code."""
    accepted = inspect.signature(TASKS[args.name]).parameters
    kw = {k: v for k, v in (("seed", args.seed), ("dtype", args.dtype)) if k in accepted}
    if "file" in accepted and args.file is None:
        return _fail("task", f"task {args.name!r} needs --file TEXT")
    for key, flag in (("batch", "--batch"), ("steps", "--steps"),
                      ("max_length", "--max-length"), ("file", "--file"), ("level", "--level"),
                      ("vocab", "--vocab")):
        value = getattr(args, key)
        if value is None:
            continue
        if key not in accepted:
            return _fail("task", f"task {args.name!r} does not take {flag}")
        kw[key] = value
    path = save_task(args.name, args.output, input_name=args.input_name,
                     output_name=args.output_name, **kw)
    if is_stream(path):  # written through; nothing to read back
        print(f"wrote {path}", file=sys.stderr)
        return 0
    with np.load(path) as z:
        shapes = ", ".join(f"{k} {z[k].shape}" for k in z.files)
    print(f"wrote {path}: {shapes}")
    return 0
