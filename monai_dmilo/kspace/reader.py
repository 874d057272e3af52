"""Read fastMRI-layout HDF5 k-space files (through MONAI's ``FastMRIReader``) and check them.

The fastMRI layout (https://github.com/facebookresearch/fastMRI, "Dataset" in its README):

* ``kspace``: complex64, ``(slices, coils, H, W)`` multi-coil or ``(slices, H, W)`` single-coil,
  H the readout (frequency-encoding) direction, W the phase-encoding direction;
* ``mask`` (optional, test/challenge files): ``(W,)`` 1 = acquired phase-encoding line;
* ``reconstruction_rss`` / ``reconstruction_esc`` (optional): the reference magnitude images,
  ``(slices, h, w)``;
* ``ismrmrd_header``: the ISMRMRD XML header (matrix and field of view, for the voxel size);
* attributes ``acquisition``, ``max``, ``norm``, ``patient_id``, and in test files
  ``acceleration`` and ``num_low_frequency``.

An unsampled line is all zeros in ``kspace``; without a ``mask`` the mask is inferred from that.
"""
from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["KspaceFile", "read_kspace_file", "infer_mask", "describe_mask", "spacing_from_header", "dicom_attributes"]

logger = logging.getLogger(__name__)

REFERENCE_KEYS = ("reconstruction_rss", "reconstruction_esc")


@dataclass
class KspaceFile:
    """The contents of one k-space file.

    Attributes:
        name: the file's stem.
        kspace: complex64 ``(slices, coils, H, W)`` (single-coil files get ``coils = 1``).
        mask: bool ``(W,)`` or ``(H, W)``: acquired k-space locations.
        mask_source: ``"file"`` or ``"inferred"`` (from all-zero lines).
        reference: float32 ``(slices, h, w)`` reference magnitude, or None.
        spacing: in-plane voxel size ``(row mm, column mm)`` and slice thickness (mm), or None each.
        attrs: the file's attributes (acquisition, max, norm, patient_id, ...).
        maps: complex ``(slices, coils, H, W)`` coil sensitivities when the file holds a
            ``sensitivity_maps`` dataset (not part of fastMRI), else None.
        dicom: DICOM keywords -> values from the ISMRMRD header (patient, study, equipment,
            sequence; :func:`dicom_attributes`) for the DICOM output.
    """

    name: str
    kspace: np.ndarray
    mask: np.ndarray
    mask_source: str
    reference: np.ndarray | None = None
    spacing: tuple[float | None, float | None, float | None] = (None, None, None)
    attrs: dict = field(default_factory=dict)
    maps: np.ndarray | None = None
    dicom: dict = field(default_factory=dict)


def infer_mask(kspace: np.ndarray) -> np.ndarray:
    """Acquired locations of ``kspace`` ``(slices, coils, H, W)``: a phase-encoding column is
    acquired when any of its entries is non-zero in any slice or coil; ``(W,)`` bool."""
    return np.abs(kspace).max(axis=(0, 1, 2)) > 0


def describe_mask(mask: np.ndarray) -> tuple[float, int]:
    """``(acceleration, number of fully sampled central columns)`` of a column mask ``(W,)`` (or
    the column profile of an ``(H, W)`` mask): acceleration = W / acquired columns."""
    columns = mask if mask.ndim == 1 else mask.any(axis=0)
    width = columns.shape[-1]
    acquired = int(columns.sum())
    centre = width // 2
    lo = centre
    while lo - 1 >= 0 and columns[lo - 1]:
        lo -= 1
    hi = centre
    while hi < width and columns[hi]:
        hi += 1
    central = hi - lo if columns[centre] else 0
    return (width / acquired if acquired else math.inf), central


def _child(node, name: str):
    """The first child element of ``node`` named ``name`` (any XML namespace), or None."""
    return next((c for c in node if c.tag.split("}")[-1] == name), None)


