"""Reconstruct one shipped Fashion-MNIST image from 30% of its pixels with DMILO (Python API).

    python examples/solve_one_image.py                      # the README's run (about 1.5 min on 2 CPU cores)
    python examples/solve_one_image.py --num_inner 20 --image bundle/sample_images/fashion_mnist/test_00409.png

Prints the PSNR against the image (computed here: the solver only sees y and A), the number of
network evaluations and the wall time.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from monai_dmilo.priors import build_prior
from monai_dmilo.operators import build as build_operator
from monai_dmilo.operators import random_pixel_mask
from monai_dmilo.solvers import build_from_preset

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image", type=Path, default=REPO / "bundle/sample_images/fashion_mnist/test_05109.png",
                        help="a 32 x 32 grayscale PNG")
    parser.add_argument("--hidden", type=float, default=0.7, help="fraction of pixels hidden")
    parser.add_argument("--num_outer", type=int, default=5, help="DMILO outer iterations K")
    parser.add_argument("--num_inner", type=int, default=100, help="inner iterations M per layer (paper: 200)")
    parser.add_argument("--num_steps", type=int, default=3, help="DDIM steps N of the prior")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.image.is_file():
        parser.error(f"--image {args.image} does not exist")
    image = np.asarray(Image.open(args.image).convert("L"), dtype=np.float32)
    if image.shape != (32, 32):
        parser.error(f"--image {args.image} is {image.shape[1]}x{image.shape[0]}; the shipped prior takes 32x32")

    torch.set_flush_denormal(True)  # CPU: avoids very slow denormal arithmetic in the prior's backward
    # the prior: the shipped 32x32 Fashion-MNIST DDPM as a chain of N DDIM steps
    prior = build_prior("fashion_mnist_32", num_steps=args.num_steps)
    # a clean image in [-1, 1], shape (B, C, H, W), and its measurement y = A(x) + noise
    x = torch.from_numpy(image / 127.5 - 1.0)[None, None]
    mask = random_pixel_mask((32, 32), hidden_fraction=args.hidden, seed=args.seed)[None]
    operator = build_operator("inpainting", mask=mask)
    y = operator(x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(args.seed + 1)))

    solver = build_from_preset("inpainting_dmilo", num_outer=args.num_outer, num_inner=args.num_inner, progress=True)
    out = solver.solve(y, operator, prior, seed=args.seed)  # the solver sees y and A, never x

    psnr = 10 * torch.log10(4.0 / (out.x - x).square().mean())
    print(f"PSNR {psnr:.2f} dB, {out.nfe} network evaluations, {out.wall_time:.1f} s")
    print("data fit per outer iteration:", [f"{v:.2e}" for v in out.history["data_fit"][:, 0].tolist()])


if __name__ == "__main__":
    main()
