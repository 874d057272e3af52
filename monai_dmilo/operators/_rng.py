"""Seeds and ``torch.Generator`` helpers shared by the random generators (masks, kernels, noise)."""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch

__all__ = ["SeedLike", "as_generator", "per_sample_seeds"]

SeedLike = Union[int, torch.Generator, None]


def as_generator(seed: SeedLike, *, name: str = "seed") -> torch.Generator:
    """A CPU ``torch.Generator`` from an int seed, an existing generator (returned as is) or ``None``.

    ``None`` gives a generator seeded from torch's global RNG, so results follow ``torch.manual_seed``.
    """
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        seed = int(torch.randint(0, 2**62, (1,)).item())
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be an int, a torch.Generator or None, got {seed!r}.")
    return torch.Generator().manual_seed(int(seed))


def per_sample_seeds(seed: int | Sequence[int] | torch.Tensor, batch_size: int, *, name: str = "seed") -> list[int]:
    """Expands ``seed`` (one int, or one int per sample) to a list of ``batch_size`` ints."""
    if isinstance(seed, torch.Tensor):
        seed = seed.reshape(-1).tolist()
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
        seed = [int(seed) + b for b in range(batch_size)] if batch_size > 1 else [int(seed)]
    seeds = [int(s) for s in seed]
    if len(seeds) != batch_size:
        raise ValueError(f"{name} must be one int or {batch_size} ints (one per sample), got {len(seeds)} values.")
    return seeds
