"""The CPU's C compiler: generated kernels built into shared libraries, cached on disk.

The NumPy backend compiles its fused element-wise chains (:mod:`graphrnn.backends.codegen`, target
``host``) with the system C compiler on first use. A library is keyed by its source (headers
expanded), the compiler and its flags, and this CPU (the code is built with ``-march=native``),
and kept under ``config.CACHE_DIR/native`` (written to a temp file, then renamed, so processes
building the same kernel never see half a file; the least recently used go past
:data:`MAX_CACHED`). Where no compiler works, :func:`why_not` says
why and the backend keeps NumPy ufuncs.

The cache is trusted only as far as this user owns it. Its folders are created 0700; the
``native`` folder is opened without following symbolic links and refused (one line on stderr,
then this process builds in a private temp folder) if it is not owned by this user or is
group/world-writable; so is a library or digest record there. Every library is loaded only if
its bytes match the SHA-256 recorded (0600, beside it) when it was built: the bytes are read
from one descriptor, checked, and a private copy of exactly them is what ``dlopen`` maps (a
library truncated on disk is rebuilt, never mapped). All paths go through a descriptor of the
checked folder (``/proc/self/fd``), so renaming folders underneath changes nothing.
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import hashlib
import os
import platform
import shutil
import stat
import subprocess
import sys
import tempfile
from contextlib import suppress
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
#: the suffix of a library's digest record (its SHA-256 in hex, written when it was built)
DIGEST_SUFFIX = ".sha256"
_NO_LINKS = getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
_OPEN_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | _NO_LINKS
_OPEN_FILE = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | _NO_LINKS
_STATE: dict = {}
_LIBS: dict[str, ctypes.CDLL] = {}


class UntrustedCache(OSError):
    """A cache folder or file that someone other than this user could have written: why."""


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


def _untrusted(info: os.stat_result, what: str) -> str | None:
    """Why a folder or file (``info`` from its open descriptor) may hold others' writes."""
    if info.st_uid != os.geteuid():
        return f"{what} is owned by uid {info.st_uid}, not by this user (uid {os.geteuid()})"
    if info.st_mode & 0o022:
        return f"{what} is group/world-writable (mode {stat.S_IMODE(info.st_mode):04o})"
    return None


def _make_dirs(path: Path) -> None:
    """Create the missing folders of ``path``, each 0700 (whatever the umask)."""
    for folder in [*reversed(path.parents), path]:
        if not os.path.lexists(folder):
            with suppress(FileExistsError):
                os.mkdir(folder, 0o700)


def _open_trusted_dir(path: Path) -> str:
    """``path``, checked through a descriptor kept open, as a path through that descriptor.

    Raises
    ------
    UntrustedCache
        ``path`` is a symbolic link, not a folder, not this user's, or writable by others.
    """
    try:
        fd = os.open(path, _OPEN_DIR)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = "a symbolic link" if os.path.islink(path) else "not a folder"
            raise UntrustedCache(f"{path} is {kind}") from None
        raise
    try:
        why = _untrusted(os.fstat(fd), str(path))
        if why:
            raise UntrustedCache(why)
        via_fd = f"/proc/self/fd/{fd}"
        root = via_fd if os.path.isdir(via_fd) else str(path)
        tempfile.NamedTemporaryFile(dir=root).close()  # writable
    except BaseException:
        os.close(fd)
        raise
    _STATE["shown"] = str(path)
    return root


def _cache_dir() -> str:
    """The folder libraries are kept in (opened and checked once per process)."""
    if "dir" not in _STATE:
        path = Path(config.CACHE_DIR) / "native"
        try:
            _make_dirs(path)
            _STATE["dir"] = _open_trusted_dir(path)
        except UntrustedCache as exc:
            _use_private_dir(str(exc))
        except OSError:  # cannot be created or written: a private folder, quietly as before
            _use_private_dir(None)
    return _STATE["dir"]


def _use_private_dir(why: str | None) -> None:
    """Build and keep this process's libraries in a new 0700 temp folder (removed at exit)."""
    folder = tempfile.mkdtemp(prefix="graphrnn-native-")
    atexit.register(shutil.rmtree, folder, True)
    if why and not _STATE.get("refused"):
        _STATE["refused"] = True
        print(f"[graphrnn] not using the kernel cache: {why}; building kernels in {folder} "
              f"for this process", file=sys.stderr)
    _STATE["dir"] = _open_trusted_dir(Path(folder))


