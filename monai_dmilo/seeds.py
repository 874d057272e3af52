"""Seeds, with one meaning everywhere (solvers, noise models, workflows).

* :func:`per_sample_seeds`: a batch's seeds. ``None`` draws them from torch's global RNG (so
  ``torch.manual_seed`` governs them); an int ``s`` gives samples ``s, s + 1, ..., s + B - 1`` (so
  sample ``b`` of a batch gets what it would get alone with seed ``s + b``); a sequence or 1-D
  tensor gives one seed per sample.
* :func:`seed_from_name`: a per-image seed from the image's name and the run's seed, the same in
  any batch, order or process.
"""
from __future__ import annotations

import zlib
from typing import Sequence

import numpy as np
import torch

__all__ = ["per_sample_seeds", "seed_from_name"]


def per_sample_seeds(seed: int | Sequence[int] | torch.Tensor | None, batch_size: int, *, name: str = "seed") -> list[int]:
    """One int seed per sample of a batch of ``batch_size`` (see the module docstring).

    Raises:
        TypeError: not None, an int, or ints; ValueError: not one per sample.
    """
    if seed is None:
        return [int(s) for s in torch.randint(0, 2**31 - 1, (batch_size,)).tolist()]
    if isinstance(seed, torch.Tensor):
        if seed.ndim > 1:
            raise ValueError(f"{name} must be an int or one int per sample, got a tensor of shape {tuple(seed.shape)}.")
        seed = seed.reshape(-1).tolist()
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"{name} must be an int or a sequence of ints, got {seed!r}.")
    if isinstance(seed, (int, np.integer)):
        return [int(seed) + b for b in range(batch_size)]
    if not isinstance(seed, Sequence) or isinstance(seed, (str, bytes)):
        raise TypeError(f"{name} must be None, an int or a sequence of ints, got {type(seed).__name__}.")
    seeds = list(seed)
    for s in seeds:
        if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)):
            raise TypeError(f"{name} must hold ints, got {s!r} in {seeds!r}.")
    if len(seeds) != batch_size:
        raise ValueError(f"{name} must be one int or {batch_size} ints (one per sample), got {len(seeds)} values.")
    return [int(s) for s in seeds]


def seed_from_name(name: str, base_seed: int = 0) -> int:
    """A per-image seed from its name and the run's seed: independent of batch size and rank."""
    return int((zlib.crc32(str(name).encode("utf-8")) + 1_000_003 * int(base_seed)) % (2**31 - 1))
