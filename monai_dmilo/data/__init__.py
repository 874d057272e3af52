"""Datalists of images for the bundle workflows, checked before any work starts.

An *item* is a dict with at least ``image`` (a file path) and ``name`` (a unique id used for
outputs, seeds and resume). 3D NIfTI volumes become one item per slice along the last axis with
``slice``, ``num_slices`` and ``volume`` (the volume's name); the saver puts them back together.

Supported files: PNG/JPEG (natural images; converted to the prior's channel count), NIfTI
(``.nii``/``.nii.gz``; 2D images or 3D volumes, one channel) and DICOM: a folder of ``.dcm`` files
is one series (a volume, read with MONAI's ``PydicomReader``: slices sorted by position, the
affine from the headers), a single ``.dcm`` file a 2D image.
"""
from __future__ import annotations

from .datalist import build_datalist, check_image_sizes, expand_volumes, list_images, read_datalist_file
from .files import IMAGE_SUFFIXES, file_stem, image_format, is_dicom_series, read_dicom, read_image_array
from .transforms import LoadImageForPriord, LoadMeasurementd

__all__ = [
    "IMAGE_SUFFIXES",
    "image_format",
    "file_stem",
    "list_images",
    "read_datalist_file",
    "expand_volumes",
    "check_image_sizes",
    "build_datalist",
    "read_image_array",
    "is_dicom_series",
    "read_dicom",
    "LoadImageForPriord",
    "LoadMeasurementd",
]
