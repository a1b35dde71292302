"""Smoke test of benchmarks/text_lm.py --quick: the stdlib-text char LM vs n-gram report."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from tests.helpers import ROOT


def test_quick_text_lm_writes_a_sane_report(tmp_path):
    run = subprocess.run([sys.executable, "-m", "benchmarks.text_lm", "--quick",
                          "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "text_lm.json").read_text())
    assert report["files"] and all(f.endswith(".py") for f in report["files"])
    assert report["train_chars"] > 0 and report["held_chars"] > 0
    assert report["ngram"], "no n-gram baseline computed"
    for bpc in report["ngram"].values():
        assert math.isfinite(bpc) and 0 < bpc < math.log2(96) + 1
    for key in ("plain", "dropout"):
        final = report[key]["final"]
        assert len(report[key]["curve"]) == report["epochs"]
        for bpc in (final["train_bpc"], final["held_bpc"]):
            assert math.isfinite(bpc) and bpc > 0
    assert "held-out" in run.stdout
