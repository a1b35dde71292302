"""The compiled-kernel cache trusts only what this user wrote: libraries and folders planted by
other users, writable by others, behind symbolic links, or not matching their recorded digest
are never loaded, and a library truncated on disk is rebuilt instead of crashing the process."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from graphrnn.backends import native
from tests.helpers import ROOT

pytestmark = pytest.mark.skipif(not native.available(), reason=f"no compiled kernels here: "
                                f"{native.why_not()}")
NOBODY = 65534
REFUSED = "not using the kernel cache"
PROBE = ("import graphrnn as gr, numpy as np; m = gr.compile(gr.load_spec('specs/gru.yaml')); "
         "p = m.init_params(0); print(m.backend.name, float(m.forward(p, {'x': np.ones((3, 2, "
         "8))})[0]['y'].sum()))")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="planting as another user needs root")


def run_probe(env: dict, umask: int | None = None) -> subprocess.CompletedProcess:
    """PROBE in a fresh process; ``env`` values of None remove those variables."""
    full = {**os.environ, "PYTHONPATH": str(ROOT), "GRAPHRNN_DEBUG": "1", **env}
    code = PROBE if umask is None else f"import os; os.umask({umask}); {PROBE}"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=300,
                          env={k: v for k, v in full.items() if v is not None})


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[str, list[str]]:
    """PROBE's output from a clean cache, and the names of the libraries it uses."""
    cache = tmp_path_factory.mktemp("clean")
    done = run_probe({"GRAPHRNN_CACHE": str(cache)})
    assert done.returncode == 0, done.stderr
    return done.stdout, sorted(p.name for p in (cache / "native").glob("*.so"))


@pytest.fixture
def marker(tmp_path) -> tuple[Path, bytes]:
    """A marker file's path, and a valid library that creates it when loaded."""
    path = tmp_path / "planted-code-ran"
    src = tmp_path / "planted.c"
    src.write_text('#include <stdio.h>\n__attribute__((constructor)) static void planted(void) '
                   f'{{ FILE* f = fopen("{path}", "w"); if (f) fclose(f); }}\n')
    lib = tmp_path / "planted.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return path, lib.read_bytes()