def spacing_from_header(header: bytes | str | None) -> tuple[float | None, float | None, float | None]:
    """``(row mm, column mm, slice mm)`` of the reconstructed matrix from an ISMRMRD XML header
    (``encoding/reconSpace``: field of view / matrix size), or Nones when absent or unreadable."""
    if header is None:
        return (None, None, None)
    try:
        root = ET.fromstring(header.decode() if isinstance(header, bytes) else str(header))
    except (ET.ParseError, UnicodeDecodeError):
        logger.warning("ismrmrd_header is not valid XML: voxel sizes unknown")
        return (None, None, None)

    recon = next((el for el in root.iter() if el.tag.split("}")[-1] == "reconSpace"), None)
    if recon is None:
        return (None, None, None)

    def child(parent, *names):
        node = parent
        for n in names:
            node = _child(node, n)
            if node is None:
                return None
        try:
            return float(node.text)
        except (TypeError, ValueError):
            return None

    mx, my = child(recon, "matrixSize", "x"), child(recon, "matrixSize", "y")
    fx, fy, fz = (child(recon, "fieldOfView_mm", a) for a in ("x", "y", "z"))
    rows = fx / mx if fx and mx else None  # ISMRMRD x = readout = the H (row) axis of fastMRI arrays
    cols = fy / my if fy and my else None
    return (rows, cols, fz)


# ISMRMRD header element (path below the root) -> DICOM keyword, and how a value is written
HEADER_TO_DICOM = {
    ("subjectInformation", "patientName"): "PatientName",
    ("subjectInformation", "patientID"): "PatientID",
    ("subjectInformation", "patientBirthdate"): "PatientBirthDate",
    ("subjectInformation", "patientGender"): "PatientSex",
    ("studyInformation", "studyDate"): "StudyDate",
    ("studyInformation", "studyTime"): "StudyTime",
    ("studyInformation", "studyID"): "StudyID",
    ("studyInformation", "accessionNumber"): "AccessionNumber",
    ("studyInformation", "referringPhysicianName"): "ReferringPhysicianName",
    ("studyInformation", "studyDescription"): "StudyDescription",
    ("studyInformation", "studyInstanceUID"): "StudyInstanceUID",
    ("measurementInformation", "patientPosition"): "PatientPosition",
    ("measurementInformation", "frameOfReferenceUID"): "FrameOfReferenceUID",
    ("acquisitionSystemInformation", "systemVendor"): "Manufacturer",
    ("acquisitionSystemInformation", "systemModel"): "ManufacturerModelName",
    ("acquisitionSystemInformation", "institutionName"): "InstitutionName",
    ("acquisitionSystemInformation", "systemFieldStrength_T"): "MagneticFieldStrength",
    ("sequenceParameters", "TR"): "RepetitionTime",
    ("sequenceParameters", "TE"): "EchoTime",
    ("sequenceParameters", "TI"): "InversionTime",
    ("sequenceParameters", "flipAngle_deg"): "FlipAngle",
    ("encoding", "echoTrainLength"): "EchoTrainLength",
}
PATIENT_SEX = {"M": "M", "F": "F", "O": "O", "MALE": "M", "FEMALE": "F", "OTHER": "O"}


def _dicom_value(keyword: str, text: str) -> str | None:
    text = text.strip()
    if keyword in ("StudyDate", "PatientBirthDate"):
        digits = text.replace("-", "")
        return digits if len(digits) == 8 and digits.isdigit() else None
    if keyword == "StudyTime":
        digits = text.split(".")[0].replace(":", "")
        return digits if digits.isdigit() else None
    if keyword == "PatientSex":
        return PATIENT_SEX.get(text.upper(), "O")
    if keyword in ("RepetitionTime", "EchoTime", "InversionTime", "FlipAngle", "MagneticFieldStrength"):
        try:
            return f"{float(text):.6g}"
        except ValueError:
            return None
    if keyword == "EchoTrainLength":
        return text if text.isdigit() else None
    return text[:64] or None


def dicom_attributes(header: bytes | str | None) -> dict[str, str]:
    """DICOM keywords -> values from an ISMRMRD XML header (:data:`HEADER_TO_DICOM`; the first value
    of repeated sequence parameters); ``{}`` when absent or unreadable. Dates and times are turned
    into DICOM's ``YYYYMMDD`` / ``HHMMSS``, gender into ``M`` / ``F`` / ``O``."""
    if header is None:
        return {}
    try:
        root = ET.fromstring(header.decode() if isinstance(header, bytes) else str(header))
    except (ET.ParseError, UnicodeDecodeError):
        return {}

    out = {}
    for (section, element), keyword in HEADER_TO_DICOM.items():
        node = _child(root, section)
        leaf = _child(node, element) if node is not None else None
        if leaf is not None and leaf.text:
            value = _dicom_value(keyword, leaf.text)
            if value is not None:
                out[keyword] = value
    return out


