"""Write fastMRI-layout multi-coil k-space files built from real magnitude slices (offline demo data).

No raw scanner k-space can be downloaded here, so this builds realistic multi-coil data from a real
T1 subject that no shipped prior was trained on: ITK's ``KmeansTest_T1UCharRaw.nii.gz`` with its
skull-strip mask (Debian's ``insighttoolkit5-examples``, Apache-2.0; the brain prior's held-out
subject). Per orientation (axial, coronal, sagittal), ``--slices`` evenly spaced slices are brain-
masked, scaled to [0, 1] (99.5th percentile) and resampled to ``--matrix`` pixels (square field of
view, as ``prepare_data.py`` does for the priors), then

* a smooth synthetic phase: a random second-order polynomial in the image coordinates (coefficients
  uniform in [-pi/2, pi/2], seeded per file), ``phi = a0 + a1 u + a2 v + a3 u v + a4 u^2 + a5 v^2``
  with ``u, v`` in [-1, 1];
* ``--coils`` simulated sensitivities (``monai_dmilo.operators.simulate_coil_maps``: Gaussian
  fall-off from coils on a circle, linear phase, ``sum_c |S_c|^2 = 1``);
* k-space ``F(S_c m e^{i phi})`` (centred orthonormal FFT) plus complex Gaussian noise of standard
  deviation ``--noise`` per real and imaginary part (in units of the [0, 1] magnitude).

Each file holds ``kspace`` complex64 ``(slices, coils, H, W)`` fully sampled, ``reconstruction_rss``
``(slices, H, W)`` (root-sum-of-squares of the noisy coil images, as fastMRI's), an ``ismrmrd_header``
with the matrix and field of view, and the attributes ``acquisition``, ``max``, ``norm``,
``patient_id``. Usage::

    python scripts/make_kspace_data.py --out_dir data_cache/kspace [--matrix 64] [--coils 8] [--slices 6]
    # the same as ISMRMRD / MRD raw data as a scanner converter writes it: a noise scan, 4x undersampled
    # with the central lines flagged as calibration (no reference image: MRD has none)
    python scripts/make_kspace_data.py --out_dir data_cache/kspace_mrd --format mrd --acceleration 4
    # validation files from other slices (settings are chosen on these, never on the files above)
    python scripts/make_kspace_data.py --out_dir data_cache/kspace_val --slice_range 0.1 0.2 --slices 3 --seed 100
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from monai_dmilo.kspace.problem import undersample  # noqa: E402
from monai_dmilo.kspace.simulate import simulate_kspace, write_fastmri_h5, write_mrd_file  # noqa: E402

ITK_T1 = Path("/usr/share/doc/insighttoolkit5-examples/examples/Data")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out_dir", type=Path, default=REPO / "data_cache" / "kspace")
    parser.add_argument("--matrix", type=int, default=64)
    parser.add_argument("--coils", type=int, default=8)
    parser.add_argument("--slices", type=int, default=6, help="slices per orientation (one file each)")
    parser.add_argument("--slice_range", type=float, nargs=2, default=(0.25, 0.75),
                        help="slices are taken evenly from this fraction of each stack (a disjoint range: validation data)")
    parser.add_argument("--noise", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=["fastmri", "mrd"], default="fastmri")
    parser.add_argument("--acceleration", type=float, default=None,
                        help="MRD only: write only the lines of an equispaced mask (8 %% centre, flagged as calibration)")
    args = parser.parse_args(argv)
    from prepare_data import ORIENTATIONS, load_brain, volume_slices

    source = ITK_T1 / "KmeansTest_T1UCharRaw.nii.gz"
    if not source.exists():
        sys.exit(f"{source} not found: apt-get update && apt-get install -y insighttoolkit5-examples")
    vol, spacing = load_brain(source, ITK_T1 / "KmeansTest_T1RawSkullStrip.nii.gz")
    for k, (orientation, axis) in enumerate(ORIENTATIONS.items()):
        images, pixel_mm = volume_slices(vol, spacing, axis, size=args.matrix, min_brain_fraction=0.15)
        lo, hi = args.slice_range
        keep = np.linspace(len(images) * lo, len(images) * hi, args.slices).round().astype(int)
        data = simulate_kspace(images[keep], coils=args.coils, noise=args.noise, seed=args.seed + k)
        path = args.out_dir / f"itk_t1_{orientation}.h5"
        if args.format == "fastmri":
            write_fastmri_h5(path, data, pixel_mm=pixel_mm, thickness_mm=float(spacing[axis]),
                             acquisition=f"T1_{orientation.upper()}", patient_id="itk-kmeanstest")
        else:
            mask, calibration = None, 0
            if args.acceleration:
                _, mask = undersample(data["kspace"], args.acceleration, 0.08, seed=args.seed + k)
                calibration = int(round(0.08 * args.matrix))
            write_mrd_file(path, data["kspace"], mask=mask, calibration=calibration, pixel_mm=pixel_mm,
                           thickness_mm=float(spacing[axis]), noise_samples=4096, noise=args.noise, seed=args.seed + k,
                           acceleration=int(args.acceleration or 1),
                           subject={"patientName": "KmeansTest^T1", "patientID": "itk-kmeanstest"},
                           study={"studyDescription": f"T1 {orientation}"})
        print(f"wrote {path}: kspace {data['kspace'].shape}, {pixel_mm:.2f} mm pixels")


if __name__ == "__main__":
    main()
