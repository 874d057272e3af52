"""Random operator parameters as MONAI transforms: inpainting masks, blur kernels, k-space masks.

Array transforms take a channel-first image ``(C, H, W)`` (only its size and device are used) and
return a parameter without batch dimension, so that collating a batch stacks them into the
shapes the operators take: masks ``(1, H, W) -> (B, 1, H, W)``, kernels ``(k, k) -> (B, k, k)``.
Dictionary twins write the parameter under a new key; see :mod:`.seeding` for per-sample seeds.
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Randomizable, Transform

from monai_dmilo.operators.kernels import gaussian_kernel, motion_kernel
from monai_dmilo.operators.masks import box_mask, kspace_mask, random_pixel_mask

from monai_dmilo.seeds import MAX_SEED, sample_seed

from .seeded import SeededItemTransform

__all__ = [
    "RandInpaintingMask",
    "RandInpaintingMaskd",
    "RandInpaintingMaskD",
    "RandInpaintingMaskDict",
    "RandBlurKernel",
    "RandBlurKerneld",
    "RandBlurKernelD",
    "RandBlurKernelDict",
    "RandKspaceMask",
    "RandKspaceMaskd",
    "RandKspaceMaskD",
    "RandKspaceMaskDict",
]


def _spatial(img: torch.Tensor | np.ndarray, name: str = "img") -> tuple[int, int]:
    if not hasattr(img, "shape") or len(img.shape) != 3:
        raise ValueError(
            f"{name} must be a channel-first 2D image (C, H, W), got shape {tuple(getattr(img, 'shape', ()))}."
        )
    return int(img.shape[-2]), int(img.shape[-1])


def _device(img) -> torch.device:
    return img.device if isinstance(img, torch.Tensor) else torch.device("cpu")


class _SeededArray(Randomizable, Transform):
    """An array transform whose randomness is one int seed per call (drawn from ``self.R``)."""

    def __init__(self) -> None:
        self._seed = 0

    def randomize(self, data=None) -> None:
        self._seed = int(self.R.randint(0, MAX_SEED))

    def _resolve(self, seed: int | None, randomize: bool) -> int:
        if seed is not None:
            return int(seed)
        if randomize:
            self.randomize()
        return self._seed


class RandInpaintingMask(_SeededArray):
    """A random inpainting mask ``(1, H, W)`` (1 observed, 0 hidden) shared by the image's channels.

    Args:
        kind: ``"pixel"`` (random pixels) or ``"box"`` (one rectangle).
        hidden_fraction: fraction hidden (pixel masks; box masks without ``box_size``). Paper: 0.7.
        box_size: ``(h, w)`` of the hidden box (box masks).
    """

    KINDS = ("pixel", "box")

    def __init__(
        self, kind: str = "pixel", hidden_fraction: float = 0.7, box_size: Sequence[int] | None = None
    ) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}.")
        self.kind = kind
        self.hidden_fraction = hidden_fraction
        self.box_size = box_size
        self(torch.zeros(1, 8, 8) if box_size is None else torch.zeros(1, *box_size), seed=0)  # validate now

    def __call__(self, img, *, seed: int | None = None, randomize: bool = True) -> torch.Tensor:
        """``img (C, H, W) -> mask (1, H, W)`` float32 on ``img``'s device."""
        size = _spatial(img)
        seed = self._resolve(seed, randomize)
        if self.kind == "pixel":
            mask = random_pixel_mask(size, self.hidden_fraction, seed=seed)
        else:
            mask = box_mask(size, self.box_size, hidden_fraction=self.hidden_fraction, seed=seed)
        return mask.to(_device(img))


class RandBlurKernel(_SeededArray):
    """A random blur kernel ``(size, size)`` summing to one.

    Args:
        kind: ``"gaussian"`` or ``"motion"``.
        size: kernel side length (paper: 64).
        std: Gaussian standard deviation, or a ``(low, high)`` range drawn uniformly (paper: 3.0).
        intensity: motion-blur intensity in ``[0, 1]`` (paper: 0.5).
    """

    KINDS = ("gaussian", "motion")

    def __init__(
        self, kind: str = "gaussian", size: int = 64, std: float | Sequence[float] = 3.0, intensity: float = 0.5
    ) -> None:
        super().__init__()
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}.")
        self.kind, self.size, self.std, self.intensity = kind, size, std, intensity
        self(torch.zeros(1, 1, 1), seed=0)  # validate now

    def __call__(self, img=None, *, seed: int | None = None, randomize: bool = True) -> torch.Tensor:
        """Returns a ``(size, size)`` float32 kernel (on ``img``'s device when given)."""
        seed = self._resolve(seed, randomize)
        if self.kind == "gaussian":
            std = self.std
            if isinstance(std, (tuple, list)):
                if len(std) != 2 or not 0 < std[0] <= std[1]:
                    raise ValueError(f"std must be a positive number or a range (low, high), got {std!r}.")
                u = torch.rand((), generator=torch.Generator().manual_seed(seed), dtype=torch.float64).item()
                std = std[0] + u * (std[1] - std[0])
            kernel = gaussian_kernel(self.size, std)
        else:
            kernel = motion_kernel(self.size, self.intensity, seed=seed)
        return kernel if img is None else kernel.to(_device(img))


