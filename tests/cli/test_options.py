"""One registration mechanism, one place for errors, and options spelled in full (with hints)."""

from __future__ import annotations

import argparse

import pytest

from graphrnn.cli import main as cli
from graphrnn.cli.main import main
from tests.helpers import ROOT

ELMAN = str(ROOT / "specs" / "elman.yaml")
EVERY = {"check", "inspect", "hopfield", "bench", "run", "train", "task", "accuracy", "export",
         "import"}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_subcommand_is_registered_one_way():
    subs = _subparsers(cli.build_parser())
    assert set(subs) == EVERY
    for name, parser in subs.items():
        assert callable(parser.get_default("func")), name
        assert parser.get_default("handler") is None, name  # no second convention
    assert not hasattr(cli, "subcommand") and not hasattr(cli, "ADDERS")


def test_no_parser_takes_abbreviations():
    parser = cli.build_parser()
    assert parser.allow_abbrev is False
    assert all(p.allow_abbrev is False for p in _subparsers(parser).values())


def _error(capsys, argv) -> str:
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("argv, hint", [
    (["train", ELMAN, "--data", "d.npz", "--batchsize", "8"],
     "unknown option --batchsize; did you mean '--batch-size'?"),
    (["train", ELMAN, "--data", "d.npz", "--epoch", "2"],
     "unknown option --epoch; did you mean '--epochs'?"),
    (["task", "adding", "-o", "no/such/dir/x.npz", "--step=5"],
     "unknown option --step; did you mean '--steps'?"),
    (["inspect", ELMAN, "--schedul"], "unknown option --schedul; did you mean '--schedule'?"),
    (["bench", "--budge", "1", "--cells", "nonsense"],
     "unknown option --budge; did you mean '--budget'?"),
])
def test_mistyped_and_abbreviated_options_get_the_closest(capsys, argv, hint):
    err = _error(capsys, argv)
    assert hint in err


def test_an_option_nothing_resembles_gets_no_guess(capsys):
    err = _error(capsys, ["check", ELMAN, "--zzzzzz"])
    assert "unknown option --zzzzzz" in err and "did you mean" not in err


@pytest.mark.parametrize("command", [
    ["task", "xor"],
    ["run", str(ROOT / "specs" / "boltzmann.yaml"), "--steps", "2"],
    ["inspect", ELMAN],
])
def test_file_errors_are_one_formatted_line_naming_the_path(tmp_path, capsys, command):
    path = tmp_path / "no" / "out.npz"
    err = _error(capsys, [*command, "-o", str(path)])
    assert f"{path}: No such file or directory" in err
    assert "[Errno" not in err and ".tmp" not in err


def test_train_reports_through_the_one_place(tmp_path, capsys, monkeypatch):
    from graphrnn.cli import base

    seen = []
    real = base.exit_code
    monkeypatch.setattr(base, "exit_code", lambda *a, **k: seen.append(a[2:]) or real(*a, **k))
    err = _error(capsys, ["train", ELMAN, "--data", str(tmp_path / "none.npz")])
    assert err.startswith("graphrnn train: error: ") and "data file" in err
    assert seen
