"""Can the noise level be estimated from y alone at this scale? (It cannot: this prints by how much it is off.)

For each task of ``benchmarks/quality.py`` (its 16 validation images, true sigma = the task's):

* images-like measurements (blur, SR, CT sinogram, inpainting): the median absolute value of the
  finest diagonal Haar band of ``y`` over 0.6745 (Donoho-Johnstone), on 2 x 2 blocks whose four
  entries are all measured (non-zero);
* MRI: the median absolute real and imaginary part of the measured k-space samples in the outermost
  25 % of rows, over 0.6745.

    python benchmarks/noise_estimate.py
"""
from __future__ import annotations

import numpy as np
import torch

from quality_bench.rule import TaskBench
from quality_bench.settings import TASKS


def haar_mad(y: torch.Tensor) -> list[float]:
    r = torch.view_as_real(y).movedim(-1, 1).flatten(1, 2) if y.is_complex() else y
    r = r[..., : r.shape[-2] // 2 * 2, : r.shape[-1] // 2 * 2]
    a, b, c, d = r[..., 0::2, 0::2], r[..., 0::2, 1::2], r[..., 1::2, 0::2], r[..., 1::2, 1::2]
    band, measured = (a - b - c + d) / 2, (a != 0) & (b != 0) & (c != 0) & (d != 0)
    return [float(band[s][measured[s]].abs().median() / 0.6745) if measured[s].any() else float("nan")
            for s in range(r.shape[0])]


def kspace_edge(y: torch.Tensor, fraction: float = 0.25) -> list[float]:
    rows = (torch.arange(y.shape[-2]) - y.shape[-2] // 2).abs() >= (1 - fraction) * y.shape[-2] / 2
    out = []
    for s in range(y.shape[0]):
        v = y[s][..., rows, :]
        v = v[v != 0]
        out.append(float(torch.cat([v.real, v.imag]).abs().median() / 0.6745))
    return out


def main() -> None:
    print("| task | true sigma | estimate: median (min - max) over 16 images | median / true | no estimate |")
    print("|---|---|---|---|---|")
    for task in TASKS:
        bench = TaskBench(task, 16)
        y, sigma = bench.problem("validation")["y"], bench.task["noise_sigma"]
        est = np.array(kspace_edge(y) if task == "mri" else haar_mad(y))
        ok = est[np.isfinite(est)]
        print(f"| {task} | {sigma:g} | {np.median(ok):.4f} ({ok.min():.4f} - {ok.max():.4f}) | "
              f"{np.median(ok) / sigma:.1f}x | {int((~np.isfinite(est)).sum())} |")


if __name__ == "__main__":
    main()
