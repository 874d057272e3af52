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

__all__ = ["smooth_phase", "simulate_kspace", "write_fastmri_h5", "write_mrd_file"]

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


def write_mrd_file(path: Path, kspace: np.ndarray, *, mask: np.ndarray | None = None, calibration: int = 0,
                   pixel_mm: float = 1.0, thickness_mm: float = 1.0, noise_samples: int = 0, noise: float = 0.01,
                   coil_noise: np.ndarray | None = None, seed: int = 0, acceleration: int = 1,
                   subject: dict | None = None, study: dict | None = None, sequence: dict | None = None) -> None:
    """``kspace`` ``(S, C, H, W)`` (H readout, W phase encoding) as an ISMRMRD / MRD file (the ``ismrmrd`` package).

    Args:
        mask: ``(W,)`` acquired phase-encoding lines (default all); the others are not written.
        calibration: the central ``calibration`` lines are flagged ``ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING``.
        noise_samples: > 0 writes a noise scan first (one acquisition of that many samples per
            coil), complex Gaussian of standard deviation ``noise`` per real / imaginary part,
            coloured by ``coil_noise`` ``(C, C)`` (the k-space is assumed to carry the same noise).
        acceleration: written as the header's ``parallelImaging/accelerationFactor``.
        subject, study, sequence: extra ``subjectInformation`` / ``studyInformation`` /
            ``sequenceParameters`` fields (ismrmrd.xsd keyword arguments).
    """
    import ismrmrd
    import ismrmrd.xsd as xsd

    slices, coils, height, width = kspace.shape
    mask = np.ones(width, bool) if mask is None else np.asarray(mask, bool)
    space = xsd.encodingSpaceType(matrixSize=xsd.matrixSizeType(x=height, y=width, z=1),
                                  fieldOfView_mm=xsd.fieldOfViewMm(x=height * pixel_mm, y=width * pixel_mm,
                                                                   z=thickness_mm))
    limits = xsd.encodingLimitsType(kspace_encoding_step_1=xsd.limitType(minimum=0, maximum=width - 1,
                                                                         center=width // 2),
                                    slice=xsd.limitType(minimum=0, maximum=slices - 1, center=slices // 2))
    encoding = xsd.encodingType(encodedSpace=space, reconSpace=space, encodingLimits=limits,
                                trajectory=xsd.trajectoryType.CARTESIAN,
                                parallelImaging=xsd.parallelImagingType(accelerationFactor=xsd.accelerationFactorType(
                                    kspace_encoding_step_1=int(acceleration), kspace_encoding_step_2=1)))
    header = xsd.ismrmrdHeader(
        experimentalConditions=xsd.experimentalConditionsType(H1resonanceFrequency_Hz=63_500_000),
        encoding=[encoding],
        subjectInformation=xsd.subjectInformationType(**(subject or {})),
        studyInformation=xsd.studyInformationType(**(study or {})),
        measurementInformation=xsd.measurementInformationType(patientPosition=xsd.patientPositionType.HFS,
                                                              protocolName="monai_dmilo simulated"),
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(receiverChannels=coils,
                                                                          systemFieldStrength_T=1.5),
        sequenceParameters=xsd.sequenceParametersType(**(sequence or {})),
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=True)
    dataset.write_xml_header(xsd.ToXML(header))
    rng = np.random.default_rng(seed)

    def acquisition(data: np.ndarray) -> "ismrmrd.Acquisition":
        acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(data, dtype=np.complex64))
        acq.sample_time_us = 5.0
        acq.center_sample = data.shape[1] // 2
        return acq

    if noise_samples:
        white = noise * (rng.standard_normal((coils, noise_samples)) + 1j * rng.standard_normal((coils, noise_samples)))
        acq = acquisition(white if coil_noise is None else coil_noise @ white)
        acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        dataset.append_acquisition(acq)
    first_calibration = width // 2 - calibration // 2  # the central block, as crop_kspace centres one
    for s in range(slices):
        for step in np.flatnonzero(mask):
            acq = acquisition(kspace[s, :, :, step])
            acq.idx.kspace_encode_step_1 = int(step)
            acq.idx.slice = s
            if first_calibration <= step < first_calibration + calibration:
                acq.set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
            dataset.append_acquisition(acq)
    dataset.close()
