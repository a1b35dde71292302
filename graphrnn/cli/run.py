"""``graphrnn run``: a spec, arrays from .npz files in, outputs and final state to .npz out."""

from __future__ import annotations

import argparse
import sys

from graphrnn.backends import BACKENDS
from graphrnn.files import is_stream, save_npz
from graphrnn.frontend.spec import load_spec
from graphrnn.model import compile
from graphrnn.training.data import NpzData, data_lengths, load_data, run_inputs


def add_run_command(subparsers) -> argparse.ArgumentParser:
    """Add ``run SPEC -o OUT.npz [--inputs ...]``; handler :func:`run_command`."""
    p = subparsers.add_parser(
        "run", help="run a network forward over arrays from .npz files",
        description="Run SPEC over the sequences in --inputs (arrays named after the spec's "
                    "inputs, time-major (T, B, size); an optional 'lengths' (B,) gives each "
                    "sequence's steps) and write its outputs, and the final state as "
                    "'state:KEY', to -o.")
    p.add_argument("spec")
    p.add_argument("--inputs", help=".npz with one array per input (omit for input-less nets)")
    p.add_argument("--params", help=".npz of parameters (as init_params returns); "
                                    "default: initialise with --seed")
    p.add_argument("--state", help=".npz of initial states by key (e.g. a previous run's "
                                   "'state:KEY' arrays, or plain KEY)")
    p.add_argument("--steps", type=int, help="steps to run (networks without inputs)")
    p.add_argument("--seed", type=int, default=0, help="seed for init and stochastic units")
    p.add_argument("--backend", default="numpy", choices=BACKENDS)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--layout", default="time", choices=["time", "batch"],
                   help="arrays in and out: time-major (T, B, size) or batch-major "
                        "(B, T, size, torch's batch_first); 'lengths' is (B,) either way")
    p.add_argument("-o", "--output", required=True, help="where to write the results (.npz)")
    p.set_defaults(func=run_command)
    return p


def run_command(args: argparse.Namespace) -> int:
    """``graphrnn run``: forward over the inputs; outputs and ``state:KEY`` arrays to ``-o``."""
    net = load_spec(args.spec)
    model = compile(net, backend=args.backend, dtype=args.dtype, layout=args.layout)
    params = load_data(args.params) if args.params else model.init_params(args.seed)
    data = NpzData(args.inputs) if args.inputs else {}
    inputs = run_inputs(net, data) if args.inputs else {}
    lengths = None
    if "lengths" in data:
        t, b = next(iter(inputs.values())).shape[:2]
        if args.layout == "batch":
            t, b = b, t
        lengths = data_lengths(data, t, b)
    state = None
    if args.state:
        state = {k.removeprefix("state:"): v for k, v in load_data(args.state).items()
                 if k.startswith("state:") or k in net.state_keys}
    outputs, final = model.forward(params, inputs, state=state, steps=args.steps, seed=args.seed,
                                   lengths=lengths)
    save_npz(args.output, {**outputs, **{f"state:{k}": v for k, v in final.items()}})
    shapes = ", ".join(f"{k} {v.shape}" for k, v in outputs.items())
    print(f"wrote {args.output}: {shapes}",
          file=sys.stderr if is_stream(args.output) else sys.stdout)
    return 0
