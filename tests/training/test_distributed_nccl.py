"""The NCCL path of data-parallel training, on two MPI ranks with a stand-in for cupy.cuda.nccl.

No GPU here: a fake ``cupy`` (device arrays wrapping NumPy memory, streams, ``Device``,
``cuda.nccl`` whose communicator sums with a non-blocking MPI all-reduce that completes "on the
stream") checks what graphrnn does around NCCL: the unique id made on rank 0 and broadcast over
MPI, the sum in place on the device buffer, after the compute stream is synchronised, the
deadline on the stream, and the device chosen from the launcher's local rank.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytest.importorskip("mpi4py")
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
pytestmark = pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install mpich)")

WORKER = r'''
import json, os, sys, time, types
import numpy as np
from mpi4py import MPI

cfg = json.loads(sys.argv[1])
world = MPI.COMM_WORLD
rank = world.Get_rank()
log = {"sync": 0, "device": None, "uids": [], "ptrs": []}


class DeviceArray:  # a CuPy array's surface that graphrnn's NCCL code touches
    def __init__(self, host):
        self.host = host
        self.data = types.SimpleNamespace(ptr=host.ctypes.data)
        self.size, self.dtype, self.nbytes = host.size, host.dtype, host.nbytes


MEMORY = {}  # device pointer -> the array behind it


class Stream:
    def __init__(self, non_blocking=False):
        self.ptr, self.request = 1234, None

    @property
    def done(self):
        return self.request is None or bool(self.request.Test())

    def synchronize(self):
        log["sync"] += 1


class Communicator:
    def __init__(self, size, uid, rank_):
        assert size == world.Get_size() and rank_ == rank
        log["uids"] = world.allgather(uid)  # every rank must hold rank 0's id

    def allReduce(self, send, recv, count, dtype, op, stream):
        assert send == recv and op == nccl.NCCL_SUM  # in place, on the device buffer
        buf = MEMORY[recv]
        assert buf.size == count and dtype == nccl.TYPES[buf.dtype]
        log["ptrs"].append(recv)
        if cfg.get("hang") and rank == 1:
            time.sleep(30)
        self.copy = buf.copy()
        STREAM.request = world.Iallreduce(self.copy, buf, op=MPI.SUM)

    def abort(self):
        log["nccl_abort"] = True


nccl = types.ModuleType("cupy.cuda.nccl")
nccl.NCCL_SUM, nccl.NCCL_FLOAT64, nccl.NCCL_FLOAT32 = 0, 8, 7
nccl.TYPES = {np.dtype(np.float64): 8, np.dtype(np.float32): 7}
nccl.get_unique_id = lambda: (os.getpid(), rank)  # differs per rank: only rank 0's may be used
nccl.NcclCommunicator = Communicator
STREAM = Stream()
cuda = types.ModuleType("cupy.cuda")
cuda.nccl = nccl
cuda.Stream = lambda non_blocking=False: STREAM
cuda.get_current_stream = lambda: types.SimpleNamespace(synchronize=STREAM.synchronize)
cuda.runtime = types.SimpleNamespace(getDeviceCount=lambda: 2)
cuda.Device = lambda n: types.SimpleNamespace(use=lambda: log.update(device=n))
cupy = types.ModuleType("cupy")
cupy.cuda = cuda
sys.modules.update({"cupy": cupy, "cupy.cuda": cuda, "cupy.cuda.nccl": nccl})

from graphrnn.training.distributed import Distributed, use_local_device

log["chosen"] = use_local_device()
dist = Distributed(world, timeout=cfg.get("timeout", 30))
sums = []
for dtype in ("float64", "float32", "float64"):
    host = np.arange(5, dtype=dtype) * (rank + 1) + rank
    flat = DeviceArray(host)
    MEMORY[flat.data.ptr] = host
    out = dist.sum_gradients(flat, "the gradient all-reduce")
    assert out is flat
    sums.append(host.tolist())
log.update(sums=sums, bytes=dist.reduce_bytes, reduces=dist.reduces)
json.dump(log, open(f"{cfg['out']}.{rank}.json", "w"))
'''


def _run(tmp_path: Path, cfg: dict, env=None) -> subprocess.CompletedProcess:
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    cmd = [MPIEXEC, "-n", "2", sys.executable, str(worker), json.dumps(cfg)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=90,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_nccl_sums_on_the_device_buffer_with_rank_0s_unique_id(tmp_path):
    out = str(tmp_path / "n")
    proc = _run(tmp_path, {"out": out})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    logs = [json.loads(Path(f"{out}.{r}.json").read_text()) for r in (0, 1)]
    want = [[3.0 * i + 1 for i in range(5)]] * 3  # (i + 0) + (2i + 1)
    for r, log in enumerate(logs):
        assert log["sums"] == want
        assert log["uids"][0] == log["uids"][1] and log["uids"][0][1] == 0  # rank 0's id
        assert log["sync"] == 3  # the gradients are written before NCCL reads them
        assert log["chosen"] == log["device"] == r  # local rank r -> device r of 2
        assert log["reduces"] == 3 and log["bytes"] == 5 * (8 + 4 + 8)
        assert "nccl_abort" not in log


def test_a_hung_rank_in_nccl_ends_the_job_with_one_line(tmp_path):
    proc = _run(tmp_path, {"out": str(tmp_path / "h"), "hang": 1, "timeout": 3})
    assert proc.returncode != 0
    assert ("graphrnn: rank 0: no answer from the other ranks within 3 s during the gradient "
            "all-reduce (NCCL; a rank died or hangs); stopping the job") in proc.stderr, \
        proc.stdout + proc.stderr