def _read_trusted(folder: str, name: str, touch: bool = False) -> bytes | None:
    """The bytes of ``folder/name`` read from one descriptor opened without following links
    (``None`` if there is no such file); ``touch`` marks it recently used.

    Raises
    ------
    UntrustedCache
        A link, not a regular file, not this user's, or writable by others.
    """
    shown = os.path.join(_STATE.get("shown", folder), name)
    try:
        fd = os.open(os.path.join(folder, name), _OPEN_FILE)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedCache(f"{shown} is a symbolic link") from None
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UntrustedCache(f"{shown} is not a regular file")
        why = _untrusted(info, shown)
        if why:
            raise UntrustedCache(why)
        data = handle.read()
        if touch:
            os.utime(fd)  # recently used: the last to be trimmed
    return data


def _write_private(folder: str, name: str, data: bytes) -> None:
    """``data`` as ``folder/name``, mode 0600, through a temp file renamed into place."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, os.path.join(folder, name))
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def _load_bytes(folder: str, key: str, data: bytes) -> ctypes.CDLL:
    """A private copy of ``data`` (already checked) loaded, its file removed once mapped."""
    fd, copy = tempfile.mkstemp(dir=folder, prefix=f".load-{key}-", suffix=".so")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return ctypes.CDLL(copy)
    finally:
        with suppress(OSError):
            os.unlink(copy)


def _load_cached(folder: str, key: str) -> ctypes.CDLL | None:
    """The cached library ``key``; ``None`` where it is missing or damaged (to be rebuilt).

    Raises
    ------
    UntrustedCache
        The library or its digest record may hold others' writes.
    """
    data = _read_trusted(folder, f"{key}.so", touch=True)
    if data is None:
        return None
    recorded = _read_trusted(folder, f"{key}{DIGEST_SUFFIX}")
    if recorded is None or recorded.strip() != hashlib.sha256(data).hexdigest().encode():
        why = "no digest record" if recorded is None else "its bytes do not match its digest"
        config.debug(1, f"[graphrnn] rebuilding {key}.so: {why}")
        return None
    try:
        return _load_bytes(folder, key, data)
    except OSError as exc:  # checked, yet not loadable (another libc, say): build it again
        config.debug(1, f"[graphrnn] rebuilding {key}.so: {exc}")
        return None


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
    try:
        lib = _load_cached(_cache_dir(), key)
    except UntrustedCache as exc:
        _use_private_dir(str(exc))
        lib = None
    if lib is None:
        folder = _cache_dir()
        data = _compile(text, key, flags)
        _write_private(folder, f"{key}{DIGEST_SUFFIX}", hashlib.sha256(data).hexdigest().encode())
        _write_private(folder, f"{key}.so", data)
        _trim(folder)
        lib = _load_bytes(folder, key, data)
    _LIBS[key] = lib
    return lib


#: vector lanes of a 256-bit register, by dtype: ``GR_LANES`` of :func:`build_typed`
LANES = {"float32": 8, "float64": 4}


def build_typed(file: str, dtype: str, flags: tuple[str, ...] = (),
                defines: str = "") -> ctypes.CDLL:
    """``kernels/FILE`` built by :func:`build` for ``dtype`` (float32, float64): ``GR_T``
    its C type, ``GR_LANES`` its :data:`LANES`, then ``defines`` (lines), then the file."""
    ctype = "float" if dtype == "float32" else "double"
    return build(f"#define GR_T {ctype}\n#define GR_LANES {LANES[dtype]}\n{defines}"
                 f'#include "{file}"\n', flags=flags)


def _trim(folder: str | os.PathLike, most: int = MAX_CACHED) -> None:
    """Keep the ``most`` most recently used libraries of ``folder`` (3/4 of it once over),
    with their digest records."""
    with os.scandir(folder) as entries:
        libs = [e for e in entries if e.name.endswith(".so") and not e.name.startswith(".")]
    if len(libs) <= most:
        return

    def age(entry: os.DirEntry) -> float:
        try:
            return entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            return 0

    for old in sorted(libs, key=age)[:len(libs) - most * 3 // 4]:
        for name in (old.name, old.name[:-3] + DIGEST_SUFFIX):
            with suppress(OSError):  # another process took it first, or may not
                os.unlink(os.path.join(folder, name))


def _compile(text: str, key: str, flags: tuple[str, ...]) -> bytes:
    """``text`` compiled in a private temp folder: the library's bytes (the same bytes in every
    process: the compiler sees only relative names)."""
    with tempfile.TemporaryDirectory(prefix="graphrnn-build-") as tmp:
        (Path(tmp) / f"{key}.c").write_text(text)
        cmd = [_STATE["cc"], *FLAGS, *flags, "-o", f"{key}.so", f"{key}.c", "-lm"]
        config.debug(4, f"[graphrnn] (in {tmp}) {' '.join(cmd)}")
        with config.timed(1, f"compiled a CPU kernel ({key})"):
            done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if done.returncode != 0:
            raise RuntimeError(f"{_STATE['cc']} could not compile a generated kernel:\n"
                               f"{done.stderr.strip()}")
        return (Path(tmp) / f"{key}.so").read_bytes()