@pytest.fixture
def sandbox():
    """A world-writable sticky folder like /tmp that another user can reach."""
    folder = Path(tempfile.mkdtemp(dir="/tmp", prefix="graphrnn-sandbox-"))
    folder.chmod(0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def plant(folder: Path, names: list[str], lib: bytes, mode: int = 0o644) -> None:
    """``lib`` under each library name in ``folder``, each with a matching digest record."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(lib)
        (folder / name).chmod(mode)
        record = folder / (name[:-3] + native.DIGEST_SUFFIX)
        record.write_text(hashlib.sha256(lib).hexdigest())
        record.chmod(mode)


def as_nobody(action: Callable[[], None]) -> int:
    """``action`` run in a forked child as uid/gid 65534: 0 done, 3 refused by permissions."""
    pid = os.fork()
    if pid == 0:
        code = 4
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            os.umask(0o022)
            action()
            code = 0
        except PermissionError:
            code = 3
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def assert_refused_and_not_loaded(done, reference, marker, why: str) -> None:
    assert not marker[0].exists(), "a planted library was loaded"
    assert done.returncode == 0, done.stderr
    assert done.stdout == reference[0]
    refusals = [line for line in done.stderr.splitlines() if REFUSED in line]
    assert len(refusals) == 1, done.stderr
    assert why in refusals[0], refusals[0]


@needs_root
def test_a_cache_folder_another_user_made_is_refused(sandbox, reference, marker):
    evil = sandbox / "evil"
    assert as_nobody(lambda: plant(evil / "native", reference[1], marker[1])) == 0
    done = run_probe({"GRAPHRNN_CACHE": str(evil)})
    assert_refused_and_not_loaded(done, reference, marker, f"owned by uid {NOBODY}")
    assert sorted(p.name for p in (evil / "native").iterdir()) == sorted(
        [*reference[1], *(n[:-3] + native.DIGEST_SUFFIX for n in reference[1])])


@needs_root
def test_our_native_folder_in_another_users_folder_cannot_be_swapped(sandbox, reference,
                                                                      marker):
    evil = sandbox / "evil"
    assert as_nobody(lambda: evil.mkdir()) == 0
    assert run_probe({"GRAPHRNN_CACHE": str(evil)}).returncode == 0
    assert (evil / "native").stat().st_mode & 0o777 == 0o700  # ours: nobody can plant in it
    assert as_nobody(lambda: plant(evil / "native", reference[1], marker[1])) == 3

    def swap():
        (evil / "native").rename(evil / "ours")
        plant(evil / "native", reference[1], marker[1])
    assert as_nobody(swap) == 0
    done = run_probe({"GRAPHRNN_CACHE": str(evil)})
    assert_refused_and_not_loaded(done, reference, marker, f"owned by uid {NOBODY}")


@needs_root
def test_a_native_folder_planted_in_a_sticky_world_writable_folder_is_refused(
        sandbox, reference, marker):
    def pre_create():
        plant(sandbox / "native", reference[1], marker[1])
        (sandbox / "native").chmod(0o755)
    assert as_nobody(pre_create) == 0
    done = run_probe({"GRAPHRNN_CACHE": str(sandbox)})
    assert_refused_and_not_loaded(done, reference, marker, f"owned by uid {NOBODY}")


def test_cache_folders_and_files_are_created_private_whatever_the_umask(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "XDG_CACHE_HOME": None, "GRAPHRNN_CACHE": None}
    done = run_probe(env, umask=0)
    assert done.returncode == 0, done.stderr
    native_dir = home / ".cache" / "graphrnn" / "native"
    for folder in (home / ".cache", native_dir.parent, native_dir):
        assert folder.stat().st_mode & 0o777 == 0o700, folder
    files = list(native_dir.iterdir())
    assert files and all(f.stat().st_mode & 0o777 == 0o600 for f in files)


@needs_root
def test_the_default_cache_made_under_umask_000_takes_no_plants(sandbox, reference, marker):
    home = sandbox / "home"
    home.mkdir(mode=0o755)
    env = {"HOME": str(home), "XDG_CACHE_HOME": None, "GRAPHRNN_CACHE": None}
    assert run_probe(env, umask=0).returncode == 0
    native_dir = home / ".cache" / "graphrnn" / "native"
    assert as_nobody(lambda: plant(native_dir, reference[1], marker[1])) == 3
    done = run_probe(env, umask=0)
    assert not marker[0].exists(), "a planted library was loaded"
    assert done.returncode == 0 and done.stdout == reference[0], done.stderr


def test_a_world_writable_cache_folder_is_refused(tmp_path, reference, marker):
    plant(tmp_path / "cache" / "native", reference[1], marker[1], mode=0o600)
    (tmp_path / "cache" / "native").chmod(0o777)
    done = run_probe({"GRAPHRNN_CACHE": str(tmp_path / "cache")})
    assert_refused_and_not_loaded(done, reference, marker, "group/world-writable (mode 0777)")


@pytest.mark.parametrize("writable", [".so", native.DIGEST_SUFFIX])
def test_a_group_writable_library_or_record_is_refused(tmp_path, reference, marker, writable):
    folder = tmp_path / "cache" / "native"
    plant(folder, reference[1], marker[1], mode=0o600)
    folder.chmod(0o700)
    for name in reference[1]:
        (folder / (name[:-3] + writable)).chmod(0o660)
    done = run_probe({"GRAPHRNN_CACHE": str(tmp_path / "cache")})
    assert_refused_and_not_loaded(done, reference, marker, "group/world-writable (mode 0660)")


def test_a_symlinked_cache_folder_is_refused(tmp_path, reference, marker):
    plant(tmp_path / "elsewhere", reference[1], marker[1], mode=0o600)
    (tmp_path / "elsewhere").chmod(0o700)
    (tmp_path / "cache").mkdir(mode=0o700)
    (tmp_path / "cache" / "native").symlink_to(tmp_path / "elsewhere")
    done = run_probe({"GRAPHRNN_CACHE": str(tmp_path / "cache")})
    assert_refused_and_not_loaded(done, reference, marker, "is a symbolic link")


@pytest.mark.parametrize("linked", [".so", native.DIGEST_SUFFIX])
def test_a_symlinked_library_or_record_is_refused(tmp_path, reference, marker, linked):
    folder = tmp_path / "cache" / "native"
    plant(folder, reference[1], marker[1], mode=0o600)
    folder.chmod(0o700)
    for name in reference[1]:
        entry = folder / (name[:-3] + linked)
        target = tmp_path / entry.name
        entry.rename(target)
        entry.symlink_to(target)
    done = run_probe({"GRAPHRNN_CACHE": str(tmp_path / "cache")})
    assert_refused_and_not_loaded(done, reference, marker, "is a symbolic link")


def test_a_library_that_does_not_match_its_digest_is_rebuilt_never_loaded(tmp_path, reference,
                                                                          marker):
    env = {"GRAPHRNN_CACHE": str(tmp_path)}
    assert run_probe(env).returncode == 0
    libs = sorted((tmp_path / "native").glob("*.so"))
    assert [p.name for p in libs] == reference[1]
    for lib in libs:
        lib.write_bytes(marker[1])  # same owner and mode: only the digest tells
    done = run_probe(env)
    assert not marker[0].exists(), "a library not matching its digest was loaded"
    assert done.returncode == 0 and done.stdout == reference[0], done.stderr
    assert "rebuilding" in done.stderr and REFUSED not in done.stderr
    for lib in libs:
        record = lib.with_suffix(native.DIGEST_SUFFIX).read_text()
        assert record == hashlib.sha256(lib.read_bytes()).hexdigest()


def test_a_truncated_library_is_rebuilt_not_mapped(tmp_path, reference):
    env = {"GRAPHRNN_CACHE": str(tmp_path)}
    assert run_probe(env).returncode == 0
    for lib in (tmp_path / "native").glob("*.so"):
        os.truncate(lib, lib.stat().st_size // 2)  # past the headers: dlopen would SIGBUS
    done = run_probe(env)
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout == reference[0] and "rebuilding" in done.stderr


def test_trimming_drops_digest_records_with_their_libraries(tmp_path):
    for i in range(10):
        for suffix in (".so", native.DIGEST_SUFFIX):
            entry = tmp_path / f"{i}{suffix}"
            entry.write_bytes(b"x")
            os.utime(entry, (i, i))
    native._trim(tmp_path, most=8)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{i}{s}" for i in range(4, 10) for s in (".so", native.DIGEST_SUFFIX))
