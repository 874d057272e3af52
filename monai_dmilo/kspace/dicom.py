"""Write a magnitude volume as a DICOM MR series (pydicom, an extra: ``pip install pydicom``).

One instance per slice of the MR Image IOD, valid for ``dciodvfy`` (Debian's ``dicom3tools``; checked
by ``tests/test_kspace_dicom.py``): ``ImageType = DERIVED\\SECONDARY\\OTHER``, 16-bit unsigned
pixels, pixel spacing, slice thickness and position (slices stacked along the patient's z axis,
axial orientation unless given), window centre/width from the 1st-99th percentiles, a series
description naming the solver. Patient, study, equipment and sequence attributes come from the
input where it has them (the ISMRMRD header) and are otherwise those of a derived, anonymous
series (:data:`DEFAULTS`). Series and instance UIDs are derived from ``uid_seed`` (the file name
and settings): the same run writes the same UIDs, every instance has its own.
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    import pydicom

__all__ = ["dicom_series"]

MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


# Attributes a derived, anonymous secondary series gets where the input says nothing (Type 2: present,
# possibly empty; the MR Image module's Type 1 sequence attributes: "RM" research mode, no variant).
DEFAULTS = {
    "PatientName": "ANONYMOUS^", "PatientID": "anonymous", "PatientBirthDate": "", "PatientSex": "",
    "StudyDate": None, "StudyTime": None, "StudyID": "1", "AccessionNumber": "", "ReferringPhysicianName": "",
    "StudyDescription": "", "PatientPosition": "HFS", "Manufacturer": "", "InstitutionName": "",
    "ManufacturerModelName": "", "MagneticFieldStrength": None,
    "ScanningSequence": "RM", "SequenceVariant": "NONE", "ScanOptions": "", "MRAcquisitionType": "2D",
    "RepetitionTime": "", "EchoTime": "", "InversionTime": None, "FlipAngle": None, "EchoTrainLength": "",
}
STORED_MAX = 4095  # 12 bits of stored range


def dicom_series(
    volume: np.ndarray,
    *,
    spacing: Sequence[float | None] = (1.0, 1.0, 1.0),
    description: str,
    uid_seed: str,
    attributes: Mapping[str, Any] | None = None,
    patient_id: str | None = None,
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
) -> list[tuple[str, "pydicom.Dataset"]]:
    """``volume`` ``(slices, rows, columns)`` (non-negative magnitudes) as DICOM MR datasets, one per slice.

    Args:
        spacing: ``(row mm, column mm, slice mm)``; None entries become 1 mm.
        description: ``SeriesDescription`` (e.g. the solver that made the images).
        uid_seed: text the UIDs are derived from (stable for the same text).
        attributes: DICOM keywords -> values from the input (patient, study, equipment, sequence:
            e.g. :func:`~monai_dmilo.kspace.reader.dicom_attributes` of an ISMRMRD header); a
            ``StudyInstanceUID`` there puts the series in the input's study. The rest is
            :data:`DEFAULTS` (an anonymous study dated now).
        patient_id: ``PatientID`` (overrides ``attributes``).
        orientation: ``ImageOrientationPatient`` (row and column direction cosines).

    Pixels are unsigned 16-bit, ``magnitude / (max / 4095)`` rounded; the MR IOD has no Modality
    LUT, so the factor back to the input's units is written in ``ImageComments``.

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
    factor = peak / STORED_MAX
    stored = np.round(volume / factor).astype(np.uint16)
    low, high = np.percentile(stored, [1, 99])
    now = datetime.datetime.now()
    given = {k: v for k, v in (attributes or {}).items() if v is not None}
    if patient_id is not None:
        given["PatientID"] = patient_id
    values = {**DEFAULTS, "StudyDate": now.strftime("%Y%m%d"), "StudyTime": now.strftime("%H%M%S"),
              **{k: v for k, v in given.items() if k in DEFAULTS}}
    study_uid = str(given.get("StudyInstanceUID") or generate_uid(entropy_srcs=[uid_seed, "study"]))
    series_uid = generate_uid(entropy_srcs=[uid_seed, "series"])
    frame_uid = str(given.get("FrameOfReferenceUID") or generate_uid(entropy_srcs=[uid_seed, "frame"]))
    series = []
    for k, image in enumerate(stored):
        sop_uid = generate_uid(entropy_srcs=[uid_seed, "instance", str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = MR_IMAGE_STORAGE
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        ds = Dataset()
        ds.file_meta = meta
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID = MR_IMAGE_STORAGE
        ds.SOPInstanceUID = sop_uid
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PositionReferenceIndicator = ""
        ds.Modality = "MR"
        ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
        for keyword, value in values.items():
            if value is not None:
                setattr(ds, keyword, value)
        ds.Laterality = ""
        ds.SeriesDescription = description[:64]
        ds.DerivationDescription = f"reconstructed from undersampled k-space: {description}"[:1024]
        ds.ImageComments = f"pixel value x {factor:.10g} = magnitude in the k-space data's units"
        ds.SoftwareVersions = "monai_dmilo"
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
        ds.WindowCenter = f"{(low + high) / 2:.6g}"
        ds.WindowWidth = f"{max(high - low, 1.0):.6g}"
        ds.PixelData = image.tobytes()
        series.append((f"IM{k + 1:04d}.dcm", ds))
    return series
