"""``torch.Generator`` helpers shared by the random generators (masks, kernels); batch seeds: :mod:`monai_dmilo.seeds`."""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

__all__ = ["SeedLike", "as_generator"]

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
