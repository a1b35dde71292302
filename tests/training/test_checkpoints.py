"""Checkpoints: stale temp files, the lock against a second run, settings a resume must keep,
and SIGTERM saving a checkpoint that resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.frontend.network import Edge, Network, Node
from graphrnn.training.checkpoints import CheckpointError, CheckpointLock
from graphrnn.training.tasks import save_task, temporal_xor
from tests.helpers import ROOT

ELMAN = ("name: elman\ninputs:\n  x: 1\nnodes:\n  h: {size: 4, activation: tanh}\n  y: 1\n"
         "edges:\n  - x -> h\n  - h -> h @1\n  - h -> y\noutputs: [y]\n")


def elman():
    net = Network("elman", {"x": 1}, {"h": Node("h", 4, "tanh"), "y": Node("y", 1)},
                  (Edge("x", "h", param="x->h"), Edge("h", "h", 1, param="h->h@1"),
                   Edge("h", "y", param="h->y")), ("y",))
    return gr.compile(net, dtype="float64")


def fit(path, **kw):
    model = elman()
    settings = {"epochs": 1, "batch_size": 8, "progress": False, "checkpoint": path, **kw}
    return gr.train(model, model.init_params(), temporal_xor(batch=16, steps=6), **settings)


def test_stale_temp_files_of_this_checkpoint_are_removed_and_no_others(tmp_path):
    ck = tmp_path / "ck.npz"
    stale = tmp_path / ".ck.npz.k3x_9qaz.tmp"  # as atomic_file names them; its writer died
    kept = [tmp_path / ".other.npz.k3x_9qaz.tmp", tmp_path / ".ck.npz.notes.txt",
            tmp_path / ".ck.npz.toolongname.tmp"]
    for f in (stale, *kept):
        f.write_bytes(b"x" * 100)
    fit(ck)
    assert not stale.exists() and all(f.exists() for f in kept)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ck")) == ["ck.npz"]


def test_a_second_run_on_a_locked_checkpoint_is_refused_and_touches_nothing(tmp_path):
    ck = tmp_path / "ck.npz"
    temp = tmp_path / ".ck.npz.abcd1234.tmp"  # the live writer's file
    temp.write_bytes(b"being written")
    with CheckpointLock(ck):
        with pytest.raises(CheckpointError, match=r"checkpoint .*ck.npz is in use by another "
                                                  r"training run \(it holds .*ck.npz.lock\)"):
            fit(ck)
        assert temp.exists() and not ck.exists()
    assert not (tmp_path / "ck.npz.lock").exists()
    fit(ck)  # once released, a run takes it
    assert ck.exists() and not (tmp_path / "ck.npz.lock").exists()


@pytest.mark.parametrize("first, second, message", [
    ({"lr": 0.01}, {"lr": 0.02}, "written with lr=0.01, this run has lr=0.02"),
    ({"optimizer": "sgd", "lr": 0.01, "optimizer_kw": {"momentum": 0.9}},
     {"optimizer": "sgd", "lr": 0.01, "optimizer_kw": {"momentum": 0.5}},
     "written with momentum=0.9, this run has momentum=0.5"),
    ({"clip": 1.0}, {"clip": None}, "written with clip=1.0, this run has clip=None"),
])
def test_resume_refuses_a_changed_learning_rate_and_other_settings(tmp_path, first, second,
                                                                   message):
    ck = tmp_path / "ck.npz"
    fit(ck, **first)
    with pytest.raises(CheckpointError, match=message):
        fit(ck, epochs=2, resume=True, **second)
    out = fit(ck, epochs=2, resume=True, **first)  # the same settings resume
    assert len(out.history) == 2


def test_sigterm_saves_a_checkpoint_that_resumes(tmp_path):
    spec, data, ck = tmp_path / "elman.yaml", tmp_path / "xor.npz", tmp_path / "ck.npz"
    spec.write_text(ELMAN)
    save_task("xor", data, batch=64, steps=20)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "graphrnn", "train", str(spec), "--data", str(data),
            "--checkpoint", str(ck), "--batch-size", "4", "--no-progress", "-o",
            str(tmp_path / "p.npz")]
    proc = subprocess.Popen([*args, "--epochs", "100000"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # until the first epoch's checkpoint is there (at most a minute)
            if ck.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert ck.exists(), proc.communicate()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted; checkpoint saved to" in err and "Traceback" not in err
    assert not list(tmp_path.glob(".ck.npz.*.tmp")) and not (tmp_path / "ck.npz.lock").exists()
    with np.load(ck) as z:
        run = json.loads(str(z["meta"]))["run"]
    done = run["epoch"] + 1  # one more epoch, from where it was stopped
    resumed = subprocess.run([*args, "--resume", "--epochs", str(done)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{done} epoch(s), completed" in resumed.stdout
