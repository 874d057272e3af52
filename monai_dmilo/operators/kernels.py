"""Blur kernel generators: isotropic Gaussian and random camera-shake (motion) kernels.

The motion kernel follows the idea of Boracchi & Foi, "Modeling the performance of image
restoration from motion blur" (IEEE TIP 2012): a camera trajectory is a random walk of constant
speed whose velocity is perturbed by Gaussian jitter, pulled back towards the start (a
centripetal term) and, now and then, sharply reversed (an abrupt shake). ``intensity`` in
``[0, 1]`` scales how strongly the trajectory wanders: 0 gives a straight linear motion.
The trajectory is rasterised on a ``size x size`` grid by bilinear splatting and normalised.
"""

from __future__ import annotations

import math

import torch

from monai_dmilo.seeds import SeedLike, as_generator

__all__ = ["gaussian_kernel", "motion_kernel"]


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}.")


def gaussian_kernel(size: int, std: float, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An isotropic Gaussian kernel ``(size, size)`` centred on the grid, summing to one.

    Args:
        size: side length (odd or even; an even kernel is centred between pixels).
        std: standard deviation in pixels, ``> 0``.
        dtype: floating dtype of the result.

    Returns:
        ``(size, size)`` tensor, symmetric under transposition and flips.
    """
    _check_size(size)
    if not isinstance(std, (int, float)) or isinstance(std, bool) or not std > 0 or not math.isfinite(std):
        raise ValueError(f"std must be a positive finite number, got {std!r}.")
    grid = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    profile = torch.exp(-0.5 * (grid / std) ** 2)
    kernel = profile[:, None] * profile[None, :]
    return (kernel / kernel.sum()).to(dtype)


def _trajectory(num_points: int, length: float, intensity: float, generator: torch.Generator) -> torch.Tensor:
    """A random camera path ``(num_points, 2)`` of total length ``length`` (float64)."""
    rand = lambda *shape: torch.rand(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    randn = lambda *shape: torch.randn(*shape, generator=generator, dtype=torch.float64)  # noqa: E731
    anxiety = 0.1 * intensity * rand(1).item()
    centripetal = 0.7 * rand(1).item()
    jitter = 10.0 * rand(1).item()
    shake_rate = 0.2 * rand(1).item()
    step = length / (num_points - 1)
    angle = 2 * math.pi * rand(1).item()
    velocity = torch.tensor([math.cos(angle), math.sin(angle)], dtype=torch.float64) * step
    shakes = rand(num_points) < shake_rate * anxiety
    turns = math.pi + (rand(num_points) - 0.5)
    noise = randn(num_points, 2)
    points = torch.zeros(num_points, 2, dtype=torch.float64)
    for t in range(num_points - 1):
        change = anxiety * (jitter * noise[t] - centripetal * points[t]) * step
        if shakes[t]:
            cos, sin = math.cos(turns[t]), math.sin(turns[t])
            change = change + 2 * torch.stack(
                (cos * velocity[0] - sin * velocity[1], sin * velocity[0] + cos * velocity[1])
            )
        velocity = velocity + change
        velocity = velocity / velocity.norm().clamp_min(1e-12) * step
        points[t + 1] = points[t] + velocity
    return points


def motion_kernel(
    size: int,
    intensity: float = 0.5,
    *,
    seed: SeedLike = None,
    num_points: int = 1000,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """A random camera-shake kernel ``(size, size)``: non-negative, summing to one.

    Args:
        size: side length, ``>= 3``.
        intensity: how much the trajectory wanders, in ``[0, 1]`` (0: straight line).
        seed: an int, a ``torch.Generator`` or ``None`` (global torch RNG). Same seed, same kernel.
        num_points: samples along the trajectory.
        dtype: floating dtype of the result.

    Returns:
        ``(size, size)`` tensor.
    """
    _check_size(size)
    if size < 3:
        raise ValueError(f"size must be at least 3 for a motion kernel, got {size}.")
    if isinstance(intensity, bool) or not isinstance(intensity, (int, float)) or not 0 <= intensity <= 1:
        raise ValueError(f"intensity must be a number in [0, 1], got {intensity!r}.")
    if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 2:
        raise ValueError(f"num_points must be an integer >= 2, got {num_points!r}.")
    generator = as_generator(seed)
    points = _trajectory(num_points, float(size), float(intensity), generator)
    # Centre the path's bounding box on the grid and shrink it to fit inside (one pixel margin).
    low, high = points.min(0).values, points.max(0).values
    extent = (high - low).max().item()
    room = size - 2.0
    if extent > room:
        points = points * (room / extent)
        low, high = low * (room / extent), high * (room / extent)
    points = points - (low + high) / 2 + (size - 1) / 2
    # Bilinear splatting of every trajectory point (rows = y, columns = x).
    base = points.floor()
    frac = points - base
    base = base.long()
    kernel = torch.zeros(size * size, dtype=torch.float64)
    for dy in (0, 1):
        for dx in (0, 1):
            weight = (frac[:, 1] if dy else 1 - frac[:, 1]) * (frac[:, 0] if dx else 1 - frac[:, 0])
            row = (base[:, 1] + dy).clamp(0, size - 1)
            col = (base[:, 0] + dx).clamp(0, size - 1)
            kernel.index_add_(0, row * size + col, weight)
    kernel = kernel.view(size, size)
    return (kernel / kernel.sum()).to(dtype)
