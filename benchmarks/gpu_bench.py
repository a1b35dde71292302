"""GPU timings: graphrnn on CuPy against cuDNN (torch.nn.LSTM/GRU/RNN) and PyTorch eager loops.

Run from the repository root: ``python -m benchmarks.gpu_bench [--out benchmarks/gpu_results.json]``
(``benchmarks/gpu_check.sh`` does). Every implementation computes the same function from the
same parameters (checked: the largest relative difference to graphrnn is recorded). Times are
medians of synchronised calls, in milliseconds, float32 with TF32 off everywhere. graphrnn is
timed two ways: ``core``, the compiled program on device-resident data (``Run.forward`` /
``Run.backward``, what cuDNN's numbers mean), and ``api``, ``Model.forward`` /
``Model.gradients`` with NumPy in and out (host transfers included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import graphrnn as gr
from graphrnn.files import write_atomic

try:
    from benchmarks.common import resized_spec
    from benchmarks.refs import stacked
except ImportError:  # run as a script: python benchmarks/gpu_bench.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks.common import resized_spec
    from benchmarks.refs import stacked

SPECS = Path(__file__).resolve().parent.parent / "specs"
KINDS = ("lstm", "gru", "elman", "jordan", "locally_recurrent")
CUDNN = {"lstm": "LSTM", "gru": "GRU", "elman": "RNN"}
#: Goals of issue 6 (an H100): LSTM forward+backward within 1.25x of cuDNN; Jordan and locally
#: recurrent nets 5x faster than their PyTorch eager loops.
GOALS = {"lstm": ("cudnn", 1.25), "jordan": ("eager", 1 / 5), "locally_recurrent": ("eager", 1 / 5)}


def median_ms(fn, sync, warmup: int, iters: int) -> float:
    """Median wall time of ``fn`` (synchronised before and after each call), in ms."""
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def graphrnn_impl(kind, net, params, x, y, backend):
    """graphrnn's ``api`` and ``core`` calls for one case, and its output (NumPy)."""
    model = gr.compile(net, backend=backend, dtype="float32")
    start = time.perf_counter()
    out = model.forward(params, {"x": x})[0]["y"]
    first_ms = 1e3 * (time.perf_counter() - start)
    run = model._run(params, {"x": x}, None, None, 0)
    dy = model.backend.asarray(2 * (out - y) / y.size, np.float32)

    def core_fwd():
        run.forward()

    def core_train():
        run.forward()
        run.zero_grads()
        run.rows("y", 0, run.steps, grad=True)[...] = dy
        run.param_grads = {}
        run.backward()

    return {"api_forward": lambda: model.forward(params, {"x": x}),
            "api_train": lambda: model.gradients(params, {"x": x}, {"y": y}),
            "core_forward": core_fwd, "core_train": core_train,
            "sync": model.backend.synchronize, "output": out, "first_call_ms": first_ms,
            "schedule": model.schedule()}


