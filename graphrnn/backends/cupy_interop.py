"""What other parts of graphrnn need from CuPy, in one place (the rule: only the backends import
CuPy): device choice, NCCL all-reduce, DLPack and stream bridges for the torch Module."""

from __future__ import annotations

import time

import cupy
import numpy as np


def use_device(local_rank: int) -> int | None:
    """Use CUDA device ``local_rank % count`` for this process; its number (None: no device)."""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception:  # noqa: BLE001 - no driver, no device
        return None
    if count == 0:
        return None
    device = local_rank % count
    cupy.cuda.Device(device).use()
    return device


def from_dlpack(tensor):
    """A CUDA tensor's memory as a CuPy array, not copied."""
    return cupy.from_dlpack(tensor)


def external_stream(ptr: int):
    """A CuPy stream context for a CUDA stream another library owns (torch's current one)."""
    return cupy.cuda.ExternalStream(ptr)


class NcclSum:  # pragma: no cover - needs one GPU per rank
    """A device-resident all-reduce (sum) through NCCL; the unique id is broadcast over MPI."""

    def __init__(self, dist):
        from cupy.cuda import nccl

        self.cupy, self.nccl, self.dist = cupy, nccl, dist
        uid = nccl.get_unique_id() if dist.is_root else None
        dist.rendezvous("the NCCL set-up")
        uid = dist.comm.bcast(uid, root=0)
        self.comm = nccl.NcclCommunicator(dist.size, uid, dist.rank)
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self.types = {np.dtype(np.float64): nccl.NCCL_FLOAT64,
                      np.dtype(np.float32): nccl.NCCL_FLOAT32}

    def sum(self, flat, what: str):
        """Sum the CuPy array ``flat`` over the ranks, in place, on this rank's device."""
        self.cupy.cuda.get_current_stream().synchronize()  # the gradients are written
        ptr = flat.data.ptr
        self.comm.allReduce(ptr, ptr, flat.size, self.types[np.dtype(flat.dtype)],
                            self.nccl.NCCL_SUM, self.stream.ptr)
        deadline = time.monotonic() + self.dist.timeout
        while not self.stream.done:
            if time.monotonic() > deadline:
                self.comm.abort()
                self.dist.abort(f"no answer from the other ranks within {self.dist.timeout:g} "
                                f"s during {what} (NCCL; a rank died or hangs); stopping the job")
            time.sleep(1e-4)
        return flat
