"""Write a magnitude volume as a DICOM MR series (pydicom, an extra: ``pip install pydicom``).

One instance per slice: MR Image Storage, ``ImageType = DERIVED\\SECONDARY``, 16-bit unsigned
pixels with ``RescaleSlope`` mapping them back to the magnitude, pixel spacing, slice thickness
and position (slices stacked along the patient's z axis, axial orientation unless given),
window centre/width from the volume's 1st-99th percentiles, and a series description naming the
solver. Study, series and instance UIDs are derived from ``uid_seed`` (the file name and
settings): the same run writes the same UIDs, every instance has its own.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    import pydicom

__all__ = ["dicom_series", "write_dicom_series"]

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def dicom_series(
    volume: np.ndarray,
    *,
    spacing: Sequence[float | None] = (1.0, 1.0, 1.0),
    description: str,
    uid_seed: str,
    patient_id: str = "anonymous",
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
) -> list[tuple[str, "pydicom.Dataset"]]:
    """``volume`` ``(slices, rows, columns)`` (non-negative magnitudes) as DICOM datasets, one per slice.

    Args:
        spacing: ``(row mm, column mm, slice mm)``; None entries become 1 mm.
        description: ``SeriesDescription`` (e.g. the solver that made the images).
        uid_seed: text the UIDs are derived from (stable for the same text).
        patient_id: ``PatientID``.
        orientation: ``ImageOrientationPatient`` (row and column direction cosines).

    Returns:
        ``(file name IM0001.dcm ..., dataset)`` per slice.
    """
    try:
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid
    except ImportError:
        raise ImportError("writing DICOM needs pydicom: pip install pydicom (or pip install 'monai_dmilo[kspace]').") from None
    volume = np.asarray(volume, dtype=np.float64)
    if volume.ndim != 3:
        raise ValueError(f"volume must be (slices, rows, columns), got shape {volume.shape}.")
    if not np.isfinite(volume).all():
        raise ValueError("volume holds NaN or infinite values; nothing written.")
    volume = np.clip(volume, 0, None)
    row_mm, col_mm, slice_mm = (float(s) if s else 1.0 for s in spacing)
    peak = float(volume.max()) or 1.0
    slope = peak / 4095.0  # 12 bits of stored range
    low, high = np.percentile(volume, [1, 99])
    study_uid = generate_uid(entropy_srcs=[uid_seed, "study"])
    series_uid = generate_uid(entropy_srcs=[uid_seed, "series"])
    frame_uid = generate_uid(entropy_srcs=[uid_seed, "frame"])
    now = datetime.datetime.now()
    series = []
    for k, image in enumerate(volume):
        sop_uid = generate_uid(entropy_srcs=[uid_seed, "instance", str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID = MR_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.Modality = "MR"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.SeriesDescription = description[:64]
        ds.DerivationDescription = f"reconstructed from undersampled k-space: {description}"[:1024]
        ds.PatientID = patient_id
        ds.PatientName = patient_id
        ds.ContentDate = now.strftime("%Y%m%d")
        ds.ContentTime = now.strftime("%H%M%S")
        ds.SeriesNumber = 1
        ds.InstanceNumber = k + 1
        ds.ImagePositionPatient = [0.0, 0.0, k * slice_mm]
        ds.ImageOrientationPatient = [float(v) for v in orientation]
        ds.SliceLocation = k * slice_mm
        ds.SliceThickness = slice_mm
        ds.PixelSpacing = [row_mm, col_mm]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = image.shape
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = f"{slope:.10g}"
        ds.RescaleIntercept = 0
        ds.WindowCenter = f"{(low + high) / 2:.6g}"
        ds.WindowWidth = f"{max(high - low, slope):.6g}"
        ds.PixelData = np.round(image / slope).astype(np.uint16).tobytes()
        series.append((f"IM{k + 1:04d}.dcm", ds))
    return series


def write_dicom_series(volume: np.ndarray, folder: str | Path, **kwargs) -> list[Path]:
    """Write :func:`dicom_series` ``(volume, **kwargs)`` to ``folder``; returns the paths."""
    import pydicom

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, ds in dicom_series(volume, **kwargs):
        pydicom.dcmwrite(folder / name, ds, enforce_file_format=True)
        paths.append(folder / name)
    return paths