def torch_impls(torch, kind, params, x, y, device):
    """cuDNN (where torch has the cell) and an eager Python loop of the same cell."""
    f32 = {k: torch.tensor(v, dtype=torch.float32, device=device) for k, v in params.items()}
    xt, yt = (torch.tensor(a, dtype=torch.float32, device=device) for a in (x, y))
    mse = torch.nn.functional.mse_loss
    impls = {}

    def linear(w, b=None):
        lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=b is not None, device=device)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(np.ascontiguousarray(w), device=device))
            if b is not None:
                lin.bias.copy_(torch.as_tensor(b, device=device))
        return lin

    def wrap(fn, modules):
        weights = [p for m in modules for p in (m.parameters() if hasattr(m, "parameters")
                                                 else [m])]

        def forward():
            with torch.inference_mode():
                return fn(xt)

        def train():
            for p in weights:
                p.grad = None
            mse(fn(xt), yt).backward()
        return {"forward": forward, "train": train, "output": lambda: forward().cpu().numpy()}

    batch = x.shape[1]
    if kind in CUDNN:
        w = stacked(kind, params)
        rnn = getattr(torch.nn, CUDNN[kind])(x.shape[-1], w["wh"].shape[1], device=device)
        with torch.no_grad():
            for ours, theirs in (("wx", "weight_ih_l0"), ("wh", "weight_hh_l0"),
                                 ("bx", "bias_ih_l0"), ("bh", "bias_hh_l0")):
                getattr(rnn, theirs).copy_(torch.as_tensor(w[ours], device=device))
        out = linear(w["wo"], w["bo"])
        impls["cudnn"] = wrap(lambda xs: out(rnn(xs)[0]), [rnn, out])
    if kind == "locally_recurrent":
        wx, out = linear(params["x->h"], params["h.bias"]), linear(params["h->y"], params["y.bias"])
        diag = torch.nn.Parameter(f32["h->h@1"].clone())

        def run(xs):
            h, hs = torch.zeros(batch, diag.shape[0], device=device), []
            for t in range(xs.shape[0]):
                h = torch.tanh(wx(xs[t]) + diag * h)
                hs.append(h)
            return out(torch.stack(hs))
        impls["eager"] = wrap(run, [wx, out, diag])
        return impls
    w = stacked(kind, params)
    wx, out = linear(w["wx"], w["bx"]), linear(w["wo"], w["bo"])
    if kind == "jordan":
        wy = linear(w["wy"])

        def run(xs):
            prev, ys = torch.zeros(batch, w["wo"].shape[0], device=device), []
            for t in range(xs.shape[0]):
                prev = out(torch.tanh(wx(xs[t]) + wy(prev)))
                ys.append(prev)
            return torch.stack(ys)
        impls["eager"] = wrap(run, [wx, wy, out])
        return impls
    hidden = w["wh"].shape[1]
    wh = linear(w["wh"], w["bh"] if kind == "gru" else None)
    sig, tanh = torch.sigmoid, torch.tanh

    def step(xs_t, h, c):
        if kind == "elman":
            return tanh(wx(xs_t) + wh(h)), c
        if kind == "lstm":
            i, f, g, o = (wx(xs_t) + wh(h)).chunk(4, 1)
            c = sig(f) * c + sig(i) * tanh(g)
            return sig(o) * tanh(c), c
        gx, gh = wx(xs_t), wh(h)
        r = sig(gx[:, :hidden] + gh[:, :hidden])
        z = sig(gx[:, hidden:2 * hidden] + gh[:, hidden:2 * hidden])
        n = tanh(gx[:, 2 * hidden:] + r * gh[:, 2 * hidden:])
        return n + z * (h - n), c

    def run(xs):
        h = c = torch.zeros(batch, hidden, device=device)
        hs = []
        for t in range(xs.shape[0]):
            h, c = step(xs[t], h, c)
            hs.append(h)
        return out(torch.stack(hs))
    impls["eager"] = wrap(run, [wx, wh, out])
    return impls


def bench_case(kind, args, torch) -> dict:
    t, b, h, i = args.steps, args.batch, args.hidden, args.inputs
    net = gr.load_spec(resized_spec(kind, h, i, h))
    params = gr.compile(net).init_params(seed=0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(t, b, i)).astype(np.float32)
    y = rng.normal(size=(t, b, h)).astype(np.float32)
    ours = graphrnn_impl(kind, net, params, x, y, args.backend)
    time_it = {"warmup": args.warmup, "iters": args.iters}
    case = {"kind": kind, "T": t, "B": b, "H": h, "I": i, "first_call_ms": ours["first_call_ms"],
            "ms": {}, "max_rel_diff": {}}
    for mode in ("forward", "train"):
        for how in ("core", "api"):
            case["ms"][f"graphrnn_{how}_{mode}"] = median_ms(ours[f"{how}_{mode}"], ours["sync"],
                                                             **time_it)
    if torch is not None:
        sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
        for name, impl in torch_impls(torch, kind, params, x, y, args.device).items():
            scale = float(np.abs(ours["output"]).max())
            case["max_rel_diff"][name] = float(np.abs(impl["output"]() - ours["output"]).max()
                                               / scale)
            for mode in ("forward", "train"):
                case["ms"][f"{name}_{mode}"] = median_ms(impl[mode], sync, **time_it)
    case["schedule"] = ours["schedule"]
    return case


def conformance(backend: str = "cupy") -> tuple[int, list[str]]:
    """Without pytest: every spec on ``backend`` against the reference interpreter (forward,
    float64, relative error <= 1e-10) and against the NumPy backend (gradients, <= 1e-8)."""
    from graphrnn.frontend.reference import reference_forward

    failures, checked = [], 0
    for spec in sorted(SPECS.glob("*.yaml")):
        net = gr.load_spec(spec)
        model = gr.compile(net, backend=backend, dtype="float64")
        params = model.init_params(seed=1)
        rng = np.random.default_rng(0)
        inputs = {k: rng.normal(size=(6, 3, s)) for k, s in net.inputs.items()}
        state = {k: rng.normal(size=(3, net.size(k.split("@")[0]))) for k in net.state_keys}
        steps = None if net.inputs else 6
        for _ in range(3):  # first call, graph capture, replay
            out, _ = model.forward(params, inputs, state, steps=steps, seed=7)
        ref, _ = reference_forward(net, params, inputs, state, steps=6, seed=7)
        err = max(float(np.abs(out[k] - ref[k]).max() / max(np.abs(ref[k]).max(), 1e-12))
                  for k in ref)
        checked += 1
        if not err <= 1e-10:
            failures.append(f"{spec.stem}: forward relative error {err:.3g}")
        if any(n.update == "asynchronous" for n in net.nodes.values()):
            continue
        targets = {o: rng.normal(size=(6, 3, net.size(o))) for o in net.outputs}
        host = gr.compile(net, backend="numpy", dtype="float64")
        _, want = host.gradients(params, inputs, targets, state=state, steps=steps)
        for _ in range(3):
            _, got = model.gradients(params, inputs, targets, state=state, steps=steps)
        err = max(float(np.abs(got[k] - want[k]).max() / max(np.abs(want[k]).max(), 1e-12))
                  for k in want)
        checked += 1
        if not err <= 1e-8:
            failures.append(f"{spec.stem}: gradient relative error {err:.3g}")
    return checked, failures


