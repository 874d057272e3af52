"""Run the Berkeley Advanced Reconstruction Toolbox (BART, Debian's ``bart``) on our arrays.

The k-space workflow's classical references (SENSE, CS-TV) are checked against ``bart pics`` on
the same k-space, coil maps and regularisation weight (``tests/test_kspace_bart.py``,
``benchmarks/kspace_bart.py``). BART reads and writes ``.cfl`` / ``.hdr`` pairs: the header lists
the dimensions, the ``.cfl`` holds complex64 values in column-major (Fortran) order, dimension 0 =
readout, 1 = phase encoding, 3 = coils.

Both use the centred orthonormal 2D FFT, so a k-space array ``(C, H, W)`` of ours is BART's
``(H, W, 1, C)`` as it is, and ``pics`` reconstructs on our pixel grid (SENSE agrees with ours to
0.01 dB, CS-TV within 0.1 dB: BART's ADMM and our primal-dual iterations stop at different points).
"""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["bart_available", "write_cfl", "read_cfl", "bart_pics", "bart_caldir"]


def bart_available() -> bool:
    """Whether the ``bart`` program is on the PATH."""
    return shutil.which("bart") is not None


def write_cfl(stem: str | Path, array: np.ndarray) -> None:
    """Write ``array`` (any shape, BART's dimension order) as ``stem.hdr`` + ``stem.cfl``."""
    array = np.asarray(array, dtype=np.complex64)
    dims = list(array.shape) + [1] * max(0, 16 - array.ndim)
    Path(f"{stem}.hdr").write_text("# Dimensions\n" + " ".join(str(d) for d in dims) + "\n")
    np.asfortranarray(array).ravel(order="F").tofile(f"{stem}.cfl")


def read_cfl(stem: str | Path) -> np.ndarray:
    """Read ``stem.hdr`` + ``stem.cfl`` (trailing singleton dimensions dropped)."""
    lines = [line for line in Path(f"{stem}.hdr").read_text().splitlines() if not line.startswith("#")]
    dims = [int(d) for d in lines[0].split()]
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    return np.fromfile(f"{stem}.cfl", dtype=np.complex64).reshape(dims, order="F")


def _run(*args: str) -> None:
    if not bart_available():
        raise RuntimeError("the 'bart' program is not installed (Debian: apt-get install bart).")
    result = subprocess.run(["bart", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"bart {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")


def bart_pics(kspace: np.ndarray, maps: np.ndarray, *, regularization: str, lam: float, iters: int = 30,
              extra: tuple[str, ...] = ()) -> np.ndarray:
    """``bart pics`` of one slice: k-space and maps ``(C, H, W)`` complex -> image ``(H, W)`` complex.

    Args:
        regularization: ``"l2"`` (Tikhonov: CG on ``(A^H A + lam I) x = A^H y``), ``"tv"``
            (``-R T:3:0:lam``, finite differences along both image axes) or ``"wavelet"`` (``-l1``).
        lam: the weight, on the data as given: BART's own data scaling is switched off (``-w 1``).
    """
    flags = {"l2": ["-l2", "-r", f"{lam:.8g}"], "tv": ["-R", f"T:3:0:{lam:.8g}"],
             "wavelet": ["-l1", "-r", f"{lam:.8g}"]}
    if regularization not in flags:
        raise ValueError(f"regularization must be one of {sorted(flags)}, got {regularization!r}.")
    with tempfile.TemporaryDirectory(prefix="monai_dmilo_bart_") as tmp:
        k, s, x = (str(Path(tmp) / n) for n in ("k", "s", "x"))
        write_cfl(k, np.transpose(kspace, (1, 2, 0))[:, :, None, :])
        write_cfl(s, np.transpose(maps, (1, 2, 0))[:, :, None, :])
        _run("pics", "-S", "-w", "1", "-i", str(iters), *flags[regularization], *extra, k, s, x)
        return read_cfl(x).reshape(kspace.shape[-2:])


def bart_caldir(kspace: np.ndarray, cal_size: int) -> np.ndarray:
    """``bart caldir``: direct-calibration coil maps ``(C, H, W)`` of one slice's k-space ``(C, H, W)``."""
    with tempfile.TemporaryDirectory(prefix="monai_dmilo_bart_") as tmp:
        k, s = (str(Path(tmp) / n) for n in ("k", "s"))
        write_cfl(k, np.transpose(kspace, (1, 2, 0))[:, :, None, :])
        _run("caldir", str(int(cal_size)), k, s)
        return np.transpose(read_cfl(s).reshape(*kspace.shape[-2:], kspace.shape[0]), (2, 0, 1))
