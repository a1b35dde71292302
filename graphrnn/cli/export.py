"""``graphrnn export`` and ``graphrnn import``: a spec as ONNX, an ONNX RNN/GRU/LSTM as a spec."""

from __future__ import annotations

import argparse

from graphrnn.cli.base import fail
from graphrnn.files import save_npz, write_atomic
from graphrnn.frontend.spec import load_spec
from graphrnn.model import compile
from graphrnn.training.data import load_data


def add_export_command(subparsers) -> None:
    """Register ``export`` and ``import`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "export", help="write a network as an ONNX model",
        description="Write SPEC with the parameters in --params as ONNX (time loops as Scan "
                    "or RNN/GRU/LSTM, anti-causal ones from the last step down, size "
                    "independent of T; --unrolled --steps T writes the loops out).")
    p.add_argument("spec")
    p.add_argument("--params", help=".npz of parameters (default: initialise with --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the initialisation")
    p.add_argument("--unrolled", action="store_true", help="unroll the time loops")
    p.add_argument("--steps", type=int, help="sequence length of an --unrolled model")
    p.add_argument("-o", "--output", required=True, help="where to write the model (.onnx)")
    p.set_defaults(func=export_command)
    q = subparsers.add_parser(
        "import", help="convert an ONNX RNN/GRU/LSTM to a spec and parameters",
        description="Convert the RNN, GRU or LSTM node of an ONNX model to a spec file (-o) "
                    "and its parameters (--params).")
    q.add_argument("model", help="the .onnx file")
    q.add_argument("-o", "--output", required=True, help="where to write the spec (.yaml)")
    q.add_argument("--params", required=True, help="where to write the parameters (.npz)")
    q.set_defaults(func=import_command)


def _exchange(name: str):
    from graphrnn.exchange import _module
    return _module(name)


def export_command(args: argparse.Namespace) -> int:
    """Handle ``graphrnn export`` (a missing onnx is an ImportError: one line, exit 2)."""
    if args.unrolled and not args.steps:
        fail("--unrolled needs --steps T")
    export = _exchange("onnx_export")
    net = load_spec(args.spec)
    model = compile(net, dtype="float32")
    params = load_data(args.params) if args.params else model.init_params(args.seed)
    proto = export.to_onnx(model, params, args.output, unrolled=args.unrolled, steps=args.steps)
    loops = sorted({" ".join([n.op_type, *(a.s.decode() for a in n.attribute
                                           if a.name == "direction")])
                    for n in proto.graph.node if n.op_type in _LOOPS})
    how = f"unrolled for {args.steps} steps" if args.unrolled else ", ".join(loops) or "no loop"
    print(f"wrote {args.output}: {len(proto.graph.node)} ONNX nodes ({how})")
    return 0


_LOOPS = ("Scan", "RNN", "LSTM", "GRU")


def import_command(args: argparse.Namespace) -> int:
    """Handle ``graphrnn import``: the spec (checked by loading it) and its parameters."""
    imp = _exchange("onnx_import")
    spec, params = imp.onnx_spec(args.model)
    text = imp.spec_text(spec)
    load_spec(text)
    write_atomic(args.output, text)
    save_npz(args.params, params)
    print(f"wrote {args.output} and {args.params}: {len(spec['nodes'])} nodes")
    return 0
