"""Read ISMRMRD / MRD raw-data files (what Gadgetron and the vendor converters write) as :class:`KspaceFile`.

An MRD ``.h5`` file holds a group ``dataset`` with the XML header (``xml``) and the acquisitions
(``data``: one readout line each, ``(coils, samples)`` complex, with its encoding indices and
flags). Read here with the ``ismrmrd`` package (an extra: ``pip install ismrmrd``):

* **2D Cartesian only**: the first encoding's trajectory must be ``cartesian`` and its encoded
  ``z`` matrix 1; a file with several contrasts, repetitions, phases or sets is refused (split it).
* **Matrix and field of view** from the header's encoding: k-space is ``(slices, coils, H, W)`` with
  ``H`` the readout (encoded ``x``) and ``W`` the phase-encoding steps (encoded ``y``); a line's
  step ``kspace_encode_step_1`` is placed so that the header's ``center`` lands on ``W // 2``; a
  readout shorter than the matrix is placed by its ``center_sample``. Readout oversampling
  (encoded field of view ``x`` larger than the reconstructed one) is removed in image space.
  The voxel size is the reconstructed field of view over its matrix.
* **Flags**: noise measurements (``ACQ_IS_NOISE_MEASUREMENT``) form the noise scan; calibration
  lines (``ACQ_IS_PARALLEL_CALIBRATION``, with or without ``..._AND_IMAGING``) are measured data
  of the same image and are kept (they are the fully sampled centre the coil maps come from);
  navigator, phase-correction, dummy-scan and feedback lines are skipped; repeated lines
  (averages) are averaged.
* **Noise whitening**: with a noise scan, the coils are whitened, ``y <- L^-1 y`` with
  ``L L^H = Psi`` the Cholesky factor of the noise covariance (scaled by the ratio of the noise
  and imaging dwell times), so the noise is white with unit variance in every coil.
* **Acceleration** is that of the acquired lines (the mask); the header's
  ``parallelImaging/accelerationFactor`` is logged beside it.

The header's patient, study, equipment and sequence information is kept for the DICOM output
(:func:`~.reader.dicom_attributes`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from .reader import KspaceFile, describe_mask, dicom_attributes, spacing_from_header

__all__ = ["is_mrd_file", "read_mrd_file", "noise_whitening"]

logger = logging.getLogger(__name__)

SKIPPED_FLAGS = ("ACQ_IS_NAVIGATION_DATA", "ACQ_IS_PHASECORR_DATA", "ACQ_IS_DUMMYSCAN_DATA", "ACQ_IS_HPFEEDBACK_DATA",
                 "ACQ_IS_RTFEEDBACK_DATA", "ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA", "ACQ_IS_PHASE_STABILIZATION",
                 "ACQ_IS_PHASE_STABILIZATION_REFERENCE")
SINGLE_INDICES = ("contrast", "repetition", "phase", "set")


def is_mrd_file(path: str | Path) -> bool:
    """Whether ``path`` is an HDF5 file with an MRD ``dataset`` group (``xml`` and ``data``)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            return "dataset" in f and isinstance(f["dataset"], h5py.Group) and "xml" in f["dataset"]
    except OSError:
        return False


