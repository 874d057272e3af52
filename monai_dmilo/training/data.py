"""Training-time augmentation of slices in [-1, 1] with background -1: intensity scaling about the
background, and a simulated single-subject acquisition (bias field, blur, Rician noise inside the mask)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from monai.transforms import (
    MapTransform,
    RandBiasField,
    RandGaussianSmooth,
    RandomizableTransform,
    RandRicianNoise,
)

__all__ = ["RandScaleFromFloord", "RandAcquisitiond"]


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


class RandAcquisitiond(MapTransform, RandomizableTransform):
    """Make a smooth template slice look like one subject's scan: MONAI's ``RandBiasField``,
    ``RandGaussianSmooth`` and ``RandRicianNoise`` applied, in that order and each with its own
    probability, to the image above its background, then re-masked: the background stays at ``floor``.

    Templates (averages of many brains) lack the intensity inhomogeneity, partial-volume blur and
    noise of a single acquisition; this adds them on the fly. With every probability 0 it draws no
    random numbers and returns its input, so the recipes without it are unchanged.

    Args:
        keys: keys of ``(C, H, W)`` tensors (the mask is ``x > floor``).
        bias_field_prob: probability of a multiplicative field ``exp(p(u, v))``, ``p`` a random
            Legendre polynomial of degree 3 with coefficients uniform in ``[0, bias_coeff]`` (MONAI's
            ``RandBiasField`` with ``coeff_range=(0, bias_coeff)``).
        blur_prob: probability of a Gaussian blur with ``sigma`` in ``blur_sigma`` pixels.
        noise_prob: probability of Rician noise with std up to ``noise_std`` (units of the [0, 1]
            intensity, i.e. half the [-1, 1] range), drawn per call.
        floor, ceiling: the intensity range (default [-1, 1]).
    """

    def __init__(
        self, keys: Any, *, bias_field_prob: float = 0.0, bias_coeff: float = 0.3, blur_prob: float = 0.0,
        blur_sigma: tuple[float, float] = (0.3, 0.8), noise_prob: float = 0.0, noise_std: float = 0.03,
        floor: float = -1.0, ceiling: float = 1.0,
    ) -> None:
        MapTransform.__init__(self, keys)
        RandomizableTransform.__init__(self, 1.0)
        for name, value in (("bias_field_prob", bias_field_prob), ("blur_prob", blur_prob), ("noise_prob", noise_prob)):
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}.")
        if not float(bias_coeff) >= 0.0 or not float(noise_std) >= 0.0:
            raise ValueError(f"bias_coeff and noise_std must be >= 0, got {bias_coeff!r} and {noise_std!r}.")
        lo, hi = (float(v) for v in blur_sigma)
        if not 0.0 < lo <= hi:
            raise ValueError(f"blur_sigma must be (low, high) with 0 < low <= high, got {blur_sigma!r}.")
        if not float(ceiling) > float(floor):
            raise ValueError(f"ceiling must exceed floor, got floor={floor!r}, ceiling={ceiling!r}.")
        self.floor, self.ceiling = float(floor), float(ceiling)
        scale = self.ceiling - self.floor    # the [0, 1] intensity's unit in this range
        self.steps = [
            step for step in (
                RandBiasField(degree=3, coeff_range=(0.0, float(bias_coeff)), prob=float(bias_field_prob)),
                RandGaussianSmooth(sigma_x=(lo, hi), sigma_y=(lo, hi), prob=float(blur_prob)),
                RandRicianNoise(prob=float(noise_prob), std=float(noise_std) * scale / 2.0, sample_std=True),
            ) if step.prob > 0.0
        ]

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> RandAcquisitiond:
        super().set_random_state(seed, state)
        for step in self.steps:
            step.set_random_state(seed=int(self.R.randint(2**31 - 1)))
        return self

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        if not self.steps:
            return d
        for key in self.key_iterator(d):
            x = torch.as_tensor(d[key])
            mask = x > self.floor
            y = (x - self.floor).float()
            for step in self.steps:
                y = torch.as_tensor(step(y)).to(x.dtype)
            d[key] = (self.floor + y * mask).clamp(self.floor, self.ceiling)
        return d
