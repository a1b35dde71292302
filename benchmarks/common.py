"""Benchmark helpers: resized specs, the GEMM-only floor of a Program, and the machine's facts."""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

import graphrnn as gr
from graphrnn import config
from graphrnn.compiler.ir import MatMul

SPECS = Path(__file__).resolve().parent.parent / "specs"
#: Environment variables that change which OpenBLAS kernel numpy runs (see RESULTS.md).
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
            "OPENBLAS_THREAD_TIMEOUT", "OMP_NUM_THREADS")


def resized_spec(kind: str, hidden: int, inputs: int, outputs: int | None = None) -> str:
    """The YAML text of ``specs/KIND.yaml`` with every input of size ``inputs``, every node
    that is not an output of size ``hidden`` and (if given) every output of size ``outputs``.

    Parameters
    ----------
    kind : str
        A spec's file name without ``.yaml`` (``elman``, ``lstm``, ``gru``, ``jordan``, ...).
    hidden, inputs : int
        The sizes H and I.
    outputs : int, optional
        The output size; ``None`` keeps the spec's.

    Returns
    -------
    str
        YAML text for :func:`graphrnn.load_spec`.
    """
    doc = yaml.safe_load((SPECS / f"{kind}.yaml").read_text())
    doc["inputs"] = {name: inputs for name in doc.get("inputs") or {}}
    outs = set(doc.get("outputs") or ())
    for name, node in doc["nodes"].items():
        size = (outputs if name in outs else hidden)
        if size is None:
            continue
        if isinstance(node, dict):
            node["size"] = size
        else:
            doc["nodes"][name] = size
    return yaml.safe_dump(doc, sort_keys=False)


def build(kind: str, hidden: int, inputs: int, outputs: int | None = None,
          dtype: str = "float32") -> gr.Model:
    """``specs/KIND.yaml`` resized (see :func:`resized_spec`) and compiled for NumPy."""
    net = gr.load_spec(resized_spec(kind, hidden, inputs, outputs))
    return gr.compile(net, backend="numpy", dtype=dtype)


def gemm_shapes(program, steps: int, batch: int, backward: bool) -> list[tuple]:
    """The matrix products a Program's schedule needs, as ``(count, m, k, n)``: ``count``
    products of an ``(m, k)`` by a ``(k, n)`` matrix.

    A MatMul in a batched stage is one ``(T·B, src) @ (src, out)``; in a loop stage it is ``T``
    products ``(B, src) @ (src, out)``. Backward adds, per MatMul, the source gradient (same
    count, ``(rows, out) @ (out, src)``; none when the source is an input) and the weight
    gradient (one ``(out, T·B) @ (T·B, src)`` after the loop).
    """
    shapes = []
    for stage, op in program.ops():
        if not isinstance(op, MatMul):
            continue
        k, n = program.buffers[op.src].size, program.buffers[op.out].size
        loop = stage.kind == "loop"
        count, rows = (steps, batch) if loop else (1, steps * batch)
        shapes.append((count, rows, k, n))
        if backward:
            if program.buffers[op.src].role != "input":
                shapes.append((count, rows, n, k))
            shapes.append((1, n, steps * batch, k))
    return shapes


def gemm_floor(shapes: list[tuple], dtype=np.float32, torch=None) -> Callable[[], None]:
    """A function that runs just the given products (:func:`gemm_shapes`) with preallocated,
    C-contiguous operands and ``out=``, the way the NumPy backend calls them.

    With ``torch`` (the module) the same products run through ``torch.matmul`` instead, on
    tensors sharing the same memory: the GEMM floor in torch's BLAS.
    """
    rng = np.random.default_rng(0)
    jobs = []
    for count, m, k, n in shapes:
        ops = (rng.standard_normal((count, m, k)).astype(dtype),
               rng.standard_normal((k, n)).astype(dtype), np.empty((count, m, n), dtype=dtype))
        if torch is not None:
            ops = tuple(torch.from_numpy(x) for x in ops)
        jobs.append((count, *ops))
    matmul = np.matmul if torch is None else torch.matmul

    def run() -> None:
        for count, a, b, out in jobs:
            for t in range(count):
                matmul(a[t], b, out=out[t])
    return run


def cpu_model() -> str:
    """``lscpu``'s model name (or the platform's processor string)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def blas_info() -> list[str]:
    """One line per BLAS/OpenMP pool in the process: library, version, kernel, threads."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        cfg = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return [f"numpy BLAS: {cfg.get('name')} {cfg.get('version')} (install threadpoolctl "
                "to see the kernel it runs)"]
    lines = []
    for pool in threadpool_info():
        lib = Path(pool.get("filepath", "")).name
        lines.append(f"{pool.get('internal_api')} {pool.get('version') or ''} "
                     f"kernel={pool.get('architecture', '-')} threads={pool.get('num_threads')} "
                     f"({lib})")
    return lines


