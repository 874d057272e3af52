"""Build the offline datasets the shipped priors are trained on, and the held-out sample images.

Sources (all available offline on a Debian machine with PyPI access):

* Fashion-MNIST: Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``,
  MIT/Expat licence, Zalando SE). 28x28 uint8 images zero-padded to 32x32. Only the train split is
  used for training; held-out sample images come from the test split.
* Brain MRI (training): the MNI ICBM152 2009a nonlinear symmetric T1 template
  (``mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz``) shipped inside the ``nilearn`` wheel
  (``pip download --no-deps nilearn``; the file is read straight from the wheel, nilearn is not
  installed). One skull-stripped brain, 1 mm isotropic; 2D slices in three orientations.
* Brain MRI (training, second subject): the Colin27 single-subject T1 brain, skull-stripped
  (``ch2bet.nii.gz``, 1 mm) from Debian's ``mricron-data`` (``/usr/share/mricron/templates``;
  BSD-3-clause, Copyright 2006-2010 Chris Rorden, per ``/usr/share/doc/mricron-data/copyright``).
* Head CT: ``Cranium.inv3`` from Debian's ``invesalius-examples`` (an InVesalius project holding
  a real head CT, 108 axial slices of 256 x 256, 0.957 x 0.957 x 1.5 mm, Hounsfield units;
  GPL-2, Centro de Tecnologia da Informacao Renato Archer, per
  ``/usr/share/doc/invesalius-examples/copyright``). One subject: a contiguous axial slab is held
  out (validation and test slices, with gap slices on both sides that nobody uses) and the prior
  trains on the rest.
* Brain MRI (held-out evaluation): a different subject's T1 volume, ``KmeansTest_T1UCharRaw.nii.gz``
  (2 x 2 x 3 mm) with its brain mask ``KmeansTest_T1RawSkullStrip.nii.gz`` from Debian's
  ``insighttoolkit5-examples`` package. Never used for training.

Preprocessing of a brain volume: reorient to RAS, multiply by the brain mask, divide by the 99.5th
percentile of brain voxels and clip to [0, 1], crop to the brain's bounding box, then for each
orientation resample every slice to 1 mm pixels, zero-pad it to a square field of view and resize it
(antialiased bilinear) to ``size x size``. Slices whose brain area is below ``min_brain_fraction`` of
the square are dropped. Stored intensities are in [0, 1]; the priors see ``2 * x - 1``.

Outputs, in the forms ``bundle/configs/train.yaml`` reads with ``--dataset_dir``:

* ``data_cache/fashion_mnist/{train,test}/*.png`` (60,000 and 10,000 32x32 PNGs);
* ``data_cache/brain_mri/train/{mni152,colin27}_{sagittal,coronal,axial}.nii.gz`` and
  ``data_cache/brain_mri/heldout/itk_t1_*.nii.gz``: ``(32, 32, N)`` stacks, slice ``k`` = ``[..., k]``;
* ``data_cache/ct_head/{train,validation,test}/cranium_axial.nii.gz``: ``(32, 32, N)`` stacks in
  Hounsfield units (the CT prior's ``intensity_window`` maps them to [-1, 1]);
* the held-out sample images shipped in ``bundle/sample_images/{fashion_mnist,brain_mri,ct_head}/``.

Usage (the Debian packages need root; ``pip download`` fetches the nilearn wheel)::

    apt-get install -y dataset-fashion-mnist insighttoolkit5-examples mricron-data invesalius-examples
    python scripts/prepare_data.py --cache_dir data_cache --sample_dir bundle/sample_images
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
ITK_DATA_DIR = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data")
MNI_MEMBER = "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
COLIN27 = Path("/usr/share/mricron/templates/ch2bet.nii.gz")
ORIENTATIONS = {"sagittal": 0, "coronal": 1, "axial": 2}
INSTALL_HINT = "install it with: apt-get update && apt-get install -y insighttoolkit5-examples mricron-data"
CRANIUM = Path("/usr/share/doc/invesalius-examples/examples/Cranium.inv3")
# Hounsfield window of the CT prior: air (-1000) -> -1, +1000 HU (dense bone) -> 1; soft tissue and
# water near 0. Wider bone (teeth, petrous bone) is clipped. configs/models/ct_head_32.yaml repeats it.
CT_WINDOW = (-1000.0, 1000.0)
# Axial slices of Cranium.inv3 (index 0 = the lowest, at the jaw): held out = slices 58-89
# (validation 60-71, test 76-87; 58-59, 72-75 and 88-89 are gaps so that no evaluated slice has a
# trained neighbour closer than 3 mm, and the validation and test slices none closer than 6 mm);
# the prior trains on 0-57 and 90 upwards. The shipped demo slices are gap slices: neither trained
# on nor evaluated.
CT_HELDOUT = range(58, 90)
CT_VALIDATION = range(60, 72)
CT_TEST = range(76, 88)


# ----------------------------------------------------------------------------- Fashion-MNIST
def read_idx_images(path: Path) -> np.ndarray:
    """Read a gzipped IDX3 file into a ``(N, 28, 28)`` uint8 array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, n, rows, cols = np.frombuffer(data[:16], dtype=">i4")
    if magic != 2051:
        raise ValueError(f"{path} is not an IDX3 image file (magic {magic}, expected 2051).")
    return np.frombuffer(data[16:], dtype=np.uint8).reshape(n, rows, cols)


