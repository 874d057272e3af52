"""Simulated multi-coil k-space in the fastMRI layout, from real-valued magnitude slices.

:func:`simulate_kspace` gives each slice a smooth random phase (a second-order polynomial,
coefficients uniform in [-pi/2, pi/2]), multiplies by synthetic coil sensitivities
(:func:`~monai_dmilo.operators.simulate_coil_maps`), takes the centred orthonormal FFT and adds complex
Gaussian noise; :func:`write_fastmri_h5` writes the result as fastMRI does (``kspace``,
``reconstruction_rss``, ``ismrmrd_header``, attributes). ``scripts/make_kspace_data.py`` uses them on
real T1 slices; the tests on small phantoms.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..operators.mri import fft2c, ifft2c, simulate_coil_maps

__all__ = ["smooth_phase", "simulate_kspace", "write_fastmri_h5"]

HEADER = """<?xml version="1.0" encoding="utf-8"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
  <encoding>
    <encodedSpace><matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fov_h}</x><y>{fov_w}</y><z>{thickness}</z></fieldOfView_mm></encodedSpace>
    <reconSpace><matrixSize><x>{h}</x><y>{w}</y><z>1</z></matrixSize>
      <fieldOfView_mm><x>{fov_h}</x><y>{fov_w}</y><z>{thickness}</z></fieldOfView_mm></reconSpace>
  </encoding>
</ismrmrdHeader>
"""


def smooth_phase(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random second-order polynomial phase ``(size, size)`` in radians (see the module docstring)."""
    u = np.linspace(-1, 1, size)[:, None]
    v = np.linspace(-1, 1, size)[None, :]
    a = rng.uniform(-math.pi / 2, math.pi / 2, size=6)
    return a[0] + a[1] * u + a[2] * v + a[3] * u * v + a[4] * u**2 + a[5] * v**2


def simulate_kspace(magnitudes: np.ndarray, *, coils: int = 8, noise: float = 0.01, seed: int = 0,
                    with_maps: bool = False) -> dict:
    """Multi-coil k-space of magnitude slices ``(S, H, W)`` in [0, 1]: the datasets of one file,
    ``kspace`` ``(S, coils, H, W)`` complex64 and ``reconstruction_rss`` ``(S, H, W)``; with ``with_maps``
    also the true ``sensitivity_maps`` and ``phase`` ``(S, H, W)`` (radians)."""
    rng = np.random.default_rng(seed)
    slices, height, width = magnitudes.shape
    maps = simulate_coil_maps((height, width), coils).numpy()
    kspace, rss, phases = [], [], []
    for m in magnitudes:
        phases.append(smooth_phase(height, rng))
        image = m * np.exp(1j * phases[-1])
        k = fft2c(torch.from_numpy((maps * image).astype(np.complex64))).numpy()
        k = k + noise * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
        kspace.append(k.astype(np.complex64))
        rss.append(np.sqrt((np.abs(ifft2c(torch.from_numpy(kspace[-1])).numpy()) ** 2).sum(0)))
    out = {"kspace": np.stack(kspace), "reconstruction_rss": np.stack(rss).astype(np.float32)}
    if with_maps:
        out["sensitivity_maps"] = np.broadcast_to(maps, out["kspace"].shape).astype(np.complex64)
        out["phase"] = np.stack(phases).astype(np.float32)
    return out


def write_fastmri_h5(path: Path, data: dict, *, pixel_mm: float, thickness_mm: float, acquisition: str,
                     patient_id: str) -> None:
    """``data`` (``kspace``, ``reconstruction_rss``, optional ``mask`` / ``sensitivity_maps``) as a
    fastMRI-layout HDF5 file (other keys of ``data`` are not written)."""
    import h5py

    kspace = data["kspace"]
    height, width = kspace.shape[-2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for key in ("kspace", "reconstruction_rss", "mask", "sensitivity_maps"):
            if key in data:
                f.create_dataset(key, data=data[key])
        f.create_dataset("ismrmrd_header", data=HEADER.format(
            h=height, w=width, fov_h=height * pixel_mm, fov_w=width * pixel_mm, thickness=thickness_mm).encode())
        f.attrs["acquisition"] = acquisition
        f.attrs["max"] = float(data["reconstruction_rss"].max())
        f.attrs["norm"] = float(np.linalg.norm(data["reconstruction_rss"]))
        f.attrs["patient_id"] = patient_id
