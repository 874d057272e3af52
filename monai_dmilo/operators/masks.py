"""Mask generators: random-pixel and box inpainting masks, Cartesian k-space masks.

All return float tensors with 1 = observed, 0 = hidden, and take an int seed or a
``torch.Generator`` (k-space masks: an int seed, since MONAI's mask transforms use numpy).
"""

from __future__ import annotations

from typing import Sequence

import torch

from monai_dmilo.seeds import SeedLike, as_generator

__all__ = ["random_pixel_mask", "box_mask", "kspace_mask", "KSPACE_PATTERNS"]


def _check_spatial(spatial_size: Sequence[int], name: str = "spatial_size") -> tuple[int, int]:
    size = tuple(int(s) if isinstance(s, torch.Tensor) else s for s in spatial_size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size):
        raise ValueError(f"{name} must be two positive ints (H, W), got {spatial_size!r}.")
    return size  # type: ignore[return-value]


def _check_fraction(value: float, name: str, *, low_open: bool = False) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 <= value <= 1
        or (low_open and value == 0)
    ):
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be a number in {interval}, got {value!r}.")
    return float(value)


def random_pixel_mask(
    spatial_size: Sequence[int], hidden_fraction: float = 0.7, *, seed: SeedLike = None
) -> torch.Tensor:
    """A mask ``(1, H, W)`` hiding exactly ``round(hidden_fraction * H * W)`` random pixels.

    Args:
        spatial_size: ``(H, W)``.
        hidden_fraction: fraction of pixels hidden, in ``[0, 1]`` (the paper hides 0.7).
        seed: int, ``torch.Generator`` or ``None``.
    """
    height, width = _check_spatial(spatial_size)
    hidden_fraction = _check_fraction(hidden_fraction, "hidden_fraction")
    num_hidden = round(hidden_fraction * height * width)
    order = torch.randperm(height * width, generator=as_generator(seed))
    mask = torch.ones(height * width)
    mask[order[:num_hidden]] = 0
    return mask.view(1, height, width)


def box_mask(
    spatial_size: Sequence[int],
    box_size: Sequence[int] | None = None,
    *,
    hidden_fraction: float = 0.25,
    random_position: bool = True,
    seed: SeedLike = None,
) -> torch.Tensor:
    """A mask ``(1, H, W)`` hiding one rectangle.

    Args:
        spatial_size: ``(H, W)``.
        box_size: ``(h, w)`` of the hidden box; by default a centred square-ish box of area
            ``hidden_fraction * H * W`` (side ``sqrt(hidden_fraction)`` times the image side).
        hidden_fraction: used only when ``box_size`` is None.
        random_position: place the box uniformly at random (else centred).
        seed: int, ``torch.Generator`` or ``None``.
    """
    height, width = _check_spatial(spatial_size)
    if box_size is None:
        side = _check_fraction(hidden_fraction, "hidden_fraction") ** 0.5
        box_size = (max(1, round(side * height)), max(1, round(side * width)))
    box_h, box_w = _check_spatial(box_size, "box_size")
    if box_h > height or box_w > width:
        raise ValueError(f"box_size {tuple(box_size)} does not fit in spatial_size {(height, width)}.")
    if random_position:
        generator = as_generator(seed)
        top = int(torch.randint(0, height - box_h + 1, (1,), generator=generator))
        left = int(torch.randint(0, width - box_w + 1, (1,), generator=generator))
    else:
        top, left = (height - box_h) // 2, (width - box_w) // 2
    mask = torch.ones(1, height, width)
    mask[:, top : top + box_h, left : left + box_w] = 0
    return mask


def _monai_kspace_mask(pattern: str):
    from monai.apps.reconstruction.transforms.array import EquispacedKspaceMask, RandomKspaceMask

    return {"random": RandomKspaceMask, "equispaced": EquispacedKspaceMask}[pattern]


KSPACE_PATTERNS = ("random", "equispaced")


def kspace_mask(
    spatial_size: Sequence[int],
    acceleration: float = 4,
    center_fraction: float = 0.08,
    *,
    pattern: str = "random",
    seed: int | None = None,
) -> torch.Tensor:
    """A Cartesian column mask ``(1, H, W)`` from MONAI's ``RandomKspaceMask`` / ``EquispacedKspaceMask``.

    Keeps ``round(W * center_fraction)`` central (low-frequency) columns and about
    ``W / acceleration`` columns in all, along the last axis (phase encoding). The mask is for
    centred k-space (as the ``mri`` operator uses).

    Args:
        spatial_size: ``(H, W)``.
        acceleration: undersampling factor ``> 1``.
        center_fraction: fraction of central columns always kept, in ``(0, 1]``.
        pattern: ``"random"`` or ``"equispaced"``.
        seed: int seed of MONAI's numpy random state (None: unseeded).
    """
    height, width = _check_spatial(spatial_size)
    if pattern not in KSPACE_PATTERNS:
        raise ValueError(f"pattern must be one of {KSPACE_PATTERNS}, got {pattern!r}.")
    center_fraction = _check_fraction(center_fraction, "center_fraction", low_open=True)
    if isinstance(acceleration, bool) or not isinstance(acceleration, (int, float)) or not acceleration > 1:
        raise ValueError(f"acceleration must be a number > 1, got {acceleration!r}.")
    if center_fraction * acceleration >= 1:
        raise ValueError(
            f"center_fraction={center_fraction} keeps all the columns an acceleration of {acceleration} "
            f"allows; expected center_fraction < 1 / acceleration."
        )
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"seed must be an int or None, got {seed!r}.")
    maker = _monai_kspace_mask(pattern)(
        center_fractions=[center_fraction], accelerations=[float(acceleration)], spatial_dims=2, is_complex=False
    )
    if seed is not None:
        maker.set_random_state(seed=seed % 2**32)
    maker(torch.zeros(1, height, width))
    columns = torch.as_tensor(maker.mask, dtype=torch.float32).reshape(width)
    return columns.expand(1, height, width).clone()
