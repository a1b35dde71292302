"""graphrnn.files: atomic writes, and what a write does with what is already at the path."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from graphrnn.cli.main import main
from graphrnn.files import atomic_file, save_npz, write_atomic
from tests.helpers import ROOT

ELMAN = str(ROOT / "specs" / "elman.yaml")


def test_replaces_a_regular_file_atomically(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    write_atomic(path, "new")
    assert path.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_file(path) as handle:
        handle.write(b"half")
        raise RuntimeError
    assert path.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_refuses_a_symlink_and_leaves_link_and_target_alone(tmp_path):
    target = tmp_path / "target.npz"
    target.write_bytes(b"precious")
    link = tmp_path / "link.npz"
    link.symlink_to(target)
    with pytest.raises(OSError, match="is a symbolic link, not a regular file"):
        save_npz(link, {"x": np.zeros(2)})
    assert link.is_symlink() and target.read_bytes() == b"precious"
    dangling = tmp_path / "dangling.npz"
    dangling.symlink_to(tmp_path / "nowhere")
    with pytest.raises(OSError, match="symbolic link"):
        write_atomic(dangling, "x")
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()


def test_refuses_a_fifo_and_a_folder(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="is a FIFO"):
        write_atomic(fifo, "x")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError, match="is a folder"):
        write_atomic(tmp_path / "dir", "x")
    assert sorted(os.listdir(tmp_path)) == ["dir", "pipe"]


@pytest.mark.parametrize("make, kind", [
    (lambda p: os.mkfifo(p), "FIFO"),
    (lambda p: os.symlink(p.parent / "t.npz", p), "symbolic link"),
    (lambda p: os.mknod(p, 0o600 | stat.S_IFCHR, os.makedev(1, 7)), "character device"),
])
def test_cli_refuses_what_is_not_a_regular_file(tmp_path, capsys, make, kind):
    path = tmp_path / "out.npz"
    try:
        make(path)
    except PermissionError:
        pytest.skip("mknod needs root")
    mode = os.lstat(path).st_mode
    for argv in (["task", "adding", "--batch", "4", "--steps", "5", "-o", str(path)],
                 ["run", str(ROOT / "specs" / "boltzmann.yaml"), "--steps", "2",
                  "-o", str(path)],
                 ["inspect", ELMAN, "--format", "text", "-o", str(path)]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and kind in err, (argv, err)
        assert err.startswith("graphrnn") and str(path) in err
        assert os.lstat(path).st_mode == mode
    assert not (tmp_path / "t.npz").exists()  # a link's target is never written


def test_streams_are_written_through(tmp_path):
    # Never writes to the real /dev/null or /dev/stdout: code that replaced them (as before
    # this change, run as root) would break the machine. A pipe's /proc/self/fd/N is safe:
    # nothing can be renamed into /proc.
    from graphrnn.files import check_writable, stream_fd

    assert stream_fd("/dev/stdout") == 1 and stream_fd("/dev/fd/7") == 7
    check_writable(os.devnull)  # written through, so not refused
    with pytest.raises(OSError, match="is a character device"):
        check_writable("/dev/full")
    read, write = os.pipe()
    try:
        save_npz(f"/proc/self/fd/{write}", {"x": np.arange(3)})
        os.close(write)
        with os.fdopen(read, "rb") as pipe:
            (tmp_path / "got.npz").write_bytes(pipe.read())
    finally:
        for fd in (read, write):
            try:
                os.close(fd)
            except OSError:
                pass
    with np.load(tmp_path / "got.npz") as z:
        assert z["x"].tolist() == [0, 1, 2]


def test_cli_writes_through_its_own_stdout():
    proc = subprocess.run([sys.executable, "-m", "graphrnn", "inspect", ELMAN, "--steps", "2",
                           "-o", "/proc/self/fd/1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("# elman unrolled over 2 steps")


def test_cli_writes_data_to_its_stdout_and_reports_on_stderr():
    for argv in (["task", "xor", "--batch", "3"],
                 ["run", str(ROOT / "specs" / "boltzmann.yaml"), "--steps", "2"]):
        proc = subprocess.run([sys.executable, "-m", "graphrnn", *argv, "-o", "/proc/self/fd/1"],
                              cwd=ROOT, capture_output=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.decode().startswith("wrote /proc/self/fd/1")
        with np.load(io.BytesIO(proc.stdout)) as z:
            assert z.files
