"""The base of the seeded dictionary transforms (per-sample seeds: :mod:`monai_dmilo.seeds`)."""

from __future__ import annotations

from typing import Any, MutableMapping

import numpy as np
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable

__all__ = ["SeededItemTransform"]


class SeededItemTransform(Randomizable, MapTransform):
    """Base of the dictionary transforms that act on ONE image key with a per-sample seed.

    Subclasses set ``self.inner`` (a randomizable array transform that ``set_random_state`` is
    forwarded to) and implement ``__call__`` with :meth:`image_key` and :func:`monai_dmilo.seeds.sample_seed`.
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
