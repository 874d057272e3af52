"""Training-time augmentation: the random intensity scaling of brain slices about their background."""
from __future__ import annotations

from typing import Any

import torch
from monai.transforms import MapTransform, RandomizableTransform

__all__ = ["RandScaleFromFloord"]


class RandScaleFromFloord(MapTransform, RandomizableTransform):
    """Random intensity scaling that keeps the background: ``floor + (x - floor) * (1 + f)``.

    ``f ~ U(-factor, factor)`` per call (with probability ``prob``), result clipped to
    ``[floor, ceiling]``. For images already in [-1, 1] with background -1 this is MONAI's
    ``RandScaleIntensity`` applied to the [0, 2] offset image, so the background stays at -1.

    Args:
        keys: keys of ``(C, H, W)`` tensors to scale (the same factor for all keys of one item).
        prob: probability of scaling an item.
        factor: largest relative change, in [0, 1).
        floor, ceiling: the intensity range (default [-1, 1]).
    """

    def __init__(
        self, keys: Any, *, prob: float = 0.5, factor: float = 0.15, floor: float = -1.0, ceiling: float = 1.0
    ) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, prob)
        if not 0.0 <= float(factor) < 1.0:
            raise ValueError(f"factor must be in [0, 1), got {factor!r}.")
        if not float(ceiling) > float(floor):
            raise ValueError(f"ceiling must exceed floor, got floor={floor!r}, ceiling={ceiling!r}.")
        self.factor, self.floor, self.ceiling = float(factor), float(floor), float(ceiling)
        self._scale = 1.0

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        self._scale = 1.0 + self.R.uniform(-self.factor, self.factor)

    def __call__(self, data: dict) -> dict:
        self.randomize()
        d = dict(data)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            x = torch.as_tensor(d[key])
            d[key] = (self.floor + (x - self.floor) * self._scale).clamp(self.floor, self.ceiling)
        return d
