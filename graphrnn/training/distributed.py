"""Data-parallel training over MPI (NCCL on GPUs): launchers, shards, bounded all-reduces."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from graphrnn.backends import to_numpy
from graphrnn.training.checkpoints import assign

__all__ = ["Distributed", "DistributedError", "adopt", "host_copy", "launcher_local_rank",
           "launcher_size", "shard_batch", "shard_rows", "use_local_device",
           "world_from_launcher"]

#: (world size, local rank) variables each launcher sets: Open MPI, MPICH/Intel MPI (hydra),
#: MVAPICH, Slurm's srun. The first present size wins.
LAUNCHER_ENV = (("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
                ("PMI_SIZE", "MPI_LOCALRANKID"),
                ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_LOCAL_RANK"),
                ("SLURM_STEP_NUM_TASKS", "SLURM_LOCALID"))
#: seconds a rank waits for the others in one collective before it aborts the job
TIMEOUT_ENV = "GRAPHRNN_MPI_TIMEOUT"
DEFAULT_TIMEOUT = 300.0
#: slots after the gradients in the all-reduced buffer
LOSS, WEIGHT, FAILED, INTERRUPTED = range(4)
N_SLOTS = 4
#: bytes of gradients a bucket gathers before its all-reduce starts during the backward pass
BUCKET_ENV = "GRAPHRNN_MPI_BUCKET_BYTES"
DEFAULT_BUCKET_BYTES = 1 << 20


class DistributedError(RuntimeError):
    """A rank failed or the ranks disagree; raised on every rank at the same point."""


#: seconds between the abort message and MPI_Abort: launchers (MPICH's hydra) forward a rank's
#: stderr through a proxy that the abort kills, and a loaded machine lost the line without it
ABORT_GRACE = 1.0


def launcher_size(environ: Mapping[str, str] | None = None) -> int:
    """The number of ranks an MPI launcher or ``srun`` started (1 without a launcher)."""
    env = os.environ if environ is None else environ
    for size_key, _ in LAUNCHER_ENV:
        if env.get(size_key, "").isdigit():
            return int(env[size_key])
    return 1


def launcher_local_rank(environ: Mapping[str, str] | None = None) -> int | None:
    """This process's rank on its machine, from the launcher's environment (None: unknown)."""
    env = os.environ if environ is None else environ
    for _, local_key in LAUNCHER_ENV:
        if env.get(local_key, "").isdigit():
            return int(env[local_key])
    return None


def world_from_launcher(environ: Mapping[str, str] | None = None):
    """``MPI.COMM_WORLD`` when a launcher started more than one rank, else None.

    mpi4py is imported only here (so importing graphrnn never loads MPI).

    Raises
    ------
    ImportError
        One line naming the ``graphrnn[mpi]`` extra when mpi4py is missing.
    """
    if launcher_size(environ) <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise ImportError("this run was started by an MPI launcher with several ranks but "
                          "mpi4py is not installed: pip install 'graphrnn[mpi]'") from None
    return MPI.COMM_WORLD


def shard_rows(idx: np.ndarray, rank: int, size: int) -> np.ndarray:
    """Rank ``rank``'s contiguous share of the mini-batch ``idx`` (sizes differ by at most 1)."""
    return np.array_split(np.asarray(idx), size)[rank]


def shard_batch(plan, arrays: dict, idx: np.ndarray, mine: np.ndarray) -> dict:
    """The sequences ``mine`` of the mini-batch ``idx``, up to the end of its longest."""
    t = None if plan.ends is None else max(1, int(plan.ends[idx].max()))
    return {k: v[:v.shape[0] if t is None else t, mine] for k, v in arrays.items()}


def host_copy(loaded):
    """A loaded checkpoint with host arrays, to broadcast."""
    if loaded is None:
        return None
    run, best, params, opt_state = loaded
    host = {k: to_numpy(v) for k, v in params.items()}
    return run, None if best is None else {k: to_numpy(v) for k, v in best.items()}, host, \
        opt_state


def adopt(state, run, best, params, opt_state) -> None:
    """Take what rank 0 read from a checkpoint (``best`` is replaced by device copies)."""
    for k, v in params.items():
        assign(state.params[k], v)
    state.opt.load_state_dict(opt_state)
    if best is not None:
        copies = {k: state.params[k].copy() for k in state.params}
        for k in copies:
            assign(copies[k], best[k])
        best.clear()
        best.update(copies)


