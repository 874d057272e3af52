"""Device selection and ``torch.distributed`` helpers (``torchrun``): one home for rank, world
size and barriers, so that every workflow behaves the same in one process or many."""
from __future__ import annotations

import logging
import os

import torch
import torch.distributed as dist

__all__ = ["select_device", "init_distributed", "is_distributed", "rank_and_world_size", "barrier"]

logger = logging.getLogger(__name__)


def select_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None``: ``cuda:<LOCAL_RANK>`` when CUDA is available, else CPU; or the given device."""
    if device is None or (isinstance(device, str) and device.lower() == "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'auto' or a torch device string such as 'cpu', got {device!r}.") from None
    if chosen.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {device!r} was asked for but this machine has no CUDA device; use 'cpu' or 'auto'.")
        if chosen.index is not None and chosen.index >= count:
            raise ValueError(f"device {device!r} does not exist: this machine has {count} CUDA device(s).")
    return chosen


def init_distributed(device: torch.device | str | None = None) -> int:
    """Initialise the default process group from ``torchrun``'s environment; return the rank.

    Backend: NCCL when ``device`` is CUDA, gloo otherwise. A no-op (rank 0) outside torchrun.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    if "WORLD_SIZE" not in os.environ:
        return 0
    device = select_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend)
    logger.info("initialised torch.distributed (%s): rank %d of %d", backend, dist.get_rank(), dist.get_world_size())
    return dist.get_rank()


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world_size() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside ``torch.distributed``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def barrier() -> None:
    """``dist.barrier()`` when distributed, else nothing."""
    if is_distributed():
        dist.barrier()