def environment(torch, backend: str) -> dict:
    info = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "python": platform.python_version(),
            "numpy": np.__version__, "graphrnn": gr.__version__, "backend": backend,
            "torch": getattr(torch, "__version__", "not installed")}
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"]
        info.update(gpu=name.decode() if isinstance(name, bytes) else name, cupy=cupy.__version__,
                    cuda_runtime=cupy.cuda.runtime.runtimeGetVersion(),
                    cuda_driver=cupy.cuda.runtime.driverGetVersion())
    except Exception as exc:  # noqa: BLE001 - report, do not fail
        info["gpu"] = f"unavailable ({type(exc).__name__})"
    if torch is not None and torch.cuda.is_available():
        info["cudnn"] = str(torch.backends.cudnn.version())
    info["graphs"] = os.environ.get("GRAPHRNN_CUDA_GRAPHS", "1")
    return info


def table(cases: list[dict]) -> str:
    cols = {"graphrnn_core": "graphrnn", "graphrnn_api": "api", "cudnn": "cudnn",
            "eager": "eager"}
    head = "".join(f"{label + ' fwd':>14}{label + ' f+b':>14}" for label in cols.values())
    lines = [f"{'ms (median)':<18}{head}"]
    for case in cases:
        row = f"{case['kind']:<18}"
        for c in cols:
            for mode in ("forward", "train"):
                v = case["ms"].get(f"{c}_{mode}")
                row += f"{'-' if v is None else f'{v:.3f}':>14}"
        lines.append(row)
    lines.append("")
    for case in cases:
        ms = case["ms"]
        for ref in ("cudnn", "eager"):
            if f"{ref}_train" in ms:
                train = ms["graphrnn_core_train"] / ms[f"{ref}_train"]
                fwd = ms["graphrnn_core_forward"] / ms[f"{ref}_forward"]
                lines.append(f"{case['kind']:<18} graphrnn/{ref}: f+b {train:.2f}x, fwd "
                             f"{fwd:.2f}x (outputs differ by {case['max_rel_diff'][ref]:.1e})")
    for kind, (ref, limit) in GOALS.items():
        case = next((c for c in cases if c["kind"] == kind), None)
        if case and f"{ref}_train" in case["ms"]:
            ratio = case["ms"]["graphrnn_core_train"] / case["ms"][f"{ref}_train"]
            lines.append(f"goal {kind} f+b graphrnn/{ref} <= {limit:.2f}: {ratio:.2f} "
                         + ("met" if ratio <= limit else "NOT met"))
    return "\n".join(lines)


def write_json(path: Path, data: dict) -> None:
    """Write atomically: a temporary file beside ``path``, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(data, indent=2))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--inputs", type=int, default=512)
    p.add_argument("--kinds", default=",".join(KINDS))
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--backend", default="cupy", help="graphrnn backend (numpy for a dry run)")
    p.add_argument("--device", default="cuda", help="torch device (cpu for a dry run)")
    p.add_argument("--out", default=str(Path(__file__).with_name("gpu_results.json")))
    p.add_argument("--note", default="", help="a line to print above the table and store")
    p.add_argument("--conformance", action="store_true",
                   help="only check every spec on the backend (when pytest is missing)")
    args = p.parse_args(argv)
    if args.conformance:
        checked, failures = conformance(args.backend)
        print("\n".join(failures + [f"conformance on {args.backend}: {checked - len(failures)} "
                                     f"passed, {len(failures)} failed"]))
        return 1 if failures else 0
    try:
        import torch
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    except ImportError:
        torch = None
        print("torch is not importable: timing graphrnn alone", file=sys.stderr)
    cases, env = [], environment(torch, args.backend)
    for kind in args.kinds.split(","):
        print(f"[gpu_bench] {kind} ...", file=sys.stderr, flush=True)
        cases.append(bench_case(kind, args, torch))
        # after every case: a run cut short by a timeout keeps what it measured
        write_json(Path(args.out), {"environment": env, "settings": vars(args), "cases": cases})
    print("\n".join(([args.note] if args.note else []) + [table(cases)]))
    print(f"full results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
