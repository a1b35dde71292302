"""The benchmark script runs end to end on tiny sizes (no timing is asserted)."""

from __future__ import annotations

import os

import pytest

from benchmarks import bench, common, report
from graphrnn.cli.main import main


def test_bench_runs_on_tiny_sizes(tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "results.md"
    code = main(["bench", "--quick", "--sizes", "4,2,3,2", "--no-overhead", "--no-jax",
                 "--cells", "elman", "--out", str(out)])
    assert code == 0
    text = out.read_text()
    assert "| elman | 4,2,3,2 |" in text and "torch.nn" in text


def test_bench_out_dash_writes_the_report_to_standard_output(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    code = main(["bench", "--quick", "--sizes", "4,2,3,2", "--no-overhead", "--no-jax",
                 "--cells", "elman", "--out", "-"])
    assert code == 0
    assert "| elman | 4,2,3,2 |" in capsys.readouterr().out and not os.listdir(tmp_path)


def test_bench_bad_arguments_exit_2(capsys):
    assert main(["bench", "--sizes", "nonsense"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_bench_shows_progress_a_legend_and_the_load(capsys, monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (7.5, 7.5, 7.5))
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    code = main(["bench", "--quick", "--sizes", "4,2,3,2;5,1,2,2", "--no-torch", "--no-jax",
                 "--cells", "elman,gru", "--modes", "forward"])
    assert code == 0
    out, err = capsys.readouterr()
    assert "How to read the table" in out and "Below 1x graphrnn is faster" in out
    assert out.index("How to read the table") < out.index("graphrnn ms")
    lines = [line for line in err.splitlines() if line.startswith("[bench] case")]
    assert [line.split(":")[0] for line in lines] == [f"[bench] case {i}/5" for i in
                                                     range(1, 6)]
    assert "elman 4,2,3,2 (forward)" in lines[0] and "estimate after the first case" in lines[0]
    assert all(" left)" in line for line in lines[1:])
    assert "per-call overhead" in lines[-1]
    assert "graphrnn bench: warning: load average 7.5 on 2 CPU(s)" in err


def test_progress_estimates_what_is_left_from_what_took():
    assert report.progress(0, 4, "x", 0.0).endswith("(0 s elapsed, estimate after the first "
                                                    "case)")
    assert report.progress(2, 4, "lstm 1,1,1,1", 30.0) == \
        "[bench] case 3/4: lstm 1,1,1,1 (30 s elapsed, about 30 s left)"
    assert "about 10 min left" in report.progress(1, 11, "x", 60.0)


def test_load_warning_only_when_others_compete():
    assert common.load_warning(0.9, 2) is None
    assert "load average 1.6 on 2 CPU(s)" in common.load_warning(1.6, 2)
    assert common.load_warning(6.0, 16) is None


def test_quick_help_says_what_it_does_not_a_minute():
    text = bench.make_parser().format_help()
    assert "about a minute" not in text and "0.5 s of timing" in text


def test_the_tasks_page_keeps_the_sections_other_benchmarks_wrote(tmp_path):
    from benchmarks.tasks import kept_sections
    page = tmp_path / "TASKS.md"
    assert kept_sections(page) == ""
    page.write_text("# Classic tasks\n\n| table |\n\n## Character LM\n\nbpc 1.86\n")
    assert kept_sections(page) == "\n## Character LM\n\nbpc 1.86\n"


def test_bidirectional_bench_runs_a_tiny_case(capsys):
    pytest.importorskip("torch")
    from benchmarks import bidirectional
    assert bidirectional.main(["--pairs", "2", "--sizes", "3,2,4,3"]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split()
    assert row[0] == "3," and float(row[4]) > 0 and float(row[5]) > 0


def test_bench_memory_quick_runs_each_row_in_a_process_of_its_own(capsys):
    pytest.importorskip("torch")
    assert main(["bench", "--memory", "--quick"]) == 0
    out = capsys.readouterr().out
    for label in ("torch.nn.LSTM", "graphrnn", "graphrnn remat=14"):
        assert f"   200 {label} " in out
