#!/usr/bin/env bash
# The GPU check of issue 6, for a machine with an NVIDIA GPU, CuPy and PyTorch preinstalled and
# no network (it installs nothing from outside): 1) the conformance suite on the CuPy backend,
# 2) forward and forward+backward timings against cuDNN and PyTorch eager loops
# (benchmarks/gpu_bench.py). Under 5 minutes on an H100. A short table is printed last; the full
# results go to benchmarks/gpu_results.json (rewritten after each case, so a timeout keeps the
# finished ones), the conformance log to benchmarks/gpu_conformance.txt.
# Usage: bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
status=0
# on the device machine only what is under $OUT comes back: copy the results there at exit
trap '[ -n "${OUT:-}" ] && cp -f benchmarks/gpu_results.json benchmarks/gpu_conformance.txt \
  "$OUT"/ 2>/dev/null; true' EXIT

# graphrnn itself, without dependencies or network (no index, no pip self-check); PYTHONPATH
# covers a failed install
timeout 60 "$PY" -m pip install -e . --no-deps --no-build-isolation --no-index \
  --disable-pip-version-check -q >/dev/null 2>&1 \
  || echo "[gpu_check] pip install -e . failed: using the checkout through PYTHONPATH"

echo "== environment"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
  || echo "nvidia-smi: not available"
"$PY" - <<'PYEOF' || status=1
import importlib.util, sys
need = ["numpy", "networkx", "yaml", "cupy"]
missing = [m for m in need if importlib.util.find_spec(m) is None]
if missing:
    print(f"[gpu_check] missing modules: {', '.join(missing)} (install them; no network here)")
    sys.exit(1)
from graphrnn.backends import cupy_backend
print("python", sys.version.split()[0])
for name in ("numpy", "cupy", "torch", "pytest", "hypothesis"):
    spec = importlib.util.find_spec(name)
    print(f"{name:<11}", getattr(importlib.import_module(name), "__version__", "?") if spec
          else "not installed")
if not cupy_backend.available():
    print("[gpu_check] the CuPy backend is not usable:", cupy_backend.why_not())
    sys.exit(1)
import cupy
props = cupy.cuda.runtime.getDeviceProperties(0)
name = props["name"]
print("gpu        ", name.decode() if isinstance(name, bytes) else name, f"(sm_{props['major']}{props['minor']})",
      "CUDA runtime", cupy.cuda.runtime.runtimeGetVersion(),
      "driver", cupy.cuda.runtime.driverGetVersion())
PYEOF
if [ "$status" -ne 0 ]; then
  echo "[gpu_check] cannot run on this machine"
  exit 1
fi

echo "== conformance on the CuPy backend"
if "$PY" -c "import pytest, hypothesis" 2>/dev/null; then
  # every results test takes a `backend` fixture; -k cupy selects its CuPy instances
  timeout 160 "$PY" -m pytest -q -p no:cacheprovider -k cupy tests/ 2>&1 \
    | tee benchmarks/gpu_conformance.txt | tail -25
  conformance=${PIPESTATUS[0]}
else
  echo "(pytest or hypothesis missing: the built-in check instead)"
  timeout 160 "$PY" -m benchmarks.gpu_bench --conformance --backend cupy 2>&1 \
    | tee benchmarks/gpu_conformance.txt | tail -25
  conformance=${PIPESTATUS[0]}
fi
[ "$conformance" -eq 0 ] || status=1

echo "== embedding (specs/lstm_lm.yaml: kernels/embedding.cu on CuPy against NumPy, grads repeat)"
timeout 90 "$PY" -m pytest -q -p no:cacheprovider -rs tests/backends/test_embedding_kernel.py -k cupy 2>&1 | tail -3; [ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== CUDA graphs (GRAPHRNN_DEBUG=1, without torch in the process)"
timeout 60 env GRAPHRNN_DEBUG=1 "$PY" - <<'PYEOF' 2>&1 | grep -E "cuda graph|cuBLAS|backend" | sort | uniq -c
import numpy as np
import graphrnn as gr
for spec in ("lstm", "jordan", "ln_lstm"):  # ln_lstm: the layer-norm row kernels too
    model = gr.compile(gr.load_spec(f"specs/{spec}.yaml"), backend="cupy")
    params = model.init_params(0)
    x = {"x": np.random.default_rng(0).normal(size=(20, 4, 8))}
    y = {"y": np.zeros((20, 4, 4))}
    for _ in range(3):
        model.gradients(params, x, y)
PYEOF

echo "== timings (T=100, B=64, H=512, I=512, float32)"
verdict="conformance on CuPy: $([ "$conformance" -eq 0 ] && echo passed || echo "FAILED")"
timeout 110 "$PY" -m benchmarks.gpu_bench --out benchmarks/gpu_results.json --note "$verdict" \
  || status=1
echo "== dropout's cost (LSTM fwd+bwd with and without noise)"; timeout 60 "$PY" -m benchmarks.dropout --backend cupy --hidden 512 --inputs 512 --steps 100 --batch 64 --pairs 20 || status=1
exit $status
