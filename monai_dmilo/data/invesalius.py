"""Read the image volume of an InVesalius project file (``.inv3``).

An ``.inv3`` file is a gzipped tar archive holding one folder with ``main.plist`` (an Apple
property list: the volume's ``matrix`` entry gives the raw file name, ``dtype`` and ``shape``
``(Z, Y, X)``; ``spacing`` gives ``(x, y, z)`` in mm; ``modality``), the raw voxel file it names
(C order, little-endian) and masks and surfaces this reader ignores. Debian's
``invesalius-examples`` ships a real head CT in this format (``Cranium.inv3``, Hounsfield units).

The archive is read in memory: nothing is extracted to disk, so member names cannot write outside
a folder.
"""
from __future__ import annotations

import plistlib
import tarfile
from xml.parsers.expat import ExpatError
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["Inv3Volume", "read_inv3"]

_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "float32", "float64")


@dataclass(frozen=True)
class Inv3Volume:
    """An InVesalius volume.

    Attributes:
        array: ``(Z, Y, X)`` voxels as stored (for CT, Hounsfield units).
        spacing: ``(x, y, z)`` voxel size in mm.
        modality: the project's modality string (``"CT"``, ``"MRI"``...).
        name: the project's name.
    """

    array: np.ndarray
    spacing: tuple[float, float, float]
    modality: str
    name: str


def _bad(path: Path, what: str) -> ValueError:
    return ValueError(f"{path} is not a readable InVesalius .inv3 project: {what}.")


def _read_member(archive: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> bytes:
    handle = archive.extractfile(member)
    if handle is None:
        raise _bad(path, f"member {member.name!r} is not a regular file")
    return handle.read()


def read_inv3(path: str | Path) -> Inv3Volume:
    """Read the volume of an ``.inv3`` project.

    Args:
        path: the ``.inv3`` file.

    Returns:
        The volume, ``array`` shaped ``(Z, Y, X)`` as the project's ``matrix.shape`` says.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: one line naming what is wrong (not a gzipped tar, no ``main.plist``, a missing
            or malformed ``matrix`` entry, a raw file whose size does not match its shape).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"InVesalius project {str(path)!r} not found.")
    try:
        archive = tarfile.open(path, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise _bad(path, f"not a (gzipped) tar archive ({type(err).__name__}: {err})") from None
    with archive:
        try:
            members = {m.name: m for m in archive.getmembers() if m.isfile()}
        except (tarfile.TarError, OSError, EOFError) as err:
            raise _bad(path, f"the archive is truncated or corrupt ({type(err).__name__})") from None
        mains = [name for name in members if Path(name).name == "main.plist"]
        if len(mains) != 1:
            raise _bad(path, f"expected one main.plist, found {len(mains)}")
        folder = str(Path(mains[0]).parent)
        try:
            header = plistlib.loads(_read_member(archive, members[mains[0]], path))
        except (plistlib.InvalidFileException, ExpatError, ValueError, TypeError) as err:
            raise _bad(path, f"main.plist is not a property list ({err})") from None
        matrix = header.get("matrix") if isinstance(header, dict) else None
        if not isinstance(matrix, dict) or not {"filename", "dtype", "shape"} <= set(matrix):
            raise _bad(path, "main.plist has no 'matrix' entry with filename, dtype and shape")
        dtype, shape = str(matrix["dtype"]), matrix["shape"]
        if dtype not in _DTYPES:
            raise _bad(path, f"matrix dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
        if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(s, int) and s > 0 for s in shape)):
            raise _bad(path, f"matrix shape {shape!r} is not three positive integers (Z, Y, X)")
        spacing = header.get("spacing", [1.0, 1.0, 1.0])
        if not (isinstance(spacing, list) and len(spacing) == 3 and all(isinstance(s, (int, float)) and s > 0
                                                                         for s in spacing)):
            raise _bad(path, f"spacing {spacing!r} is not three positive numbers (x, y, z) in mm")
        raw_name = f"{folder}/{matrix['filename']}" if folder not in ("", ".") else str(matrix["filename"])
        if raw_name not in members:
            raise _bad(path, f"the matrix file {matrix['filename']!r} named in main.plist is missing")
        raw = _read_member(archive, members[raw_name], path)
    expected = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if len(raw) != expected:
        raise _bad(path, f"{matrix['filename']} holds {len(raw)} bytes, expected {expected} for {dtype} {tuple(shape)}")
    array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).astype(dtype)
    return Inv3Volume(array=array, spacing=tuple(float(s) for s in spacing),
                      modality=str(header.get("modality", "")), name=str(header.get("name", "")))
