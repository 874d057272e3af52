"""Per-sample seeds for the random transforms.

A random transform draws everything it needs from ONE integer seed per sample. That seed is
``mix(base, salt)``: ``salt`` names what is drawn ("inpainting_mask", "noise", ...), so two
transforms reading the same base seed still draw independent values, and ``base`` is

* ``data[seed_key]`` when the dictionary has it (an int, a 0-d tensor or a string such as the
  sample's name): the result then depends only on the sample, not on the order of processing,
  the batch it lands in or the data-loader worker;
* otherwise a draw from the transform's own random state (``set_random_state``), written back to
  ``data[seed_key]`` when ``seed_key`` is set, so later transforms and the solver see it.
"""

from __future__ import annotations

import zlib
from typing import Any, MutableMapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

__all__ = ["mix_seed", "base_seed", "sample_seed", "MAX_SEED", "SeededItemTransform"]

MAX_SEED = 2**31 - 1


def base_seed(value: Any, *, name: str = "seed") -> int:
    """An int from an int, a numpy int, a one-element tensor/array or a string (hashed)."""
    if isinstance(value, str):
        return zlib.crc32(value.encode("utf-8")) & MAX_SEED
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


class SeededItemTransform(Randomizable, MapTransform):
    """Base of the dictionary transforms that act on ONE image key with a per-sample seed.

    Subclasses set ``self.inner`` (a randomizable array transform that ``set_random_state`` is
    forwarded to) and implement ``__call__`` with :meth:`image_key` and :func:`sample_seed`.
    """

    def __init__(self, keys: KeysCollection, seed_key: str | None, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"keys must name one image, got {self.keys!r}.")
        self.seed_key = seed_key
        self.inner: Randomizable | None = None

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None):
        super().set_random_state(seed, state)
        if self.inner is not None:
            self.inner.set_random_state(seed, state)
        return self

    def randomize(self, data=None) -> None:  # the draw happens in sample_seed
        pass

    def image_key(self, data: MutableMapping) -> Any:
        """The image key when ``data`` holds it; ``None`` when it may be missing; else ``KeyError``."""
        key = self.keys[0]
        if key in data:
            return key
        if self.allow_missing_keys:
            return None
        raise KeyError(f"key {key!r} is not in the data dictionary (keys: {list(data)}).")
