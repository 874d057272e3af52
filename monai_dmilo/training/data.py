"""Training images: an in-memory dataset and the random intensity scaling of brain slices."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from monai.transforms import MapTransform, RandomizableTransform

__all__ = ["ArrayImageDataset", "RandScaleFromFloord"]


class ArrayImageDataset(torch.utils.data.Dataset):
    """In-memory images as ``{"image": (C, H, W) float tensor}`` items, with optional MONAI transforms.

    Args:
        images: array/tensor ``(N, H, W)`` or ``(N, C, H, W)``.
        scale: ``(lo, hi)`` of the stored intensities, mapped linearly to [-1, 1] after ``transform``.
        transform: a MONAI dictionary transform applied to ``{"image": (C, H, W) in [lo, hi]}``.
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        *,
        scale: Sequence[float] = (0.0, 1.0),
        transform: Any = None,
    ) -> None:
        data = torch.as_tensor(np.asarray(images))
        if data.ndim == 3:
            data = data[:, None]
        if data.ndim != 4:
            raise ValueError(f"images must have shape (N, H, W) or (N, C, H, W), got {tuple(data.shape)}.")
        lo, hi = (float(s) for s in scale)
        if not hi > lo:
            raise ValueError(f"scale must be (lo, hi) with hi > lo, got {tuple(scale)}.")
        self.data, self.lo, self.hi, self.transform = data, lo, hi, transform

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.data[index].float()
        if self.transform is not None:
            image = torch.as_tensor(self.transform({"image": image})["image"]).float()
            if hasattr(image, "as_tensor"):
                image = image.as_tensor()
        image = (image.clamp(self.lo, self.hi) - self.lo) / (self.hi - self.lo) * 2.0 - 1.0
        return {"image": image}


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
