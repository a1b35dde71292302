"""The command line: check and inspect output, exit codes, one-line errors, atomic files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from graphrnn.cli import main as cli
from graphrnn.cli.main import main
from graphrnn.frontend import render
from tests.helpers import BAD_SPECS, ROOT, SPEC_FILES

BAD = BAD_SPECS
ELMAN = str(ROOT / "specs" / "elman.yaml")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str) -> None:
    assert code == 2
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert "Traceback" not in err


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_check_every_spec(capsys, path):
    code, out, err = run(capsys, "check", str(path))
    assert code == 0 and err == ""
    for heading in ("inputs", "nodes", "edges", "parameters", "run once for all steps",
                    "outputs"):
        assert heading in out
    assert "time loops" in out
    assert len(out.splitlines()) <= 50  # one screen


def test_check_elman_summary(capsys):
    code, out, _ = run(capsys, "check", ELMAN)
    assert code == 0
    assert "h -> h @1  full  h->h@1 (32, 32)" in out
    assert "time loops (run step by step)\n  1. h\n" in out
    assert "run once for all steps: y" in out


def test_check_shows_tied_parameters(capsys):
    _, out, _ = run(capsys, "check", str(ROOT / "specs" / "modern_hopfield.yaml"))
    assert "tied: X (64, 16) shared by xi -> a @1, a -> xi" in out


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_specs_exit_2_with_one_line(capsys, path):
    code, out, err = run(capsys, "check", str(path))
    assert_one_line_error(code, err)
    assert err.startswith(f"graphrnn: {path}:")
    assert out == ""
    code, _, err = run(capsys, "inspect", str(path), "--steps", "2")
    assert_one_line_error(code, err)


@pytest.mark.parametrize("argv,fragment", [
    (["check", "no/such/spec.yaml"], "No such file or directory"),
    (["inspect", ELMAN, "--steps", "0"], "steps must be an integer >= 1"),
    (["inspect", ELMAN, "--steps", "two"], "invalid int value"),
    (["inspect", ELMAN, "--format", "gif"], "invalid choice"),
    (["inspect", ELMAN, "--format", "png"], "give -o FILE.png"),
    (["frobnicate"], "invalid choice"),
    ([], "required"),
    (["check"], "required: spec"),
])
def test_bad_arguments_exit_2(capsys, argv, fragment):
    code, _, err = run(capsys, *argv)
    assert_one_line_error(code, err)
    assert fragment in err


def test_help_exits_0(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "check" in out and "inspect" in out


@pytest.mark.parametrize("fmt", ["text", "json", "dot"])
def test_inspect_stdout(capsys, fmt):
    code, out, err = run(capsys, "inspect", ELMAN, "--steps", "3", "--format", fmt)
    assert code == 0 and err == ""
    if fmt == "json":
        data = json.loads(out)
        assert len(data["nodes"]) == 3 * 3 + 1 and len(data["edges"]) == 3 * 3
    elif fmt == "dot":
        assert out.startswith('digraph "elman"')
    else:
        assert "t = 2" in out and "y@2 = identity([h->y] h@2 + y.bias)" in out


def test_inspect_writes_files(tmp_path, capsys):
    for name, fmt in (("g.json", None), ("g.dot", "dot"), ("g.txt", "text")):
        argv = ["inspect", ELMAN, "-T", "2", "-o", str(tmp_path / name)]
        code, out, _ = run(capsys, *(argv + (["--format", fmt] if fmt else [])))
        assert code == 0 and out == ""
    assert json.loads((tmp_path / "g.json").read_text())["graph"]["steps"] == 2
    assert (tmp_path / "g.dot").read_text().startswith("digraph")
    assert (tmp_path / "g.txt").read_text().startswith("# elman unrolled over 2 steps")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.dot", "g.json", "g.txt"]


def test_inspect_into_missing_folder_exits_2(tmp_path, capsys):
    code, _, err = run(capsys, "inspect", ELMAN, "-o", str(tmp_path / "nope" / "g.dot"))
    assert_one_line_error(code, err)


@pytest.mark.parametrize("fmt,magic", [("svg", b"<svg"), ("png", b"\x89PNG")])
def test_inspect_images(tmp_path, capsys, fmt, magic):
    out = tmp_path / f"elman.{fmt}"
    code, _, _ = run(capsys, "inspect", ELMAN, "--steps", "2", "-o", str(out))
    assert code == 0 and magic in out.read_bytes()[:1000]


def test_missing_dot_exits_2(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda _: None)
    code, _, err = run(capsys, "inspect", ELMAN, "--format", "svg", "--layout", "dot", "-o",
                       str(tmp_path / "a.svg"))
    assert_one_line_error(code, err)
    assert "Graphviz's 'dot' program, which is not installed" in err
    assert "--format dot" in err
    assert not (tmp_path / "a.svg").exists()


def test_bug_exits_1_with_traceback(capsys, monkeypatch):
    def broken(net):
        raise RuntimeError("boom")

    monkeypatch.setattr(render, "summarize", broken)
    code, _, err = run(capsys, "check", ELMAN)
    assert code == 1
    assert "Traceback" in err and "internal error" in err


def test_subcommands_are_one_function_each():
    parser = cli.build_parser()
    args = parser.parse_args(["check", "x.yaml"])
    assert args.func is cli.check


def test_python_dash_m(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "graphrnn", "check", ELMAN], cwd=ROOT,
                        capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "network elman" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "graphrnn", "check",
                          str(BAD_SPECS[0].parent / "algebraic_loop.yaml")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "algebraic loop p -> q -> p" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_warnings_are_one_line_and_exit_0(tmp_path, capsys):
    spec = tmp_path / "dead.yaml"
    spec.write_text("inputs: {x: 2}\nnodes: {h: 2, dead: 2}\nedges: [x -> h, h -> dead]\n"
                    "outputs: [h]\n")
    code, out, err = run(capsys, "check", str(spec))
    assert code == 0 and "network dead" in out
    assert err == f"graphrnn: warning: {spec}:2: node(s) dead reach no output; they are " \
                  "computed but never used (add them to outputs or remove them)\n"