def pad_to(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad ``(N, h, w)`` images symmetrically to ``(N, size, size)``."""
    _, h, w = images.shape
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(images, ((0, 0), (top, size - h - top), (left, size - w - left)))


def write_png_folder(images: np.ndarray, folder: Path, names: list[str]) -> None:
    """Write ``(N, H, W)`` uint8 images as ``folder/<name>.png`` (an empty folder first)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    for image, name in zip(images, names):
        Image.fromarray(image).save(folder / f"{name}.png")


def prepare_fashion_mnist(cache_dir: Path, sample_dir: Path, *, num_samples: int, seed: int) -> dict:
    """``cache_dir/fashion_mnist/{train,test}/*.png`` (32x32) and the shipped held-out samples."""
    out = cache_dir / "fashion_mnist"
    train = pad_to(read_idx_images(FASHION_DIR / "train-images-idx3-ubyte.gz"), 32)
    test = pad_to(read_idx_images(FASHION_DIR / "t10k-images-idx3-ubyte.gz"), 32)
    write_png_folder(train, out / "train", [f"train_{k:05d}" for k in range(len(train))])
    write_png_folder(test, out / "test", [f"test_{k:05d}" for k in range(len(test))])
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(test), size=num_samples, replace=False))
    write_png_folder(test[picks], sample_dir / "fashion_mnist", [f"test_{k:05d}" for k in picks])
    return {"train": list(train.shape), "test": list(test.shape), "held_out_test_indices": picks.tolist()}


# ----------------------------------------------------------------------------- brain MRI
def fetch_mni_template(cache_dir: Path) -> Path:
    """Extract the MNI152 2009a T1 template from the nilearn wheel (downloaded once with pip)."""
    target = cache_dir / "brain_mri" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    wheel_dir = cache_dir / "wheels"
    wheels = sorted(glob.glob(str(wheel_dir / "nilearn-*.whl")))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "nilearn", "-d", str(wheel_dir)],
            check=True,
        )
        wheels = sorted(glob.glob(str(wheel_dir / "nilearn-*.whl")))
    with zipfile.ZipFile(wheels[-1]) as zf:
        target.write_bytes(zf.read(MNI_MEMBER))
        licence = [n for n in zf.namelist() if n.endswith("LICENSE")]
        if licence:
            (target.parent / "nilearn_LICENSE.txt").write_bytes(zf.read(licence[0]))
    return target