def _openblas(action: str):
    """``action`` (``"get"`` or ``"set"``) ``_num_threads`` of the OpenBLAS this process has
    loaded (NumPy's bundled one included), by ctypes; None where none is found."""
    import ctypes  # noqa: PLC0415

    with open("/proc/self/maps") as maps:  # Linux; elsewhere OSError and None
        paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    for path in sorted(paths):
        lib = ctypes.CDLL(path)
        for name in (f"scipy_openblas_{action}_num_threads64_",
                     f"scipy_openblas_{action}_num_threads", f"openblas_{action}_num_threads64_",
                     f"openblas_{action}_num_threads"):
            if hasattr(lib, name):
                return getattr(lib, name)
    return None


def blas_threads(default: int = 1) -> int:
    """How many threads numpy's BLAS uses (threadpoolctl, else OpenBLAS itself; else the
    number of CPUs)."""
    try:
        from threadpoolctl import threadpool_info
        for pool in threadpool_info():
            if pool.get("user_api") == "blas" and "numpy" in pool.get("filepath", ""):
                return int(pool["num_threads"])
    except ImportError:
        with contextlib.suppress(OSError):
            if (get := _openblas("get")) is not None:
                return int(get())
    return os.cpu_count() or default


def limit_threads(n: int) -> None:
    """Use ``n`` threads in numpy's BLAS and graphrnn's compiled loops now, and in XLA (JAX)
    when it is imported later."""
    config.LOOP_THREADS = n
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(limits=n, user_api="blas")
    except ImportError:  # OpenBLAS itself: the variable takes effect only before it loads
        os.environ["OPENBLAS_NUM_THREADS"] = str(n)
        with contextlib.suppress(OSError):
            if (set_threads := _openblas("set")) is not None:
                set_threads(n)
    flags = os.environ.get("XLA_FLAGS", "")
    if n == 1 and "multi_thread_eigen" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1").strip()


def environment(torch=None, jax=None) -> dict[str, str]:
    """The facts a result needs: machine, versions, BLAS kernel, BLAS environment, date."""
    info = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "machine": f"{cpu_model()}, {os.cpu_count()} CPUs ({platform.machine()})",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "graphrnn": getattr(gr, "__version__", "?"),
        "torch": torch.__version__ if torch else "not installed",
        "jax": jax.__version__ if jax else "not installed",
    }
    if torch:
        info["torch threads"] = str(torch.get_num_threads())
        info["torch oneDNN"] = str(torch.backends.mkldnn.is_available())
    info["BLAS"] = "; ".join(blas_info())
    info["graphrnn loop threads"] = str(config.LOOP_THREADS)
    if os.environ.get("XLA_FLAGS"):
        info["XLA_FLAGS"] = os.environ["XLA_FLAGS"]
    info["BLAS environment"] = ", ".join(f"{k}={os.environ.get(k, '(unset)')}" for k in BLAS_ENV)
    return info


def load_warning(load: float, cpus: int | None) -> str | None:
    """A warning when the 1-minute load average says other work competes for the CPUs.

    Parameters
    ----------
    load : float
        ``os.getloadavg()[0]``, taken before the benchmark starts (so it is others' load).
    cpus : int or None
        ``os.cpu_count()``.

    Returns
    -------
    str or None
        The one-line warning, or ``None`` when at most half the CPUs are busy.
    """
    cpus = cpus or 1
    if load <= 0.5 * cpus:
        return None
    return (f"load average {load:.1f} on {cpus} CPU(s): other work competes for them, so this "
            "run is slower and its times noisier than on an idle machine (the paired ratios "
            "suffer least; --threads 1 helps)")


def paired(ours: Callable[[], object], theirs: Callable[[], object], pairs: int,
           warmup: int = 3) -> dict:
    """``ours`` and ``theirs`` timed back to back ``pairs`` times (after ``warmup`` untimed
    pairs), which one goes first alternating, so the machine's drift and the caches' warmth
    left by the other call hit both alike.

    The second call of a pair can run up to ~25 % faster or slower than the first (the
    caches and pages the first left behind), which makes the per-pair ratios bimodal and their
    plain median jump between the two modes; ``ratio`` is therefore the geometric mean of the
    median ratio of the pairs ``ours`` led and of those ``theirs`` led, which cancels the
    position.

    Returns
    -------
    dict
        ``ours``/``theirs``: median seconds; ``ratio``: ours/theirs as above; ``q1``/``q3``:
        the quartiles of all per-pair ratios.
    """
    for _ in range(warmup):
        ours(), theirs()
    a, b = [], []
    for i in range(pairs):
        first, second = (ours, theirs) if i % 2 == 0 else (theirs, ours)
        t0 = time.perf_counter()
        first()
        t1 = time.perf_counter()
        second()
        t2 = time.perf_counter()
        a.append(t1 - t0 if i % 2 == 0 else t2 - t1)
        b.append(t2 - t1 if i % 2 == 0 else t1 - t0)
    per_pair = [x / y for x, y in zip(a, b, strict=True)]
    led = [statistics.median(per_pair[k::2]) for k in (0, 1) if per_pair[k::2]]
    ratios = sorted(per_pair)
    q = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"ours": statistics.median(a), "theirs": statistics.median(b),
            "ratio": math.prod(led) ** (1 / len(led)), "q1": q[0], "q3": q[2]}