class RandKspaceMask(_SeededArray):
    """A Cartesian k-space column mask ``(1, H, W)`` (MONAI's random / equispaced patterns).

    Args:
        acceleration: undersampling factor.
        center_fraction: fraction of central columns always kept.
        pattern: ``"random"`` or ``"equispaced"``.
    """

    def __init__(self, acceleration: float = 4, center_fraction: float = 0.08, pattern: str = "random") -> None:
        super().__init__()
        self.acceleration, self.center_fraction, self.pattern = acceleration, center_fraction, pattern
        self(torch.zeros(1, 8, 64), seed=0)  # validate now

    def __call__(self, img, *, seed: int | None = None, randomize: bool = True) -> torch.Tensor:
        """``img (C, H, W) -> mask (1, H, W)`` float32."""
        size = _spatial(img)
        seed = self._resolve(seed, randomize)
        mask = kspace_mask(size, self.acceleration, self.center_fraction, pattern=self.pattern, seed=seed)
        return mask.to(_device(img))


class _SeededDict(SeededItemTransform):
    """Runs a seeded array transform on ``data[keys[0]]`` and writes the result to ``data[output_key]``."""

    salt = "parameter"

    def __init__(
        self,
        keys: KeysCollection,
        output_key: str,
        seed_key: str | None,
        array_transform: _SeededArray,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, seed_key, allow_missing_keys)
        self.output_key = output_key
        self.array_transform = self.inner = array_transform

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        key = self.image_key(d)
        if key is None:
            return d
        seed = sample_seed(self.R, d, self.seed_key, self.salt)
        d[self.output_key] = self.array_transform(d[key], seed=seed)
        return d


class RandInpaintingMaskd(_SeededDict):
    """Dictionary twin of :class:`RandInpaintingMask`: writes ``data[mask_key]`` ``(1, H, W)``.

    Args:
        keys: the image key whose size the mask takes.
        mask_key: where the mask goes.
        seed_key: per-sample seed key (see :mod:`monai_dmilo.seeds`).
        kind, hidden_fraction, box_size: as :class:`RandInpaintingMask`.
    """

    salt = "inpainting_mask"

    def __init__(
        self,
        keys: KeysCollection = "image",
        mask_key: str = "mask",
        seed_key: str | None = None,
        *,
        kind: str = "pixel",
        hidden_fraction: float = 0.7,
        box_size: Sequence[int] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(
            keys, mask_key, seed_key, RandInpaintingMask(kind, hidden_fraction, box_size), allow_missing_keys
        )


class RandBlurKerneld(_SeededDict):
    """Dictionary twin of :class:`RandBlurKernel`: writes ``data[kernel_key]`` ``(k, k)``."""

    salt = "blur_kernel"

    def __init__(
        self,
        keys: KeysCollection = "image",
        kernel_key: str = "kernel",
        seed_key: str | None = None,
        *,
        kind: str = "gaussian",
        size: int = 64,
        std: float | Sequence[float] = 3.0,
        intensity: float = 0.5,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, kernel_key, seed_key, RandBlurKernel(kind, size, std, intensity), allow_missing_keys)


class RandKspaceMaskd(_SeededDict):
    """Dictionary twin of :class:`RandKspaceMask`: writes ``data[mask_key]`` ``(1, H, W)``."""

    salt = "kspace_mask"

    def __init__(
        self,
        keys: KeysCollection = "image",
        mask_key: str = "mask",
        seed_key: str | None = None,
        *,
        acceleration: float = 4,
        center_fraction: float = 0.08,
        pattern: str = "random",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(
            keys, mask_key, seed_key, RandKspaceMask(acceleration, center_fraction, pattern), allow_missing_keys
        )


RandInpaintingMaskD = RandInpaintingMaskDict = RandInpaintingMaskd
RandBlurKernelD = RandBlurKernelDict = RandBlurKerneld
RandKspaceMaskD = RandKspaceMaskDict = RandKspaceMaskd
