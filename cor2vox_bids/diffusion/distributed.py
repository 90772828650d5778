"""Data-parallel training with ``torch.distributed``: process group set-up, the sample stream, file locks.

Launch with ``torchrun`` (``--standalone --nproc_per_node N`` on one machine, ``--nnodes``/``--rdzv-*`` across
machines, or under ``srun``): it sets ``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``MASTER_PORT``.
:func:`init_distributed` reads them, picks NCCL when the process gets a CUDA device and gloo on the CPU, and sets
the collective timeout, so a rank that died or hangs ends the others with an error instead of a hang.

The sample stream (:func:`rank_indices`) is what a ``DistributedSampler`` does for a map-style dataset, laid out
so that the run does not depend on how the global batch is split: sample number ``p`` of the run (counted over
all ranks) is element ``p mod n`` of the permutation ``numpy.random.default_rng([seed, p // n])`` of the ``n``
training pairs, and micro-batch ``k`` of a global batch of ``G = world × B`` takes samples ``k·G … k·G + G − 1``,
rank ``r`` the ``B`` of them from ``k·G + r·B``. One process with batch 2 therefore sees the same samples as two
processes with batch 1 each, a single process sees exactly the order of earlier (single-process) releases, and a
run resumed with another number of processes continues the same stream. (torch's own ``DistributedSampler`` splits
each epoch by rank — ``indices[rank::world]`` — so its order depends on the world size, which would break both.)
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..errors import DeviceUnavailableError, UsageError

__all__ = ["DistInfo", "env_world", "init_distributed", "shutdown_distributed", "current", "rank_indices",
           "file_lock", "build_once", "all_mean", "barrier"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job (``world == 1``: a plain single-process run)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def env_world() -> DistInfo:
    """Rank, world size and local rank from the launcher's environment (no process group needed)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise UsageError(f"WORLD_SIZE/RANK/LOCAL_RANK are not integers ({exc})") from exc
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"RANK {rank} does not fit WORLD_SIZE {world}")
    return DistInfo(rank=rank, world=world, local_rank=local)


def current() -> DistInfo:
    """The initialised process group's view (single process when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(rank=dist.get_rank(), world=dist.get_world_size(),
                        local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
                        backend=str(dist.get_backend()))
    return DistInfo()


def process_device(device: str, info: DistInfo) -> str:
    """The device string of this process: ``cuda:LOCAL_RANK`` for ``auto``/``cuda`` when CUDA is present."""
    if not info.enabled:
        return device
    if device.startswith("cuda:"):
        raise UsageError("--device cuda:N cannot be used with several processes; use --device cuda (each process "
                         "takes cuda:LOCAL_RANK) and choose GPUs with CUDA_VISIBLE_DEVICES")
    if device == "cpu" or not torch.cuda.is_available():
        if device == "cuda":
            raise DeviceUnavailableError("--device cuda was requested but CUDA is not available")
        return "cpu"
    count = torch.cuda.device_count()
    if info.local_rank >= count:
        raise DeviceUnavailableError(f"local rank {info.local_rank} has no GPU: this node has {count}; start at "
                                     f"most {count} processes per node (torchrun --nproc_per_node)")
    return f"cuda:{info.local_rank}"


def init_distributed(device: str, timeout_s: float = 1800.0) -> tuple[DistInfo, str]:
    """Join the process group the launcher describes; return (info, this process's device string).

    NCCL when this process trains on CUDA, gloo otherwise. ``timeout_s`` bounds every collective: a peer that
    died or hangs makes the others fail after at most that long (gloo notices a closed connection at once).
    """
    info = env_world()
    dev = process_device(device, info)
    if not info.enabled:
        return info, dev
    backend = "nccl" if dev.startswith("cuda") else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(torch.device(dev))
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")  # a timed-out collective aborts
    if not dist.is_initialized():
        kwargs = {"device_id": torch.device(dev)} if backend == "nccl" else {}
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s), **kwargs)
        except (RuntimeError, ValueError) as exc:
            raise DeviceUnavailableError(f"cannot join the process group ({backend}, rank {info.rank} of "
                                         f"{info.world}): {exc}") from exc
    return DistInfo(info.rank, info.world, info.local_rank, backend), dev


def shutdown_distributed() -> None:
    """Leave the process group (no-op without one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_mean(value: float, device: torch.device) -> float:
    """The mean of ``value`` over all ranks (``value`` itself in a single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / dist.get_world_size()


def stream_index(seed: int, n: int, position: int) -> int:
    """Index of the ``position``-th sample of the run (epoch-wise seeded permutations of ``n`` pairs)."""
    epoch, within = divmod(position, n)
    return int(np.random.default_rng([seed, epoch]).permutation(n)[within])


def rank_indices(seed: int, n: int, start: int, rank: int, batch: int) -> list[int]:
    """This rank's ``batch`` sample indices of the global micro-batch that starts at stream position ``start``."""
    return [stream_index(seed, n, start + rank * batch + b) for b in range(batch)]


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """An exclusive POSIX lock on ``path`` (created if needed), held while the block runs.

    ``lockf`` locks work across processes and, on NFS and Lustre mounts that support POSIX locks, across nodes;
    the lock goes away when its holder dies, so a crashed rank never blocks the others.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.lockf(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(f, fcntl.LOCK_UN)


def build_once(targets: Sequence[tuple[Path, Callable[[Path], None]]], rank: int = 0, world: int = 1) -> int:
    """Make every missing ``target`` file with its ``build(target)``, each exactly once across processes.

    Every rank walks the list from its own offset (rank ``r`` starts at item ``r·len/world``), so the ranks build
    different files at the same time; a file is built under ``<target>.lock`` and skipped by whoever gets the
    lock after it exists. ``build`` must write ``target`` atomically. When this returns, every target exists.
    Returns how many files this process built.
    """
    n = len(targets)
    start = (rank * n) // max(world, 1)
    built = 0
    for i in range(n):
        target, build = targets[(start + i) % n]
        target = Path(target)
        if target.is_file():
            continue
        with file_lock(target.with_name(target.name + ".lock")):
            if target.is_file():
                continue
            build(target)
            built += 1
    return built
