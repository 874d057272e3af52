"""Image files: their format, their name, and their pixels (PNG/JPEG, NIfTI, DICOM series), read with
MONAI's ``LoadImage`` readers."""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_SUFFIXES", "is_dicom_series", "image_format", "file_stem", "load_image", "read_dicom", "read_image_array",
           "nifti_shape", "spatial_size", "squeeze_trailing"]


IMAGE_SUFFIXES: dict[str, str] = {
    ".png": "png",
    ".jpg": "png",
    ".jpeg": "png",
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".dcm": "dicom",
}


def is_dicom_series(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding ``.dcm`` files (one DICOM series)."""
    path = Path(path)
    return path.is_dir() and any(p.suffix.lower() == ".dcm" for p in path.iterdir())


def image_format(path: str | Path) -> str | None:
    """``"png"``, ``"nifti"`` or ``"dicom"`` from a file name (or a DICOM series folder), or ``None``
    for an unsupported one."""
    if is_dicom_series(path):
        return "dicom"
    name = str(path).lower()
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.endswith(suffix):
            return IMAGE_SUFFIXES[suffix]
    return None


def file_stem(path: str | Path) -> str:
    """The file name without its image suffix (``brain.nii.gz`` -> ``brain``)."""
    name = Path(path).name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


_PIL_MODES = {1: "L", 3: "RGB"}


def load_image(path: str, *, channels: int = 1):
    """One image file or DICOM series through MONAI's ``LoadImage`` (``PILReader`` for PNG/JPEG,
    ``NibabelReader`` for NIfTI, ``PydicomReader`` for DICOM): a float32 ``MetaTensor`` with its
    affine; PNG/JPEG ``(C, H, W)`` converted to ``channels`` (PIL ``L`` or ``RGB``), NIfTI/DICOM as
    stored, ``(X, Y[, Z])`` (columns, rows, slices for DICOM; rescale slope and intercept applied).
    """
    from monai.data import PILReader
    from monai.transforms import LoadImage

    fmt = image_format(path)
    if fmt == "png":
        mode = _PIL_MODES.get(channels)
        if mode is None:
            raise ValueError(f"channels must be 1 or 3 for PNG/JPEG images, got {channels}.")
        loader = LoadImage(reader=PILReader(converter=lambda im: im.convert(mode), reverse_indexing=False),
                           image_only=True, dtype=np.float32, ensure_channel_first=True)
    elif fmt in ("nifti", "dicom"):
        loader = LoadImage(reader="NibabelReader" if fmt == "nifti" else "PydicomReader", image_only=True,
                           dtype=np.float32)
    else:
        raise ValueError(f"file {path!r} must be PNG/JPEG, NIfTI or DICOM.")
    try:
        return loader(path)
    except Exception as err:  # the readers raise many types for unreadable files
        raise ValueError(f"{path} could not be read as {fmt.upper()}: {type(err).__name__}: {err}") from None


def read_dicom(path: str) -> tuple[np.ndarray, np.ndarray]:
    """A DICOM series folder (or one ``.dcm`` file) as float32 ``(X, Y[, Z])`` and its RAS affine
    ``(4, 4)`` (:func:`load_image`)."""
    image = load_image(path)
    return np.asarray(image, dtype=np.float32), np.asarray(image.affine, dtype=np.float64)


def nifti_shape(path: str) -> tuple[int, ...]:
    if image_format(path) == "dicom":
        return tuple(int(s) for s in _CACHE.get(path).shape)
    import nibabel as nib

    return tuple(int(s) for s in nib.load(path).shape)


def squeeze_trailing(shape: tuple[int, ...]) -> tuple[int, ...]:
    while len(shape) > 2 and shape[-1] == 1:
        shape = shape[:-1]
    return shape


def spatial_size(path: str) -> tuple[int, int]:
    from nibabel.filebasedimages import ImageFileError

    try:
        if image_format(path) == "png":
            from PIL import Image

            with Image.open(path) as im:
                width, height = im.size
            return height, width
        shape = squeeze_trailing(nifti_shape(path))
    except (OSError, EOFError, ImageFileError) as err:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(f"{path} could not be read as an image: {type(err).__name__}: {err}") from None
    return shape[0], shape[1]


class _VolumeCache:
    """Keeps the last few NIfTI volumes / DICOM series loaded, so slices of one volume read it once."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()

    def get(self, path: str) -> np.ndarray:
        if path not in self._data:
            self._data[path] = np.asarray(load_image(path), dtype=np.float32)
            while len(self._data) > self.size:
                self._data.popitem(last=False)
        self._data.move_to_end(path)
        return self._data[path]


_CACHE = _VolumeCache()


def read_image_array(path: str, *, channels: int = 1, slice_index: int | None = None) -> np.ndarray:
    """Read one 2D image as float32 ``(C, H, W)`` in its stored intensity units.

    PNG/JPEG are converted to ``channels`` (1: grayscale ``L``, 3: ``RGB``); NIfTI images are
    one-channel and ``slice_index`` picks a slice along the last axis of a 3D volume.
    """
    if image_format(path) == "png":
        return np.ascontiguousarray(load_image(path, channels=channels), dtype=np.float32)
    if channels != 1:
        raise ValueError(f"NIfTI/DICOM images are read as one channel but the prior takes {channels} channels.")
    vol = _CACHE.get(path)
    vol = vol.reshape(squeeze_trailing(vol.shape))
    img = vol if slice_index is None else vol[..., int(slice_index)]
    if img.ndim != 2:
        raise ValueError(f"image {path!r} gave shape {img.shape} (slice {slice_index}); expected 2D.")
    return np.ascontiguousarray(img[None], dtype=np.float32)