def params_digest(params: Mapping[str, Any]) -> bytes:
    """A 16-byte digest of every parameter's name, dtype, shape and bytes (host copies)."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(params):
        a = np.ascontiguousarray(to_numpy(params[name]))
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.digest()


class Distributed:
    """One mpi4py communicator as training uses it: shards, sums, rank 0's outcomes, checks.

    Every collective is non-blocking and waited on with a deadline (``GRAPHRNN_MPI_TIMEOUT``
    seconds, default 300): a rank that died or hangs makes the others print one line and
    abort the job instead of waiting until a scheduler kills it.
    """

    def __init__(self, comm, timeout: float | None = None, stream=None):
        from mpi4py import MPI

        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.timeout = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT)
                             if timeout is None else timeout)
        self.stream = stream or sys.stderr
        self.nccl = None  # a NcclSum, made on the first device-resident all-reduce
        self.reduce_seconds = 0.0  # time spent in gradient all-reduces (for SCALING.md)
        self.reduce_bytes = 0
        self.reduces = 0
        self.bucket_bytes = int(os.environ.get(BUCKET_ENV, DEFAULT_BUCKET_BYTES))
        self.early_bytes = 0  # gradient bytes whose all-reduce started during a backward pass

    @property
    def is_root(self) -> bool:
        """Rank 0: the one that prints and writes files."""
        return self.rank == 0

    # -- waiting with a deadline ------------------------------------------------------------
    def wait(self, request, what: str) -> None:
        """Wait for ``request``; past the deadline, print one line and abort every rank."""
        deadline = time.monotonic() + self.timeout
        pause = 0.0
        while not request.Test():
            if time.monotonic() > deadline:
                self.abort(f"no answer from the other ranks within {self.timeout:g} s during "
                           f"{what} (a rank died or hangs); stopping the job")
            time.sleep(pause)
            pause = min(1e-3, pause + 1e-5)

    def abort(self, message: str) -> None:
        """Print ``graphrnn: rank R: MESSAGE`` on stderr and end every rank (MPI_Abort)."""
        self.stream.write(f"graphrnn: rank {self.rank}: {message}\n")
        self.stream.flush()
        time.sleep(ABORT_GRACE)  # the launcher forwards the line before MPI_Abort kills it
        self.comm.Abort(1)

    def rendezvous(self, what: str) -> None:
        """Every rank reaches this point (or the job is aborted): a bounded barrier."""
        self.wait(self.comm.Ibarrier(), what)

    # -- sums ------------------------------------------------------------------------------
    def sum_host(self, buf: np.ndarray, what: str) -> np.ndarray:
        """The element-wise sum of ``buf`` (a NumPy array) over the ranks, in place."""
        buf = np.ascontiguousarray(buf)
        out = np.empty_like(buf)
        self.wait(self.comm.Iallreduce(buf, out, op=self.MPI.SUM), what)
        buf[...] = out
        return buf

    def sum_gradients(self, flat, what: str):
        """Sum a flat gradient buffer over the ranks: NCCL for CuPy arrays, else MPI."""
        t0 = time.perf_counter()
        if isinstance(flat, np.ndarray):
            out = self.sum_host(flat, what)
        else:  # pragma: no cover - needs a GPU per rank
            if self.nccl is None:
                from graphrnn.backends.cupy_interop import NcclSum
                self.nccl = NcclSum(self)
            out = self.nccl.sum(flat, what)
        self.reduce_seconds += time.perf_counter() - t0
        self.reduce_bytes += int(flat.nbytes)
        self.reduces += 1
        return out

    # -- agreement -------------------------------------------------------------------------
    def raise_failures(self, local: BaseException | None, n_failed: float, where: str) -> None:
        """After a sum whose FAILED slot is ``n_failed``: raise the failures on every rank."""
        if n_failed <= 0:
            return
        self.rendezvous(f"collecting the failure{where}")
        text = None if local is None else f"{type(local).__name__}: {local}".splitlines()[0]
        texts = self.comm.allgather(text)
        first = next(r for r, t in enumerate(texts) if t is not None)
        raise DistributedError(f"rank {first} failed{where}: {texts[first]}")

    def from_root(self, fn: Callable[[], Any], what: str) -> Any:
        """Run ``fn`` on rank 0 only; every rank gets its result, or raises its exception."""
        value, error = None, None
        if self.is_root:
            try:
                value = fn()
            except Exception as exc:  # noqa: BLE001 - re-raised on every rank below
                error = exc
        self.rendezvous(what)
        ok, payload = self.comm.bcast((error is None, value if error is None else
                                       (type(error), str(error))), root=0)
        if ok:
            return payload
        if error is not None:
            raise error
        kind, text = payload
        try:
            exc = kind(text)
        except Exception:  # noqa: BLE001 - an exception class with another signature
            exc = DistributedError(f"rank 0: {text}")
        raise exc

    def shard_offset(self, n: int) -> int:
        """The first row of this rank's shard (:func:`shard_rows`) of a mini-batch of ``n``."""
        return self.rank * (n // self.size) + min(self.rank, n % self.size)

    def check_shardable(self, batch_size: int, net=None) -> None:
        """Refuse, before training starts, a batch the rank count does not divide.

        (Training noise shards exactly: each rank draws its rows of the whole mini-batch's
        dropout and zoneout masks, and every rank the same weight-dropout masks.)
        """
        if batch_size % self.size:
            raise ValueError(f"batch_size {batch_size} does not split evenly over {self.size} "
                             "ranks: use a rank count that divides the batch size")

    def check_same(self, params: Mapping[str, Any], when: str) -> None:
        """Raise :class:`DistributedError` on every rank unless all ranks hold equal params."""
        digest = np.frombuffer(params_digest(params), dtype=np.int64).copy()
        lo, hi = digest.copy(), digest.copy()
        self.wait(self.comm.Iallreduce(digest, lo, op=self.MPI.MIN), f"the parameter check {when}")
        self.wait(self.comm.Iallreduce(digest, hi, op=self.MPI.MAX), f"the parameter check {when}")
        if not np.array_equal(lo, hi):
            raise DistributedError(f"the parameters differ across the {self.size} ranks {when} "
                                   "(give every rank the same initial parameters, e.g. the "
                                   "same seed)")


def use_local_device(environ: Mapping[str, str] | None = None) -> int | None:
    """Make the launcher's local rank choose this process's CUDA device (CuPy); its number.

    Returns None (and changes nothing) without a launcher's local rank or without CuPy.
    """
    local = launcher_local_rank(environ)
    if local is None:
        return None
    try:
        from graphrnn.backends.cupy_interop import use_device
    except ImportError:  # no CuPy
        return None
    return use_device(local)