def noise_whitening(noise: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The whitening matrix ``L^-1`` ``(C, C)`` of noise samples ``(C, N)``: ``L L^H = scale * cov``.

    Raises:
        ValueError: fewer samples than coils, or a singular covariance (a dead coil).
    """
    coils, samples = noise.shape
    if samples < coils:
        raise ValueError(f"the noise scan has {samples} samples for {coils} coils; too few to estimate the covariance.")
    covariance = scale * (noise @ noise.conj().T) / samples
    try:
        chol = np.linalg.cholesky(covariance.astype(np.complex128))
    except np.linalg.LinAlgError:
        raise ValueError("the noise covariance is singular (a coil without noise: dead or duplicated channel).") from None
    return np.linalg.inv(chol)


def _header(dataset, where: str):
    import ismrmrd.xsd

    try:
        xml = dataset.read_xml_header()
    except Exception as err:  # the package raises KeyError / RuntimeError for a missing header
        raise ValueError(f"{where} has no ISMRMRD XML header: {err}.") from None
    xml = xml.decode() if isinstance(xml, bytes) else str(xml)
    try:
        return xml, ismrmrd.xsd.CreateFromDocument(xml)
    except Exception as err:
        raise ValueError(f"{where}: the ISMRMRD XML header does not parse: {str(err).splitlines()[0]}.") from None


def read_mrd_file(path: str | Path) -> KspaceFile:
    """Read one MRD file (see the module docstring).

    Raises:
        ImportError: ``ismrmrd`` is not installed.
        ValueError: not an MRD file, no header or acquisitions, a non-Cartesian, 3D or multi-contrast
            acquisition, or lines outside the header's matrix (one line naming the file and the problem).
    """
    try:
        import ismrmrd
    except ImportError:
        raise ImportError("reading ISMRMRD / MRD files needs ismrmrd: pip install ismrmrd "
                          "(or pip install 'monai_dmilo[kspace]').") from None
    path = Path(path)
    where = f"MRD file {str(path)!r}"
    if not path.is_file():
        raise FileNotFoundError(f"{where} does not exist.")
    if not is_mrd_file(path):
        raise ValueError(f"{where} is not an ISMRMRD / MRD file (no HDF5 group 'dataset' with an 'xml' header).")
    dataset = ismrmrd.Dataset(str(path), "dataset", create_if_needed=False)
    try:
        xml, header = _header(dataset, where)
        if not header.encoding:
            raise ValueError(f"{where}: the header has no encoding.")
        encoding = header.encoding[0]
        trajectory = getattr(encoding.trajectory, "value", encoding.trajectory)
        if str(trajectory).lower() != "cartesian":
            raise ValueError(f"{where}: trajectory {trajectory!r} is not supported; only Cartesian acquisitions are.")
        enc, rec = encoding.encodedSpace, encoding.reconSpace
        if enc.matrixSize.z > 1:
            raise ValueError(f"{where}: a 3D encoding (encoded matrix z = {enc.matrixSize.z}) is not supported; "
                             "only 2D (multi-slice) acquisitions are.")
        readout, steps = int(enc.matrixSize.x), int(enc.matrixSize.y)
        limits = encoding.encodingLimits
        centre = limits.kspace_encoding_step_1.center if limits.kspace_encoding_step_1 is not None else steps // 2
        slices = (limits.slice.maximum + 1) if limits.slice is not None else 1
        try:
            count = dataset.number_of_acquisitions()
        except Exception:
            count = 0
        if count == 0:
            raise ValueError(f"{where} holds no acquisitions.")
        kspace = None
        hits = np.zeros((slices, steps), np.int32)
        noise, noise_dwell, dwell = [], None, None
        skipped = calibration = 0
        for i in range(count):
            acq = dataset.read_acquisition(i)
            if acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
                noise.append(np.asarray(acq.data))
                noise_dwell = acq.sample_time_us
                continue
            if any(acq.is_flag_set(getattr(ismrmrd, flag)) for flag in SKIPPED_FLAGS):
                skipped += 1
                continue
            idx = acq.idx
            for name in SINGLE_INDICES:
                if getattr(idx, name) != 0:
                    raise ValueError(f"{where}: acquisition {i} has {name} {getattr(idx, name)}; files with more than "
                                     f"one {name} are not supported (split them).")
            data = np.asarray(acq.data)
            if kspace is None:
                kspace = np.zeros((slices, data.shape[0], readout, steps), np.complex128)
            step = int(idx.kspace_encode_step_1) - int(centre) + steps // 2
            if not (0 <= step < steps and 0 <= idx.slice < slices and data.shape[0] == kspace.shape[1]):
                raise ValueError(f"{where}: acquisition {i} (step {idx.kspace_encode_step_1}, slice {idx.slice}, "
                                 f"{data.shape[0]} coils) lies outside the header's {steps} steps, {slices} slices, "
                                 f"{kspace.shape[1]} coils.")
            samples = data.shape[1]
            if samples > readout:
                raise ValueError(f"{where}: acquisition {i} has {samples} samples; the encoded matrix has {readout}.")
            start = readout // 2 - int(acq.center_sample) if samples < readout else 0
            kspace[idx.slice, :, start:start + samples, step] += data
            hits[idx.slice, step] += 1
            dwell = acq.sample_time_us
            calibration += bool(acq.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
                                or acq.is_flag_set(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING))
        if kspace is None:
            raise ValueError(f"{where} holds only noise or skipped acquisitions, no imaging lines.")
    finally:
        dataset.close()
    kspace /= np.maximum(hits, 1)[:, None, None, :]
    whitening = "no noise scan: coils not whitened"
    if noise:
        noise = np.concatenate(noise, axis=1)
        ratio = float(noise_dwell / dwell) if noise_dwell and dwell else 1.0
        matrix = noise_whitening(noise, scale=1.0 / ratio)
        kspace = np.einsum("dc,schw->sdhw", matrix, kspace)
        whitening = f"whitened with a {noise.shape[1]}-sample noise scan (dwell ratio {ratio:.3g})"
    fov_enc, fov_rec = float(enc.fieldOfView_mm.x), float(rec.fieldOfView_mm.x)
    if fov_rec and fov_enc > 1.01 * fov_rec:  # readout oversampling: keep the reconstructed field of view
        keep = int(round(readout * fov_rec / fov_enc))
        image = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(kspace, axes=2), axis=2, norm="ortho"), axes=2)
        image = image[:, :, readout // 2 - keep // 2:readout // 2 - keep // 2 + keep]
        kspace = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(image, axes=2), axis=2, norm="ortho"), axes=2)
    mask = hits.sum(0) > 0
    acceleration, central = describe_mask(mask)
    header_r = None
    if encoding.parallelImaging is not None:
        header_r = encoding.parallelImaging.accelerationFactor.kspace_encoding_step_1
    logger.info("%s: MRD, %d slices, %d coils, %dx%d k-space; %d lines (%d calibration, %d skipped): acceleration "
                "%.2f (header: %s), %d central columns; %s", path.name, kspace.shape[0], kspace.shape[1],
                kspace.shape[2], kspace.shape[3], int(hits.sum()), calibration, skipped, acceleration,
                header_r if header_r is not None else "none", central, whitening)
    subject = header.subjectInformation
    attrs = {"acquisition": getattr(header.measurementInformation, "protocolName", None) or "",
             "patient_id": getattr(subject, "patientID", None) or "anonymous", "format": "mrd",
             "whitening": whitening, "header_acceleration": header_r}
    return KspaceFile(name=path.stem, kspace=kspace.astype(np.complex64), mask=mask, mask_source="acquired lines",
                      spacing=spacing_from_header(xml), attrs=attrs, dicom=dicom_attributes(xml))