def read_kspace_file(path: str | Path) -> KspaceFile:
    """Read and check one ``.h5`` k-space file: fastMRI layout, or ISMRMRD / MRD (detected by its
    ``dataset`` group; :func:`~.mrd.read_mrd_file`).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not HDF5, no ``kspace``, real-valued k-space, wrong rank, or a mask / reference
            of the wrong shape (one line naming the file and the problem).
    """
    try:
        import h5py  # noqa: F401
    except ImportError:
        raise ImportError("reading k-space files needs h5py: pip install h5py (or pip install 'monai_dmilo[kspace]').") from None
    from monai.apps.reconstruction.fastmri_reader import FastMRIReader

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"k-space file {str(path)!r} does not exist.")
    from .mrd import is_mrd_file, read_mrd_file

    if is_mrd_file(path):
        return read_mrd_file(path)
    try:
        content = FastMRIReader().read(str(path))
    except OSError as err:
        raise ValueError(f"k-space file {str(path)!r} could not be read as HDF5: {err}.") from None
    where = f"k-space file {str(path)!r}"
    if "kspace" not in content:
        raise ValueError(f"{where} has no 'kspace' dataset; found {sorted(k for k in content if k != 'filename')}.")
    kspace = np.asarray(content["kspace"])
    if not np.iscomplexobj(kspace):
        raise ValueError(f"{where}: 'kspace' is real-valued ({kspace.dtype}); expected complex k-space (complex64).")
    if kspace.ndim == 3:
        kspace = kspace[:, None]
    elif kspace.ndim != 4:
        raise ValueError(
            f"{where}: 'kspace' has shape {kspace.shape}; expected (slices, coils, H, W) or (slices, H, W)."
        )
    kspace = kspace.astype(np.complex64, copy=False)
    height, width = kspace.shape[-2:]
    if "mask" in content:
        mask = np.asarray(content["mask"]).astype(bool)
        if mask.shape not in ((width,), (height, width)):
            raise ValueError(f"{where}: 'mask' has shape {mask.shape}; expected ({width},) or ({height}, {width}).")
        source = "file"
    else:
        mask = infer_mask(kspace)
        source = "inferred"
    if not mask.any():
        raise ValueError(f"{where}: no k-space line is acquired (the mask / k-space is all zeros).")
    acceleration, central = describe_mask(mask)
    logger.info("%s: %d slices, %d coils, %dx%d k-space; mask %s: acceleration %.2f, %d central columns (%.1f %%)",
                path.name, kspace.shape[0], kspace.shape[1], height, width, source, acceleration, central,
                100 * central / width)
    reference = None
    for key in REFERENCE_KEYS:
        if key in content:
            reference = np.asarray(content[key], dtype=np.float32)
            if reference.ndim != 3 or reference.shape[0] != kspace.shape[0]:
                raise ValueError(
                    f"{where}: '{key}' has shape {reference.shape}; expected ({kspace.shape[0]}, h, w)."
                )
            break
    maps = None
    if "sensitivity_maps" in content:
        maps = np.asarray(content["sensitivity_maps"]).astype(np.complex64)
        if maps.shape != kspace.shape:
            raise ValueError(f"{where}: 'sensitivity_maps' has shape {maps.shape}; expected {kspace.shape} like 'kspace'.")
    attrs = {k: content[k] for k in ("acquisition", "max", "norm", "patient_id", "acceleration", "num_low_frequency")
             if k in content}
    return KspaceFile(
        name=path.stem,
        kspace=kspace, mask=mask, mask_source=source, reference=reference,
        spacing=spacing_from_header(content.get("ismrmrd_header")), attrs=attrs, maps=maps,
        dicom=dicom_attributes(content.get("ismrmrd_header")),
    )
