"""Seeds, with one meaning everywhere (solvers, noise models, transforms, workflows).

* :func:`per_sample_seeds`: a batch's seeds. ``None`` draws them from torch's global RNG (so
  ``torch.manual_seed`` governs them); an int ``s`` gives samples ``s, s + 1, ..., s + B - 1`` (so
  sample ``b`` of a batch gets what it would get alone with seed ``s + b``); a sequence or 1-D
  tensor gives one seed per sample.
* :func:`seed_from_name`: a per-image seed from the image's name and the run's seed, the same in
  any batch, order or process.
* :func:`as_generator`: a ``torch.Generator`` from an int seed (masks, kernels).
* The random transforms draw everything from ONE int per sample, :func:`sample_seed`:
  ``mix_seed(base, salt)``, where ``salt`` names what is drawn ("inpainting_mask", "noise", ...)
  so that two transforms reading the same base seed draw independent values, and ``base`` is

  - ``data[seed_key]`` when the dictionary has it (an int, a 0-d tensor, or a string such as the
    sample's name, hashed by :func:`base_seed`): the result then depends only on the sample, not
    on the order of processing, the batch it lands in or the data-loader worker;
  - otherwise a draw from the transform's own random state (``set_random_state``), written back
    to ``data[seed_key]`` when ``seed_key`` is set, so later transforms and the solver see it.
"""
from __future__ import annotations

import zlib
from typing import Any, MutableMapping, Sequence, Union

import numpy as np
import torch

__all__ = ["MAX_SEED", "SeedLike", "per_sample_seeds", "seed_from_name", "as_generator", "base_seed", "mix_seed",
           "sample_seed"]

MAX_SEED = 2**31 - 1
SeedLike = Union[int, torch.Generator, None]


def per_sample_seeds(seed: int | Sequence[int] | torch.Tensor | None, batch_size: int, *, name: str = "seed") -> list[int]:
    """One int seed per sample of a batch of ``batch_size`` (see the module docstring).

    Raises:
        TypeError: not None, an int, or ints; ValueError: not one per sample.
    """
    if seed is None:
        return [int(s) for s in torch.randint(0, MAX_SEED, (batch_size,)).tolist()]
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
    return int((zlib.crc32(str(name).encode("utf-8")) + 1_000_003 * int(base_seed)) % MAX_SEED)


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


def base_seed(value: Any, *, name: str = "seed") -> int:
    """An int from an int, a numpy int, a one-element tensor/array, or a string (a name: :func:`seed_from_name`)."""
    if isinstance(value, str):
        return seed_from_name(value)
    if isinstance(value, (torch.Tensor, np.ndarray)):
        if value.size == 0 if isinstance(value, np.ndarray) else value.numel() != 1:
            raise ValueError(f"{name} must hold one value, got shape {tuple(value.shape)}.")
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int or a string, got {value!r}.")
    return int(value)


def mix_seed(base: int, salt: str) -> int:
    """A seed in ``[0, 2^31)`` from a base seed and a salt naming what is drawn."""
    return zlib.crc32(f"{int(base)}:{salt}".encode("utf-8")) & MAX_SEED


def sample_seed(rng: np.random.RandomState, data: MutableMapping, seed_key: str | None, salt: str) -> int:
    """The seed of one sample (see the module docstring); may write ``data[seed_key]``."""
    if seed_key is not None and seed_key in data:
        base = base_seed(data[seed_key], name=f"data[{seed_key!r}]")
    else:
        base = int(rng.randint(0, MAX_SEED))
        if seed_key is not None:
            data[seed_key] = base
    return mix_seed(base, salt)
