"""The built wheel, installed into a fresh venv, ships its kernels and specs and compiles them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import networkx
import numpy
import pytest
import yaml

from tests.helpers import ROOT

SCRIPT = textwrap.dedent("""
    import sys
    import graphrnn as gr
    import numpy as np
    from graphrnn.backends import codegen
    print("package", gr.__file__)
    print("kernels", codegen.KERNEL_DIR)
    net = gr.load_spec(gr.spec_path("lstm"))
    model = gr.compile(net)
    x = np.random.default_rng(0).normal(size=(5, 3, net.inputs["x"])).astype(np.float32)
    outputs, _ = model.forward(model.init_params(0), {"x": x})
    print("backend", model.backend.name, "finite", bool(np.isfinite(outputs["y"]).all()))
""")


def _run(args, **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120,
                            **kwargs)
    assert result.returncode == 0, f"{args}: {result.stdout}{result.stderr}"
    return result


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv holding the wheel built from this tree (numpy, networkx and PyYAML come
    from this interpreter's site-packages through a .pth file: no index needed)."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler: the compiled kernels cannot be shown")
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "src"  # a copy, so the build leaves nothing in the tree
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "graphrnn", source / "graphrnn", symlinks=False,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
          "--no-index", "-q", source, "-w", tmp / "dist"])
    wheel = next((tmp / "dist").glob("graphrnn-*.whl"))
    env = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", env])
    python = env / "bin" / "python"
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
                     ).stdout.strip())
    deps = {str(Path(m.__file__).resolve().parents[1]) for m in (numpy, networkx, yaml)}
    (site / "graphrnn_test_deps.pth").write_text("\n".join(sorted(deps)) + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
          "-q", wheel])
    return env


def _env(tmp: Path, debug: int = 0) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "GRAPHRNN_"))}
    return {**env, "GRAPHRNN_DEBUG": str(debug), "GRAPHRNN_CACHE": str(tmp / "cache")}


def test_the_wheel_runs_its_compiled_kernels_and_loops(venv, tmp_path):
    result = _run([venv / "bin" / "python", "-c", SCRIPT], cwd=tmp_path,
                  env=_env(tmp_path, debug=2))
    out, err = result.stdout, result.stderr
    site = sysconfig.get_paths()["purelib"]
    package = re.search(r"^package (.*)$", out, re.M).group(1)
    assert package.startswith(str(venv)) and not package.startswith((str(ROOT), site))
    assert re.search(r"^kernels .*/site-packages/graphrnn/backends/kernels$", out, re.M)
    assert "backend numpy finite True" in out
    assert "element-wise chains compiled to C" in err
    assert re.search(r"loop of \d+ ops, batch 3: compiled, \d+ thread", err), err
    assert "no compiled loops" not in err and "CPU kernels in NumPy" not in err
    assert any((tmp_path / "cache").rglob("*.so")), "nothing was compiled"


def test_the_installed_cli_checks_a_bundled_spec_by_name(venv, tmp_path):
    result = _run([venv / "bin" / "graphrnn", "check", "lstm"], cwd=tmp_path, env=_env(tmp_path))
    assert result.stdout.startswith("network lstm") and "site-packages/graphrnn/specs/lstm.yaml" \
        in result.stdout.splitlines()[0]
    wrong = subprocess.run([venv / "bin" / "graphrnn", "check", "lstn"], capture_output=True,
                           text=True, cwd=tmp_path, env=_env(tmp_path), timeout=60)
    assert wrong.returncode == 2 and "did you mean 'lstm'?" in wrong.stderr
    assert "bundled specs: adding_elman," in wrong.stderr and wrong.stderr.count("\n") == 1