def load_brain(path: Path, mask_path: Path | None = None) -> tuple[np.ndarray, tuple[float, ...]]:
    """Load a T1 volume in RAS orientation, brain-masked and scaled to [0, 1]."""
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(str(path)))
    vol = np.asarray(img.get_fdata(), dtype=np.float32)
    if mask_path is not None:
        mask = np.asarray(nib.as_closest_canonical(nib.load(str(mask_path))).get_fdata()) > 0
    else:
        mask = vol > 0
    vol = vol * mask
    scale = np.percentile(vol[mask], 99.5)
    vol = np.clip(vol / scale, 0.0, 1.0)
    nz = np.argwhere(mask)
    lo, hi = nz.min(0), nz.max(0) + 1
    vol = vol[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    return vol, tuple(float(z) for z in img.header.get_zooms()[:3])


def volume_slices(
    vol: np.ndarray, spacing: tuple[float, ...], axis: int, *, size: int, min_brain_fraction: float
) -> tuple[np.ndarray, float]:
    """All slices of ``vol`` along ``axis`` as ``(N, size, size)`` images and their pixel size (mm).

    The image plane is displayed with the remaining axes (first -> columns, second -> rows,
    flipped so that superior/anterior is up).
    """
    moved = np.moveaxis(vol, axis, 0)  # (S, a, b)
    sp = [s for i, s in enumerate(spacing) if i != axis]
    a_mm, b_mm = round(moved.shape[1] * sp[0]), round(moved.shape[2] * sp[1])
    extent = max(a_mm, b_mm)
    t = torch.from_numpy(np.ascontiguousarray(moved))[:, None]
    t = F.interpolate(t, size=(a_mm, b_mm), mode="bilinear", align_corners=False, antialias=True)
    pa, pb = extent - a_mm, extent - b_mm
    t = F.pad(t, (pb // 2, pb - pb // 2, pa // 2, pa - pa // 2))
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    imgs = t[:, 0].clamp(0, 1).numpy()
    imgs = np.flip(np.swapaxes(imgs, 1, 2), axis=1)  # rows = second plane axis, up = +axis
    frac = (imgs > 0.05).mean(axis=(1, 2))
    return np.ascontiguousarray(imgs[frac >= min_brain_fraction]), extent / size


def rotate_volume(vol: np.ndarray, angles_deg: tuple[float, float, float]) -> np.ndarray:
    """``vol`` rotated about its centre by the Euler angles ``angles_deg`` (degrees, about the three
    axes in turn; trilinear, zeros outside), on a grid large enough to hold every rotated voxel."""
    from scipy.ndimage import affine_transform
    from scipy.spatial.transform import Rotation

    rotation = Rotation.from_euler("xyz", angles_deg, degrees=True).as_matrix()
    side = int(np.ceil(np.linalg.norm(vol.shape)))
    out_centre, in_centre = (np.array([side] * 3) - 1) / 2.0, (np.array(vol.shape) - 1) / 2.0
    # output voxel o samples the input at R^T (o - out_centre) + in_centre
    matrix = rotation.T
    return affine_transform(vol, matrix, offset=in_centre - matrix @ out_centre, output_shape=(side,) * 3,
                            order=1, mode="constant", cval=0.0)


def oblique_stacks(vol: np.ndarray, spacing: tuple[float, ...], *, count: int, max_angle: float, size: int,
                   min_brain_fraction: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Slices of ``count`` randomly rotated copies of a 1 mm isotropic ``vol`` (each Euler angle
    uniform in ``[-max_angle, max_angle]`` degrees), in the three orientations: ``{"oblique<k>_<orientation>":
    (N, size, size)}``. More distinct slices per subject than the three orthogonal stacks."""
    if any(abs(s - 1.0) > 1e-3 for s in spacing):
        raise ValueError(f"oblique slices need a 1 mm isotropic volume, got spacing {spacing!r}.")
    stacks = {}
    for k in range(count):
        angles = tuple(float(a) for a in rng.uniform(-max_angle, max_angle, size=3))
        rotated = rotate_volume(vol, angles)
        nz = np.argwhere(rotated > 0.01)
        lo, hi = nz.min(0), nz.max(0) + 1
        rotated = rotated[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        for name, ax in ORIENTATIONS.items():
            stacks[f"oblique{k}_{name}"] = volume_slices(rotated, (1.0, 1.0, 1.0), ax, size=size,
                                                         min_brain_fraction=min_brain_fraction)[0]
    return stacks


def prepare_brain_oblique(cache_dir: Path, *, size: int, count: int, max_angle: float, min_brain_fraction: float,
                          seed: int) -> dict:
    """``data_cache/brain_mri/train_oblique/<subject>_oblique<k>_<orientation>.nii.gz``: the training
    subjects' oblique slices (:func:`oblique_stacks`), for a prior trained on more slices per volume."""
    out = cache_dir / "brain_mri" / "train_oblique"
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    counts = {}
    for subject, path in (("mni152", fetch_mni_template(cache_dir)), ("colin27", COLIN27)):
        vol, spacing = load_brain(path)
        for name, imgs in oblique_stacks(vol, spacing, count=count, max_angle=max_angle, size=size,
                                         min_brain_fraction=min_brain_fraction, rng=rng).items():
            write_slice_stack(imgs, out / f"{subject}_{name}.nii.gz")
            counts[f"{subject}_{name}"] = len(imgs)
    return {"train_oblique": sum(counts.values()), "oblique_per_stack": counts, "max_angle_deg": max_angle}


def prepare_brain(
    cache_dir: Path, sample_dir: Path, *, size: int, num_samples: int, min_brain_fraction: float, seed: int
) -> dict:
    import nibabel as nib

    out = cache_dir / "brain_mri"
    out.mkdir(parents=True, exist_ok=True)
    train, counts = [], {}
    for subject, path in (("mni152", fetch_mni_template(cache_dir)), ("colin27", COLIN27)):
        if not path.is_file():
            raise FileNotFoundError(f"training subject {subject!r} not found at {str(path)!r}; {INSTALL_HINT}")
        vol, spacing = load_brain(path)
        for name, ax in ORIENTATIONS.items():
            imgs = volume_slices(vol, spacing, ax, size=size, min_brain_fraction=min_brain_fraction)[0]
            write_slice_stack(imgs, out / "train" / f"{subject}_{name}.nii.gz")
            counts[f"{subject}_{name}"] = len(imgs)
            train.append(imgs)
    train_arr = np.concatenate(train).astype(np.float32)

    hvol, hspacing = load_brain(
        ITK_DATA_DIR / "KmeansTest_T1UCharRaw.nii.gz", ITK_DATA_DIR / "KmeansTest_T1RawSkullStrip.nii.gz"
    )
    rng = np.random.default_rng(seed)
    sdir = sample_dir / "brain_mri"
    sdir.mkdir(parents=True, exist_ok=True)
    for old in sdir.glob("*.nii.gz"):
        old.unlink()
    held_all, written = [], []
    per_orientation = max(1, num_samples // len(ORIENTATIONS))
    for name, ax in ORIENTATIONS.items():
        # Held-out slices from the central part of the volume (brain fills most of the frame).
        imgs, pix = volume_slices(hvol, hspacing, ax, size=size, min_brain_fraction=0.3)
        held_all.append(imgs)
        write_slice_stack(imgs, out / "heldout" / f"itk_t1_{name}.nii.gz")
        centre = np.arange(len(imgs) // 4, len(imgs) - len(imgs) // 4)
        picks = np.sort(rng.choice(centre, size=min(per_orientation, len(centre)), replace=False))
        for k in picks:
            fname = sdir / f"t1_{name}_{k:03d}.nii.gz"
            # The data array is the (H, W) image exactly as the prior sees it (row 0 at the top), so
            # MONAI's LoadImage returns it unchanged; the affine maps rows to "down" and columns to
            # "right" (pix mm each) so that viewers show it upright.
            affine = np.array([[0.0, pix, 0, 0], [-pix, 0.0, 0, (size - 1) * pix], [0, 0, 1.0, 0], [0, 0, 0, 1.0]])
            nib.save(nib.Nifti1Image(np.ascontiguousarray(imgs[k], dtype=np.float32), affine), str(fname))
            written.append(fname.name)
    png_grid(train_arr[::12][:64], out / "train_preview.png")
    png_grid(np.concatenate(held_all)[::3][:64], out / "heldout_preview.png")
    return {"train": list(train_arr.shape), "train_per_orientation": counts, "held_out_files": written}


# ----------------------------------------------------------------------------- head CT
def ct_axial_slices(hu: np.ndarray, *, size: int) -> np.ndarray:
    """``(Z, Y, X)`` Hounsfield volume -> ``(Z, size, size)`` axial slices in HU on the prior's grid.

    The whole square field of view is resized (antialiased bilinear, linear in HU), and rows are
    flipped so that the face is at the top and the scanner table below (the usual display of a
    supine head)."""
    t = torch.from_numpy(np.ascontiguousarray(hu, dtype=np.float32))[:, None]
    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    return np.ascontiguousarray(np.flip(t[:, 0].numpy(), axis=1))


def prepare_ct(cache_dir: Path, sample_dir: Path, *, size: int, num_samples: int, min_head_fraction: float,
               seed: int) -> dict:
    """``cache_dir/ct_head/{train,validation,test}/cranium_axial.nii.gz`` and shipped test samples."""
    import nibabel as nib

    from monai_dmilo.data.invesalius import read_inv3

    if not CRANIUM.is_file():
        raise FileNotFoundError(f"the head CT {str(CRANIUM)!r} was not found; install it with: "
                                "apt-get update && apt-get install -y invesalius-examples")
    volume = read_inv3(CRANIUM)
    if volume.array.shape[1] != volume.array.shape[2] or volume.spacing[0] != volume.spacing[1]:
        raise ValueError(f"{CRANIUM} has non-square slices {volume.array.shape[1:]} / spacing {volume.spacing}.")
    slices = ct_axial_slices(volume.array, size=size)
    pixel_mm = volume.spacing[0] * volume.array.shape[2] / size
    head = (slices > -500).mean(axis=(1, 2))  # tissue fraction (the thin table arc barely counts)
    index = np.arange(len(slices))
    splits = {
        "train": [int(k) for k in index if k not in CT_HELDOUT and head[k] >= min_head_fraction],
        "validation": list(CT_VALIDATION),
        "test": list(CT_TEST),
    }
    out = cache_dir / "ct_head"
    affine = np.array([[0.0, pixel_mm, 0, 0], [-pixel_mm, 0.0, 0, (size - 1) * pixel_mm],
                       [0, 0, volume.spacing[2], 0], [0, 0, 0, 1.0]])
    for split, keep in splits.items():
        write_slice_stack(slices[keep], out / split / "cranium_axial.nii.gz", affine=affine)
    lo, hi = CT_WINDOW
    png_grid((np.clip(slices[splits["train"]], lo, hi) - lo) / (hi - lo), out / "train_preview.png")
    png_grid((np.clip(slices[splits["test"]], lo, hi) - lo) / (hi - lo), out / "test_preview.png")
    gaps = [k for k in CT_HELDOUT if k not in CT_VALIDATION and k not in CT_TEST]
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(gaps, size=min(num_samples, len(gaps)), replace=False))
    sdir = sample_dir / "ct_head"
    sdir.mkdir(parents=True, exist_ok=True)
    for old in sdir.glob("*.nii.gz"):
        old.unlink()
    for k in picks:
        # 2D NIfTI in HU, the (H, W) image as the prior sees it (row 0 at the top)
        nib.save(nib.Nifti1Image(np.ascontiguousarray(slices[k], dtype=np.float32), affine),
                 str(sdir / f"cranium_axial_{k:03d}.nii.gz"))
    return {"volume": list(volume.array.shape), "spacing_mm": list(volume.spacing), "pixel_mm": pixel_mm,
            "window_hu": list(CT_WINDOW), **{split: keep for split, keep in splits.items()},
            "samples": [int(k) for k in picks]}


def write_slice_stack(images: np.ndarray, path: Path, *, affine: np.ndarray | None = None) -> None:
    """Save ``(N, H, W)`` slices as one ``(H, W, N)`` NIfTI volume: slice ``k`` is ``data[..., k]``.

    The bundle's workflows split 3D volumes into slices along the last axis, so the training
    config reads these stacks directly (``--dataset_dir``).
    """
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    data = np.ascontiguousarray(np.moveaxis(images.astype(np.float32), 0, -1))
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))


def png_grid(images: np.ndarray, path: Path, *, ncol: int = 8) -> None:
    """Save ``(N, H, W)`` images in [0, 1] as a grid PNG."""
    from PIL import Image

    n, h, w = images.shape
    nrow = -(-n // ncol)
    grid = np.zeros((nrow * (h + 2), ncol * (w + 2)), dtype=np.float32)
    for i, im in enumerate(images):
        r, c = divmod(i, ncol)
        grid[r * (h + 2) + 1 : r * (h + 2) + 1 + h, c * (w + 2) + 1 : c * (w + 2) + 1 + w] = im
    Image.fromarray((np.clip(grid, 0, 1) * 255).round().astype(np.uint8)).save(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache_dir", default="data_cache", type=Path)
    parser.add_argument("--sample_dir", default="bundle/sample_images", type=Path)
    parser.add_argument("--brain_size", default=32, type=int)
    parser.add_argument("--num_samples", default=6, type=int, help="held-out images shipped per prior")
    parser.add_argument("--min_brain_fraction", default=0.15, type=float)
    parser.add_argument("--min_head_fraction", default=0.15, type=float,
                        help="CT: training slices need at least this fraction of tissue (> -500 HU)")
    parser.add_argument("--seed", default=0, type=int)
    parser.add_argument("--datasets", default="fashion_mnist,brain_mri,ct_head")
    parser.add_argument("--brain_oblique", default=0, type=int,
                        help="brain: also write this many randomly rotated copies of each training subject's "
                             "slices to data_cache/brain_mri/train_oblique (more slices per volume)")
    parser.add_argument("--brain_oblique_angle", default=20.0, type=float, help="largest rotation (degrees)")
    args = parser.parse_args(argv)
    summary = {}
    names = args.datasets.split(",")
    if "fashion_mnist" in names:
        summary["fashion_mnist"] = prepare_fashion_mnist(
            args.cache_dir, args.sample_dir, num_samples=args.num_samples, seed=args.seed
        )
    if "brain_mri" in names:
        summary["brain_mri"] = prepare_brain(
            args.cache_dir, args.sample_dir, size=args.brain_size, num_samples=args.num_samples,
            min_brain_fraction=args.min_brain_fraction, seed=args.seed,
        )
        if args.brain_oblique:
            summary["brain_mri"].update(prepare_brain_oblique(
                args.cache_dir, size=args.brain_size, count=args.brain_oblique, max_angle=args.brain_oblique_angle,
                min_brain_fraction=args.min_brain_fraction, seed=args.seed))
    if "ct_head" in names:
        summary["ct_head"] = prepare_ct(
            args.cache_dir, args.sample_dir, size=args.brain_size, num_samples=args.num_samples,
            min_head_fraction=args.min_head_fraction, seed=args.seed,
        )
    (args.cache_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
