"""Data-parallel training: `mpiexec -n 2` runs equal one process; failures stop every rank."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from graphrnn.training.distributed import launcher_local_rank, launcher_size, shard_rows
from tests.helpers import ROOT

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")

#: One training run from a JSON config: rank r writes OUT.r.npz (params, history) or OUT.r.json
#: (the error). Failures can be planted on one rank: a raise or a NaN gradient at call n.
WORKER = r'''
import json, os, sys
import numpy as np
import graphrnn as gr

cfg = json.loads(sys.argv[1])
comm, rank = None, 0
if cfg.get("ranks", 1) > 1:
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rank = comm.Get_rank()
    open(f"{cfg['out']}.pid.{rank}", "w").write(str(os.getpid()))
rng = np.random.default_rng(3)
T, B = 10, 26
data = {"x": rng.normal(size=(T, B, 8)), "y": rng.normal(size=(T, B, 4))}
if cfg.get("mask"):
    data["mask"] = (rng.random((T, B)) < 0.6).astype(float)
    data["mask"][0] = 1
    data["mask"][3:, :5] = 0  # some sequences end early (bucketing, a rank with no weight)
if cfg.get("lengths"):  # sharded like the (T, B) arrays; anti-causal loops start at each end
    data["lengths"] = rng.integers(1, T + 1, B)
model = gr.compile(gr.load_spec(cfg["spec"]), dtype="float64")
params = model.init_params(seed=cfg.get("init_seed", 0) + rank * cfg.get("rank_seed", 0))
early = [0]  # buckets whose all-reduce started during a backward pass
if cfg.get("ranks", 1) > 1:
    from graphrnn.training import buckets
    real_done = buckets.BucketedSum.stage_done
    def counted(self, run, i):
        n = len(self.early)
        real_done(self, run, i)
        early[0] += len(self.early) - n
    buckets.BucketedSum.stage_done = counted
fail = cfg.get("fail")
if fail and fail["rank"] == rank:
    real, calls = model.gradients, [0]
    def planted(*a, **k):
        calls[0] += 1
        out = real(*a, **k)
        if calls[0] == fail["call"]:
            if fail["kind"] == "raise":
                raise RuntimeError("planted failure")
            next(iter(out[1].values()))[...] = np.nan
        return out
    model.gradients = planted
try:
    res = gr.train(model, params, data, epochs=cfg.get("epochs", 3), batch_size=8,
                   optimizer=cfg.get("opt", "adam"), lr=0.01, tbptt=cfg.get("tbptt"),
                   checkpoint=cfg.get("ckpt"), resume=cfg.get("resume", False),
                   progress=False, val_fraction=0.2, clip=cfg.get("clip"),
                   bucket=cfg.get("bucket", False), comm=comm)
except Exception as exc:
    json.dump({"type": type(exc).__name__, "message": str(exc)},
              open(f"{cfg['out']}.{rank}.json", "w"))
    sys.exit(3)
np.savez(f"{cfg['out']}.{rank}.npz", **res.params, history=json.dumps(res.history),
         early=early[0])
'''


def _run(tmp_path: Path, cfg: dict, ranks: int = 1, timeout: float = 60, env=None):
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    cfg = {"spec": str(ROOT / "specs" / "elman.yaml"), **cfg, "ranks": ranks}
    cmd = [sys.executable, str(worker), json.dumps(cfg)]
    if ranks > 1:
        cmd = [MPIEXEC, "-n", str(ranks), *cmd]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc, timeout: float = 60):
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out + err


def _params(path: str) -> tuple[dict, list]:
    with np.load(path) as z:
        return ({k: z[k] for k in z.files if k not in ("history", "early")},
                json.loads(str(z["history"])))


def _assert_same_run(got: str, want: str) -> None:
    a, ha = _params(got)
    b, hb = _params(want)
    assert set(a) == set(b)
    for k in b:  # relative to the parameter's scale: only the order of the sums differs
        assert np.abs(a[k] - b[k]).max() <= 1e-10 * np.abs(b[k]).max(), k
    assert len(ha) == len(hb)
    for ea, eb in zip(ha, hb, strict=True):
        for key in ("train_loss", "val_loss"):
            assert abs(ea[key] - eb[key]) <= 1e-10 * abs(eb[key]), (key, ea["epoch"])


CASES = {"adam_mask": {"mask": 1}, "tbptt_overlap_sgd": {"tbptt": [3, 5], "opt": "sgd"},
         "tbptt_mask_bucket_clip": {"tbptt": 4, "mask": 1, "bucket": True, "clip": 0.5},
         "bilstm_lengths_bucket": {"lengths": 1, "bucket": True,
                                   "spec": str(ROOT / "specs" / "bilstm.yaml")}}


@pytest.mark.parametrize("buckets", ["one", "per-stage"])
@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_train_as_one_process(tmp_path, case, buckets):
    """``per-stage``: a bucket per stage of BPTT, its all-reduce started as soon as the stage
    has its weight gradients (overlapping the rest of the backward pass)."""
    cfg = {**CASES[case], "epochs": 4}
    env = {"GRAPHRNN_MPI_BUCKET_BYTES": "0" if buckets == "per-stage" else str(1 << 30)}
    two = _run(tmp_path, {**cfg, "out": str(tmp_path / "two")}, ranks=2, env=env)
    one = _run(tmp_path, {**cfg, "out": str(tmp_path / "one")})
    assert _finish(one)[0] == 0
    rc, text = _finish(two)
    assert rc == 0, text
    _assert_same_run(str(tmp_path / "two.0.npz"), str(tmp_path / "one.0.npz"))
    _assert_same_run(str(tmp_path / "two.1.npz"), str(tmp_path / "one.0.npz"))  # every rank
    with np.load(tmp_path / "two.0.npz") as z:  # packed calls (lengths) sum after BPTT
        overlapped = buckets == "per-stage" and "lengths" not in cfg
        assert (int(z["early"]) > 0) == overlapped


def _noisy_spec(tmp_path: Path) -> str:
    """AWD-LSTM (edge dropout, weight drop, zoneout) with node dropout on tanh(c) too."""
    text = (ROOT / "specs" / "awd_lstm.yaml").read_text()
    text = text.replace("tc: {size: 16, activation: tanh}",
                        "tc: {size: 16, activation: tanh, dropout: 0.3}")
    assert "dropout: 0.3" in text
    path = tmp_path / "noisy.yaml"
    path.write_text(text)
    return str(path)


NOISE_CASES = {"adam_mask": {"mask": 1}, "tbptt_overlap_sgd": {"tbptt": [3, 5], "opt": "sgd"},
               "lengths_bucket": {"lengths": 1, "bucket": True}}


@pytest.mark.parametrize("case", list(NOISE_CASES))
def test_two_ranks_train_a_network_with_training_noise_as_one_process(tmp_path, case):
    """Each rank draws its rows of the whole mini-batch's dropout/zoneout masks and the same
    weight-drop masks (the last mini-batch of an epoch, 5 sequences, splits 3 + 2)."""
    cfg = {**NOISE_CASES[case], "epochs": 3, "spec": _noisy_spec(tmp_path)}
    two = _run(tmp_path, {**cfg, "out": str(tmp_path / "two")}, ranks=2)
    one = _run(tmp_path, {**cfg, "out": str(tmp_path / "one")})
    assert _finish(one)[0] == 0
    rc, text = _finish(two)
    assert rc == 0, text
    _assert_same_run(str(tmp_path / "two.0.npz"), str(tmp_path / "one.0.npz"))
    _assert_same_run(str(tmp_path / "two.1.npz"), str(tmp_path / "one.0.npz"))


@pytest.mark.parametrize("first,then", [(2, 1), (1, 2)])
def test_checkpoint_resumes_under_another_rank_count(tmp_path, first, then):
    ck = str(tmp_path / "ck.npz")
    cfg = {"tbptt": 4, "mask": 1}
    rc, text = _finish(_run(tmp_path, {**cfg, "epochs": 2, "ckpt": ck,
                                       "out": str(tmp_path / "a")}, ranks=first))
    assert rc == 0, text
    rc, text = _finish(_run(tmp_path, {**cfg, "epochs": 4, "ckpt": ck, "resume": True,
                                       "out": str(tmp_path / "b")}, ranks=then))
    assert rc == 0, text
    rc, text = _finish(_run(tmp_path, {**cfg, "epochs": 4, "out": str(tmp_path / "c")}))
    assert rc == 0, text
    _assert_same_run(str(tmp_path / "b.0.npz"), str(tmp_path / "c.0.npz"))


@pytest.mark.parametrize("kind,error", [("raise", "DistributedError"),
                                        ("nan", "DivergenceError")])
def test_a_failure_on_one_rank_stops_every_rank_at_the_same_step(tmp_path, kind, error):
    out = str(tmp_path / "f")
    proc = _run(tmp_path, {"out": out, "fail": {"rank": 1, "call": 5, "kind": kind}}, ranks=2)
    rc, text = _finish(proc)
    assert rc != 0
    reports = [json.loads(Path(f"{out}.{r}.json").read_text()) for r in (0, 1)]
    assert [r["type"] for r in reports] == [error, error], text
    assert reports[0]["message"] == reports[1]["message"]
    assert "epoch 2, step 2" in reports[0]["message"]  # 3 mini-batches per epoch
    if kind == "raise":
        assert "rank 1 failed" in reports[0]["message"]
        assert "planted failure" in reports[0]["message"]


def _wait_for(path: Path, proc, seconds: float = 30) -> int:
    deadline = time.monotonic() + seconds
    while not (path.exists() and path.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, "the worker did not start"
        time.sleep(0.05)
    time.sleep(1.0)  # into the training loop
    return int(path.read_text())


def test_a_killed_rank_ends_the_job(tmp_path):
    out = tmp_path / "k"
    proc = _run(tmp_path, {"out": str(out), "epochs": 10**6}, ranks=2)
    os.kill(_wait_for(Path(f"{out}.pid.1"), proc), signal.SIGKILL)
    rc, text = _finish(proc, timeout=60)  # raises TimeoutExpired on a hang
    assert rc != 0
    assert "signal 9" in text or "Killed" in text, text


def test_a_hung_rank_makes_the_others_abort_with_one_line(tmp_path):
    out = tmp_path / "h"
    proc = _run(tmp_path, {"out": str(out), "epochs": 10**6}, ranks=2,
                env={"GRAPHRNN_MPI_TIMEOUT": "5"})
    pid = _wait_for(Path(f"{out}.pid.1"), proc)
    os.kill(pid, signal.SIGSTOP)
    try:
        rc, text = _finish(proc, timeout=60)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert rc != 0
    assert "graphrnn: rank 0: no answer from the other ranks within 5 s" in text, text


def test_parameters_that_differ_across_ranks_are_refused(tmp_path):
    out = str(tmp_path / "d")
    rc, text = _finish(_run(tmp_path, {"out": out, "rank_seed": 1}, ranks=2))
    assert rc != 0
    report = json.loads(Path(f"{out}.0.json").read_text())
    assert "parameters differ across the 2 ranks at the start" in report["message"]


def test_cli_under_mpiexec_refuses_a_rank_count_that_does_not_divide_the_batch(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(5, 12, 8)), y=rng.normal(size=(5, 12, 4)))
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "graphrnn", "train",
           str(ROOT / "specs" / "elman.yaml"), "--data", str(tmp_path / "d.npz"),
           "--batch-size", "5", "--no-progress", "-o", str(tmp_path / "p.npz")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert lines == ["graphrnn train: error: batch_size 5 does not split evenly over 2 ranks: "
                     "use a rank count that divides the batch size"], proc.stderr
    assert not (tmp_path / "p.npz").exists()


def test_cli_under_mpiexec_writes_once_and_equals_one_process(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x=rng.normal(size=(5, 12, 8)), y=rng.normal(size=(5, 12, 4)))
    base = [sys.executable, "-m", "graphrnn", "train", str(ROOT / "specs" / "elman.yaml"),
            "--data", str(tmp_path / "d.npz"), "--dtype", "float64", "--batch-size", "4",
            "--epochs", "2", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    two = subprocess.run([MPIEXEC, "-n", "2", *base, "-o", str(tmp_path / "two.npz")],
                         cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    one = subprocess.run([*base, "-o", str(tmp_path / "one.npz")], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, env=env)
    assert two.returncode == 0 and one.returncode == 0, two.stderr + one.stderr
    assert two.stdout.count("parameters written to") == 1
    with np.load(tmp_path / "two.npz") as a, np.load(tmp_path / "one.npz") as b:
        for k in b.files:
            assert np.abs(a[k] - b[k]).max() <= 1e-10 * np.abs(b[k]).max(), k


def test_importing_graphrnn_and_training_never_imports_mpi4py():
    code = ("import sys, numpy as np, graphrnn as gr\n"
            "m = gr.compile(gr.load_spec('specs/elman.yaml'), dtype='float64')\n"
            "r = np.random.default_rng(0)\n"
            "gr.train(m, m.init_params(seed=0), {'x': r.normal(size=(3, 4, 8)),"
            " 'y': r.normal(size=(3, 4, 4))}, epochs=1, batch_size=2, progress=False)\n"
            "assert 'mpi4py' not in sys.modules\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")}
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**env, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr


def test_launcher_detection_from_the_environment():
    assert launcher_size({}) == 1 and launcher_local_rank({}) is None
    assert launcher_size({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_LOCAL_RANK": "3"}) == 4
    assert launcher_local_rank({"OMPI_COMM_WORLD_LOCAL_RANK": "3"}) == 3
    assert launcher_size({"PMI_SIZE": "2", "MPI_LOCALRANKID": "1"}) == 2
    assert launcher_local_rank({"PMI_SIZE": "2", "MPI_LOCALRANKID": "1"}) == 1
    assert launcher_size({"SLURM_STEP_NUM_TASKS": "8", "SLURM_LOCALID": "2"}) == 8
    assert launcher_size({"SLURM_NTASKS": "8"}) == 1  # a batch script itself is one process


def test_shards_cover_the_batch_in_order():
    idx = np.array([7, 3, 9, 1, 4])
    parts = [shard_rows(idx, r, 2) for r in range(2)]
    assert np.array_equal(np.concatenate(parts), idx)
    assert [len(p) for p in parts] == [3, 2]


def test_masks_of_some_rows_are_those_rows_of_the_whole_batch_masks():
    import graphrnn as gr
    from graphrnn.noise import draw_masks

    net = gr.load_spec(ROOT / "specs" / "awd_lstm.yaml")
    whole = draw_masks(net, 6, 10, seed=5)
    part = draw_masks(net, 6, 10, seed=5, rows=slice(4, 7))
    assert whole.zoneout and whole.edge_dropout and whole.weight_dropout
    for k, v in whole.zoneout.items():
        assert np.array_equal(part.zoneout[k], v[:, 4:7])
    for k, v in whole.edge_dropout.items():
        assert np.array_equal(part.edge_dropout[k], v[4:7])
    for k, v in whole.weight_dropout.items():  # per call: the same on every rank
        assert np.array_equal(part.weight_dropout[k], v)
    own = draw_masks(net, 6, 3, seed=5)  # what a rank drawing its shard alone would get
    assert not all(np.array_equal(own.zoneout[k], part.zoneout[k]) for k in own.zoneout)
