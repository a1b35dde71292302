"""The CPU's C compiler: generated kernels built into shared libraries, cached on disk.

The NumPy backend compiles its fused element-wise chains (:mod:`graphrnn.backends.codegen`, target
``host``) with the system C compiler on first use. A library is keyed by its source (headers
expanded), the compiler and its flags, and this CPU (the code is built with ``-march=native``),
and kept under ``config.CACHE_DIR/native`` (written to a temp file, then renamed, so processes
building the same kernel never see half a file; the least recently used go past
:data:`MAX_CACHED`). Where no compiler works, :func:`why_not` says
why and the backend keeps NumPy ufuncs.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

from graphrnn import config
from graphrnn.backends.codegen import KERNEL_DIR, expand_includes

#: ``-mtune=generic``: 256-bit vectors on x86 (tuning for some CPUs picks 128-bit ones, which
#: made the LSTM cell 30% slower on an AMD EPYC)
FLAGS = ("-std=c11", "-O3", "-march=native", "-mtune=generic", "-fno-math-errno",
         "-fno-trapping-math", "-fPIC", "-shared")
_PROBE = '#include "host.h"\nfloat gr_probe(float x) { return gr_tanh(x) + gr_sigmoid(x); }\n'
#: how many compiled libraries the cache keeps (random graphs in the tests make new ones)
MAX_CACHED = 2000
_STATE: dict = {}
_LIBS: dict[str, ctypes.CDLL] = {}


def why_not() -> str | None:
    """Why compiled CPU kernels are not used here (``None`` when they are). Probed once."""
    if "why_not" not in _STATE:
        _STATE["why_not"] = _probe()
        if _STATE["why_not"]:
            config.debug(1, f"[graphrnn] CPU kernels in NumPy: {_STATE['why_not']}")
    return _STATE["why_not"]


def available() -> bool:
    """Whether generated C kernels can be built and loaded."""
    return why_not() is None


def _probe() -> str | None:
    if not config.NATIVE:
        return "switched off (GRAPHRNN_NATIVE=0)"
    cc = config.CC or next((c for c in ("cc", "gcc", "clang") if shutil.which(c)), None)
    if not cc or not shutil.which(cc):
        return f"no C compiler ({cc or 'cc, gcc or clang'}) on the PATH"
    if not (KERNEL_DIR / "host.h").is_file():
        return f"{KERNEL_DIR / 'host.h'} is missing"
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True,
                                 timeout=30).stdout.splitlines()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{cc} --version failed ({exc})"
    _STATE["cc"] = shutil.which(cc)
    _STATE["identity"] = "\n".join([_STATE["cc"], *version[:1], *FLAGS, _cpu()])
    try:
        build(_PROBE)
    except (OSError, RuntimeError) as exc:
        return str(exc).splitlines()[0]
    return None


def _cpu() -> str:
    """This CPU, as far as ``-march=native`` cares (model and feature flags)."""
    lines = []
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith(("model name", "flags")) and line not in lines:
                    lines.append(line)
                if line.strip() == "":
                    break
    except OSError:
        pass
    return platform.machine() + platform.processor() + "".join(lines)


def _cache_dir() -> Path:
    if "dir" not in _STATE:
        path = Path(config.CACHE_DIR) / "native"
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=path, delete=True)
            probe.close()
        except OSError:
            path = Path(tempfile.mkdtemp(prefix="graphrnn-native-"))
        _STATE["dir"] = path
    return _STATE["dir"]


def build(source: str, flags: tuple[str, ...] = ()) -> ctypes.CDLL:
    """``source`` (C including ``kernels/`` headers) compiled (with :data:`FLAGS` and
    ``flags``) and loaded; once per process, and once per machine while the cache holds it.

    Raises
    ------
    RuntimeError
        The compiler rejected the source (a bug in the generated code): its message.
    """
    text = expand_includes(source)
    key = hashlib.sha1("\n".join([_STATE["identity"], *flags, text]).encode()).hexdigest()[:20]
    lib = _LIBS.get(key)
    if lib is not None:
        return lib
    path = _cache_dir() / f"{key}.so"
    if path.is_file():
        try:
            lib = _LIBS[key] = ctypes.CDLL(str(path))
            os.utime(path)  # recently used: the last to be trimmed
            return lib
        except OSError as exc:  # a damaged cache entry (a full disk, say): build it again
            config.debug(1, f"[graphrnn] rebuilding {path.name}: {exc}")
    _compile(text, path, flags)
    _trim(path.parent)
    lib = _LIBS[key] = ctypes.CDLL(str(path))
    return lib


def _trim(folder: Path, most: int = MAX_CACHED) -> None:
    """Keep the ``most`` most recently used libraries of ``folder`` (3/4 of it once over)."""
    libs = list(folder.glob("*.so"))
    if len(libs) <= most:
        return
    by_age = sorted(libs, key=lambda f: f.stat().st_mtime if f.exists() else 0)
    for old in by_age[:len(libs) - most * 3 // 4]:
        try:
            old.unlink()
        except OSError:  # another process took it first, or may not
            pass


def _compile(text: str, path: Path, flags: tuple[str, ...]) -> None:
    """``text`` compiled to ``path``, through a temporary folder beside it (then renamed)."""
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".build-") as tmp:
        src, out = Path(tmp) / f"{path.stem}.c", Path(tmp) / path.name
        src.write_text(text)
        cmd = [_STATE["cc"], *FLAGS, *flags, "-o", str(out), str(src), "-lm"]
        config.debug(4, f"[graphrnn] {' '.join(cmd)}")
        with config.timed(1, f"compiled a CPU kernel ({path.stem})"):
            done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{_STATE['cc']} could not compile a generated kernel:\n"
                               f"{done.stderr.strip()}")
        os.replace(out, path)
