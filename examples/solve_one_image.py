"""Reconstruct one shipped Fashion-MNIST image from 30% of its pixels with DMILO (Python API).

    python examples/solve_one_image.py
"""
import numpy as np
import torch
from PIL import Image

from monai_dmilo.networks import build_generator
from monai_dmilo.operators import build as build_operator
from monai_dmilo.operators import random_pixel_mask
from monai_dmilo.solvers import build_from_preset

torch.set_flush_denormal(True)  # CPU: avoids very slow denormal arithmetic in the prior's backward

# the prior: the shipped 32x32 Fashion-MNIST DDPM as a chain of N = 3 DDIM steps
generator = build_generator("configs/models/fashion_mnist_32.yaml", num_steps=3)

# a clean image in [-1, 1], shape (B, C, H, W), and its measurement y = A(x) + noise
image = np.asarray(Image.open("bundle/sample_images/fashion_mnist/test_05109.png"), dtype=np.float32)
x = torch.from_numpy(image / 127.5 - 1.0)[None, None]
operator = build_operator("inpainting", mask=random_pixel_mask((32, 32), hidden_fraction=0.7, seed=0)[None])
y = operator(x + 0.01 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1)))

# DMILO with the paper's inpainting settings, fewer inner iterations for this small prior
solver = build_from_preset("inpainting_dmilo", num_inner=100, progress=True)
out = solver.solve(y, operator, generator, seed=0)  # the solver sees y and A, never x

psnr = 10 * torch.log10(4.0 / (out.x - x).square().mean())
print(f"PSNR {psnr:.2f} dB, {out.nfe} network evaluations, {out.wall_time:.1f} s")
print("data fit per outer iteration:", [f"{v:.2e}" for v in out.history["data_fit"][:, 0].tolist()])
